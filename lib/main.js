'use strict';
// Package entry: the native JobClient and Query (loaded by the generated index.js) plus the
// error classes, which the addon uses for every hub error it reports.
require('./runtime.js').checkRuntime(); // one line, naming the runtime, where the addon cannot load
const native = require('../index.js');
const errors = require('./errors.js');

// listJobs/listDeviceJobs iterators and Query's async iteration (see paging.js for why JS).
const paging = require('./paging.js');
native.__init(errors, paging);
paging.installQueryIterator(native.Query);
// runDeviceMethodJob/runTwinUpdateJob/watchJobs (orchestrated natively, see fleet.js).
require('./fleet.js').installFleet(native.JobClient);

exports.JobClient = native.JobClient;
exports.Query = native.Query;
exports.errors = errors;
// Declared by the generated index.d.ts (which is this package's "types"), so it must exist here too.
exports.__napiBindingTarget = native.__napiBindingTarget;
