//! The store's one error: a write that did not reach the disk, or a data dir that cannot be
//! opened or read. Its text says what and where (a path, a device id), never a document's
//! content (a device's document holds its keys).

use crate::errors::{ApiError, ErrorCode, StartError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(String);

impl StoreError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

/// A write that did not reach the disk: the client gets a 500 (`ServerError`), never a false
/// 200.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::new(
            ErrorCode::ServerError,
            format!("the hub could not save the change: {e}"),
        )
    }
}

/// A data dir that cannot be opened or read stops the start (or a reset).
impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        StartError::new(e.0)
    }
}
