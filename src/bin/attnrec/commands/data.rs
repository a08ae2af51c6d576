//! `attnrec data`: the dataset manifests and fetching.
use super::{print_table, table_note};
use attnrec::table::{Cell, Format as TableFormat, Table};
use crate::cli::{DataCommand, FetchArgs, InspectArgs, PrepareArgs, ProtocolFlags};
use attnrec::data::Format;
use std::path::Path;
use attnrec::cache;
use attnrec::config::{DataConfig, RunConfig};
use attnrec::data::fetch::{fetch, Manifest};
use attnrec::data::protocol::ProtocolConfig;
use attnrec::data::Dataset;
use attnrec::util::Choice;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub fn run(c: DataCommand) -> anyhow::Result<()> {
    match c {
        DataCommand::List => {
            let mut t = Table::with_columns(&[("name", "name"), ("layout", "layout"), ("md5", "md5"), ("archive", "archive")]);
            for m in Manifest::builtin() {
                t.push(vec![Cell::Text(m.name), Cell::text(m.format.name()), Cell::or_empty(m.md5.map(Cell::Text)), Cell::Text(m.url)]);
            }
            print_table(&t, TableFormat::Text);
            Ok(())
        }
        DataCommand::Fetch(a) => fetch_cmd(a),
        DataCommand::Inspect(a) => inspect_cmd(a),
        DataCommand::Prepare(a) => prepare_cmd(a),
    }
}

fn prepare_cmd(a: PrepareArgs) -> anyhow::Result<()> {
    let (data, protocol) = source(a.config.as_deref(), a.data.as_deref(), a.format, &a.protocol)?;
    let root = a.out.clone().unwrap_or_else(cache::default_root);
    if !a.force {
        if let Some(dir) = cache::lookup(&root, &data, &protocol)? {
            println!("already prepared: {}", dir.display());
            return Ok(());
        }
    }
    let (dir, meta) = cache::write(&root, &data, &protocol)?;
    let bytes = std::fs::metadata(dir.join(cache::SAMPLES_FILE)).map_or(0, |m| m.len());
    println!(
        "prepared {} train / {} valid / {} test samples in {:.2} s: {} ({:.1} MB of Parquet)",
        meta.samples[0],
        meta.samples[1],
        meta.samples[2],
        meta.prepare_seconds,
        dir.display(),
        bytes as f64 / 1e6
    );
    if a.out.is_some() && root != cache::default_root() {
        eprintln!("note: `train` looks in {}; set ATTNREC_CACHE_DIR={} to use this cache", cache::default_root().display(), root.display());
    }
    Ok(())
}

/// The dataset and protocol of `--config FILE` (its [data] and [protocol]) and/or a folder, with
/// `--format` and the protocol flags applied on top.
fn source(config: Option<&Path>, dir: Option<&Path>, format: Option<Format>, flags: &ProtocolFlags) -> anyhow::Result<(DataConfig, ProtocolConfig)> {
    let (mut data, mut protocol) = match config {
        Some(path) => {
            let cfg = RunConfig::from_file(path)?;
            (cfg.data, cfg.protocol)
        }
        None => {
            let dir = dir.ok_or_else(|| anyhow::anyhow!("a dataset folder is required (or --config FILE)"))?;
            (DataConfig::new(dir.to_path_buf()), ProtocolConfig::default())
        }
    };
    super::override_data(&mut data, dir, format);
    flags.apply(&mut protocol);
    protocol.validate()?;
    data.validate()?;
    Ok((data, protocol))
}

fn inspect_cmd(a: InspectArgs) -> anyhow::Result<()> {
    let (data, cfg) = source(a.config.as_deref(), a.dir.as_deref(), a.format, &a.protocol)?;
    let ds = Dataset::open(&data)?;
    let s = attnrec::inspect::inspect(&ds, &cfg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    let format = a.print.table;
    table_note(format, format!(
        "{} ({} layout): {} ratings, {} events after the k-core filter, {} users, {} items; label {}, history L = {} of {} earlier events, split {}",
        s.path.display(),
        s.format,
        s.ratings,
        s.events,
        s.users,
        s.items,
        match data.log.as_ref().and_then(|l| l.label.as_ref()) {
            Some(column) => format!("column '{column}'"),
            None => format!("rating >= {}", s.label_threshold),
        },
        s.history_len,
        if cfg.history == attnrec::data::protocol::HistoryRule::Positives { "the clicked" } else { "all" },
        cfg.split.name_of()
    ));
    table_note(format, format!(
        "handled by rule: {} duplicate (user, item, timestamp) rows kept; {} users with one event (test only, empty history); \
         {} rated items without metadata (OOV genre) of {} in the item table; {} sampled negatives",
        s.duplicate_events, s.single_event_users, s.items_without_metadata, s.item_table_rows, s.sampled_negatives
    ));
    let pct = |x: f64| Cell::unit(100.0 * x, 2, "%");
    let mut t = Table::with_columns(&[
        ("split", "split"),
        ("samples", "samples"),
        ("positive_rate", "pos rate"),
        ("users", "users"),
        ("items", "items"),
        ("oov_user_pct", "OOV user"),
        ("oov_item_pct", "OOV item"),
        ("oov_genre_pct", "OOV genre"),
        ("history", "hist mean/p50/p90/max"),
        ("empty_history_pct", "empty hist"),
        ("truncated_history_pct", "cut to L"),
    ]);
    for p in &s.splits {
        t.push(vec![
            Cell::text(p.split.name()),
            Cell::int(p.samples),
            Cell::num(p.positive_rate, 4),
            Cell::int(p.users),
            Cell::int(p.items),
            pct(p.oov_user_rate),
            pct(p.oov_item_rate),
            pct(p.oov_genre_rate),
            Cell::text(format!("{:.1} / {} / {} / {}", p.history.mean, p.history.p50, p.history.p90, p.history.max)),
            pct(p.history.empty_rate),
            pct(p.history.truncated_rate),
        ]);
    }
    print_table(&t, a.print.table);
    Ok(())
}

fn fetch_cmd(a: FetchArgs) -> anyhow::Result<()> {
    let m = match (&a.name, &a.manifest) {
        (_, Some(path)) => Manifest::from_file(path)?,
        (Some(name), None) => Manifest::named(name)?,
        (None, None) => anyhow::bail!("give a dataset NAME or --manifest FILE"),
    };
    let bar = if a.quiet { ProgressBar::hidden() } else { ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()) };
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}")
            .expect("valid template"),
    );
    bar.set_message(format!("downloading {}", m.name));
    let got = fetch(&m, &a.dir, a.url.as_deref(), &mut |done, total| {
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    })?;
    bar.finish_and_clear();
    if let Some(md5) = &got.unchecked_md5 {
        eprintln!("warning: the {} manifest has no md5, so the archive was not verified; its md5 is {md5}", m.name);
    }
    let how = if got.downloaded { "downloaded and unpacked" } else { "already present" };
    println!("{}: {how}: {} ({})", m.name, got.dir.display(), m.licence);
    Ok(())
}
