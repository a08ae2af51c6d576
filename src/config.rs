//! The resolved configuration of one training run, as written to `config.toml` in the run folder.
//! Unknown keys are errors; everything is validated once, at load.
use crate::data::protocol::ProtocolConfig;
pub use crate::data::DataConfig;
use crate::error::{Error, Result};
use crate::models::ModelConfig;
use crate::train::TrainConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub data: DataConfig,
    #[serde(default)]
    pub protocol: ProtocolConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub train: TrainConfig,
}

impl RunConfig {
    pub fn new(data: PathBuf, model: ModelConfig) -> Self {
        RunConfig {
            data: DataConfig::new(data),
            protocol: ProtocolConfig::default(),
            model,
            train: TrainConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.protocol.validate()?;
        self.model.validate(self.protocol.history_len)?;
        self.train.validate()
    }

    /// Reads and validates a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Config(m) => Error::parse(path, 0, m),
            other => other,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: RunConfig = toml::from_str(text).map_err(|e| Error::config(one_line(&e.to_string())))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a RunConfig always serializes to TOML")
    }
}

/// toml's messages span several lines with a source excerpt; keep them to one.
fn one_line(msg: &str) -> String {
    msg.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('|')).collect::<Vec<_>>().join(" ")
}
