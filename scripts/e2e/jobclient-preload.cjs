// Loaded with `node --require` into Microsoft's e2e suite (scripts/e2e/run.mjs): replaces
// azure-iothub's JobClient with iothub-jobs' drop-in one, so `require('azure-iothub').JobClient`
// in the suite's own files gets ours. Nothing else of azure-iothub is touched.
'use strict'
const path = require('node:path')
const { createRequire } = require('node:module')

// The suite's azure-iothub (resolved from its directory, the mocha working directory).
const suiteRequire = createRequire(path.join(process.cwd(), 'package.json'))
const azureIothub = suiteRequire('azure-iothub')
azureIothub.JobClient = require('../../lib/main.js').JobClient
