//! The experiment file: TOML with `name`, `seeds`, `baseline`, `[base]` (a run config), variants
//! and a grid, expanded into planned runs. Base and variants stay TOML tables until they are
//! merged, so that a variant can override one nested key and keep the rest of its table.
use super::{Experiment, PlannedRun};
use crate::config::RunConfig;
use crate::error::{Error, Result};
use std::path::Path;
use toml::{Table, Value};

const KEYS: [&str; 6] = ["name", "seeds", "baseline", "base", "variant", "grid"];

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
        let doc: Table = toml::from_str(text).map_err(|e| Error::config(e.message().to_string()))?;
        if let Some(k) = doc.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(Error::config(format!("unknown key '{k}' (expected one of: {})", KEYS.join(", "))));
        }
        let name = match doc.get("name") {
            Some(Value::String(s)) if !s.is_empty() && !s.contains(['/', '\\']) => s.clone(),
            Some(_) => return Err(Error::config("name must be a non-empty string without '/'")),
            None => default_name.to_string(),
        };
        let seeds: Vec<u64> = match doc.get("seeds") {
            None => vec![42],
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| v.as_integer().filter(|&i| i >= 0).map(|i| i as u64))
                .collect::<Option<Vec<u64>>>()
                .ok_or_else(|| Error::config("seeds must be a list of non-negative integers"))?,
            Some(_) => return Err(Error::config("seeds must be a non-empty list of integers")),
        };
        let base = match doc.get("base") {
            Some(Value::Table(t)) => t.clone(),
            _ => return Err(Error::config("[base] is required: a run config (data, protocol, model, train)")),
        };
        let listed: Vec<(String, Table)> = match doc.get("variant") {
            Some(Value::Array(vs)) => vs
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let mut t = v.as_table().cloned().ok_or_else(|| Error::config(format!("variant {} is not a table", i + 1)))?;
                    let name = match t.remove("name") {
                        Some(Value::String(s)) if !s.is_empty() && !s.contains(['/', '\\', ',']) => s,
                        _ => return Err(Error::config(format!("variant {} needs a name (a string without '/' or ',')", i + 1))),
                    };
                    Ok((name, t))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(Error::config("[[variant]] must be an array of tables")),
            None => Vec::new(),
        };
        let points = match doc.get("grid") {
            Some(Value::Table(g)) => grid(g)?,
            Some(_) => return Err(Error::config("[grid] must be a table")),
            None => Vec::new(),
        };
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
        let baseline = match doc.get("baseline") {
            Some(Value::String(b)) if names.contains(b) => Some(b.clone()),
            Some(Value::String(b)) => return Err(Error::config(format!("baseline '{b}' is not a variant (variants: {})", names.join(", ")))),
            Some(_) => return Err(Error::config("baseline must be a variant name")),
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
        Ok(Experiment { name, baseline, variants: names, runs, out, file: None })
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
fn grid(g: &Table) -> Result<Vec<(String, Table)>> {
    let mut points: Vec<(Vec<String>, Table)> = vec![(Vec::new(), Table::new())];
    for (key, values) in g {
        let values = values.as_array().filter(|a| !a.is_empty()).ok_or_else(|| Error::config(format!("grid \"{key}\" must be a non-empty list")))?;
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
