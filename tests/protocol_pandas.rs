//! The protocol against an independent implementation: tests/fixtures/gen_protocol.py builds the
//! samples of the `tiny` preset (seed 42) with pandas from shared/PROTOCOL.md; attnrec's samples,
//! read back from the Parquet cache `data prepare` writes, must be identical row for row: order,
//! file rows, raw ids, labels, splits, vocabulary indices, histories (of all events or of clicks
//! only), the time-gap buckets of every history event, and each history event's own label as the
//! batches give it to the models (`hist_feedback`).
use attnrec::cache;
use attnrec::data::protocol::{build_events, HistoryRule, ProtocolConfig, SplitRule};
use attnrec::features::{gap_bucket, Batcher};
use attnrec::data::synth::{generate, Preset};
use attnrec::data::{DataConfig, Dataset};
use md5::{Digest, Md5};
use std::path::Path;

/// Rows of a fixture CSV (after its MD5 comment and header), split into fields.
fn fixture(name: &str) -> (String, Vec<Vec<String>>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protocol_pandas").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    let md5 = lines.next().unwrap().trim_start_matches("# ").to_string();
    let header = lines.next().unwrap();
    assert!(header.starts_with("row,user_id,item_id,label,split,user_idx"), "{header}");
    (md5, lines.map(|l| l.split(',').map(str::to_string).collect()).collect())
}

fn check(name: &str, protocol: ProtocolConfig) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("tiny42");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let (md5, rows) = fixture(name);
    let ours: Vec<String> = ["ratings.dat", "movies.dat"]
        .iter()
        .map(|f| {
            let digest = attnrec::util::hex(&Md5::digest(std::fs::read(data.join(f)).unwrap()));
            format!("{f}={digest}")
        })
        .collect();
    assert_eq!(
        ours.join(" "),
        md5,
        "the tiny preset's files changed: regenerate the fixture with tests/fixtures/gen_protocol.py (see its docstring)"
    );
    let (dir, _) = cache::write(&tmp.path().join("cache"), &DataConfig::new(data.clone()), &protocol).unwrap();
    let (_fm, enc) = cache::read(&dir).unwrap();
    let ev = build_events(&Dataset::load(&data, None).unwrap(), &protocol).unwrap();
    assert_eq!(enc.len(), rows.len(), "{name}: number of samples");
    let mut batcher = Batcher::new(&enc, tch::Device::Cpu);
    let join = |v: &mut dyn Iterator<Item = i64>| v.map(|x| x.to_string()).collect::<Vec<_>>().join(" ");
    for (k, want) in rows.iter().enumerate() {
        let h = enc.history(k);
        let got = [
            ev.row[k].to_string(),
            ev.user[k].to_string(),
            ev.item[k].to_string(),
            (enc.label[k] as i64).to_string(),
            (enc.split[k] as i64).to_string(),
            enc.user[k].to_string(),
            enc.item[k].to_string(),
            enc.genre[k].to_string(),
            join(&mut h.clone().map(|j| enc.item[enc.history_event(j)])),
            join(&mut h.clone().map(|j| enc.genre[enc.history_event(j)])),
            join(&mut h.map(|j| gap_bucket(enc.timestamp[k] - enc.timestamp[enc.history_event(j)]))),
            {
                let b = batcher.batch(&[k]);
                let fb = Vec::<i64>::try_from(b.hist_feedback.masked_select(&b.hist_mask)).unwrap();
                join(&mut fb.into_iter())
            },
        ];
        assert_eq!(&got[..], &want[..], "{name}: sample {k}");
    }
}

#[test]
fn ratio_split_matches_pandas() {
    check("ratio_L5.csv", ProtocolConfig { history_len: 5, ..Default::default() });
}

#[test]
fn global_time_split_after_k_core_matches_pandas() {
    let p = ProtocolConfig { history_len: 3, split: SplitRule::GlobalTime, min_user_events: 24, min_item_events: 24, ..Default::default() };
    check("global_time_kcore_L3.csv", p);
}

/// Ratios whose float sum falls short (0.7 + 0.1 = 0.7999…): exact decimals on both sides.
#[test]
fn exact_decimal_ratios_match_pandas() {
    check("ratio_07_01_L3.csv", ProtocolConfig { history_len: 3, train_ratio: 0.7, valid_ratio: 0.1, ..Default::default() });
}

#[test]
fn positives_only_histories_match_pandas() {
    check("positives_L4.csv", ProtocolConfig { history_len: 4, history: HistoryRule::Positives, ..Default::default() });
}
