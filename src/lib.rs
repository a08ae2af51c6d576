//! # attnrec
//!
//! Attention-based click-through-rate models (DIN, BST and the attention framework they are
//! built from) on libtorch, with leakage-free MovieLens pipelines and honest offline evaluation.
//!
//! Data flows one way:
//!
//! ```text
//! raw files ──data──▶ Dataset ──data::protocol──▶ Events (train/valid/test) ──features──▶ Encoded + FeatureMap
//!     ──features::batch──▶ Batch tensors ──models──▶ logits ──metrics──▶ AUC / GAUC / LogLoss ──run──▶ run folder
//! ```
//!
//! - [`data`]: loaders (one per format), the `ml-ctr-v1` protocol, the synthetic generator;
//! - [`features`]: vocabularies, the [`features::FeatureMap`], batching;
//! - [`attention`]: score × align × context, composable;
//! - [`nn`]: embeddings, MLP, activations, GRU and AUGRU;
//! - [`models`]: `base` (mean pooling), `din` (target attention), `bst` (self-attention over the
//!   history and the target), `din_sa` (self-attention, then DIN's unit), `dien` (a GRU over the
//!   history evolved toward the target by an attention-gated GRU) and `attn_pool` (any attention
//!   of [`attention`]);
//! - [`train`], [`metrics`], [`run`]: training, evaluation and run folders;
//! - [`util`]: the leaf every layer may use (atomic writes, id maps, seeds); [`device`]: CPU or
//!   CUDA;
//! - [`inspect`]: what the protocol makes of a dataset (`attnrec data inspect`);
//! - [`experiment`], [`report`]: experiment files → runs → results tables, plots and report.html;
//! - [`score`], [`export`]: a trained run on new candidates, its explanations, TorchScript;
//! - [`table`]: the one results table every command prints (text, Markdown, CSV, JSON, HTML).
pub mod attention;
pub mod bench;
pub mod cache;
pub mod config;
pub mod data;
pub mod device;
pub mod error;
pub mod experiment;
pub mod export;
pub mod features;
pub mod inspect;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod omp;
pub mod report;
pub mod run;
pub mod score;
pub mod table;
pub mod train;
pub mod util;

pub use error::{Error, Result};
