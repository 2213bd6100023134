//! IoT Hub service connection strings (`HostName=…;SharedAccessKeyName=…;SharedAccessKey=…`).

use std::collections::HashMap;
use std::fmt;

use crate::error::Error;

/// A parsed service connection string. `Debug` hides the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub host_name: String,
    pub shared_access_key_name: String,
    pub shared_access_key: String,
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("shared_access_key_name", &self.shared_access_key_name)
            .field("shared_access_key", &"<redacted>")
            .finish()
    }
}

/// azure-iot-common's `createDictionary`: split on `separator`, each element on its first `=`,
/// elements without `=` or with an empty name or value skipped, the last duplicate wins. Keys are
/// case-sensitive and not trimmed.
pub(crate) fn create_dictionary(source: &str, separator: char) -> HashMap<&str, &str> {
    let mut dict = HashMap::new();
    for element in source.split(separator) {
        if let Some((name, value)) = element.split_once('=') {
            if !name.is_empty() && !value.is_empty() {
                dict.insert(name, value);
            }
        }
    }
    dict
}

/// Parses like `azure-iothub`'s `ConnectionString.parse`: `HostName`, `SharedAccessKeyName` and
/// `SharedAccessKey` required (checked in that order), extra keys ignored. A missing one is
/// `ArgumentError: The connection string is missing the property: <Key>`.
pub fn parse(source: &str) -> Result<ConnectionString, Error> {
    let dict = create_dictionary(source, ';');
    let get = |key: &str| {
        dict.get(key).map(|v| v.to_string()).ok_or_else(|| {
            Error::argument(format!(
                "The connection string is missing the property: {key}"
            ))
        })
    };
    Ok(ConnectionString {
        host_name: get("HostName")?,
        shared_access_key_name: get("SharedAccessKeyName")?,
        shared_access_key: get("SharedAccessKey")?,
    })
}
