//! An experiment's pictures and its one-page report, written next to `results.csv`:
//! - `learning_curves.{svg,png}`: valid AUC at each evaluation, one line per variant (mean over
//!   its seeds at that evaluation);
//! - `test_auc.{svg,png}`: mean test AUC per variant with ± one sample std as error bars;
//! - `attention_<variant>.{svg,png}`: for each variant whose model has target attention, its
//!   weights over the history of a few test samples (one per user), from the run of its first seed;
//! - `report.html`: the results table and every plot (SVG inlined), one self-contained file.
//!
//! Plots are drawn once per backend by plotters: SVG as text, PNG from an RGB buffer encoded by
//! the png crate. Text uses DejaVu Sans, embedded, so no system font is needed.
use crate::data::protocol::Split;
use crate::error::{Error, Result};
use crate::experiment::{Experiment, Outcome, VariantResult};
use crate::table::escape_html;
use crate::features::Batcher;
use crate::run::{load_run, prepare, METRICS_FILE};
use crate::train::EvalReport;
use crate::util::write_atomic;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

/// One variant's learning curve: (evaluation number, mean valid AUC over the seeds that reached it).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub variant: String,
    pub points: Vec<(f64, f64)>,
}

/// The learning curves of the experiment's complete runs, read from their `metrics.jsonl`.
pub fn learning_curves(e: &Experiment, outcomes: &[Outcome]) -> Result<Vec<Curve>> {
    let mut curves = Vec::new();
    for v in &e.variants {
        let mut sums: Vec<(f64, usize)> = Vec::new();
        for (r, o) in e.runs.iter().zip(outcomes) {
            if &r.variant != v || !matches!(o, Outcome::Done { .. }) {
                continue;
            }
            let path = r.dir.join(METRICS_FILE);
            let text = std::fs::read_to_string(&path).map_err(|err| Error::io(&path, err))?;
            for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                let rep: EvalReport = serde_json::from_str(line).map_err(|err| Error::parse(&path, i + 1, err.to_string()))?;
                let Some(auc) = rep.valid.auc else { continue };
                if sums.len() <= i {
                    sums.resize(i + 1, (0.0, 0));
                }
                sums[i].0 += auc;
                sums[i].1 += 1;
            }
        }
        let points = sums.iter().enumerate().filter(|(_, s)| s.1 > 0).map(|(i, s)| ((i + 1) as f64, s.0 / s.1 as f64)).collect();
        curves.push(Curve { variant: v.clone(), points });
    }
    Ok(curves)
}

/// Attention weights over the history of a few test samples: `weights[r][c]` for sample `r` and
/// history column `c` (oldest left, most recent right), `None` where the history is shorter.
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// The title: `VARIANT: WHAT (darker = more weight; …)`.
    pub variant: String,
    /// What the weights are; [`Heatmap::TARGET`] by default.
    pub what: &'static str,
    /// The x axis.
    pub x_desc: &'static str,
    pub rows: Vec<String>,
    pub weights: Vec<Vec<Option<f64>>>,
}

impl Heatmap {
    pub const TARGET: &'static str = "target attention over the history";
    pub const HISTORY_AXIS: &'static str = "history position (oldest → most recent)";

    /// Target attention: one row per sample or head, one column per history position.
    pub fn target(variant: &str, rows: Vec<String>, weights: Vec<Vec<Option<f64>>>) -> Heatmap {
        Heatmap { variant: variant.to_string(), what: Self::TARGET, x_desc: Self::HISTORY_AXIS, rows, weights }
    }
}

/// The attention of the run in `dir` over the histories of `n` test samples, one per user (its
/// first), those with the longest histories; `None` for a model without target attention.
pub fn attention_heatmap(variant: &str, dir: &Path, n: usize) -> Result<Option<Heatmap>> {
    let run = load_run(dir, tch::Device::Cpu)?;
    let prepared = prepare(&run.config, &run.config.data.path, Some(run.feature_map.clone()))?;
    let enc = &prepared.encoded;
    // Each user's first test sample, the longest histories first (full ones, in protocol order).
    let mut seen = std::collections::HashSet::new();
    let mut picked: Vec<usize> = enc.indices(Split::Test).into_iter().filter(|&k| seen.insert(enc.raw_user[k])).collect();
    picked.sort_by_key(|&k| std::cmp::Reverse(enc.history(k).len()));
    picked.truncate(n);
    picked.retain(|&k| !enc.history(k).is_empty());
    if picked.is_empty() {
        return Ok(None);
    }
    let batch = Batcher::new(enc, tch::Device::Cpu).batch(&picked);
    let Some(rows) = crate::models::attention_weights(run.model.as_ref(), &batch) else { return Ok(None) };
    // One row per user: the mean over heads, right-aligned in the batch's width.
    let cols = batch.hist_mask.size()[1] as usize;
    let weights = rows
        .iter()
        .map(|r| {
            let mean = r.mean();
            std::iter::repeat_n(None, cols - mean.len()).chain(mean.into_iter().map(Some)).collect()
        })
        .collect();
    let rows = picked
        .iter()
        .map(|&k| format!("user {}, {}", enc.raw_user[k], if enc.label[k] > 0.5 { "clicked" } else { "not clicked" }))
        .collect();
    Ok(Some(Heatmap::target(variant, rows, weights)))
}

type DrawResult = std::result::Result<(), String>;

/// A picture that any plotters backend can draw.
trait Plot {
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult;
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular()).map_err(|_| "invalid font").expect("the embedded DejaVu Sans parses");
    });
}

/// Line colors: a qualitative palette (Tableau 10) that stays apart in print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Axis bounds around `values` with a little margin.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.002);
    (lo - pad, hi + pad)
}

struct CurvesPlot<'a>(&'a [Curve]);

impl Plot for CurvesPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (900, 520)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(err)?;
        let all = || self.0.iter().flat_map(|c| c.points.iter());
        let x_max = all().map(|p| p.0).fold(1.0, f64::max);
        let (lo, hi) = span(all().map(|p| p.1));
        let mut chart = ChartBuilder::on(root)
            .caption("Valid AUC per evaluation (mean over seeds)", (FONT, 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5..x_max + 0.5, lo..hi)
            .map_err(err)?;
        let whole = |x: &f64| if (x - x.round()).abs() < 1e-9 { format!("{}", x.round()) } else { String::new() };
        chart
            .configure_mesh()
            .x_labels((x_max as usize + 2).min(30))
            .x_label_formatter(&whole)
            .x_desc("evaluation (epoch)")
            .y_desc("valid AUC")
            .label_style((FONT, 14))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(err)?;
        for (i, c) in self.0.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            chart
                .draw_series(LineSeries::new(c.points.iter().copied(), color.stroke_width(2)))
                .map_err(err)?
                .label(c.variant.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            chart.draw_series(c.points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()
            .map_err(err)?;
        Ok(())
    }
}

struct BarsPlot<'a>(&'a [VariantResult]);

impl Plot for BarsPlot<'_> {
    fn size(&self) -> (u32, u32) {
        ((160 + 110 * self.0.len()).max(520) as u32, 520)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(err)?;
        let rows: Vec<&VariantResult> = self.0.iter().filter(|r| r.test_auc.0.is_finite()).collect();
        let (lo, hi) = span(rows.iter().flat_map(|r| [r.test_auc.0 - r.test_auc.1, r.test_auc.0 + r.test_auc.1]));
        let n = rows.len().max(1) as f64;
        let names: Vec<String> = rows.iter().map(|r| r.variant.clone()).collect();
        let mut chart = ChartBuilder::on(root)
            .caption("Test AUC (mean ± sample std over seeds)", (FONT, 22))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n - 0.5, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(rows.len().max(1))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 { names.get(i as usize).cloned().unwrap_or_default() } else { String::new() }
            })
            .y_desc("test AUC")
            .label_style((FONT, 14))
            .y_label_formatter(&|y| format!("{y:.3}"))
            .draw()
            .map_err(err)?;
        for (i, r) in rows.iter().enumerate() {
            let x = i as f64;
            let color = PALETTE[i % PALETTE.len()];
            chart.draw_series([Rectangle::new([(x - 0.35, lo), (x + 0.35, r.test_auc.0)], color.mix(0.75).filled())]).map_err(err)?;
            let (m, s) = r.test_auc;
            chart.draw_series([ErrorBar::new_vertical(x, m - s, m, m + s, BLACK.stroke_width(2), 14)]).map_err(err)?;
        }
        Ok(())
    }
}

struct HeatmapPlot<'a>(&'a Heatmap);

impl Plot for HeatmapPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 140 + 34 * self.0.rows.len() as u32)
    }
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        root.fill(&WHITE).map_err(err)?;
        let h = self.0;
        let cols = h.weights.first().map_or(1, Vec::len);
        let max = h.weights.iter().flatten().flatten().fold(0.0f64, |a, &w| a.max(w.abs())).max(1e-12);
        let rows = h.rows.len();
        let mut chart = ChartBuilder::on(root)
            .caption(format!("{}: {} (darker = more weight; max {max:.3})", h.variant, h.what), (FONT, 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(170)
            // A segmented 0..n has n + 1 segments (its end included): 0..rows - 1 gives one per row.
            .build_cartesian_2d(0..cols, (0..rows - 1).into_segmented())
            .map_err(err)?;
        // Row r is drawn top-down: at y = rows - 1 - r.
        let label = |y: &SegmentValue<usize>| match y {
            SegmentValue::CenterOf(y) if *y < rows => h.rows[rows - 1 - y].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(h.x_desc)
            .y_labels(rows)
            .y_label_formatter(&label)
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        let cells = h.weights.iter().enumerate().flat_map(|(r, row)| {
            row.iter().enumerate().map(move |(c, w)| {
                let y = rows - 1 - r;
                let color = match w {
                    None => RGBColor(235, 235, 235),
                    Some(w) => {
                        let t = (w.abs() / max).clamp(0.0, 1.0);
                        let v = |hi: f64, lo: f64| (hi + (lo - hi) * t) as u8;
                        RGBColor(v(255.0, 8.0), v(255.0, 48.0), v(255.0, 107.0))
                    }
                };
                Rectangle::new([(c, SegmentValue::Exact(y)), (c + 1, SegmentValue::Exact(y + 1))], color.filled())
            })
        });
        chart.draw_series(cells).map_err(err)?;
        Ok(())
    }
}

/// Draws `h` as `dir/stem.svg` and `dir/stem.png`; returns the SVG text.
pub fn render_heatmap(h: &Heatmap, dir: &Path, stem: &str) -> Result<String> {
    render(&HeatmapPlot(h), dir, stem)
}

/// Draws `plot` as `dir/stem.svg` and `dir/stem.png`; returns the SVG text.
fn render(plot: &impl Plot, dir: &Path, stem: &str) -> Result<String> {
    register_font();
    let (w, h) = plot.size();
    let fail = |e: String| Error::io(dir.join(stem), std::io::Error::other(e));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        plot.draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        plot.draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let png_path = dir.join(format!("{stem}.png"));
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(|e| fail(e.to_string()))?;
        writer.write_image_data(&rgb).map_err(|e| fail(e.to_string()))?;
    }
    write_atomic(&png_path, &bytes)?;
    write_atomic(&dir.join(format!("{stem}.svg")), svg.as_bytes())?;
    Ok(svg)
}

/// Draws every plot and writes `report.html` into the experiment folder; returns the files
/// written (relative to it).
pub fn write(e: &Experiment, outcomes: &[Outcome], results: &[VariantResult]) -> Result<Vec<String>> {
    let dir = &e.out;
    let mut files = Vec::new();
    let mut figures: Vec<(String, String)> = Vec::new();
    let curves = learning_curves(e, outcomes)?;
    if curves.iter().any(|c| !c.points.is_empty()) {
        figures.push(("Learning curves".into(), render(&CurvesPlot(&curves), dir, "learning_curves")?));
        files.push("learning_curves.svg".to_string());
    }
    if results.iter().any(|r| r.test_auc.0.is_finite()) {
        figures.push(("Test AUC".into(), render(&BarsPlot(results), dir, "test_auc")?));
        files.push("test_auc.svg".to_string());
    }
    for v in &e.variants {
        let first = e.runs.iter().zip(outcomes).find(|(r, o)| &r.variant == v && matches!(o, Outcome::Done { .. }));
        if let Some((r, _)) = first {
            if let Some(h) = attention_heatmap(v, &r.dir, 8)? {
                let stem = format!("attention_{v}");
                figures.push((format!("Attention of {v} (seed {})", r.seed), render(&HeatmapPlot(&h), dir, &stem)?));
                files.push(format!("{stem}.svg"));
            }
        }
    }
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n",
    );
    html.push_str(&format!("<title>{} — attnrec experiment</title>\n", escape_html(&e.name)));
    html.push_str(
        "<style>body{font-family:'DejaVu Sans',Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}\
         table{border-collapse:collapse;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}\
         th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}figure{margin:2em 0}\
         figure svg{max-width:100%;height:auto}figcaption{font-weight:bold;margin-bottom:.5em}</style></head><body>\n",
    );
    html.push_str(&format!("<h1>{}</h1>\n", escape_html(&e.name)));
    let seeds: std::collections::BTreeSet<u64> = e.runs.iter().map(|r| r.seed).collect();
    let seeds = seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    html.push_str(&format!(
        "<p>{} runs: {} variants × seeds {}. Mean ± sample std over seeds{}; p: DeLong's test of the \
         seed-averaged test predictions against the baseline's.</p>\n",
        e.runs.len(),
        e.variants.len(),
        seeds,
        e.baseline.as_ref().map_or(String::new(), |b| format!("; RelaImpr of the mean test AUC against <code>{}</code>", escape_html(b)))
    ));
    html.push_str(&crate::experiment::results_table(results).render(crate::table::Format::Html));
    for (caption, svg) in &figures {
        html.push_str(&format!("<figure><figcaption>{}</figcaption>\n{}\n</figure>\n", escape_html(caption), svg));
    }
    html.push_str("</body></html>\n");
    write_atomic(&dir.join("report.html"), html.as_bytes())?;
    files.push("report.html".to_string());
    Ok(files)
}
