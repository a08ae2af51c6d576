//! Small file helpers shared by every writer: outputs appear whole or not at all.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

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

/// Writes `bytes` to `path` through a temp file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = partial_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
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
