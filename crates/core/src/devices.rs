//! Device queries (`POST /devices/query`), and the per-device rows of a job
//! (`SELECT * FROM devices.jobs WHERE devices.jobs.jobId = '…'`).
//!
//! Paging works as for `GET /jobs/v2/query`: request headers `x-ms-max-item-count` and
//! `x-ms-continuation`, the next page's token in the `x-ms-continuation` response header.

use bytes::Bytes;
use http::Method;

use crate::encoding::{encode_uri_component, json_string};
use crate::error::Error;
use crate::jobs::JobClient;
use crate::request::{check_header_value, PreparedRequest, JSON_CONTENT_TYPE};
use crate::response::Response;

/// Which page of a query to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Sent as `x-ms-max-item-count` when `Some` (the hub's default is 100).
    pub max_item_count: Option<u32>,
    /// Sent as `x-ms-continuation` when `Some` and non-empty.
    pub continuation_token: Option<String>,
}

impl PageRequest {
    fn headers(&self) -> Result<Vec<(&'static str, String)>, Error> {
        let mut headers = Vec::new();
        if let Some(n) = self.max_item_count {
            headers.push(("x-ms-max-item-count", n.to_string()));
        }
        if let Some(token) = self.continuation_token.as_deref().filter(|t| !t.is_empty()) {
            check_header_value("The continuation token", token)?;
            headers.push(("x-ms-continuation", token.to_string()));
        }
        Ok(headers)
    }
}

/// An IoT Hub query-language string literal: `'…'` with `\` and `'` escaped, and control
/// characters written as `\uXXXX`, so no value can end the literal early.
pub fn query_string_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The query selecting every device row of one job.
pub fn device_jobs_query(job_id: &str) -> String {
    format!(
        "SELECT * FROM devices.jobs WHERE devices.jobs.jobId = {}",
        query_string_literal(job_id)
    )
}

/// `POST /devices/query?api-version=…` with body `{"query":"…"}`.
pub fn query_devices_request(
    query: &str,
    page: &PageRequest,
    api_version: &str,
) -> Result<PreparedRequest, Error> {
    Ok(PreparedRequest {
        method: Method::POST,
        path_and_query: format!(
            "/devices/query?api-version={}",
            encode_uri_component(api_version)
        ),
        content_type: Some(JSON_CONTENT_TYPE),
        extra_headers: page.headers()?,
        body: Bytes::from(format!("{{\"query\":{}}}", json_string(query))),
        send_content_length: true,
    })
}

impl JobClient {
    /// One page of a device query (`SELECT * FROM devices …`, `… FROM devices.jobs …`).
    /// A query only reads, so every transient failure is retried.
    pub async fn query_devices(&self, query: &str, page: &PageRequest) -> Result<Response, Error> {
        let prepared = query_devices_request(query, page, self.api_version())?;
        self.pipeline().execute(&prepared).await.result
    }

    /// One page of the per-device rows of `job_id` (`x-ms-item-type: deviceJob`): `deviceId`,
    /// `jobId`, `jobType`, `status`, times, and `outcome.deviceMethodResponse` or `error`.
    pub async fn query_device_jobs(
        &self,
        job_id: &str,
        page: &PageRequest,
    ) -> Result<Response, Error> {
        self.query_devices(&device_jobs_query(job_id), page).await
    }
}
