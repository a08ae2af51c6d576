//! The experiment file: TOML with `name`, `seeds`, `baseline`, `[base]` (a run config), variants
//! and a grid, expanded into planned runs. Base and variants stay TOML tables until they are
//! merged, so that a variant can override one nested key and keep the rest of its table.
use super::{Experiment, PlannedRun};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use std::path::Path;
use toml::{Table, Value};

/// The file as written. `[base]` and the variants stay TOML tables until they are merged, so that
/// a variant can override one nested key and keep the rest of its table.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    /// The folder under the runs root [default: the file's stem].
    name: Option<String>,
    #[serde(default = "default_seeds")]
    seeds: Vec<u64>,
    /// The variant the others are compared with.
    baseline: Option<String>,
    /// A run config (data, protocol, model, train), as for `train --config`.
    base: Option<Table>,
    #[serde(default)]
    variant: Vec<VariantEntry>,
    /// Dotted keys, each with a list of values: every combination is a variant.
    #[serde(default)]
    grid: std::collections::BTreeMap<String, Vec<Value>>,
}

fn default_seeds() -> Vec<u64> {
    vec![42]
}

/// One `[[variant]]`: its name and the keys it overrides.
#[derive(Debug, serde::Deserialize)]
struct VariantEntry {
    name: Option<String>,
    #[serde(flatten)]
    overrides: Table,
}

/// toml's message for a mistake in the file, in the words of the other config errors.
fn file_error(e: toml::de::Error) -> Error {
    let msg = e.message();
    // "unknown field `x`, expected one of `a`, `b`" → "unknown key 'x' (expected one of: a, b)"
    match msg.strip_prefix("unknown field `").and_then(|m| m.split_once("`, expected one of ")) {
        Some((key, expected)) => Error::config(format!("unknown key '{key}' (expected one of: {})", expected.replace('`', ""))),
        None => Error::config(msg.to_string()),
    }
}

impl Experiment {
    /// Reads `path` and expands it; run folders go under `runs_root/<name>/`.
    pub fn from_file(path: &Path, runs_root: &Path) -> Result<Experiment> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let stem = path.file_stem().map_or_else(|| "experiment".into(), |s| s.to_string_lossy().into_owned());
        let e = Experiment::parse(&text, &stem, runs_root).map_err(|e| match e {
            Error::Config(m) => Error::parse(path, 0, m),
            other => other,
        })?;
        Ok(Experiment { file: Some(path.to_path_buf()), ..e })
    }

    pub fn parse(text: &str, default_name: &str, runs_root: &Path) -> Result<Experiment> {
        let file: ExperimentFile = toml::from_str(text).map_err(file_error)?;
        let name = match file.name {
            Some(s) if !s.is_empty() && !s.contains(['/', '\\']) => s,
            Some(_) => return Err(Error::config("name must be a non-empty string without '/'")),
            None => default_name.to_string(),
        };
        if file.seeds.is_empty() {
            return Err(Error::config("seeds must be a non-empty list of integers"));
        }
        let seeds = file.seeds;
        let base = file.base.ok_or_else(|| Error::config("[base] is required: a run config (data, protocol, model, train)"))?;
        let listed: Vec<(String, Table)> = file
            .variant
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v.name {
                Some(s) if !s.is_empty() && !s.contains(['/', '\\', ',']) => Ok((s, v.overrides)),
                _ => Err(Error::config(format!("variant {} needs a name (a string without '/' or ',')", i + 1))),
            })
            .collect::<Result<_>>()?;
        let points = grid(&file.grid)?;
        // Variants, grid points, or every variant at every grid point (named `variant,key=value`).
        let variants: Vec<(String, Table)> = match (listed.is_empty(), points.is_empty()) {
            (true, true) => vec![("base".to_string(), Table::new())],
            (false, true) => listed,
            (true, false) => points,
            (false, false) => listed
                .iter()
                .flat_map(|(vn, vt)| {
                    points.iter().map(move |(pn, pt)| {
                        let mut t = vt.clone();
                        merge(&mut t, pt);
                        (format!("{vn},{pn}"), t)
                    })
                })
                .collect(),
        };
        let names: Vec<String> = variants.iter().map(|(n, _)| n.clone()).collect();
        if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
            return Err(Error::config(format!("variant name '{dup}' appears twice")));
        }
        let baseline = match file.baseline {
            Some(b) if names.contains(&b) => Some(b),
            Some(b) => return Err(Error::config(format!("baseline '{b}' is not a variant (variants: {})", names.join(", ")))),
            None => None,
        };
        // The base with every default written out, so that a variant can override one nested key
        // (say `model.attention.align`) and keep the rest of that table.
        let base_config: RunConfig =
            Value::Table(base).try_into().map_err(|e: toml::de::Error| Error::config(format!("[base]: {}", e.message())))?;
        let base = match Value::try_from(&base_config) {
            Ok(Value::Table(t)) => t,
            _ => unreachable!("a RunConfig serializes to a TOML table"),
        };
        let out = runs_root.join(&name);
        let mut runs = Vec::new();
        for (variant, overrides) in &variants {
            let mut table = base.clone();
            merge(&mut table, overrides);
            let mut config: RunConfig = Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| Error::config(format!("variant '{variant}': {}", e.message())))?;
            config.validate().map_err(|e| Error::config(format!("variant '{variant}': {e}")))?;
            for &seed in &seeds {
                config.train.seed = seed;
                runs.push(PlannedRun { variant: variant.clone(), seed, config: config.clone(), dir: out.join(format!("{variant}-seed{seed}")) });
            }
        }
        Ok(Experiment { name, baseline, variants: names, runs, out, file: None, retrain: false })
    }
}


/// Overlays `over` on `base`: tables merge key by key, anything else replaces; a table whose
/// `kind` differs from the base's replaces it whole (another model's keys do not mix).
fn merge(base: &mut Table, over: &Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(Value::Table(b)), Value::Table(o)) if o.get("kind").is_none_or(|kind| b.get("kind") == Some(kind)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// The cartesian product of `[grid]`'s dotted keys, each point named `key=value,...`.
fn grid(g: &std::collections::BTreeMap<String, Vec<Value>>) -> Result<Vec<(String, Table)>> {
    let mut points: Vec<(Vec<String>, Table)> = if g.is_empty() { Vec::new() } else { vec![(Vec::new(), Table::new())] };
    for (key, values) in g {
        if values.is_empty() {
            return Err(Error::config(format!("grid \"{key}\" must be a non-empty list")));
        }
        let path: Vec<&str> = key.split('.').collect();
        let mut next = Vec::new();
        for (names, table) in &points {
            for v in values {
                let mut t = table.clone();
                set_path(&mut t, &path, v.clone());
                let shown = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let leaf = path.last().copied().unwrap_or(key);
                next.push(([names.clone(), vec![format!("{leaf}={shown}")]].concat(), t));
            }
        }
        points = next;
    }
    Ok(points.into_iter().map(|(n, t)| (n.join(","), t)).collect())
}

fn set_path(t: &mut Table, path: &[&str], v: Value) {
    match path {
        [] => {}
        [last] => {
            t.insert(last.to_string(), v);
        }
        [head, rest @ ..] => {
            let entry = t.entry(head.to_string()).or_insert_with(|| Value::Table(Table::new()));
            if let Value::Table(inner) = entry {
                set_path(inner, rest, v);
            }
        }
    }
}

#[cfg(test)]
pub(in crate::experiment) mod tests {
    use super::*;

    pub(in crate::experiment) const BASE: &str = "[base]\ndata = { path = \"d\" }\nmodel = { kind = \"din\", embed_dim = 8 }\ntrain = { epochs = 2 }\n";

    #[test]
    fn variants_override_the_base_and_multiply_by_seeds() {
        let text = format!(
            "seeds = [1, 2]\nbaseline = \"base\"\n{BASE}[[variant]]\nname = \"base\"\nmodel = {{ kind = \"base\" }}\n\
             [[variant]]\nname = \"din_lr\"\ntrain = {{ lr = 0.01 }}\n"
        );
        let e = Experiment::parse(&text, "x", Path::new("runs")).unwrap();
        assert_eq!((e.name.as_str(), e.baseline.as_deref(), e.variants.clone()), ("x", Some("base"), vec!["base".into(), "din_lr".into()]));
        assert_eq!(e.runs.len(), 4);
        assert_eq!(e.runs[1].dir, Path::new("runs/x/base-seed2"));
        assert_eq!((e.runs[1].seed, e.runs[1].config.train.seed), (2, 2));
        // Another kind replaces the model table (din's embed_dim = 8 does not leak into base).
        assert_eq!(e.runs[0].config.model.name(), "base");
        assert_eq!(e.runs[0].config.model.clone().embed_dim_mut(), &16);
        // A same-kind override merges: din keeps embed_dim 8, lr changes, epochs stay.
        let din = &e.runs[2].config;
        assert_eq!((din.model.name(), *din.model.clone().embed_dim_mut(), din.train.lr, din.train.epochs), ("din", 8, 0.01, 2));
    }

    #[test]
    fn a_nested_override_keeps_the_rest_of_its_table() {
        let text = format!("{BASE}[[variant]]\nname = \"soft\"\nmodel = {{ attention = {{ align = \"softmax\" }} }}\n");
        let e = Experiment::parse(&text, "x", Path::new("runs")).unwrap();
        let toml = e.runs[0].config.to_toml();
        assert!(toml.contains("align = \"softmax\""), "{toml}");
        assert!(toml.contains("kind = \"din_mlp\""), "the score function stays DIN's: {toml}");
        assert!(toml.contains("embed_dim = 8"), "{toml}");
    }

    #[test]
    fn a_grid_is_the_cartesian_product() {
        let text = format!("{BASE}[grid]\n\"train.lr\" = [0.001, 0.01]\n\"protocol.history_len\" = [10, 20, 50]\n");
        let e = Experiment::parse(&text, "g", Path::new("runs")).unwrap();
        assert_eq!(e.runs.len(), 6);
        assert_eq!(e.variants[0], "history_len=10,lr=0.001");
        let last = &e.runs[5].config;
        assert_eq!((last.protocol.history_len, last.train.lr), (50, 0.01));
    }

    #[test]
    fn variants_times_a_grid() {
        let text = format!(
            "baseline = \"din,history_len=50\"\n{BASE}[[variant]]\nname = \"base\"\nmodel = {{ kind = \"base\" }}\n\
             [[variant]]\nname = \"din\"\n[grid]\n\"protocol.history_len\" = [10, 50]\n"
        );
        let e = Experiment::parse(&text, "x", Path::new("runs")).unwrap();
        assert_eq!(e.variants, ["base,history_len=10", "base,history_len=50", "din,history_len=10", "din,history_len=50"]);
        let cfg = |i: usize| (e.runs[i].config.model.name(), e.runs[i].config.protocol.history_len);
        assert_eq!([cfg(0), cfg(1), cfg(2), cfg(3)], [("base", 10), ("base", 50), ("din", 10), ("din", 50)]);
        assert_eq!(e.baseline.as_deref(), Some("din,history_len=50"));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |t: &str| Experiment::parse(t, "x", Path::new("r")).unwrap_err().to_string();
        assert!(err("seeds = [1]\n").contains("[base] is required"));
        assert!(err(&format!("baseline = \"nope\"\n{BASE}")).contains("baseline 'nope' is not a variant"));
        assert!(err(&format!("{BASE}[[variant]]\nmodel = {{}}\n")).contains("variant 1 needs a name"));
        assert!(err(&format!("{BASE}[[variant]]\nname = \"a\"\ntrain = {{ lrr = 1 }}\n")).contains("variant 'a': unknown field `lrr`"));
        assert!(err(&format!("sedes = [1]\n{BASE}")).contains("unknown key 'sedes'"));
        assert!(err(&format!("{BASE}[[variant]]\nname = \"a\"\n[[variant]]\nname = \"a\"\n")).contains("'a' appears twice"));
    }

}
