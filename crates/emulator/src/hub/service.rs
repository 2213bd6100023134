//! The hub's rules as the service's REST API (`api.rs`) and the control API (`control.rs`)
//! call them: identities, twins, modules, configurations, jobs and queries, with the hub's
//! clock and tier quotas applied here rather than by each handler.

use serde_json::Value;

use super::{Hub, TwinChange};
use crate::cli::UnknownJob;
use crate::device_message::MessageSource;
use crate::devices::{BehaviourPatch, Device, DeviceFaults};
use crate::errors::{ApiError, ErrorCode};
use crate::jobs::parse_job_request;
use crate::limits::RateLimiter;
use crate::paging::{Page, RowPosition};
use crate::query::SelectQuery;
use crate::record::Recorder;
use crate::store::{StoreError, WriterState};

fn throttle(limiter: &Option<RateLimiter>, what: &str) -> Result<(), ApiError> {
    match limiter {
        Some(l) if !l.try_acquire() => Err(ApiError::new(
            ErrorCode::ThrottlingException,
            format!("Throttling: too many {what} for this hub's tier"),
        )),
        _ => Ok(()),
    }
}

/// Device identities and twins.
impl Hub {
    pub fn twin(&self, id: &str) -> Result<Value, ApiError> {
        self.devices.twin(id)
    }

    /// `PATCH` (merge) or `PUT` (`replace`) of a device twin, with an optional `If-Match`.
    pub fn update_twin(
        &self,
        id: &str,
        body: &Value,
        etag: Option<&str>,
        replace: bool,
    ) -> Result<Value, ApiError> {
        let now = self.clock.now_ms();
        let twin = self.devices.update_twin(id, body, etag, replace, now)?;
        self.twin_changed(id, TwinChange::of(replace), body, &twin);
        Ok(twin)
    }

    pub fn list_identities(&self, top: usize) -> Vec<Value> {
        self.devices.list_identities(top)
    }

    /// `POST /devices`: bulk create/update/delete; `false` with the per-device errors.
    pub fn bulk(&self, body: &Value) -> Result<(bool, Value), ApiError> {
        if !self.routed(MessageSource::DeviceLifecycleEvents) {
            return self.devices.bulk(body, self.clock.now_ms());
        }
        // Which devices the operation created or deleted: their existence before and after
        // (the twins before, for the deleted ones' events).
        let ids: Vec<&str> = body
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("id")?.as_str())
            .collect();
        let before: Vec<Option<Value>> = ids.iter().map(|id| self.devices.twin(id).ok()).collect();
        let answer = self.devices.bulk(body, self.clock.now_ms())?;
        for (id, before) in ids.into_iter().zip(before) {
            match (before, self.devices.twin(id)) {
                (None, Ok(twin)) => self.identity_changed(id, true, twin),
                (Some(twin), Err(_)) => self.identity_changed(id, false, twin),
                _ => {}
            }
        }
        Ok(answer)
    }

    pub fn identity(&self, id: &str) -> Result<Value, ApiError> {
        self.devices.identity(id)
    }

    pub fn put_identity(
        &self,
        id: &str,
        body: &Value,
        etag: Option<&str>,
    ) -> Result<Value, ApiError> {
        let created = self.devices.identity(id).is_err();
        let identity = self
            .devices
            .put_identity(id, body, etag, self.clock.now_ms())?;
        if created {
            self.lifecycle_event(id, true, self.devices.twin(id));
        }
        Ok(identity)
    }

    pub fn delete_device(&self, id: &str, etag: Option<&str>) -> Result<(), ApiError> {
        let twin = self.devices.twin(id);
        self.devices.delete(id, etag)?;
        self.lifecycle_event(id, false, twin);
        Ok(())
    }

    fn lifecycle_event(&self, client: &str, created: bool, twin: Result<Value, ApiError>) {
        if let Ok(twin) = twin {
            self.identity_changed(client, created, twin);
        }
    }

    /// Empties a device's cloud-to-device queue: how many messages were removed.
    pub fn purge_cloud_to_device(&self, id: &str) -> Result<usize, ApiError> {
        self.devices.purge_cloud_to_device(id)
    }

    pub fn device_count(&self) -> usize {
        self.devices.len()
    }
}

/// Module identities and module twins.
impl Hub {
    pub fn modules_of(&self, device: &str) -> Result<Vec<Value>, ApiError> {
        self.devices.modules_of(device)
    }

    pub fn module_identity(&self, device: &str, module: &str) -> Result<Value, ApiError> {
        self.devices.module_identity(device, module)
    }

    pub fn put_module(
        &self,
        device: &str,
        module: &str,
        body: &Value,
        etag: Option<&str>,
    ) -> Result<Value, ApiError> {
        let now = self.clock.now_ms();
        let created = self.devices.module_identity(device, module).is_err();
        let identity = self.devices.put_module(device, module, body, etag, now)?;
        if created {
            let twin = self.devices.module_twin(device, module);
            self.lifecycle_event(&format!("{device}/{module}"), true, twin);
        }
        Ok(identity)
    }

    pub fn delete_module(
        &self,
        device: &str,
        module: &str,
        etag: Option<&str>,
    ) -> Result<(), ApiError> {
        let twin = self.devices.module_twin(device, module);
        self.devices.delete_module(device, module, etag)?;
        self.lifecycle_event(&format!("{device}/{module}"), false, twin);
        Ok(())
    }

    pub fn module_twin(&self, device: &str, module: &str) -> Result<Value, ApiError> {
        self.devices.module_twin(device, module)
    }

    pub fn update_module_twin(
        &self,
        device: &str,
        module: &str,
        body: &Value,
        etag: Option<&str>,
        replace: bool,
    ) -> Result<Value, ApiError> {
        let now = self.clock.now_ms();
        let twin = self
            .devices
            .update_module_twin(device, module, body, etag, replace, now)?;
        let client = format!("{device}/{module}");
        self.twin_changed(&client, TwinChange::of(replace), body, &twin);
        Ok(twin)
    }
}

/// Configurations.
impl Hub {
    pub fn list_configurations(&self, top: usize) -> Vec<Value> {
        self.configurations.list(&self.devices, top)
    }

    pub fn configuration(&self, id: &str) -> Result<Value, ApiError> {
        self.configurations.get(&self.devices, id)
    }

    pub fn put_configuration(
        &self,
        id: &str,
        body: &Value,
        etag: Option<&str>,
    ) -> Result<Value, ApiError> {
        let now = self.clock.now_ms();
        let store = &self.devices.store;
        self.configurations.put(store, id, body, etag, now)
    }

    pub fn delete_configuration(&self, id: &str, etag: Option<&str>) -> Result<(), ApiError> {
        self.configurations.delete(&self.devices.store, id, etag)
    }
}

/// Jobs and queries, within the tier's quotas (job operations and queries per minute).
impl Hub {
    /// `PUT /jobs/v2/{id}`: counted (the control API shows attempts), throttled, validated,
    /// stored before it is answered.
    pub fn create_job(&self, id: &str, body: &Value) -> Result<Value, ApiError> {
        self.engine.count_attempt(id);
        throttle(&self.job_ops, "job operations")?;
        let spec = parse_job_request(id, body, self.clock.now_ms())?;
        self.engine.create(spec)
    }

    /// A job's JSON, `None` when the hub does not know it.
    pub fn job(&self, id: &str) -> Result<Option<Vec<u8>>, ApiError> {
        throttle(&self.job_ops, "job operations")?;
        Ok(self.engine.get_bytes(id))
    }

    /// How a job the hub does not know is answered (`--unknown-job`).
    pub fn unknown_job(&self) -> UnknownJob {
        self.config.unknown_job
    }

    pub fn cancel_job(&self, id: &str) -> Result<Value, ApiError> {
        throttle(&self.job_ops, "job operations")?;
        self.engine.cancel(id)
    }

    pub fn jobs_page(
        &self,
        job_type: Option<&str>,
        job_status: Option<&str>,
        after: Option<u64>,
        size: usize,
    ) -> Result<Page<Value, u64>, ApiError> {
        throttle(&self.job_ops, "job operations")?;
        self.engine.jobs_page(job_type, job_status, after, size)
    }

    /// Counts a query against the tier's quota.
    pub fn throttle_query(&self) -> Result<(), ApiError> {
        throttle(&self.queries, "queries")
    }

    pub fn twins_page(
        &self,
        query: &SelectQuery,
        after: Option<&str>,
        size: usize,
    ) -> Page<Value, String> {
        self.devices.twins_page(query, after, size)
    }

    pub fn module_twins_page(
        &self,
        query: &SelectQuery,
        after: Option<&str>,
        size: usize,
    ) -> Page<Value, String> {
        self.devices.module_twins_page(query, after, size)
    }

    pub fn device_job_rows_page(
        &self,
        query: &SelectQuery,
        after: Option<RowPosition>,
        size: usize,
    ) -> Result<Page<Value, RowPosition>, ApiError> {
        self.engine.device_rows_page(query, after, size)
    }
}

/// What the control API shows and sets.
impl Hub {
    pub fn host_name(&self) -> &str {
        &self.config.host_name
    }

    pub fn connected_count(&self) -> usize {
        self.devices.sessions.connected_count()
    }

    pub fn job_count(&self) -> usize {
        self.engine.len()
    }

    /// Jobs with their create counters.
    pub fn jobs_control_view(&self) -> Value {
        self.engine.control_view()
    }

    /// Every device as the control API shows it (method behaviour, counters).
    pub fn devices_control_view(&self) -> Vec<Value> {
        self.devices
            .read()
            .values()
            .map(|d| d.control_view())
            .collect()
    }

    /// Adds (or, with `replace`, replaces every device by) `devices`, built from a seed.
    pub fn load_devices(&self, devices: Vec<Device>, replace: bool) -> Result<(), StoreError> {
        self.devices.load(devices, replace)
    }

    pub fn set_behaviour(&self, id: &str, patch: &BehaviourPatch) -> Result<usize, ApiError> {
        self.devices.set_behaviour(id, patch)
    }

    /// Drops a device's connection; true when it had one.
    pub fn drop_connection(&self, id: &str) -> bool {
        self.devices.sessions.drop_connection(id)
    }

    pub fn device_faults(&self, id: &str) -> DeviceFaults {
        self.devices.sessions.faults_of(id)
    }

    pub fn set_device_faults(&self, id: &str, faults: DeviceFaults) {
        self.devices.sessions.set_faults(id, faults)
    }

    /// The telemetry kept for the control API, oldest first (`clear` empties it).
    pub fn telemetry(&self, clear: bool) -> Vec<Value> {
        self.devices.sessions.telemetry(clear)
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// The store's writer, when the hub keeps a data dir.
    pub fn writer_state(&self) -> Option<WriterState> {
        self.devices.store.writer_state()
    }

    /// Holds or releases the store's writer; false when the hub keeps no data dir.
    pub fn hold_writer(&self, held: bool) -> bool {
        self.devices.store.hold_writer(held)
    }
}
