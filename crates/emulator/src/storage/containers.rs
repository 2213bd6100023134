//! Blob containers named by URI, as an import/export job's caller gives them
//! (`https://host[:port]/account/container?SAS`): the job reads and writes its blobs with the
//! SAS it was given, never with the account key; only a URI without a SAS
//! (`storageAuthenticationType: identityBased`, where the service uses the hub's managed
//! identity) is signed by the hub, and only for a container of the linked account.

use bytes::Bytes;
use hyper::StatusCode;

use super::{client::Head, sas, LinkedStorage};
use crate::clock::wall_secs;

/// What a blob path escapes: all but the unreserved characters and `/` (a blob name may hold
/// virtual directories).
const BLOB_PATH: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A container's URI: its address and the SAS query that came with it. `Debug` leaves the
/// SAS out (it holds a signature).
#[derive(Clone, PartialEq, Eq)]
pub struct ContainerUri {
    /// `scheme://authority/path`, without a trailing slash or query.
    base: String,
    sas: Option<String>,
}

impl std::fmt::Debug for ContainerUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

impl ContainerUri {
    /// Reads a container URI; the error never repeats it (its query holds a signature).
    pub fn parse(uri: &str) -> Result<Self, String> {
        let (base, query) = match uri.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (uri, None),
        };
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .ok_or("the container URI is not an http(s) URL")?;
        let path = rest.split_once('/').map(|(_, p)| p).unwrap_or("");
        if path.trim_matches('/').is_empty() {
            return Err("the container URI names no container".into());
        }
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            sas: query.filter(|q| !q.is_empty()).map(str::to_string),
        })
    }

    /// The container's address without its SAS: what messages may show.
    pub fn address(&self) -> &str {
        &self.base
    }

    fn blob_url(&self, blob: &str, sas: &str) -> String {
        let name = percent_encoding::utf8_percent_encode(blob, BLOB_PATH);
        format!("{}/{name}?{sas}", self.base)
    }
}

impl LinkedStorage {
    /// The SAS a job's request to `container` carries: the caller's, or for a URI without one
    /// an account SAS of the linked account when the container is in it.
    fn job_sas(&self, container: &ContainerUri) -> Result<String, String> {
        if let Some(sas) = &container.sas {
            return Ok(sas.clone());
        }
        let endpoint = format!("{}/", self.account.blob_endpoint);
        if container.base.starts_with(&endpoint) {
            return Ok(sas::account_sas(&self.account, wall_secs() + 3600));
        }
        Err(format!(
            "the container URI {} has no SAS token and is not in the hub's linked storage account",
            container.base
        ))
    }

    /// A blob's content, `None` when the blob does not exist (the container does).
    pub async fn read_blob(
        &self,
        container: &ContainerUri,
        blob: &str,
    ) -> Result<Option<Bytes>, String> {
        let url = container.blob_url(blob, &self.job_sas(container)?);
        let (status, head, body) = self.client.get(&url).await?;
        match status {
            StatusCode::OK => Ok(Some(body)),
            StatusCode::NOT_FOUND if head.error_code.as_deref() == Some("BlobNotFound") => Ok(None),
            _ => Err(refused(container, status, &head)),
        }
    }

    /// Writes (or replaces) a block blob holding `body`.
    pub async fn write_blob(
        &self,
        container: &ContainerUri,
        blob: &str,
        body: Bytes,
    ) -> Result<(), String> {
        let url = container.blob_url(blob, &self.job_sas(container)?);
        match self.client.put_block_blob(&url, body).await? {
            (StatusCode::CREATED | StatusCode::OK, _) => Ok(()),
            (status, head) => Err(refused(container, status, &head)),
        }
    }
}

/// Storage's refusal in one line: the container, the status and storage's error code.
fn refused(container: &ContainerUri, status: StatusCode, head: &Head) -> String {
    let code = head.error_code.as_deref().unwrap_or("no error code");
    format!(
        "the storage account refused access to {}: {status} ({code})",
        container.base
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_uris_keep_their_sas_out_of_sight() {
        let c = ContainerUri::parse("https://127.0.0.1:10000/acct/out?sv=1&sig=SECRET").unwrap();
        assert_eq!(c.address(), "https://127.0.0.1:10000/acct/out");
        assert!(!format!("{c:?}").contains("SECRET"));
        assert_eq!(
            c.blob_url("dir/a b.txt", "sv=1&sig=S"),
            "https://127.0.0.1:10000/acct/out/dir/a%20b.txt?sv=1&sig=S"
        );
        assert!(ContainerUri::parse("ftp://x/acct/c").is_err());
        let err = ContainerUri::parse("https://host/?sig=SECRET").unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
    }
}
