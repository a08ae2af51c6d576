//! Partitioned files: a folder that stands where a file would, holding the file's rows in parts,
//! as Spark (`df.write.csv("ratings.csv")`), polars and Hive-style tools write them.
//!
//! A folder's parts are its regular files whose names do not start with `.` or `_` (Spark's
//! `_SUCCESS`, its `.part-….crc` checksums, a writer's hidden temp files), in byte order of their
//! names, which is the order Spark numbers them (`part-00000-…`, `part-00001-…`). Compressed text
//! parts (`.gz`, `.bz2`, `.zst`, `.lz4`, `.snappy`, `.deflate` not ending in `.parquet`) are
//! refused by name rather than read as garbage.
//!
//! [`PartSelect`] picks one part of a folder by its position: how a task that owns part `k` of
//! co-partitioned candidates and histories reads only its own history.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Which parts of a partitioned file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartSelect {
    /// Every part, in order: the folder is one file, which must hold ratings (a log to train or
    /// evaluate on).
    #[default]
    All,
    /// Every part, or the file; it may hold no ratings (a history to score new users against).
    AllMaybeEmpty,
    /// Only the part at `index` (0-based, in name order) of a folder that must hold exactly
    /// `count` parts.
    One { index: usize, count: usize },
}

const COMPRESSED: [&str; 6] = ["gz", "bz2", "zst", "lz4", "snappy", "deflate"];

/// The parts of `dir` in name order (see the module docs); an error naming `dir` when it has none.
pub fn part_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        // Follows links, as opening the file will.
        let path = entry.path();
        if !path.is_file() {
            if path.is_dir() {
                return Err(Error::dataset(&path, "is a folder inside a folder of parts (partitioned folders such as user=3/ are not read; write the parts flat)"));
            }
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
        if ext.as_deref().is_some_and(|e| COMPRESSED.contains(&e)) {
            return Err(Error::dataset(&path, "is a compressed part; parts are read as plain CSV/TSV or Parquet (write them uncompressed, or as Parquet)"));
        }
        parts.push(path);
    }
    if parts.is_empty() {
        return Err(Error::dataset(dir, "holds no part files (names starting with '.' or '_', such as _SUCCESS, are skipped)"));
    }
    parts.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(parts)
}

/// The files behind `path` under `select`: `path` itself when it is a file (`select` must be
/// [`PartSelect::All`]), else its parts.
pub fn resolve(path: &Path, select: PartSelect) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return match select {
            PartSelect::All | PartSelect::AllMaybeEmpty => Ok(vec![path.to_path_buf()]),
            PartSelect::One { count, .. } => Err(Error::dataset(
                path,
                format!("is one file, but the candidates are {count} co-partitioned parts: the history must be a folder of as many parts"),
            )),
        };
    }
    let parts = part_files(path)?;
    match select {
        PartSelect::All | PartSelect::AllMaybeEmpty => Ok(parts),
        PartSelect::One { index, count } => {
            if parts.len() != count {
                return Err(Error::dataset(
                    path,
                    format!("holds {} parts, but the candidates hold {count}: co-partitioned histories need one part per candidates part", parts.len()),
                ));
            }
            Ok(vec![parts[index].clone()])
        }
    }
}

/// Whether `dir/name` is there as a file or as a folder of parts.
pub fn exists(dir: &Path, name: &str) -> bool {
    let p = dir.join(name);
    p.is_file() || p.is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_skip_hidden_and_marker_files_and_sort_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["part-00010.csv", "part-00002.csv", "_SUCCESS", ".part-00002.csv.crc", "_committed_1"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let names: Vec<String> = part_files(dir.path()).unwrap().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["part-00002.csv", "part-00010.csv"]);
    }

    #[test]
    fn empty_nested_and_compressed_folders_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
        let e = part_files(dir.path()).unwrap_err().to_string();
        assert!(e.contains("holds no part files"), "{e}");
        std::fs::create_dir(dir.path().join("user=3")).unwrap();
        let e = part_files(dir.path()).unwrap_err().to_string();
        assert!(e.contains("user=3") && e.contains("folder inside"), "{e}");
        std::fs::remove_dir(dir.path().join("user=3")).unwrap();
        std::fs::write(dir.path().join("part-0.csv.gz"), "").unwrap();
        let e = part_files(dir.path()).unwrap_err().to_string();
        assert!(e.contains("part-0.csv.gz") && e.contains("compressed"), "{e}");
    }

    #[test]
    fn one_part_is_picked_by_position_and_the_count_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b", "a", "c"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        assert_eq!(resolve(dir.path(), PartSelect::One { index: 1, count: 3 }).unwrap(), [dir.path().join("b")]);
        let e = resolve(dir.path(), PartSelect::One { index: 1, count: 4 }).unwrap_err().to_string();
        assert!(e.contains("holds 3 parts, but the candidates hold 4"), "{e}");
        let e = resolve(&dir.path().join("a"), PartSelect::One { index: 0, count: 2 }).unwrap_err().to_string();
        assert!(e.contains("is one file"), "{e}");
    }
}
