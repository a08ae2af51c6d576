//! The prepared-sample cache: what `data prepare` writes reads back to exactly the samples and
//! feature map built from the raw files; its key follows the files and the protocol; `train`
//! reads it, says so, and gets the metrics of a run from the raw files; a failed prepare leaves
//! nothing behind.
use assert_cmd::Command;
use attnrec::cache;
use attnrec::config::{DataConfig, RunConfig};
use attnrec::data::protocol::ProtocolConfig;
use attnrec::data::synth::{generate, Preset};
use attnrec::models::ModelConfig;
use attnrec::run::prepare;
use std::path::Path;

fn attnrec(cache_root: &Path) -> Command {
    let mut c = Command::cargo_bin("attnrec").unwrap();
    c.env("ATTNREC_CACHE_DIR", cache_root);
    c
}

#[test]
fn cache_reads_back_what_the_raw_files_give_and_follows_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, root) = (tmp.path().join("tiny"), tmp.path().join("cache"));
    generate(&Preset::Tiny.spec(), 3, &data).unwrap();
    // With sampled negatives: they are drawn once and stored with the samples.
    let protocol = ProtocolConfig { history_len: 7, negatives: 2, ..Default::default() };
    let source = DataConfig::new(data.clone());
    let (dir, meta) = cache::write(&root, &source, &protocol).unwrap();
    let (fm, enc) = cache::read(&dir).unwrap();
    let mut cfg = RunConfig::new(data.clone(), ModelConfig::by_name("din").unwrap());
    cfg.protocol = protocol.clone();
    let raw = prepare(&cfg, &data, None).unwrap();
    assert!(raw.cached.is_none());
    assert_eq!(serde_json::to_value(&fm).unwrap(), serde_json::to_value(&raw.feature_map).unwrap());
    let r = &raw.encoded;
    assert_eq!((&enc.user, &enc.item, &enc.genre, &enc.label), (&r.user, &r.item, &r.genre, &r.label));
    assert_eq!((&enc.split, &enc.user_start, &enc.raw_user, enc.history_len), (&r.split, &r.user_start, &r.raw_user, 7));
    assert_eq!(enc.history_end, r.history_end);
    assert!(enc.history_end.iter().enumerate().any(|(k, &e)| e as usize != k), "negatives were sampled");
    assert_eq!(meta.samples.iter().sum::<usize>(), r.len());
    // The key: same files and protocol find it; another protocol or a changed file does not.
    assert_eq!(cache::lookup(&root, &source, &protocol).unwrap(), Some(dir.clone()));
    assert_eq!(cache::lookup(&root, &source, &ProtocolConfig::default()).unwrap(), None);
    let ratings = data.join("ratings.dat");
    let mut text = std::fs::read_to_string(&ratings).unwrap();
    text.push_str("1::1::5::1\n");
    std::fs::write(&ratings, text).unwrap();
    assert_eq!(cache::lookup(&root, &source, &protocol).unwrap(), None);
}

#[test]
fn train_reads_the_cache_says_so_and_matches_a_raw_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny");
    generate(&Preset::Tiny.spec(), 5, &data).unwrap();
    let (with, without) = (tmp.path().join("cache"), tmp.path().join("empty-cache"));
    let out = attnrec(&with).args(["data", "prepare", "--data"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("prepared "));
    let again = attnrec(&with).args(["data", "prepare", "--data"]).arg(&data).output().unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("already prepared: "));
    let train = |root: &Path, name: &str| {
        let run = tmp.path().join(name);
        let out = attnrec(root)
            .args(["train", "--model", "din", "--epochs", "2", "--threads", "1", "--quiet", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&run)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
        (summary, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (cached, said) = train(&with, "cached");
    let (raw, _) = train(&without, "raw");
    assert!(said.contains("samples read from the prepared cache"), "{said}");
    assert!(cached["prepared_from"].as_str().unwrap().starts_with(with.to_str().unwrap()));
    assert!(raw.get("prepared_from").is_none());
    for split in ["valid", "test"] {
        assert_eq!(cached[split], raw[split], "{split} metrics");
    }
}

#[test]
fn a_failed_prepare_leaves_no_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, root) = (tmp.path().join("bad"), tmp.path().join("cache"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("ratings.dat"), "1::1::5::1\n1::2::x::2\n").unwrap();
    std::fs::write(data.join("movies.dat"), "1::A (1990)::Drama\n").unwrap();
    let out = attnrec(&root).args(["data", "prepare", "--data"]).arg(&data).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ratings.dat:2: rating is not a number"));
    let left: Vec<_> = std::fs::read_dir(&root).map(|d| d.collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bench_prepare_measures_a_child_process() {
    let tmp = tempfile::tempdir().unwrap();
    let out = attnrec(&tmp.path().join("unused"))
        .current_dir(tmp.path())
        .args(["bench", "--prepare", "--presets", "tiny", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["preset"], "tiny");
    let ratings = v["ratings"].as_u64().unwrap();
    assert!((3000..5000).contains(&ratings), "{v}");
    // A real process's peak RSS (libtorch alone maps well over 10 MB), and positive stage times.
    assert!(v["peak_rss_bytes"].as_u64().unwrap() > 10_000_000, "{v}");
    assert!(v["stage_seconds"]["load"].as_f64().unwrap() > 0.0, "{v}");
    assert!(tmp.path().join("data/synth-tiny/ratings.dat").is_file());
}
