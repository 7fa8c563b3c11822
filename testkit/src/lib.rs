//! Fixtures the workspace's tests share, so that each crate's tests do not carry a copy:
//! a temporary directory that removes itself, helpers over journal segment files
//! (`<name>-<first seq>.journal`, see `sequencer::journal`), the BTC-USD instrument most
//! tests trade, and a counting allocator for the tests that assert no allocation ([`alloc`]).

pub mod alloc;

use std::path::{Path, PathBuf};

use engine::{AssetId, InstrumentId, InstrumentSpec, Price, Quantity};

/// BTC-USD: BTC is asset 0 (scale 8), USD asset 1 (scale 2); a lot of 0.01 BTC, a tick of
/// 0.01 USD, at most 10 BTC per order, a reference price of 600 USD with a 50% band, fees of
/// 10 and 20 basis points. Tests that need other figures override fields of it.
pub fn btc_usd_spec() -> InstrumentSpec {
    InstrumentSpec {
        instrument: InstrumentId(0),
        base_asset: AssetId(0),
        quote_asset: AssetId(1),
        tick_size: Price(1),
        lot_size: Quantity(1),
        quantity_min: Quantity(1),
        quantity_max: Quantity(1_000),
        base_per_lot: 1_000_000,
        quote_per_tick_lot: 1,
        reference_price: Price(60_000),
        band_bps: 5_000,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
    }
}

/// A fresh directory under the system's temporary directory, removed on drop. It is not
/// created: the code under test creates what it needs.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `prefix` names the test binary or module, `name` the test, so that parallel tests (and
    /// parallel test binaries) never share one.
    pub fn new(prefix: &str, name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_staging_named_in(&self.0, 4);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes the journal staging directories (in tmpfs) that `<name>.staging` files under `dir`
/// name: a node a test killed leaves its staged segments there, hundreds of megabytes of
/// memory that outlive the test's directory. Only directories named `exchange-*` are removed.
fn remove_staging_named_in(dir: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            remove_staging_named_in(&path, depth - 1);
        } else if path.extension().is_some_and(|extension| extension == "staging") {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let staging = PathBuf::from(text.trim_end());
            let named = staging.file_name().and_then(|name| name.to_str());
            if named.is_some_and(|name| name.starts_with("exchange-")) {
                let _ = std::fs::remove_dir_all(&staging);
            }
        }
    }
}

/// The segment files of every journal in `dir`, oldest first within each journal.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the directory exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "journal"))
        .collect();
    files.sort();
    files
}

/// How many segment files journal `name` has in `dir`.
pub fn segment_count(dir: &Path, name: &str) -> usize {
    let prefix = format!("{name}-");
    segment_files(dir)
        .iter()
        .filter(|path| {
            path.file_name().is_some_and(|file| file.to_string_lossy().starts_with(&prefix))
        })
        .count()
}

/// Flips a byte `offset` bytes into segment `index` (oldest first) of the journals in `dir`:
/// the damage a crash of the machine can leave before a journal's tail.
pub fn damage_segment(dir: &Path, index: usize, offset: usize) {
    let files = segment_files(dir);
    let mut bytes = std::fs::read(&files[index]).expect("the segment reads");
    bytes[offset] ^= 0xFF;
    std::fs::write(&files[index], bytes).expect("the segment writes");
}

/// Where each frame of a journal segment's bytes starts, in order: frames follow the 64-byte
/// segment header back to back, each a 16-byte header (length first, as a little-endian `u32`)
/// and its payload, until a zero length. Records are stored without their zero padding, so a
/// test that damages the n-th record must look its place up instead of computing it.
pub fn frame_offsets(segment: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 64;
    while let Some(length) = segment.get(at..at + 4) {
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes"));
        if length == 0 {
            break;
        }
        offsets.push(at);
        at += 16 + usize::try_from(length).expect("a u32 fits usize");
    }
    offsets
}
