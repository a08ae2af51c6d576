//! Small helpers every layer shares (a leaf: it imports no other module of the crate but
//! `error`): file writes that appear whole or not at all, fast id maps, hex, and the seeds.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Maps and sets keyed by ids and hit once per event: foldhash with a fixed seed (std's SipHash
/// cost a third of preparing a 25M-rating log).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::FixedState>;
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::FixedState>;

/// Seeds libtorch for weight initialization. Training reseeds it before every step from
/// [`step_seed`], so that a resumed run draws the same dropout masks as an uninterrupted one
/// (libtorch's generator state cannot be saved through tch).
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
}

/// The libtorch seed of optimizer step `step` (0-based) of a run seeded with `seed`: SplitMix64
/// of both, so neighbouring steps and seeds get unrelated streams.
pub fn step_seed(seed: u64, step: usize) -> i64 {
    let mut z = seed ^ (step as u64).wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as i64
}

const PARTIAL: &str = ".partial";

/// The sibling that `path` is written as until it is complete: `NAME` → `NAME.partial`. Every
/// writer of the project (files, run folders, scored outputs) uses this one name.
pub fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "out".into());
    name.push(PARTIAL);
    path.with_file_name(name)
}

/// The final path of `path` if it names a `.partial` sibling, else `None`.
pub fn final_path(path: &Path) -> Option<PathBuf> {
    path.to_str().and_then(|s| s.strip_suffix(PARTIAL)).filter(|s| !s.is_empty()).map(PathBuf::from)
}

/// Writes `bytes` to `path` through a temp file and a rename, so readers never see half a file;
/// the data reaches the disk before the rename, and the rename before this returns.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = partial_path(path);
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Flushes the regular files directly in `dir` to disk, then the folder itself.
pub fn sync_files_in(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir);
    Ok(())
}

/// Flushes a folder's entries (a rename in it) to disk, where the platform allows; best effort,
/// since some filesystems refuse to sync a directory.
pub fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The environment variable of the crash-point harness (`tests/crash.rs`): `NAME` or `NAME#K`
/// aborts the process the first (or K-th) time it reaches [`crash_point`] `NAME`. For tests only;
/// nothing a user sets.
pub const CRASH_ENV: &str = "ATTNREC_CRASH_AT";

/// A named instant at which the crash tests kill the process (see [`CRASH_ENV`]): `abort()`, as
/// abrupt as a power cut for the files (no destructors, no flushing). Without the variable it
/// costs one cached lookup.
pub fn crash_point(name: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var(CRASH_ENV).ok().filter(|v| !v.is_empty())?;
        Some(match v.split_once('#') {
            Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
            None => (v, 1),
        })
    });
    if let Some((point, k)) = target {
        if point == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *k {
            eprintln!("attnrec: crash point {name}#{k} reached ({CRASH_ENV}); aborting");
            std::process::abort();
        }
    }
}

/// Lower-case hex of a digest (MD5s in manifests, cache keys and fixtures).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_and_final_paths_round_trip() {
        let p = Path::new("runs/din");
        assert_eq!(partial_path(p), Path::new("runs/din.partial"));
        assert_eq!(final_path(&partial_path(p)).as_deref(), Some(p));
        assert_eq!(partial_path(Path::new("out.csv")), Path::new("out.csv.partial"));
        assert_eq!(final_path(Path::new("runs/din")), None);
        assert_eq!(final_path(Path::new(".partial")), None);
    }
}

/// A closed set of named values (a split rule, a dataset layout, a preset...) that configs and any
/// front end offer by name. The name is the value's serde name, so a config file, a command line
/// and a message always spell it the same way; the library knows no command line.
pub trait Choice: Copy + serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static {
    /// Every value, in the order a help text lists them.
    const ALL: &'static [Self];

    /// One line on what the value means, for help texts ("" when the name says it all).
    fn help(self) -> &'static str {
        ""
    }

    /// The value's name, as configs and command lines write it.
    fn name_of(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => s,
            other => panic!("a Choice serializes to a string, got {other:?}"),
        }
    }

    /// The value called `name` (or one of its aliases); `None` for an unknown name.
    fn parse_name(name: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
    }
}
