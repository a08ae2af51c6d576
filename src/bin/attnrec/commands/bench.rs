//! `attnrec bench`: training throughput over a grid of presets × models × batch sizes × threads ×
//! prefetch depths, as one table.
use super::print_table;
use crate::cli::BenchArgs;
use attnrec::bench::{sgemm_gflops, train_throughput};
use attnrec::config::RunConfig;
use attnrec::data::synth;
use attnrec::models::ModelConfig;
use attnrec::run::prepare;
use std::path::PathBuf;
use std::time::Instant;

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    for (name, list) in [("--batch-sizes", &a.batch_sizes), ("--threads", &a.threads)] {
        if list.contains(&0) {
            anyhow::bail!("{name} values must be at least 1");
        }
    }
    if a.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    attnrec::device::resolve(&a.device)?;
    let models = a.models.iter().map(|m| ModelConfig::by_name(m)).collect::<attnrec::Result<Vec<_>>>()?;
    let mut machine = Vec::new();
    for &threads in &a.threads {
        attnrec::device::set_threads(threads);
        machine.push(format!("{threads} thread(s) {:.0} GFLOP/s", sgemm_gflops(2048, 5)));
    }
    let machine = format!("sgemm 2048² through libtorch: {}", machine.join(", "));
    eprintln!("{machine}");
    let mut rows = Vec::new();
    for preset in &a.presets {
        let preset_name = format!("{preset:?}").to_lowercase();
        let data = PathBuf::from(format!("data/synth-{preset_name}"));
        if !data.join("ratings.dat").is_file() {
            let t = Instant::now();
            let s = synth::generate(&preset.spec(), 42, &data)?;
            eprintln!("generated {} ({} ratings) in {:.1} s", data.display(), s.ratings, t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        let cfg = RunConfig::new(data.clone(), models[0].clone());
        let prepared = prepare(&cfg, &data, None)?;
        eprintln!("prepared {preset_name} in {:.1} s", t.elapsed().as_secs_f64());
        for model in &models {
            for &batch_size in &a.batch_sizes {
                for &threads in &a.threads {
                    for &prefetch in &a.prefetch {
                        let mut train = cfg.train.clone();
                        (train.batch_size, train.threads, train.prefetch, train.device) =
                            (batch_size, threads, prefetch, a.device.clone());
                        let r = train_throughput(&prepared, model, &train, a.warmup, a.steps)?;
                        if a.json {
                            let mut v = serde_json::to_value(&r)?;
                            v["preset"] = preset_name.clone().into();
                            v["device"] = a.device.clone().into();
                            println!("{v}");
                        } else {
                            eprintln!(
                                "{preset_name} {} batch {batch_size} threads {threads} prefetch {prefetch}: {:.0} samples/s",
                                r.model, r.samples_per_sec
                            );
                        }
                        rows.push(vec![
                            preset_name.clone(),
                            r.model.clone(),
                            batch_size.to_string(),
                            r.threads.to_string(),
                            prefetch.to_string(),
                            format!("{:.0}", r.samples_per_sec),
                            format!("{:.2}", r.ms_per_step),
                            format!("{:.1}%", 100.0 * r.input_wait_share),
                        ]);
                    }
                }
            }
        }
    }
    if !a.json {
        println!("{machine}");
        print_table(
            &["preset", "model", "batch", "threads", "prefetch", "samples/s", "ms/step", "input wait"],
            &rows,
        );
    }
    Ok(())
}
