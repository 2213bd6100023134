//! The storage account linked to the hub (`--storage-connection-string`, `--storage azurite`):
//! its connection string (`account.rs`), SAS tokens signed with its key (`sas.rs`), the few blob
//! requests the hub makes itself (`client.rs`), the containers import/export jobs name by URI
//! (`containers.rs`), and Azurite run as the emulator's child (`azurite.rs`). The file-upload
//! container is created when the hub starts.

mod account;
mod azurite;
mod client;
mod containers;
pub mod sas;

use std::path::Path;

pub use account::Account;
pub use azurite::{Azurite, AZURITE_ENV};
pub use containers::ContainerUri;

use crate::errors::StartError;

/// The container file uploads go to (the portal's default name is the user's choice; the
/// emulator creates this one).
pub const FILE_UPLOAD_CONTAINER: &str = "fileupload";

/// What `--storage` / `--storage-connection-string` asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageChoice {
    /// Azurite's blob service as the emulator's child (its `azurite-blob` script named by
    /// `$IOTHUB_EMULATOR_AZURITE`).
    Azurite,
}

/// What the hub needs to start Azurite: where it serves and keeps its data, and the TLS
/// certificate it serves with (issued by the hub's CA, so device SDKs already trust it).
pub struct AzuriteSetup<'a> {
    /// The `azurite-blob` script (`dist/src/blob/main.js`), `None` when not installed.
    pub script: Option<&'a Path>,
    /// The loopback address it listens on (the hub's).
    pub host: &'a str,
    /// `<data dir>/azurite`, or `None`: a temporary directory removed when the hub stops.
    pub location: Option<&'a Path>,
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
    /// The hub's CA, which the hub's own requests to Azurite trust.
    pub ca_pem: &'a str,
}

/// The linked account while the hub runs: dropping it stops Azurite when the hub started it.
pub struct LinkedStorage {
    pub account: Account,
    client: client::BlobClient,
    azurite: Option<azurite::Azurite>,
}

impl LinkedStorage {
    /// Links the account of `connection_string`, trusting `ca_pem` (besides nothing else: the
    /// hub's own CA, as Azurite started by another emulator serves with) for HTTPS, and creates
    /// the file-upload container. A container that cannot be created is a warning here (the
    /// account is the user's), not an error.
    pub async fn connect(connection_string: &str, ca_pem: &str) -> Result<Self, StartError> {
        let account = Account::parse(connection_string)
            .map_err(|e| format!("--storage-connection-string: {e}"))?;
        let client = client::BlobClient::new(ca_pem)?;
        if let Err(e) = client
            .create_container(&account, FILE_UPLOAD_CONTAINER)
            .await
        {
            eprintln!(
                "iothub-emulator: warning: cannot create the container {FILE_UPLOAD_CONTAINER} in the linked account: {e}"
            );
        }
        Ok(Self {
            account,
            client,
            azurite: None,
        })
    }

    /// Starts Azurite's blob service, waits until it answers and creates the container.
    pub async fn start_azurite(setup: AzuriteSetup<'_>) -> Result<Self, StartError> {
        let azurite = azurite::Azurite::start(&setup).await?;
        let account = azurite.account();
        let client = client::BlobClient::new(setup.ca_pem)?;
        client
            .create_container(&account, FILE_UPLOAD_CONTAINER)
            .await
            .map_err(|e| format!("Azurite started but the container {FILE_UPLOAD_CONTAINER} cannot be created: {e}"))?;
        Ok(Self {
            account,
            client,
            azurite: Some(azurite),
        })
    }

    /// The Azurite child, to stop it after the hub stopped serving (the hub holds the account
    /// for as long as its tasks run).
    pub fn take_azurite(&mut self) -> Option<Azurite> {
        self.azurite.take()
    }

    /// A blob's size in bytes and last-modified time (ISO 8601), `None` when it does not exist.
    pub async fn blob_properties(
        &self,
        container: &str,
        blob: &str,
    ) -> Result<Option<(u64, String)>, String> {
        self.client
            .blob_properties(&self.account, container, blob)
            .await
    }
}
