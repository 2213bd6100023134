//! A fresh directory for a test's data dir, shared by the store's and the domain's persistence
//! tests.

use std::path::{Path, PathBuf};

/// A fresh directory under the system temp dir, removed on drop.
pub struct Dir(PathBuf);

impl Dir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "iothub-emulator-store-test-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        Dir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
