//! The prepared-sample cache behind `attnrec data prepare`: the protocol's encoded samples as
//! Parquet plus the fitted `feature_map.json`, in a folder keyed by what determines them.
//!
//! The key is the MD5 of: the cache layout version, the attnrec version, the dataset layout, the
//! name, size and modification time (ns, negative before 1970) of every file in the dataset folder
//! (with the MD5 of its contents where the file system has no modification time), and the
//! resolved protocol config. Change any of them and the key changes; a stale cache is never read.
//!
//! A cache folder `ROOT/<dataset>-<key16>/` holds:
//! - `samples.parquet`: one row per event in protocol order (user, then time, then file order):
//!   `row` (0-based line order in the rating file), raw `user_id`, `item_id`, `timestamp`, `label`
//!   (0/1), `split` (0 train, 1 valid, 2 test), `user_start` (index of the user's first event),
//!   `history_end` (`k` for a logged event, the positive's row for a sampled negative), and the
//!   vocabulary indices `user_idx`, `item_idx`, `genre_idx` (0 padding, 1 OOV). Histories are not
//!   materialized: row `k`'s history is the rows `max(user_start, history_end - L) .. history_end`;
//! - `feature_map.json`: the vocabularies fitted on train;
//! - `meta.json`: the source files, layout, protocol, counts and timing.
//!
//! It is written into `<folder>.partial` and renamed whole.
use crate::data::protocol::{build_samples, Events, ProtocolConfig, Split};
use crate::data::{DataConfig, Dataset, Format};
use crate::error::{Error, Result};
use crate::features::{fit_encode, Encoded, FeatureMap, FEATURE_MAP_FILE};
use crate::util::{partial_path, write_atomic};
use md5::{Digest, Md5};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

/// Bumped whenever the cached columns or their meaning change.
const LAYOUT: u32 = 2;
pub const SAMPLES_FILE: &str = "samples.parquet";
pub const META_FILE: &str = "meta.json";

/// The cache root: `$ATTNREC_CACHE_DIR`, else `$XDG_CACHE_HOME/attnrec/prepared`, else
/// `~/.cache/attnrec/prepared`.
pub fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATTNREC_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("attnrec").join("prepared")
}

/// One source file as it enters the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceFile {
    pub name: String,
    pub bytes: u64,
    /// Nanoseconds since the Unix epoch, negative before it.
    pub modified_ns: i128,
    /// The contents' MD5, only where the file system gives no modification time: size alone
    /// would miss an edit that keeps the length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// What a cache folder was made from, and what it holds (`meta.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    pub layout: u32,
    pub attnrec: String,
    pub source: PathBuf,
    pub format: Format,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<crate::data::log::LogSpec>,
    pub files: Vec<SourceFile>,
    pub protocol: ProtocolConfig,
    pub samples: [usize; 3],
    pub prepare_seconds: f64,
    /// Seconds per stage: reading the files, the protocol (polars), fitting and encoding the
    /// features, writing Parquet.
    pub stage_seconds: Stages,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stages {
    pub load: f64,
    pub protocol: f64,
    pub features: f64,
    pub write: f64,
}

/// The non-hidden regular files directly in `dir`, and in its folders whose names look like file
/// names (`u.data/`, `clicks.parquet/`: a file written in parts, [`crate::data::parts`]) as
/// `FOLDER/PART`, sorted by name, with size and modification time: what the cache key and a run's
/// `source.json` record of a dataset. Other folders (`runs/`) are not the data and are left out.
pub fn source_files(dir: &Path) -> Result<Vec<SourceFile>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() && name.contains('.') {
            // A folder that is no set of parts is not data the loaders read; one that is read and
            // malformed fails there, with its own message.
            for part in crate::data::parts::part_files(&path).unwrap_or_default() {
                let part_name = part.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                out.push(source_file(&part, format!("{name}/{part_name}"))?);
            }
        } else if path.is_file() {
            out.push(source_file(&path, name)?);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn source_file(path: &Path, name: String) -> Result<SourceFile> {
    let md = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let (modified_ns, md5) = match md.modified() {
        Ok(t) => (signed_ns(t), None),
        Err(_) => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            (0, Some(crate::util::hex(&Md5::digest(&bytes))))
        }
    };
    Ok(SourceFile { name, bytes: md.len(), modified_ns, md5 })
}

/// `t` in nanoseconds since the Unix epoch, negative before it (a file stamped 1969 is as
/// distinguishable as one stamped 2026).
fn signed_ns(t: std::time::SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// The cache folder for `data` under `root` (which need not exist yet), with the files and layout
/// that went into its key.
pub fn locate(root: &Path, data: &DataConfig, protocol: &ProtocolConfig) -> Result<(PathBuf, Format, Vec<SourceFile>)> {
    data.validate()?;
    let data_dir = &data.path;
    let format = data.resolve_format()?;
    let files = source_files(data_dir)?;
    let key_text = serde_json::json!({
        "layout": LAYOUT,
        "attnrec": env!("CARGO_PKG_VERSION"),
        "format": format,
        "log": data.log,
        "files": files,
        "protocol": protocol,
    })
    .to_string();
    let digest = crate::util::hex(&Md5::digest(key_text.as_bytes()));
    let stem = data_dir.canonicalize().ok().and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let name = format!("{}-{}", stem.unwrap_or_else(|| "data".into()), &digest[..16]);
    Ok((root.join(name), format, files))
}

/// The prepared samples of `data` under `protocol`, if `root` holds a complete cache of them.
pub fn lookup(root: &Path, data: &DataConfig, protocol: &ProtocolConfig) -> Result<Option<PathBuf>> {
    let (dir, _, _) = locate(root, data, protocol)?;
    Ok(dir.join(META_FILE).is_file().then_some(dir))
}

/// Loads `data`, applies `protocol`, fits the feature map and writes the cache folder (see the
/// module docs). Returns the folder and its meta.
pub fn write(root: &Path, data: &DataConfig, protocol: &ProtocolConfig) -> Result<(PathBuf, Meta)> {
    let start = Instant::now();
    let (dir, format, files) = locate(root, data, protocol)?;
    let data_dir = &data.path;
    let mut stages = Stages::default();
    let mut lap = Instant::now();
    let mut stage = |slot: &mut f64| {
        *slot = lap.elapsed().as_secs_f64();
        lap = Instant::now();
    };
    let mut ds = Dataset::open(&DataConfig { format: Some(format), ..data.clone() })?;
    stage(&mut stages.load);
    let events = build_samples(&ds, protocol)?;
    ds.ratings = DataFrame::empty(); // the events hold all of the log that is needed below
    stage(&mut stages.protocol);
    let (feature_map, encoded) = fit_encode(&ds, &events, protocol, None)?;
    stage(&mut stages.features);
    let count = |s| events.split.iter().filter(|&&x| x == s).count();
    let tmp = partial_path(&dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let written = (|| {
        let mut df = samples_frame(&events, &encoded)?;
        let path = tmp.join(SAMPLES_FILE);
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        ParquetWriter::new(file).finish(&mut df)?;
        let fm = serde_json::to_string(&feature_map).expect("serializable");
        write_atomic(&tmp.join(FEATURE_MAP_FILE), fm.as_bytes())?;
        stage(&mut stages.write);
        let meta = Meta {
            layout: LAYOUT,
            attnrec: env!("CARGO_PKG_VERSION").to_string(),
            source: data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_path_buf()),
            format,
            log: data.log.clone(),
            files,
            protocol: protocol.clone(),
            samples: [count(Split::Train), count(Split::Valid), count(Split::Test)],
            prepare_seconds: start.elapsed().as_secs_f64(),
            stage_seconds: stages.clone(),
        };
        write_atomic(&tmp.join(META_FILE), serde_json::to_string_pretty(&meta).expect("serializable").as_bytes())?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))?;
        Ok(meta)
    })();
    match written {
        Ok(meta) => Ok((dir, meta)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

fn samples_frame(ev: &Events, enc: &Encoded) -> Result<DataFrame> {
    let split: Vec<i32> = ev.split.iter().map(|&s| s as i32).collect();
    Ok(DataFrame::new_infer_height(vec![
        Column::new("row".into(), &ev.row),
        Column::new("user_id".into(), &ev.user),
        Column::new("item_id".into(), &ev.item),
        Column::new("timestamp".into(), &ev.timestamp),
        Column::new("label".into(), &ev.label),
        Column::new("split".into(), split),
        Column::new("user_start".into(), &ev.user_start),
        Column::new("history_end".into(), &ev.history_end),
        Column::new("user_idx".into(), &enc.user),
        Column::new("item_idx".into(), &enc.item),
        Column::new("genre_idx".into(), &enc.genre),
    ])?)
}

/// Reads a cache folder back: the feature map and the encoded samples.
pub fn read(dir: &Path) -> Result<(FeatureMap, Encoded)> {
    let feature_map = FeatureMap::read_from(dir)?;
    let path = dir.join(SAMPLES_FILE);
    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
    let df = ParquetReader::new(file).finish()?;
    let i64s = |name: &str| -> Result<Vec<i64>> { Ok(df.column(name)?.i64()?.into_no_null_iter().collect()) };
    let split = df
        .column("split")?
        .i32()?
        .into_no_null_iter()
        .map(|s| match s {
            0 => Ok(Split::Train),
            1 => Ok(Split::Valid),
            2 => Ok(Split::Test),
            other => Err(Error::parse(&path, 0, format!("split value {other} is not 0, 1 or 2"))),
        })
        .collect::<Result<Vec<Split>>>()?;
    let encoded = Encoded {
        user: i64s("user_idx")?,
        item: i64s("item_idx")?,
        genre: i64s("genre_idx")?,
        label: df.column("label")?.f32()?.into_no_null_iter().collect(),
        split,
        user_start: df.column("user_start")?.u32()?.into_no_null_iter().collect(),
        history_end: df.column("history_end")?.u32()?.into_no_null_iter().collect(),
        raw_user: i64s("user_id")?,
        timestamp: i64s("timestamp")?,
        history_len: feature_map.history_len,
        pool: None,
        user_side: Vec::new(),
        item_side: Vec::new(),
    };
    let (user_side, item_side) = feature_map.side_rows(&encoded.raw_user, &i64s("item_id")?);
    let encoded = Encoded { pool: feature_map.history_pool(&encoded.label), user_side, item_side, ..encoded };
    Ok((feature_map, encoded))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two edits of a same-sized file stamped before 1970 (a restored archive, a clock at 0)
    /// must give two keys: such stamps used to enter the key as 0 alike.
    #[test]
    fn modification_times_before_1970_tell_files_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.data");
        let stamp = |secs_before: u64| {
            std::fs::write(&path, "1\t2\t5\t881250949\n").unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(UNIX_EPOCH - Duration::from_secs(secs_before)).unwrap();
            source_files(dir.path()).unwrap()
        };
        let (a, b) = (stamp(86_400), stamp(2 * 86_400));
        assert_eq!(a[0].modified_ns, -86_400_000_000_000);
        assert_ne!(a, b);
        assert_eq!(a[0].md5, None, "a file with a modification time is not read for the key");
    }
}
