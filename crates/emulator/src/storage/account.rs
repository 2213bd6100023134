//! A storage account's connection string: `AccountName`, `AccountKey` and the blob endpoint
//! (`BlobEndpoint`, or built from `DefaultEndpointsProtocol` and `EndpointSuffix`).
//! `UseDevelopmentStorage=true` is Azurite's well-known account on its default port.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Azurite's (and the old Storage Emulator's) well-known account, documented by Microsoft.
pub const DEVELOPMENT_ACCOUNT: &str = "devstoreaccount1";
pub const DEVELOPMENT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// What a blob path segment escapes: all but the unreserved characters of RFC 3986.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The account key is a secret: `Debug` leaves it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// The key, decoded.
    key: Vec<u8>,
    key_base64: String,
    /// `https://host[:port][/account]`, without a trailing slash.
    pub blob_endpoint: String,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("blob_endpoint", &self.blob_endpoint)
            .finish_non_exhaustive()
    }
}

impl Account {
    pub fn new(name: &str, key_base64: &str, blob_endpoint: &str) -> Result<Self, String> {
        let key = STANDARD
            .decode(key_base64)
            .map_err(|_| "AccountKey is not base64".to_string())?;
        if name.is_empty() {
            return Err("AccountName is empty".into());
        }
        let blob_endpoint = blob_endpoint.trim_end_matches('/').to_string();
        if !(blob_endpoint.starts_with("https://") || blob_endpoint.starts_with("http://")) {
            return Err("the blob endpoint is not an http(s) URL".into());
        }
        Ok(Self {
            name: name.to_string(),
            key,
            key_base64: key_base64.to_string(),
            blob_endpoint,
        })
    }

    /// Reads a connection string; the error never repeats it (it holds the key).
    pub fn parse(connection_string: &str) -> Result<Self, String> {
        let mut fields = std::collections::HashMap::new();
        for part in connection_string
            .split(';')
            .filter(|p| !p.trim().is_empty())
        {
            let (k, v) = part
                .split_once('=')
                .ok_or("not a connection string (Key=Value;…)")?;
            fields.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if fields
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Self::new(
                DEVELOPMENT_ACCOUNT,
                DEVELOPMENT_KEY,
                "http://127.0.0.1:10000/devstoreaccount1",
            );
        }
        let name = fields.get("accountname").ok_or("no AccountName")?;
        let key = fields.get("accountkey").ok_or("no AccountKey")?;
        let endpoint = match fields.get("blobendpoint") {
            Some(endpoint) => endpoint.clone(),
            None => format!(
                "{}://{name}.blob.{}",
                fields
                    .get("defaultendpointsprotocol")
                    .map_or("https", String::as_str),
                fields
                    .get("endpointsuffix")
                    .map_or("core.windows.net", String::as_str)
            ),
        };
        Self::new(name, key, &endpoint)
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The connection string clients use (the ready line's `storageConnectionString`).
    pub fn connection_string(&self) -> String {
        let protocol = if self.blob_endpoint.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        format!(
            "DefaultEndpointsProtocol={protocol};AccountName={};AccountKey={};BlobEndpoint={}/;",
            self.name, self.key_base64, self.blob_endpoint
        )
    }

    /// The host (`host[:port]`) of the blob endpoint, what the file-upload answer's `hostName`
    /// carries, and the path before the container (`/devstoreaccount1` on Azurite, else empty).
    pub fn host_and_base_path(&self) -> (&str, &str) {
        let rest = self
            .blob_endpoint
            .split_once("://")
            .map_or(self.blob_endpoint.as_str(), |(_, r)| r);
        match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        }
    }

    /// The URL of a container or blob (`name` unescaped; each path segment is escaped).
    pub fn url(&self, container: &str, blob: Option<&str>) -> String {
        let escape = |s: &str| {
            s.split('/')
                .map(|seg| percent_encoding::utf8_percent_encode(seg, PATH_SEGMENT).to_string())
                .collect::<Vec<_>>()
                .join("/")
        };
        match blob {
            Some(blob) => format!("{}/{container}/{}", self.blob_endpoint, escape(blob)),
            None => format!("{}/{container}", self.blob_endpoint),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_connection_strings_and_never_shows_the_key() {
        let cs = format!("DefaultEndpointsProtocol=https;AccountName=devstoreaccount1;AccountKey={DEVELOPMENT_KEY};BlobEndpoint=https://127.0.0.1:4000/devstoreaccount1;");
        let a = Account::parse(&cs).unwrap();
        assert_eq!(a.blob_endpoint, "https://127.0.0.1:4000/devstoreaccount1");
        assert_eq!(
            a.host_and_base_path(),
            ("127.0.0.1:4000", "/devstoreaccount1")
        );
        assert_eq!(Account::parse(&a.connection_string()).unwrap(), a);
        assert!(!format!("{a:?}").contains("Eby8"));
        let a = Account::parse("AccountName=acct;AccountKey=AAAA").unwrap();
        assert_eq!(a.blob_endpoint, "https://acct.blob.core.windows.net");
        assert_eq!(a.host_and_base_path(), ("acct.blob.core.windows.net", ""));
        assert_eq!(
            Account::parse("UseDevelopmentStorage=true").unwrap().name,
            DEVELOPMENT_ACCOUNT
        );
        for bad in ["nope", "AccountName=a", "AccountName=a;AccountKey=!!"] {
            let e = Account::parse(bad).unwrap_err();
            assert!(!e.contains("!!"), "{e}");
        }
        assert_eq!(
            a.url("c", Some("dev 1/f.txt")),
            "https://acct.blob.core.windows.net/c/dev%201/f.txt"
        );
    }
}
