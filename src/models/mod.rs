//! CTR models: one file per model, one trait ([`CtrModel`]), one serde-tagged config enum
//! ([`ModelConfig`]). A model maps a [`Batch`] to logits `[B]`; the trainer owns the loss.
pub mod base;
pub mod din;

use crate::error::{Error, Result};
use crate::features::{Batch, FeatureMap};
use crate::nn::embedding;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

pub trait CtrModel {
    /// Logits `[B]`.
    fn forward_t(&self, batch: &Batch, train: bool) -> Tensor;
    /// Attention weights over the history `[B, L]`, for models that have them.
    fn attention(&self, _batch: &Batch) -> Option<Tensor> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// DIN paper's BaseModel: embeddings, mean pooling of the history, MLP.
    Base(base::BaseConfig),
    /// Deep Interest Network: target attention over the history.
    Din(din::DinConfig),
}

impl ModelConfig {
    pub fn name(&self) -> &'static str {
        match self {
            ModelConfig::Base(_) => "base",
            ModelConfig::Din(_) => "din",
        }
    }
    /// The default configuration of the model called `name`.
    pub fn by_name(name: &str) -> Result<ModelConfig> {
        match name {
            "base" => Ok(ModelConfig::Base(Default::default())),
            "din" => Ok(ModelConfig::Din(Default::default())),
            other => Err(Error::config(format!("unknown model '{other}' (known: base, din)"))),
        }
    }
    pub fn build(&self, p: nn::Path, fm: &FeatureMap) -> Result<Box<dyn CtrModel>> {
        Ok(match self {
            ModelConfig::Base(c) => Box::new(base::Base::new(p, c, fm)?),
            ModelConfig::Din(c) => Box::new(din::Din::new(p, c, fm)?),
        })
    }
}

/// The embedding tables every model shares: user, item and genre. An item is represented by
/// `[item_emb, genre_emb]` (width `2 * dim`), the same for targets and history events.
#[derive(Debug)]
pub struct Embeddings {
    pub user: nn::Embedding,
    pub item: nn::Embedding,
    pub genre: nn::Embedding,
    pub dim: i64,
}

impl Embeddings {
    pub fn new(p: nn::Path, fm: &FeatureMap, dim: i64) -> Result<Self> {
        if !(1..=1024).contains(&dim) {
            return Err(Error::config(format!("embed_dim must be in 1..=1024, got {dim}")));
        }
        let std = 0.01;
        Ok(Embeddings {
            user: embedding(&p / "user", fm.user.size(), dim, std),
            item: embedding(&p / "item", fm.item.size(), dim, std),
            genre: embedding(&p / "genre", fm.genre.size(), dim, std),
            dim,
        })
    }
    /// Width of an item representation.
    pub fn item_dim(&self) -> i64 {
        2 * self.dim
    }
    /// Target item `[B, 2d]`.
    pub fn target(&self, b: &Batch) -> Tensor {
        use tch::nn::Module;
        Tensor::cat(&[self.item.forward(&b.item), self.genre.forward(&b.genre)], -1)
    }
    /// History items `[B, L, 2d]` (padding rows are zero).
    pub fn history(&self, b: &Batch) -> Tensor {
        use tch::nn::Module;
        Tensor::cat(&[self.item.forward(&b.hist_item), self.genre.forward(&b.hist_genre)], -1)
    }
    /// User `[B, d]`.
    pub fn user(&self, b: &Batch) -> Tensor {
        use tch::nn::Module;
        self.user.forward(&b.user)
    }
}
