//! The import/export jobs' rules as the REST API calls them (`import_export/` keeps the jobs
//! and runs them): create (one active job per hub), get, list, cancel, and the jobs a
//! previous run left, run again once the storage account is linked.

use serde_json::Value;

use super::Hub;
use crate::errors::ApiError;
use crate::import_export::{self, parse_request, Runner};

impl Hub {
    fn import_export_runner(&self) -> Runner {
        Runner {
            registry: self.devices.clone(),
            clock: self.clock.clone(),
            jobs: self.import_export.clone(),
            storage: self.files.storage().cloned(),
        }
    }

    /// `POST /jobs/create`: the job, stored and enqueued, as the service answers it.
    pub fn create_import_export_job(&self, body: &Value) -> Result<Value, ApiError> {
        let job = parse_request(body, crate::errors::tracking_id(), self.clock.now_ms())?;
        let id = job.job_id.clone();
        let answer = self.import_export.create(&self.devices.store, job)?;
        tokio::spawn(import_export::run(self.import_export_runner(), id));
        Ok(answer)
    }

    /// `GET /jobs/{id}`.
    pub fn import_export_job(&self, id: &str) -> Result<Value, ApiError> {
        self.import_export.get(id)
    }

    /// `GET /jobs`: every import/export job, in creation order.
    pub fn import_export_jobs(&self) -> Vec<Value> {
        self.import_export.list()
    }

    /// `DELETE /jobs/{id}`.
    pub fn cancel_import_export_job(&self, id: &str) -> Result<Value, ApiError> {
        self.import_export
            .cancel(&self.devices.store, id, self.clock.now_ms())
    }

    /// Runs again the jobs a previous run left enqueued or running (at start-up, after the
    /// storage account is linked).
    pub fn resume_import_export_jobs(&self) {
        for id in self.import_export.enqueued() {
            tokio::spawn(import_export::run(self.import_export_runner(), id));
        }
    }
}
