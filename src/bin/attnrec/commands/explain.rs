//! `attnrec explain`: one (user, item) score and the attention behind it.
use crate::cli::ExplainArgs;
use attnrec::report::{render_heatmap, Heatmap};
use attnrec::run::load_run;
use attnrec::score::{default_history_dir, explain, parse_id_token, HistoryIndex};
use tch::Device;

pub fn run(a: ExplainArgs) -> anyhow::Result<()> {
    let run = load_run(&a.run, Device::Cpu)?;
    let fm = &run.feature_map;
    let id = |v: &str, flag: &str| {
        parse_id_token(v, fm.string_ids)
            .ok_or_else(|| anyhow::anyhow!("--{flag} '{v}' is not an integer id (the run's dataset has integer ids)"))
    };
    let (user, item) = (id(&a.user, "user")?, id(&a.item, "item")?);
    let history = HistoryIndex::load(&run, &a.history.clone().unwrap_or_else(|| default_history_dir(&run)))?;
    let e = explain(&run, &history, user, item, a.at)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&e)?);
    } else {
        let max = e.history.iter().fold(0.0f64, |m, h| m.max(h.weight.abs())).max(1e-12);
        println!(
            "{} run {}: user {} item {}{}: score {:.4}; {} history events, oldest first",
            e.model,
            a.run.display(),
            a.user,
            a.item,
            a.at.map_or(String::new(), |t| format!(" at {t}")),
            e.score,
            e.history.len()
        );
        let width = e.history.iter().map(|h| h.item.to_string().len()).max().unwrap_or(4).max(4);
        let per_head = if e.heads > 1 { (1..=e.heads).map(|h| format!("  {:>7}", format!("head {h}"))).collect::<String>() } else { String::new() };
        println!("{:>4}  {:>width$}  {:>12}  {:>7}  {:>8}{per_head}", "pos", "item", "timestamp", "clicked", "weight");
        for (i, h) in e.history.iter().enumerate() {
            // Bars show |weight| against the largest; DIN's unnormalized weights can be negative.
            let bar = "█".repeat((h.weight.abs() / max * 40.0).round() as usize);
            let sign = if h.weight < 0.0 { "−" } else { "" };
            let heads = if e.heads > 1 { h.head_weights.iter().map(|w| format!("  {w:>7.4}")).collect::<String>() } else { String::new() };
            println!(
                "{:>4}  {:>width$}  {:>12}  {:>7}  {:>8.4}{heads}  {sign}{bar}",
                i + 1,
                h.item,
                h.timestamp,
                if h.clicked { "yes" } else { "no" },
                h.weight
            );
        }
        if e.heads > 1 {
            println!("(weight is the mean over the {} heads)", e.heads);
        }
    }
    if e.history.is_empty() {
        eprintln!("the user has no history before that time: nothing to draw");
        return Ok(());
    }
    let dir = a.out.clone().unwrap_or_else(|| a.run.join("explain"));
    std::fs::create_dir_all(&dir).map_err(|err| anyhow::anyhow!("{}: {err}", dir.display()))?;
    let title = format!("{} user {} item {}", e.model, a.user, a.item);
    // Target attention: one row per head (and their mean where there are several).
    let mut rows = Vec::new();
    let mut weights = Vec::new();
    for h in 0..e.heads {
        rows.push(if e.heads > 1 { format!("head {}", h + 1) } else { format!("score {:.3}", e.score) });
        weights.push(e.history.iter().map(|x| Some(x.head_weights[h])).collect());
    }
    if e.heads > 1 {
        rows.push(format!("mean, score {:.3}", e.score));
        weights.push(e.history.iter().map(|x| Some(x.weight)).collect());
    }
    let stem = format!("user-{}-item-{}", a.user, a.item).replace(['/', '\\'], "_");
    render_heatmap(&Heatmap::target(&title, rows, weights), &dir, &stem)?;
    eprintln!("heat map written to {}/{stem}.svg and .png", dir.display());
    // Self-attention: the history × history matrix of each head of the last block.
    for (h, m) in e.self_attention.iter().enumerate() {
        let heat = Heatmap {
            variant: format!("{title}, head {}", h + 1),
            what: "self-attention of the last block (row attends to column)",
            x_desc: "attended position (history oldest → most recent, then the target for bst)",
            rows: e.self_attention_positions.iter().map(|p| format!("{p} attends")).collect(),
            weights: m.iter().map(|r| r.iter().map(|&w| Some(w)).collect()).collect(),
        };
        let name = format!("{stem}-self-head{}", h + 1);
        render_heatmap(&heat, &dir, &name)?;
        eprintln!("self-attention of head {} written to {}/{name}.svg and .png", h + 1, dir.display());
    }
    Ok(())
}
