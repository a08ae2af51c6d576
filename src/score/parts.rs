//! Scoring a folder of candidate parts (as Spark, polars or Hive write a table): one output part
//! per input part, of the same name and format, each written whole or not at all.
//!
//! - **Resumable**: a part whose output is there is complete (it was renamed into place after it
//!   was written and synced), so a rerun skips it. The folder's [`MANIFEST`] records what the job
//!   was; a rerun with other candidates, another run or other options is refused instead of mixing
//!   two jobs' parts.
//! - **Splittable**: [`PartSlice`] `i/n` takes every n-th part from the i-th, so Spark, Kubernetes
//!   indexed jobs or SLURM arrays can share the parts out, each task writing into the same folder.
//!   The task that finds every part written leaves Spark's `_SUCCESS` marker.
//! - **Co-partitioned histories**: with [`History::CoPartitioned`], candidates part k is scored
//!   with history part k only (the k-th part of the log's ratings folder), so a task holds its own
//!   users' events and no one else's.
//!
//! `--top-k` ranks within a part: partition the candidates by user for a per-user top k.
use super::{score_file, HistoryIndex, Output, ScoreOptions, ScoreSummary};
use crate::data::parts::part_files;
use crate::data::PartSelect;
use crate::error::{Error, Result};
use crate::run::LoadedRun;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The job record an output folder keeps (hidden from Spark and polars by its leading `_`).
pub const MANIFEST: &str = "_attnrec_score.json";

/// Every `count`-th part from the `index`-th (0-based): one task's share of the parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartSlice {
    pub index: usize,
    pub count: usize,
}

impl PartSlice {
    pub const ALL: PartSlice = PartSlice { index: 0, count: 1 };

    pub fn takes(self, part: usize) -> bool {
        part % self.count == self.index
    }
}

impl std::str::FromStr for PartSlice {
    type Err = String;

    /// `i/n` with `0 <= i < n`.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not i/n with 0 <= i < n (e.g. 0/4: parts 0, 4, 8, …)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse::<usize>().map_err(|_| bad())?, n.trim().parse::<usize>().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(PartSlice { index, count })
    }
}

/// Where the histories of a partitioned job come from.
#[derive(Debug, Clone)]
pub enum History {
    /// One log (a dataset folder, its ratings file whole or in parts), loaded once.
    Whole(PathBuf),
    /// A dataset folder whose ratings file is a folder of as many parts as the candidates, part k
    /// holding the users of candidates part k.
    CoPartitioned(PathBuf),
}

impl History {
    fn dir(&self) -> &Path {
        match self {
            History::Whole(d) | History::CoPartitioned(d) => d,
        }
    }
}

/// What a partitioned job did.
#[derive(Debug, Default, Serialize)]
pub struct PartsSummary {
    /// Parts in the folder.
    pub parts: usize,
    /// Parts this call scored, with what each did.
    pub scored: Vec<(String, ScoreSummary)>,
    /// Parts of this slice whose output was already complete.
    pub skipped: Vec<String>,
    /// Whether every part of the folder now has its output (`_SUCCESS` written).
    pub complete: bool,
}

impl PartsSummary {
    /// The scored parts' counts added up.
    pub fn total(&self) -> ScoreSummary {
        let mut t = ScoreSummary::default();
        for (_, s) in &self.scored {
            t.rows += s.rows;
            t.written += s.written;
            t.unknown_users += s.unknown_users;
            t.unknown_items += s.unknown_items;
            t.empty_histories += s.empty_histories;
        }
        t
    }
}

/// The job an output folder belongs to: what decides its rows' values, not how fast they came.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    run: String,
    candidates: String,
    parts: Vec<String>,
    history: String,
    co_partitioned: bool,
    user_col: String,
    item_col: String,
    time_col: String,
    top_k: Option<usize>,
    logit: bool,
    explain: bool,
    strict: bool,
}

impl Manifest {
    /// The first field in which `self` and `other` differ, with both values.
    fn difference(&self, other: &Manifest) -> Option<String> {
        let (a, b) = (serde_json::to_value(self).ok()?, serde_json::to_value(other).ok()?);
        let (a, b) = (a.as_object()?, b.as_object()?);
        a.iter().find(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| format!("{k}: {v} there, {} now", b.get(k).unwrap_or(&serde_json::Value::Null)))
    }
}

fn canonical(path: &Path) -> Result<String> {
    Ok(std::fs::canonicalize(path).map_err(|e| Error::io(path, e))?.display().to_string())
}

fn name_of(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Scores the parts of the folder `candidates` that `slice` takes into the folder `output` (see
/// the module docs). `progress(done, of, rows)` is called as each part advances: `done` parts of
/// the `of` this call scores are complete, `rows` counted in the current one.
pub fn score_parts(
    run: &LoadedRun,
    candidates: &Path,
    output: &Path,
    history: &History,
    slice: PartSlice,
    opts: &ScoreOptions,
    progress: &mut dyn FnMut(usize, usize, usize),
) -> Result<PartsSummary> {
    let parts = part_files(candidates)?;
    if output.is_file() {
        return Err(Error::dataset(output, "is a file: a folder of candidate parts is scored into a folder"));
    }
    std::fs::create_dir_all(output).map_err(|e| Error::io(output, e))?;
    if canonical(output)? == canonical(candidates)? {
        return Err(Error::dataset(output, "is the candidates folder: the output parts would replace the input parts; choose another --output"));
    }
    let names: Vec<String> = parts.iter().map(|p| name_of(p)).collect();
    let manifest = Manifest {
        run: canonical(&run.path)?,
        candidates: canonical(candidates)?,
        parts: names.clone(),
        history: canonical(history.dir())?,
        co_partitioned: matches!(history, History::CoPartitioned(_)),
        user_col: opts.user_col.clone(),
        item_col: opts.item_col.clone(),
        time_col: opts.time_col.clone(),
        top_k: opts.top_k,
        logit: opts.logit,
        explain: opts.explain,
        strict: opts.strict,
    };
    check_manifest(output, &manifest)?;

    let mut summary = PartsSummary { parts: parts.len(), ..Default::default() };
    let (todo, skipped): (Vec<usize>, Vec<usize>) = (0..parts.len()).filter(|&k| slice.takes(k)).partition(|&k| !output.join(&names[k]).is_file());
    summary.skipped = skipped.into_iter().map(|k| names[k].clone()).collect();
    let mut whole: Option<HistoryIndex> = None;
    for (done, &k) in todo.iter().enumerate() {
        let (part, name) = (&parts[k], names[k].clone());
        let out = output.join(&name);
        let own;
        let index = match history {
            History::Whole(dir) => {
                if whole.is_none() {
                    whole = Some(HistoryIndex::load(run, dir)?);
                }
                whole.as_ref().expect("loaded above")
            }
            History::CoPartitioned(dir) => {
                own = HistoryIndex::load_parts(run, dir, PartSelect::One { index: k, count: parts.len() })?;
                &own
            }
        };
        let s = if std::fs::metadata(part).map_err(|e| Error::io(part, e))?.len() == 0 {
            // Spark may leave an empty part for an empty partition: empty in, empty out.
            publish(&out, b"")?;
            ScoreSummary::default()
        } else {
            score_file(run, index, part, Output::Part(&out), opts, &mut |p| progress(done, todo.len(), p.rows))?
        };
        crate::util::crash_point("score.part");
        summary.scored.push((name, s));
    }
    progress(todo.len(), todo.len(), 0);
    summary.complete = names.iter().all(|n| output.join(n).is_file());
    if summary.complete {
        publish(&output.join("_SUCCESS"), b"")?;
    }
    Ok(summary)
}

/// Writes `bytes` to `path` through a hidden temp file of this process and a rename: tasks of one
/// job may race to write the same file, and each must rename its own whole copy.
fn publish(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_file_name(format!(".{}.{}.partial", name_of(path), std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()));
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    crate::util::sync_dir(path.parent().unwrap_or(Path::new(".")));
    Ok(())
}

/// Writes the job's manifest into `output`, or checks the one there is the same job's.
fn check_manifest(output: &Path, manifest: &Manifest) -> Result<()> {
    let path = output.join(MANIFEST);
    let json = serde_json::to_string_pretty(manifest).map_err(|e| Error::internal(e.to_string()))?;
    if !path.exists() {
        let has_parts = std::fs::read_dir(output).map_err(|e| Error::io(output, e))?.flatten().any(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            !n.starts_with('.') && !n.starts_with('_')
        });
        if has_parts {
            return Err(Error::dataset(output, format!("holds files but no {MANIFEST}: not the output of an attnrec scoring job; choose an empty or new --output")));
        }
        publish(&path, json.as_bytes())?;
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let there: Manifest = serde_json::from_str(&text).map_err(|e| Error::parse(&path, 0, format!("not a scoring manifest: {e}")))?;
    match there.difference(manifest) {
        None => Ok(()),
        Some(diff) => Err(Error::dataset(
            &path,
            format!("this folder holds parts of another scoring job ({diff}); remove it or choose another --output"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_parse_and_share_the_parts_out_exactly_once() {
        assert_eq!("2/5".parse::<PartSlice>().unwrap(), PartSlice { index: 2, count: 5 });
        for bad in ["5/5", "1/0", "x/2", "3", "-1/2", "1/2/3"] {
            let e = bad.parse::<PartSlice>().unwrap_err();
            assert!(e.contains(bad) && e.contains("i/n"), "{e}");
        }
        let n = 4;
        for part in 0..11 {
            let owners = (0..n).filter(|&i| PartSlice { index: i, count: n }.takes(part)).count();
            assert_eq!(owners, 1, "part {part}");
        }
    }

    #[test]
    fn the_manifest_names_the_first_difference() {
        let a = Manifest {
            run: "r".into(),
            candidates: "c".into(),
            parts: vec!["p0".into()],
            history: "h".into(),
            co_partitioned: false,
            user_col: "user_id".into(),
            item_col: "item_id".into(),
            time_col: "timestamp".into(),
            top_k: None,
            logit: false,
            explain: false,
            strict: false,
        };
        let b = Manifest { logit: true, ..a.clone() };
        assert_eq!(a.difference(&a), None);
        assert_eq!(a.difference(&b).unwrap(), "logit: false there, true now");
    }
}
