//! Fixtures for the crate's unit tests, also compiled into the integration tests
//! (`tests/common`).

use std::path::{Path, PathBuf};

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `prefix` names the test binary or module, `name` the test, so that parallel tests
    /// never share one.
    pub fn new(prefix: &str, name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How many segment files journal `name` has in `dir`.
pub fn segment_count(dir: &Path, name: &str) -> usize {
    let prefix = format!("{name}-");
    std::fs::read_dir(dir)
        .expect("the directory exists")
        .filter(|entry| {
            let name = entry.as_ref().expect("a directory entry").file_name();
            let name = name.to_string_lossy();
            name.starts_with(&prefix) && name.ends_with(".journal")
        })
        .count()
}

/// Flips a byte `offset` bytes into segment `index` (oldest first) of the journals in `dir`:
/// the damage a crash of the machine can leave before a log's tail.
pub fn damage_segment(dir: &Path, index: usize, offset: usize) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the directory exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "journal"))
        .collect();
    files.sort();
    let mut bytes = std::fs::read(&files[index]).expect("the segment reads");
    bytes[offset] ^= 0xFF;
    std::fs::write(&files[index], bytes).expect("the segment writes");
}
