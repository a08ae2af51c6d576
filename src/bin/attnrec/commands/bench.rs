//! `attnrec bench`: training throughput over a grid of presets × models × batch sizes × threads ×
//! prefetch depths, as one table; data preparation (`--prepare`) and scoring (`--score`) as their
//! own tables; `--all` runs the three and ends with one summary table of attnrec against the
//! PyTorch reference (`--reference`).
use super::{print_table, table_note};
use attnrec::table::{Cell, Table};
use crate::cli::BenchArgs;
use attnrec::bench::{sgemm_gflops, train_throughput};
use attnrec::config::RunConfig;
use attnrec::data::synth::{self, Preset};
use attnrec::models::ModelConfig;
use attnrec::util::Choice;
use attnrec::run::prepare;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The models benchmarks/reference/attnrec_ref.py implements.
const REFERENCE_MODELS: &[&str] = &["base", "din", "bst", "din_sa"];

/// One line of the `--all` summary: a throughput of attnrec and, measured right after it on the
/// same data, the reference's.
struct Summary {
    stage: &'static str,
    preset: String,
    model: String,
    batch: String,
    threads: String,
    attnrec: f64,
    reference: Option<f64>,
    unit: &'static str,
}

fn summary_table(summary: &[Summary]) -> Table {
    let mut t = Table::with_columns(&[
        ("stage", "stage"),
        ("preset", "preset"),
        ("model", "model"),
        ("batch", "batch"),
        ("threads", "threads"),
        ("attnrec", "attnrec"),
        ("reference", "PyTorch reference"),
        ("ratio", "ratio"),
    ]);
    for s in summary {
        t.push(vec![
            Cell::text(s.stage),
            Cell::text(&s.preset),
            Cell::text(&s.model),
            Cell::text(&s.batch),
            Cell::text(&s.threads),
            Cell::unit(s.attnrec, 0, s.unit),
            Cell::or_empty(s.reference.map(|r| Cell::unit(r, 0, s.unit))),
            Cell::or_empty(s.reference.map(|r| Cell::ratio(s.attnrec / r))),
        ]);
    }
    t
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    for (name, list) in [("--batch-sizes", &a.batch_sizes), ("--threads", &a.threads)] {
        if list.contains(&0) {
            anyhow::bail!("{name} values must be at least 1");
        }
    }
    if a.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    let mut summary = Vec::new();
    if a.all {
        // Training last: it grows this process, and the children are measured before that.
        prepare_bench(&a, &mut summary)?;
        score_bench(&a, &mut summary)?;
        train_bench(&a, &mut summary)?;
        if !a.json {
            table_note(a.print.table, "\nsummary (PyTorch reference: benchmarks/reference/attnrec_ref.py, same data and settings, run right after attnrec)");
            print_table(&summary_table(&summary), a.print.table);
        }
        return Ok(());
    }
    if a.prepare {
        return prepare_bench(&a, &mut summary);
    }
    if a.score {
        return score_bench(&a, &mut summary);
    }
    train_bench(&a, &mut summary)
}

/// Training steps per second over the grid, with the reference's where asked.
fn train_bench(a: &BenchArgs, summary: &mut Vec<Summary>) -> anyhow::Result<()> {
    attnrec::device::resolve(&a.device)?;
    let models = a.models.iter().map(|m| ModelConfig::by_name(m)).collect::<attnrec::Result<Vec<_>>>()?;
    let mut machine = Vec::new();
    let mut ceiling = std::collections::HashMap::new();
    for &threads in &a.threads {
        attnrec::device::set_threads(threads);
        let g = sgemm_gflops(2048, 5);
        ceiling.insert(threads, g);
        machine.push(format!("{threads} thread(s) {g:.0} GFLOP/s"));
    }
    let machine = format!("sgemm 2048² through libtorch: {}", machine.join(", "));
    eprintln!("{machine}");
    let mut rows = Table::with_columns(&[
        ("preset", "preset"),
        ("model", "model"),
        ("batch", "batch"),
        ("threads", "threads"),
        ("prefetch", "prefetch"),
        ("buckets", "buckets"),
        ("kernels", "kernels"),
        ("samples_per_sec", "samples/s"),
        ("ms_per_step", "ms/step"),
        ("input_wait_pct", "input wait"),
        ("gflops", "GFLOP/s"),
        ("sgemm_share_pct", "of sgemm"),
        ("reference_samples_per_sec", "PyTorch ref samples/s"),
        ("ratio", "ratio"),
    ]);
    for (preset_name, data) in datasets(a)? {
        let t = Instant::now();
        let cfg = RunConfig::new(data.clone(), models[0].clone());
        let prepared = prepare(&cfg, &data, None)?;
        eprintln!("prepared {preset_name} in {:.1} s", t.elapsed().as_secs_f64());
        // The reference reads the same samples from the prepared cache.
        let cache_dir = if a.reference {
            let root = attnrec::cache::default_root();
            let data_cfg = cfg.data.at(&data);
            Some(match attnrec::cache::lookup(&root, &data_cfg, &cfg.protocol)? {
                Some(dir) => dir,
                None => attnrec::cache::write(&root, &data_cfg, &cfg.protocol)?.0,
            })
        } else {
            None
        };
        let mut reference_seen: std::collections::HashMap<(String, usize, usize), f64> = Default::default();
        for model in &models {
            for &batch_size in &a.batch_sizes {
                for &threads in &a.threads {
                    let variants = a.prefetch.iter().flat_map(|p| a.length_buckets.iter().flat_map(move |b| a.fused.iter().map(move |f| (p, b, f))));
                    for (&prefetch, &buckets, &fused) in variants {
                        let mut train = cfg.train.clone();
                        (train.batch_size, train.threads, train.prefetch, train.length_buckets, train.fused, train.device) =
                            (batch_size, threads, prefetch, buckets, fused, a.device.clone());
                        let r = train_throughput(&prepared, model, &train, a.warmup, a.steps)?;
                        // Achieved GFLOP/s of the counted matrix products (6 × forward
                        // multiply-adds per sample, DIN's on the histories' real lengths), and its
                        // share of the sgemm ceiling.
                        let gflops = attnrec::bench::useful_forward_macs(model, &prepared.feature_map, r.mean_history).map(|m| 6.0 * m * r.samples_per_sec / 1e9);
                        // The reference once per model, batch size and thread count.
                        let reference = match &cache_dir {
                            Some(dir) if REFERENCE_MODELS.contains(&r.model.as_str()) => {
                                let key = (r.model.clone(), batch_size, threads);
                                Some(match reference_seen.get(&key) {
                                    Some(&rs) => rs,
                                    None => *reference_seen.entry(key).or_insert(reference_throughput(a, dir, &r.model, batch_size, threads)?),
                                })
                            }
                            _ => None,
                        };
                        if a.json {
                            let mut v = serde_json::to_value(&r)?;
                            v["preset"] = preset_name.clone().into();
                            v["device"] = a.device.clone().into();
                            if let Some(rs) = reference {
                                v["reference_samples_per_sec"] = rs.into();
                            }
                            if let Some(g) = gflops {
                                v["gflops"] = g.into();
                                v["sgemm_gflops"] = ceiling[&threads].into();
                            }
                            println!("{v}");
                        } else {
                            eprintln!(
                                "{preset_name} {} batch {batch_size} threads {threads} prefetch {prefetch} fused {fused}: {:.0} samples/s",
                                r.model, r.samples_per_sec
                            );
                        }
                        summary.push(Summary {
                            stage: "train",
                            preset: preset_name.clone(),
                            model: r.model.clone(),
                            batch: [Some(batch_size.to_string()), (buckets > 0).then(|| format!("buckets {buckets}")), (!fused).then(|| "libtorch ops".to_string())]
                                .into_iter()
                                .flatten()
                                .collect::<Vec<_>>()
                                .join(", "),
                            threads: r.threads.to_string(),
                            attnrec: r.samples_per_sec,
                            reference,
                            unit: " samples/s",
                        });
                        rows.push(vec![
                            Cell::text(&preset_name),
                            Cell::text(&r.model),
                            Cell::int(batch_size),
                            Cell::int(r.threads),
                            Cell::int(prefetch),
                            Cell::int(buckets),
                            Cell::text(if fused { "fused" } else { "libtorch" }),
                            Cell::num(r.samples_per_sec, 0),
                            Cell::num(r.ms_per_step, 2),
                            Cell::unit(100.0 * r.input_wait_share, 1, "%"),
                            Cell::or_empty(gflops.map(|g| Cell::num(g, 1))),
                            Cell::or_empty(gflops.map(|g| Cell::unit(100.0 * g / ceiling[&threads], 0, "%"))),
                            Cell::or_empty(reference.map(|rs| Cell::num(rs, 0))),
                            Cell::or_empty(reference.map(|rs| Cell::ratio(r.samples_per_sec / rs))),
                        ]);
                    }
                }
            }
        }
    }
    if !a.json {
        table_note(a.print.table, &machine);
        print_table(&rows, a.print.table);
    }
    Ok(())
}

/// Samples/s of the PyTorch reference's training steps for `model` at `batch_size` and `threads`,
/// on the prepared samples in `cache` (`warmup` + `steps` steps), on the bench's `--device`.
fn reference_throughput(a: &BenchArgs, cache: &Path, model: &str, batch_size: usize, threads: usize) -> anyhow::Result<f64> {
    let v = run_reference(
        a,
        "bench",
        &[cache.as_os_str()],
        &[
            "--model",
            model,
            "--batch-sizes",
            &batch_size.to_string(),
            "--threads",
            &threads.to_string(),
            "--steps",
            &a.steps.to_string(),
            "--warmup",
            &a.warmup.to_string(),
            "--device",
            &a.device,
        ],
    )?;
    v["samples_per_sec"].as_f64().ok_or_else(|| anyhow::anyhow!("--reference: no samples_per_sec in {v}"))
}

/// Seconds the reference's pandas preparation of `data` takes (in process: Python's start and its
/// imports not counted), after checking that it wrote the very samples attnrec wrote to `cache`.
fn reference_prepare(a: &BenchArgs, data: &Path, cache: &Path) -> anyhow::Result<f64> {
    use polars::prelude::*;
    let out = tempdir_for("reference-prepare")?;
    let result = (|| {
        let v = run_reference(a, "prepare", &[data.as_os_str()], &["--out", &out.to_string_lossy()])?;
        let read = |dir: &Path| -> anyhow::Result<DataFrame> {
            let f = std::fs::File::open(dir.join("samples.parquet"))?;
            Ok(ParquetReader::new(f).finish()?)
        };
        if !read(cache)?.equals(&read(&out)?) {
            anyhow::bail!("--reference: the reference's samples of {} differ from attnrec's", data.display());
        }
        v["seconds"].as_f64().ok_or_else(|| anyhow::anyhow!("--reference: no seconds in {v}"))
    })();
    let _ = std::fs::remove_dir_all(&out);
    result
}

/// Runs `attnrec_ref.py COMMAND PATHS… FLAGS…` with the venv's Python; its last stdout line, JSON.
fn run_reference(a: &BenchArgs, command: &str, paths: &[&std::ffi::OsStr], flags: &[&str]) -> anyhow::Result<serde_json::Value> {
    let python = attnrec::bench::venv_python();
    if !a.reference_script.is_file() {
        anyhow::bail!("--reference: {} not found (run from the repository root or pass --reference-script)", a.reference_script.display());
    }
    let o = std::process::Command::new(&python)
        .arg(&a.reference_script)
        .arg(command)
        .args(paths)
        .args(flags)
        .output()
        .map_err(|e| anyhow::anyhow!("--reference: running {}: {e}", python.display()))?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        anyhow::bail!("--reference: the PyTorch reference's `{command}` failed: {}", err.lines().last().unwrap_or("no message"));
    }
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| anyhow::anyhow!("--reference: unexpected output of `{command}` {line:?}: {e}"))
}

/// What to measure on, by name and folder: the `--data` folders (named by their last component),
/// or else the presets.
fn datasets(a: &BenchArgs) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if a.data.is_empty() {
        return a.presets.iter().map(|&p| preset_data(p)).collect();
    }
    a.data
        .iter()
        .map(|d| {
            attnrec::data::Format::detect(d)?;
            let name = d.file_name().map_or_else(|| d.display().to_string(), |n| n.to_string_lossy().into_owned());
            Ok((name, d.clone()))
        })
        .collect()
}

/// The preset's name and folder `data/synth-NAME`, generated (seed 42) when missing.
fn preset_data(preset: Preset) -> anyhow::Result<(String, PathBuf)> {
    let name = preset.name_of();
    let data = PathBuf::from(format!("data/synth-{name}"));
    if !data.join("ratings.dat").is_file() {
        let t = Instant::now();
        let s = synth::generate(&preset.spec(), 42, &data)?;
        eprintln!("generated {} ({} ratings) in {:.1} s", data.display(), s.ratings, t.elapsed().as_secs_f64());
    }
    Ok((name, data))
}

/// `bench --prepare`: each preset prepared from scratch by a child process, so that its peak RSS
/// is the preparation's alone (read with wait4).
fn prepare_bench(a: &BenchArgs, summary: &mut Vec<Summary>) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let mut rows = Table::with_columns(&[
        ("preset", "preset"),
        ("ratings", "ratings"),
        ("wall_seconds", "wall s"),
        ("rows_per_sec", "rows/s"),
        ("peak_rss_gib", "peak RSS GiB"),
        ("stage_seconds", "load / protocol / features / write s"),
        ("reference_seconds", "PyTorch ref s"),
        ("ratio", "ratio"),
    ]);
    for (name, data) in datasets(a)? {
        let root = std::env::temp_dir().join(format!("attnrec-bench-{}-{name}", std::process::id()));
        let start = Instant::now();
        let mut child = std::process::Command::new(&exe);
        child
            .args(["data", "prepare", "--force", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let (ok, peak_kb) = run_with_peak_rss(&mut child)?;
        let wall = start.elapsed().as_secs_f64();
        if !ok {
            let _ = std::fs::remove_dir_all(&root);
            anyhow::bail!("bench: `attnrec data prepare --data {}` failed; run it alone to see why", data.display());
        }
        let meta_path = std::fs::read_dir(&root)?.next().transpose()?.map(|e| e.path().join(attnrec::cache::META_FILE));
        let meta: attnrec::cache::Meta = match meta_path {
            Some(ref p) => serde_json::from_slice(&std::fs::read(p)?)?,
            None => anyhow::bail!("bench: the child wrote no cache under {}", root.display()),
        };
        let ratings: usize = meta.samples.iter().sum();
        // The reference prepares the same samples with pandas; they must equal attnrec's.
        let cache = meta_path.as_ref().and_then(|p| p.parent()).expect("the cache folder holds meta.json");
        let reference = a.reference.then(|| reference_prepare(a, &data, cache)).transpose();
        let _ = std::fs::remove_dir_all(&root);
        let reference = reference?;
        let st = &meta.stage_seconds;
        if a.json {
            println!(
                "{}",
                serde_json::json!({"preset": name, "ratings": ratings, "wall_seconds": wall, "rows_per_sec": ratings as f64 / wall,
                    "peak_rss_bytes": peak_kb * 1024, "stage_seconds": st, "reference_seconds": reference})
            );
        }
        rows.push(vec![
            Cell::text(&name),
            Cell::int(ratings),
            Cell::num(wall, 2),
            Cell::num(ratings as f64 / wall, 0),
            Cell::num(peak_kb as f64 / 1024.0 / 1024.0, 2),
            Cell::text(format!("{:.2} / {:.2} / {:.2} / {:.2}", st.load, st.protocol, st.features, st.write)),
            Cell::or_empty(reference.map(|r| Cell::num(r, 2))),
            Cell::or_empty(reference.map(|r| Cell::ratio(r / wall))),
        ]);
        summary.push(Summary {
            stage: "prepare",
            preset: name,
            model: "".into(),
            batch: "".into(),
            threads: "".into(),
            attnrec: ratings as f64 / wall,
            reference: reference.map(|r| ratings as f64 / r),
            unit: " rows/s",
        });
    }
    if !a.json {
        print_table(&rows, a.print.table);
    }
    Ok(())
}

/// `bench --score`: per preset × model × thread count, a child `attnrec score` over the preset's
/// (user, item) pairs with an untrained run; wall time (startup, reading and writing included),
/// rows/s and peak RSS (wait4).
fn score_bench(a: &BenchArgs, summary: &mut Vec<Summary>) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let tmp = tempdir_for("score")?;
    let result = (|| -> anyhow::Result<Table> {
        let mut rows = Table::with_columns(&[
            ("preset", "preset"),
            ("model", "model"),
            ("rows", "rows"),
            ("threads", "threads"),
            ("parts", "parts"),
            ("wall_seconds", "wall s"),
            ("rows_per_sec", "rows/s"),
            ("peak_rss_gib", "peak RSS GiB"),
            ("reference_rows_per_sec", "PyTorch ref rows/s"),
            ("ratio", "ratio"),
        ]);
        for (name, data) in datasets(a)? {
            // The log's pairs, in file order, cycled to the requested row count.
            let ds = attnrec::data::Dataset::load(&data, None)?;
            let r = &ds.ratings;
            let ids = |c: &str| -> anyhow::Result<Vec<i64>> {
                Ok(r.column(c)?.cast(&polars::prelude::DataType::Int64)?.i64()?.into_no_null_iter().collect())
            };
            let (users, items) = (ids("user_id")?, ids("item_id")?);
            let n = a.score_rows.unwrap_or(users.len());
            let cands = tmp.join(format!("{name}.csv"));
            {
                use std::io::Write;
                let mut w = std::io::BufWriter::new(std::fs::File::create(&cands)?);
                writeln!(w, "user_id,item_id")?;
                for k in (0..users.len()).cycle().take(n) {
                    writeln!(w, "{},{}", users[k], items[k])?;
                }
                w.flush()?;
            }
            for model in &a.models {
                let cfg = RunConfig::new(data.clone(), ModelConfig::by_name(model)?);
                let run = tmp.join(format!("{name}-{model}").replace(':', "_"));
                attnrec::run::write_untrained_run(&cfg, &run)?;
                for &threads in &a.threads {
                    let out = tmp.join("scores.csv");
                    let start = Instant::now();
                    // A child `attnrec score` of `input` into `output`, quiet.
                    let score_child = |input: &Path, output: &Path| {
                        let mut child = std::process::Command::new(&exe);
                        child
                            .args(["score", "-q", "--threads", &threads.to_string(), "--run"])
                            .arg(&run)
                            .arg("--candidates")
                            .arg(input)
                            .arg("--output")
                            .arg(output)
                            .stdout(std::process::Stdio::null());
                        child
                    };
                    let (ok, peak_kb) = run_with_peak_rss(&mut score_child(&cands, &out))?;
                    let wall = start.elapsed().as_secs_f64();
                    if !ok {
                        anyhow::bail!("bench: the child `attnrec score` of {model} on {name} failed");
                    }
                    let _ = std::fs::remove_file(&out);
                    eprintln!("{name} {model} threads {threads}: {n} rows in {wall:.1} s ({:.0} rows/s)", n as f64 / wall);
                    let reference = if a.reference && REFERENCE_MODELS.contains(&model.as_str()) {
                        let ref_out = tmp.join("reference-scores.csv");
                        let v = run_reference(
                            a,
                            "score",
                            &[run.as_os_str(), data.as_os_str(), cands.as_os_str()],
                            &["--out", &ref_out.to_string_lossy(), "--threads", &threads.to_string()],
                        );
                        let _ = std::fs::remove_file(&ref_out);
                        let v = v?;
                        Some(v["seconds"].as_f64().ok_or_else(|| anyhow::anyhow!("--reference: no seconds in {v}"))?)
                    } else {
                        None
                    };
                    if a.json {
                        println!(
                            "{}",
                            serde_json::json!({"preset": name, "model": model, "rows": n, "threads": threads, "wall_seconds": wall,
                                "rows_per_sec": n as f64 / wall, "peak_rss_bytes": peak_kb * 1024, "reference_seconds": reference})
                        );
                    }
                    summary.push(Summary {
                        stage: "score",
                        preset: name.clone(),
                        model: model.clone(),
                        batch: "".into(),
                        threads: threads.to_string(),
                        attnrec: n as f64 / wall,
                        reference: reference.map(|r| n as f64 / r),
                        unit: " rows/s",
                    });
                    rows.push(vec![
                        Cell::text(&name),
                        Cell::text(model),
                        Cell::int(n),
                        Cell::int(threads),
                        Cell::text("one file"),
                        Cell::num(wall, 1),
                        Cell::num(n as f64 / wall, 0),
                        Cell::num(peak_kb as f64 / 1024.0 / 1024.0, 2),
                        Cell::or_empty(reference.map(|r| Cell::num(n as f64 / r, 0))),
                        Cell::or_empty(reference.map(|r| Cell::ratio(r / wall))),
                    ]);
                    for &parts in &a.score_parts {
                        let (cands_dir, history) = co_partition(&data, &cands, parts, &tmp)?;
                        let out = tmp.join("scored");
                        let _ = std::fs::remove_dir_all(&out);
                        let start = Instant::now();
                        let peak_kb = run_tasks(parts, a.score_tasks, |k| {
                            let mut child = score_child(&cands_dir, &out);
                            child.args(["--parts", &format!("{k}/{parts}"), "--co-partitioned", "--history"]).arg(&history);
                            child
                        })?;
                        let wall = start.elapsed().as_secs_f64();
                        let _ = std::fs::remove_dir_all(&out);
                        let shape = format!("{parts} parts, {} at once", a.score_tasks.min(parts));
                        eprintln!("{name} {model} threads {threads}, {shape}: {n} rows in {wall:.1} s ({:.0} rows/s)", n as f64 / wall);
                        if a.json {
                            println!(
                                "{}",
                                serde_json::json!({"preset": name, "model": model, "rows": n, "threads": threads, "parts": parts,
                                    "tasks_at_once": a.score_tasks.min(parts), "wall_seconds": wall, "rows_per_sec": n as f64 / wall,
                                    "peak_rss_bytes_per_task": peak_kb * 1024})
                            );
                        }
                        rows.push(vec![
                            Cell::text(&name),
                            Cell::text(model),
                            Cell::int(n),
                            Cell::int(threads),
                            Cell::Text(shape),
                            Cell::num(wall, 1),
                            Cell::num(n as f64 / wall, 0),
                            Cell::num(peak_kb as f64 / 1024.0 / 1024.0, 2),
                            Cell::Empty,
                            Cell::Empty,
                        ]);
                    }
                }
            }
        }
        Ok(rows)
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    let rows = result?;
    if !a.json {
        print_table(&rows, a.print.table);
    }
    Ok(())
}

/// The partition of a user among `n` parts (a multiplicative hash of the id).
fn partition_of(user: i64, n: usize) -> usize {
    ((user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % n
}

/// The candidates file `cands` (header `user_id,…`) and the log of `data` cut into `n` parts by
/// user, alike: `tmp/cands-N/part-K.csv`, and `tmp/history-N/`, the dataset folder with its
/// ratings file as a folder of parts. MovieLens layouts only (the user is each line's first field).
fn co_partition(data: &Path, cands: &Path, n: usize, tmp: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    use attnrec::data::Format;
    use std::io::{BufRead, Write};
    if n == 0 {
        anyhow::bail!("--score-parts: a part count must be at least 1");
    }
    let (ratings, sep, header) = match Format::detect(data)? {
        Format::Ml100k => ("u.data", "\t", false),
        Format::Ml1m => ("ratings.dat", "::", false),
        Format::MlCsv => ("ratings.csv", ",", true),
        other => anyhow::bail!("--score-parts: {} logs are not cut into parts here (the MovieLens layouts are)", other.name()),
    };
    let split = |from: &Path, to: &Path, sep: &str, header: bool, name: &dyn Fn(usize) -> String| -> anyhow::Result<()> {
        std::fs::create_dir_all(to)?;
        let mut outs = (0..n).map(|k| Ok(std::io::BufWriter::new(std::fs::File::create(to.join(name(k)))?))).collect::<anyhow::Result<Vec<_>>>()?;
        let mut lines = std::io::BufReader::new(std::fs::File::open(from)?).lines();
        if header {
            let h = lines.next().transpose()?.unwrap_or_default();
            for o in &mut outs {
                writeln!(o, "{h}")?;
            }
        }
        for line in lines {
            let line = line?;
            let user: i64 = line.split(sep).next().unwrap_or("").trim().parse().map_err(|_| anyhow::anyhow!("{}: a line without a user id first: {line:?}", from.display()))?;
            writeln!(outs[partition_of(user, n)], "{line}")?;
        }
        for mut o in outs {
            o.flush()?;
        }
        Ok(())
    };
    let cands_dir = tmp.join(format!("cands-{n}"));
    let history = tmp.join(format!("history-{n}"));
    if !cands_dir.is_dir() {
        split(cands, &cands_dir, ",", true, &|k| format!("part-{k:05}.csv"))?;
        split(&data.join(ratings), &history.join(ratings), sep, header, &|k| format!("part-{k:05}"))?;
        for e in std::fs::read_dir(data)? {
            let e = e?;
            let file = e.file_name();
            if e.path().is_file() && file != ratings && !file.to_string_lossy().starts_with('.') {
                std::fs::copy(e.path(), history.join(&file))?;
            }
        }
    }
    Ok((cands_dir, history))
}

/// Runs `task(0..n)` as children, `at_once` at a time; fails if one fails; returns the largest
/// peak RSS of a child in KiB.
fn run_tasks(n: usize, at_once: usize, task: impl Fn(usize) -> std::process::Command + Sync) -> anyhow::Result<u64> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..at_once.clamp(1, n.max(1)))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<u64> {
                    let mut peak = 0;
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if k >= n {
                            return Ok(peak);
                        }
                        let (ok, kb) = run_with_peak_rss(&mut task(k))?;
                        if !ok {
                            anyhow::bail!("bench: the child `attnrec score --parts {k}/{n}` failed");
                        }
                        peak = peak.max(kb);
                    }
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_else(|_| Err(anyhow::anyhow!("bench: a task thread panicked")))).collect()
    });
    results.into_iter().try_fold(0, |m, r| Ok(m.max(r?)))
}

/// A fresh folder under the system's temp dir for one bench.
fn tempdir_for(what: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("attnrec-bench-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs a child `attnrec`; returns whether it exited with status 0 and its peak RSS in KiB. The
/// child writes its own high-water mark (`VmHWM`, which starts afresh at `exec`) to the file named
/// by [`attnrec::bench::PEAK_RSS_ENV`]: the `ru_maxrss` that `wait4` returns also counts the
/// parent's pages mapped between fork and exec, so it reads this process's size once the bench
/// has grown (after training, say). `ru_maxrss` is the fallback.
fn run_with_peak_rss(cmd: &mut std::process::Command) -> anyhow::Result<(bool, u64)> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let report = std::env::temp_dir().join(format!("attnrec-bench-peak-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&report);
    let child = cmd.env(attnrec::bench::PEAK_RSS_ENV, &report).spawn()?;
    let (ok, maxrss) = wait_with_peak_rss(child.id() as libc::pid_t)?;
    let own = std::fs::read_to_string(&report).ok().and_then(|t| t.trim().parse::<u64>().ok());
    let _ = std::fs::remove_file(&report);
    Ok((ok, own.unwrap_or(maxrss)))
}

/// Waits for `pid`; returns whether it exited with status 0 and its `ru_maxrss` in KiB.
fn wait_with_peak_rss(pid: libc::pid_t) -> anyhow::Result<(bool, u64)> {
    let mut status = 0;
    // SAFETY: rusage is plain data, zero-initialized; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        anyhow::bail!("bench: waiting for the child failed: {}", std::io::Error::last_os_error());
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((ok, usage.ru_maxrss as u64))
}
