//! One results table for every command that prints figures (`train`, `eval`, `demo`, `run`,
//! `bench`, `data`): typed cells, rendered for a terminal, Markdown, CSV, JSON or HTML.
//!
//! A cell keeps its value; how many decimals a person reads is a property of the cell, and the
//! machine formats (CSV, JSON) get full precision. A mean ± std cell is two columns in CSV and
//! JSON (`KEY_mean`, `KEY_std`). A note (`2 (1 failed)`) is for people only; machines read it from
//! its own column, which may be hidden from people.
//!
//! ```
//! use attnrec::table::{Cell, Column, Format, Table};
//! let mut t = Table::new(vec![Column::new("model", "model"), Column::new("test_auc", "test AUC")]);
//! t.push(vec![Cell::text("din"), Cell::mean_std(&[0.80, 0.81], 4)]);
//! assert_eq!(t.render(Format::Csv), "model,test_auc_mean,test_auc_std\ndin,0.805,0.007071067811865481\n");
//! assert!(t.render(Format::Text).contains("0.8050 ± 0.0071"));
//! ```
use serde_json::{Map, Value};

/// How a table is written out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Aligned columns for a terminal: the first left-aligned, the rest right-aligned.
    Text,
    /// A GitHub Markdown table.
    Markdown,
    /// RFC 4180 CSV with a header, numbers at full precision, missing values empty.
    Csv,
    /// One JSON array of row objects, numbers at full precision, missing values `null`.
    Json,
    /// An HTML `<table>` (the experiment report).
    Html,
}

impl crate::util::Choice for Format {
    const ALL: &'static [Format] = &[Format::Text, Format::Markdown, Format::Csv, Format::Json, Format::Html];

    fn help(self) -> &'static str {
        match self {
            Format::Text => "aligned columns for a terminal",
            Format::Markdown => "a Markdown table (as in the README)",
            Format::Csv => "CSV with a header, full precision; other lines go to stderr",
            Format::Json => "one JSON array of row objects, full precision; other lines go to stderr",
            Format::Html => "an HTML table",
        }
    }
}

impl Format {
    /// For machines (CSV, JSON): a command prints its other lines to stderr then, so that stdout
    /// is the table alone.
    pub fn is_machine(self) -> bool {
        matches!(self, Format::Csv | Format::Json)
    }
}

/// One column: a machine key (CSV header, JSON field) and a title for people.
#[derive(Debug, Clone)]
pub struct Column {
    pub key: String,
    pub title: String,
    /// Shown to people (text, Markdown, HTML); machines always get every column.
    pub human: bool,
}

impl Column {
    pub fn new(key: impl Into<String>, title: impl Into<String>) -> Column {
        Column { key: key.into(), title: title.into(), human: true }
    }

    /// A column machines read and people do not (its value is in another cell's note).
    pub fn machine_only(key: impl Into<String>) -> Column {
        let key = key.into();
        Column { title: key.clone(), key, human: false }
    }
}

/// One value of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    /// Shown with `digits` decimals and a unit suffix (`"×"`, `"%"`, `""`); NaN shows `n/a`.
    Num { value: f64, digits: usize, unit: &'static str },
    /// A change, shown with its sign: `+1.25%`.
    Delta { value: f64, digits: usize, unit: &'static str },
    /// A mean and sample std over `n` values; with one value people see the mean alone.
    MeanStd { mean: f64, std: f64, n: usize, digits: usize },
    /// A two-sided p-value: 4 decimals, or scientific below 1e-4.
    P(f64),
    /// Nothing to show (a comparison without a baseline): empty for people, null for machines.
    Empty,
    /// A cell with a remark for people only: `2 (1 failed)`.
    Noted(Box<Cell>, String),
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    pub fn int(n: impl TryInto<i64>) -> Cell {
        n.try_into().map_or(Cell::Empty, Cell::Int)
    }

    pub fn num(value: f64, digits: usize) -> Cell {
        Cell::Num { value, digits, unit: "" }
    }

    /// `value` in `unit` (shown right after the number).
    pub fn unit(value: f64, digits: usize, unit: &'static str) -> Cell {
        Cell::Num { value, digits, unit }
    }

    /// A ratio, shown `2.00×`.
    pub fn ratio(value: f64) -> Cell {
        Cell::unit(value, 2, "×")
    }

    /// A number that may be absent (AUC of a split with one class): `n/a` then.
    pub fn maybe(value: Option<f64>, digits: usize) -> Cell {
        Cell::num(value.unwrap_or(f64::NAN), digits)
    }

    /// Mean ± sample std of `xs` (NaN when empty).
    pub fn mean_std(xs: &[f64], digits: usize) -> Cell {
        let (mean, std) = crate::metrics::mean_std(xs);
        Cell::MeanStd { mean, std, n: xs.len(), digits }
    }

    /// `value`, or [`Cell::Empty`] when absent.
    pub fn or_empty(value: Option<Cell>) -> Cell {
        value.unwrap_or(Cell::Empty)
    }

    pub fn noted(self, note: impl Into<String>) -> Cell {
        Cell::Noted(Box::new(self), note.into())
    }

    /// What a person reads.
    pub fn human(&self) -> String {
        match self {
            Cell::Text(s) => s.clone(),
            Cell::Int(n) => n.to_string(),
            Cell::Num { value, .. } if value.is_nan() => "n/a".into(),
            Cell::Num { value, digits, unit } => format!("{value:.digits$}{unit}"),
            Cell::Delta { value, .. } if value.is_nan() => "n/a".into(),
            Cell::Delta { value, digits, unit } => format!("{value:+.digits$}{unit}"),
            Cell::MeanStd { mean, .. } if mean.is_nan() => "n/a".into(),
            Cell::MeanStd { mean, n, digits, .. } if *n <= 1 => format!("{mean:.digits$}"),
            Cell::MeanStd { mean, std, digits, .. } => format!("{mean:.digits$} ± {std:.digits$}"),
            Cell::P(p) if p.is_nan() => "n/a".into(),
            Cell::P(p) if *p < 1e-4 => format!("{p:.1e}"),
            Cell::P(p) => format!("{p:.4}"),
            Cell::Empty => String::new(),
            Cell::Noted(c, note) => format!("{} ({note})", c.human()),
        }
    }

    /// The machine values: one, or two for a mean ± std.
    fn machine(&self) -> Vec<Machine> {
        let num = |x: f64| if x.is_finite() { Machine::Float(x) } else { Machine::Null };
        match self {
            Cell::Text(s) => vec![Machine::Text(s.clone())],
            Cell::Int(n) => vec![Machine::Int(*n)],
            Cell::Num { value, .. } | Cell::Delta { value, .. } | Cell::P(value) => vec![num(*value)],
            Cell::MeanStd { mean, std, .. } => vec![num(*mean), num(*std)],
            Cell::Empty => vec![Machine::Null],
            Cell::Noted(c, _) => c.machine(),
        }
    }

    fn is_pair(&self) -> bool {
        match self {
            Cell::MeanStd { .. } => true,
            Cell::Noted(c, _) => c.is_pair(),
            _ => false,
        }
    }
}

/// A value as machines read it.
#[derive(Debug, Clone)]
enum Machine {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
}

impl Machine {
    /// CSV: Rust's shortest round-trip decimal, never an exponent; missing is empty.
    fn csv(&self) -> String {
        match self {
            Machine::Null => String::new(),
            Machine::Text(s) if s.contains([',', '"', '\n', '\r']) => format!("\"{}\"", s.replace('"', "\"\"")),
            Machine::Text(s) => s.clone(),
            Machine::Int(n) => n.to_string(),
            Machine::Float(x) => x.to_string(),
        }
    }

    fn json(&self) -> Value {
        match self {
            Machine::Null => Value::Null,
            Machine::Text(s) => Value::String(s.clone()),
            Machine::Int(n) => Value::from(*n),
            Machine::Float(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        }
    }
}

/// Columns and rows of cells.
#[derive(Debug, Clone)]
pub struct Table {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: Vec<Column>) -> Table {
        Table { columns, rows: Vec::new() }
    }

    /// Columns from `(key, title)` pairs, each shown to people.
    pub fn with_columns(columns: &[(&str, &str)]) -> Table {
        Table::new(columns.iter().map(|(key, title)| Column::new(*key, *title)).collect())
    }

    /// Appends a row; it must have one cell per column.
    pub fn push(&mut self, row: Vec<Cell>) {
        assert_eq!(row.len(), self.columns.len(), "a row of {} cells in a table of {} columns", row.len(), self.columns.len());
        self.rows.push(row);
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Text => self.text(),
            Format::Markdown => self.markdown(),
            Format::Csv => self.csv(),
            Format::Json => self.json().to_string() + "\n",
            Format::Html => self.html(),
        }
    }

    fn human_columns(&self) -> Vec<usize> {
        (0..self.columns.len()).filter(|&c| self.columns[c].human).collect()
    }

    fn text(&self) -> String {
        let shown = self.human_columns();
        let cells: Vec<Vec<String>> = self.rows.iter().map(|r| shown.iter().map(|&c| r[c].human()).collect()).collect();
        let titles: Vec<&str> = shown.iter().map(|&c| self.columns[c].title.as_str()).collect();
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> =
            (0..shown.len()).map(|i| cells.iter().map(|r| width(&r[i])).chain([width(titles[i])]).max().unwrap_or(0)).collect();
        let line = |row: &[&str]| -> String {
            let parts: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let pad = " ".repeat(widths[i] - width(s));
                    if i == 0 { format!("{s}{pad}") } else { format!("{pad}{s}") }
                })
                .collect();
            parts.join("  ").trim_end().to_string() + "\n"
        };
        let mut out = line(&titles);
        out.push_str(&(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("  ") + "\n"));
        for r in &cells {
            out.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
        }
        out
    }

    fn markdown(&self) -> String {
        let shown = self.human_columns();
        let esc = |s: &str| s.replace('|', "\\|");
        let titles: Vec<String> = shown.iter().map(|&c| esc(&self.columns[c].title)).collect();
        let mut out = format!("| {} |\n|{}\n", titles.join(" | "), "---|".repeat(shown.len()));
        for r in &self.rows {
            let cells: Vec<String> = shown.iter().map(|&c| esc(&r[c].human())).collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out
    }

    fn html(&self) -> String {
        let shown = self.human_columns();
        let mut out = String::from("<table><thead><tr>");
        for &c in &shown {
            out.push_str(&format!("<th>{}</th>", escape_html(&self.columns[c].title)));
        }
        out.push_str("</tr></thead><tbody>\n");
        for r in &self.rows {
            out.push_str("<tr>");
            for &c in &shown {
                out.push_str(&format!("<td>{}</td>", escape_html(&r[c].human())));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody></table>\n");
        out
    }

    /// The machine keys: a column whose cells are mean ± std is two, `KEY_mean` and `KEY_std`.
    fn machine_keys(&self) -> Vec<Vec<String>> {
        (0..self.columns.len())
            .map(|c| {
                let key = &self.columns[c].key;
                if self.rows.iter().any(|r| r[c].is_pair()) {
                    vec![format!("{key}_mean"), format!("{key}_std")]
                } else {
                    vec![key.clone()]
                }
            })
            .collect()
    }

    /// A row's machine values, aligned with [`Self::machine_keys`].
    fn machine_row(&self, row: &[Cell], keys: &[Vec<String>]) -> Vec<Machine> {
        row.iter()
            .zip(keys)
            .flat_map(|(cell, k)| {
                let mut v = cell.machine();
                v.resize(k.len(), Machine::Null);
                v
            })
            .collect()
    }

    fn csv(&self) -> String {
        let keys = self.machine_keys();
        let mut out = keys.iter().flatten().map(|k| Machine::Text(k.clone()).csv()).collect::<Vec<_>>().join(",") + "\n";
        for r in &self.rows {
            let values: Vec<String> = self.machine_row(r, &keys).iter().map(Machine::csv).collect();
            out.push_str(&(values.join(",") + "\n"));
        }
        out
    }

    /// The rows as an array of objects keyed by the machine keys.
    pub fn json(&self) -> Value {
        let keys = self.machine_keys();
        let flat: Vec<&String> = keys.iter().flatten().collect();
        Value::Array(
            self.rows
                .iter()
                .map(|r| Value::Object(flat.iter().map(|k| (*k).clone()).zip(self.machine_row(r, &keys).iter().map(Machine::json)).collect::<Map<_, _>>()))
                .collect(),
        )
    }
}

/// Escapes `&`, `<`, `>` and `"` for HTML text and attributes.
pub fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new(vec![
            Column::new("variant", "variant"),
            Column::new("seeds", "seeds"),
            Column::machine_only("failed"),
            Column::new("test_auc", "test AUC"),
            Column::new("p", "p (DeLong)"),
            Column::new("ratio", "ratio"),
        ]);
        t.push(vec![Cell::text("base"), Cell::int(2), Cell::int(0), Cell::mean_std(&[0.75, 0.25], 4), Cell::Empty, Cell::ratio(1.0)]);
        t.push(vec![
            Cell::text("din, \"x\""),
            Cell::int(1).noted("1 failed"),
            Cell::int(1),
            Cell::mean_std(&[0.8], 4),
            Cell::P(3.0e-7),
            Cell::ratio(f64::NAN),
        ]);
        t
    }

    #[test]
    fn csv_has_full_precision_pairs_and_quotes() {
        assert_eq!(
            sample().render(Format::Csv),
            "variant,seeds,failed,test_auc_mean,test_auc_std,p,ratio\n\
             base,2,0,0.5,0.3535533905932738,,1\n\
             \"din, \"\"x\"\"\",1,1,0.8,0,0.0000003,\n"
        );
    }

    #[test]
    fn people_see_notes_and_rounded_figures_not_machine_columns() {
        let text = sample().render(Format::Text);
        let lines: Vec<&str> = text.lines().collect();
        let sp = |n: usize| " ".repeat(n);
        assert_eq!(lines[0], format!("variant{}seeds{}test AUC  p (DeLong)  ratio", sp(10), sp(9)));
        assert_eq!(lines[1], "--------  ------------  ---------------  ----------  -----");
        assert_eq!(lines[2], format!("base{}2  0.5000 ± 0.3536{}1.00×", sp(17), sp(14)));
        assert_eq!(lines[3], format!("din, \"x\"  1 (1 failed){}0.8000{}3.0e-7{}n/a", sp(11), sp(6), sp(4)));
        let md = sample().render(Format::Markdown);
        assert!(md.starts_with("| variant | seeds | test AUC | p (DeLong) | ratio |\n|---|---|---|---|---|\n"), "{md}");
        assert!(md.contains("| base | 2 | 0.5000 ± 0.3536 |  | 1.00× |"), "{md}");
        let html = sample().render(Format::Html);
        assert!(html.contains("<td>din, &quot;x&quot;</td>") && !html.contains("failed</th>"), "{html}");
    }

    #[test]
    fn json_rows_are_objects_with_nulls_for_missing() {
        let v: Value = serde_json::from_str(&sample().render(Format::Json)).unwrap();
        assert_eq!(v[0]["test_auc_mean"], 0.5);
        assert_eq!(v[1]["seeds"], 1);
        assert!(v[0]["p"].is_null() && v[1]["ratio"].is_null());
        assert_eq!(v[1]["variant"], "din, \"x\"");
    }
}
