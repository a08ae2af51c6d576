//! CTR models: one file per model, one trait ([`CtrModel`]), one serde-tagged config enum
//! ([`ModelConfig`]). A model maps a [`Batch`] to logits `[B]`; the trainer owns the loss.
pub mod attn_pool;
pub mod base;
pub mod bst;
pub mod dien;
pub mod din;
pub mod din_sa;

use crate::error::{Error, Result};
use crate::features::{Batch, FeatureMap};
use crate::nn::{embedding, lookup, PADDING};
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

/// `Send` so that scoring can run one copy of a model per thread.
pub trait CtrModel: Send {
    /// Logits `[B]`. A training step runs this while a [`crate::nn::Tape`] records and ends in
    /// its `backward`, so that the layers' fused CPU kernels can join autograd; the model itself
    /// knows nothing of them.
    fn forward_t(&self, batch: &Batch, train: bool) -> Tensor;
    /// A training step's forward: the logits, and the model's own auxiliary loss (already
    /// weighted) when it has one; the trainer adds it to the cross-entropy.
    fn forward_train(&self, batch: &Batch) -> (Tensor, Option<Tensor>) {
        (self.forward_t(batch, true), None)
    }
    /// Whether training batches must carry [`crate::features::Negatives`] (for an auxiliary
    /// loss over negative history events, as DIEN's).
    fn wants_negatives(&self) -> bool {
        false
    }
    /// The target's attention weights over the history, per head: `[B, H, L]` (`H` = 1 for a
    /// single head), for models that have them.
    fn attention(&self, _batch: &Batch) -> Option<Tensor> {
        None
    }
    /// The last self-attention block's weights, per head: `[B, H, T, T]` (row = query position,
    /// column = key position) over the model's sequence (the history; BST appends the target as
    /// position `T − 1`), for models with self-attention.
    fn self_attention(&self, _batch: &Batch) -> Option<Tensor> {
        None
    }
    /// The parameters that training treats apart (embedding tables, the id tables of DIN's
    /// mini-batch-aware regularization), declared by the model rather than found by name.
    fn param_groups(&self) -> ParamGroups;
}

/// The parameters a model hands the trainer apart from the rest.
#[derive(Debug, Default)]
pub struct ParamGroups {
    /// Every embedding table: rows that only some samples touch, decayed by
    /// `train.embedding_weight_decay` instead of `train.weight_decay`.
    pub embeddings: Vec<Tensor>,
    /// The shared user, item and genre tables, for `train.mba_lambda`.
    pub ids: Option<IdTables>,
}

/// The shared id embedding tables `[rows, dim]`.
#[derive(Debug)]
pub struct IdTables {
    pub user: Tensor,
    pub item: Tensor,
    pub genre: Tensor,
}

impl ParamGroups {
    /// Whether `var` is one of the embedding tables (the same storage, not an equal copy).
    pub fn is_embedding(&self, var: &Tensor) -> bool {
        self.embeddings.iter().any(|e| e.data_ptr() == var.data_ptr())
    }
    /// These groups with `more` embedding tables (an encoder's positions, say).
    pub fn with_embeddings(mut self, more: impl IntoIterator<Item = Tensor>) -> ParamGroups {
        self.embeddings.extend(more);
        self
    }
}

/// One row's target-attention weights over its present history events, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct RowAttention {
    /// `[H][n]`: each head's weight of each of the row's `n` events.
    pub heads: Vec<Vec<f64>>,
}

impl RowAttention {
    /// The mean over heads of each event's weight.
    pub fn mean(&self) -> Vec<f64> {
        let h = self.heads.len().max(1) as f64;
        let n = self.heads.first().map_or(0, Vec::len);
        (0..n).map(|i| self.heads.iter().map(|w| w[i]).sum::<f64>() / h).collect()
    }
}

/// The target attention of `model` on `batch` read out per row (padding dropped, histories
/// right-aligned in the batch), in evaluation mode; `None` for a model without target attention.
/// `score --explain`, `explain` and the experiment report all read weights through here.
pub fn attention_weights(model: &dyn CtrModel, batch: &Batch) -> Option<Vec<RowAttention>> {
    let w = tch::no_grad(|| model.attention(batch))?;
    // [B, H, W]
    let (b, h, width) = (w.size()[0] as usize, w.size()[1] as usize, w.size()[2] as usize);
    let w = Vec::<f64>::try_from(w.to_kind(tch::Kind::Double).reshape([-1])).expect("a double tensor converts to Vec<f64>");
    let mask = Vec::<bool>::try_from(batch.hist_mask.reshape([-1])).expect("a bool tensor converts to Vec<bool>");
    Some(
        (0..b)
            .map(|r| {
                let present: Vec<usize> = (0..width).filter(|&c| mask[r * width + c]).collect();
                RowAttention { heads: (0..h).map(|k| present.iter().map(|&c| w[(r * h + k) * width + c]).collect()).collect() }
            })
            .collect(),
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    /// DIN paper's BaseModel: embeddings, mean pooling of the history, MLP.
    Base(base::BaseConfig),
    /// Deep Interest Network: target attention over the history.
    Din(din::DinConfig),
    /// Behavior Sequence Transformer: self-attention over the history and the target.
    Bst(bst::BstConfig),
    /// DIN's target attention over a self-attention encoding of the history.
    DinSa(din_sa::DinSaConfig),
    /// History pooled by any attention of the library.
    AttnPool(attn_pool::AttnPoolConfig),
    /// Deep Interest Evolution Network: a GRU over the history, evolved toward the target by an
    /// attention-gated GRU, with an auxiliary next-behavior loss.
    Dien(dien::DienConfig),
}

/// The models, by the name configs and command lines give them (`kind` in a config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Base,
    Din,
    Bst,
    DinSa,
    AttnPool,
    Dien,
}

impl crate::util::Choice for ModelKind {
    const ALL: &'static [Self] = &[ModelKind::Base, ModelKind::Din, ModelKind::Bst, ModelKind::DinSa, ModelKind::AttnPool, ModelKind::Dien];
    fn help(self) -> &'static str {
        match self {
            ModelKind::Base => "mean pooling of the history",
            ModelKind::Din => "DIN's target attention",
            ModelKind::Bst => "one Transformer block over the history and the target",
            ModelKind::DinSa => "self-attention over the history, then DIN's target attention",
            ModelKind::AttnPool => "the history pooled by any attention of the library (attn_pool:PRESET)",
            ModelKind::Dien => "a GRU over the history, evolved toward the target (DIEN)",
        }
    }
}

impl ModelKind {
    /// The name as configs write it (`din_sa`); equal to its serde name (tested).
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Base => "base",
            ModelKind::Din => "din",
            ModelKind::Bst => "bst",
            ModelKind::DinSa => "din_sa",
            ModelKind::AttnPool => "attn_pool",
            ModelKind::Dien => "dien",
        }
    }

    /// The model's configuration with every default.
    pub fn default_config(self) -> ModelConfig {
        match self {
            ModelKind::Base => ModelConfig::Base(Default::default()),
            ModelKind::Din => ModelConfig::Din(Default::default()),
            ModelKind::Bst => ModelConfig::Bst(Default::default()),
            ModelKind::DinSa => ModelConfig::DinSa(Default::default()),
            ModelKind::AttnPool => ModelConfig::AttnPool(Default::default()),
            ModelKind::Dien => ModelConfig::Dien(Default::default()),
        }
    }
}

impl ModelConfig {
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelConfig::Base(_) => ModelKind::Base,
            ModelConfig::Din(_) => ModelKind::Din,
            ModelConfig::Bst(_) => ModelKind::Bst,
            ModelConfig::DinSa(_) => ModelKind::DinSa,
            ModelConfig::AttnPool(_) => ModelKind::AttnPool,
            ModelConfig::Dien(_) => ModelKind::Dien,
        }
    }

    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    pub fn embed_dim_mut(&mut self) -> &mut i64 {
        match self {
            ModelConfig::Base(m) => &mut m.embed_dim,
            ModelConfig::Din(m) => &mut m.embed_dim,
            ModelConfig::Bst(m) => &mut m.embed_dim,
            ModelConfig::DinSa(m) => &mut m.embed_dim,
            ModelConfig::AttnPool(m) => &mut m.embed_dim,
            ModelConfig::Dien(m) => &mut m.embed_dim,
        }
    }

    /// The default configuration of the model called `name`; `attn_pool:PRESET` pools the history
    /// with a named attention preset (see [`crate::attention::AttentionConfig::preset`]).
    pub fn by_name(name: &str) -> Result<ModelConfig> {
        use crate::util::Choice;
        if let Some(preset) = name.strip_prefix("attn_pool:") {
            let attention = crate::attention::AttentionConfig::preset(preset)?;
            return Ok(ModelConfig::AttnPool(attn_pool::AttnPoolConfig { attention, ..Default::default() }));
        }
        ModelKind::parse_name(name).map(ModelKind::default_config).ok_or_else(|| {
            let names = |all: Vec<String>| all.join(", ");
            Error::config(format!(
                "unknown model '{name}' (known: {}, attn_pool:PRESET with PRESET one of {})",
                names(ModelKind::ALL.iter().map(|k| k.name_of()).collect()),
                names(crate::attention::AttentionPreset::ALL.iter().map(|p| p.name_of()).collect())
            ))
        })
    }

    /// A freshly initialized model in its own `VarStore` on `device`, libtorch seeded with `seed`
    /// first: the same seed gives the same initial weights wherever a model is built (training,
    /// resuming, `bench`, tests).
    pub fn fresh(&self, fm: &FeatureMap, device: tch::Device, seed: u64) -> Result<(nn::VarStore, Box<dyn CtrModel>)> {
        crate::util::seed_everything(seed);
        let vs = nn::VarStore::new(device);
        let model = self.build(vs.root(), fm)?;
        Ok((vs, model))
    }

    /// Checks everything [`Self::build`] checks (widths, heads, layer lists, option combinations)
    /// before any data is read: the model is built once on a two-id feature map with `history_len`
    /// positions and thrown away.
    pub fn validate(&self, history_len: usize) -> Result<()> {
        let fm = FeatureMap {
            protocol: "ml-ctr-v1".into(),
            history_len,
            history: Default::default(),
            time_gap: true,
            history_feedback: true,
            string_ids: false,
            features: Vec::new(),
            user_side: None,
            item_side: None,
            user: vec![1, 2].into(),
            item: vec![1, 2].into(),
            genre: vec!["a".to_string()].into(),
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        tch::no_grad(|| self.build(vs.root(), &fm)).map(|_| ())
    }

    /// Rows per forward pass when scoring, unless the user sets it: 2,048 for a BST whose
    /// encoder scores through the fused kernel ([`crate::nn::TransformerConfig::scores_fused`]),
    /// which takes a batch in chunks that stay in cache, so larger batches only spread libtorch's
    /// per-batch work thinner; 512 for din_sa, which encodes each distinct history of a batch
    /// once, so a larger batch repeats fewer encodings; 128 otherwise, where libtorch's
    /// intermediates stay in cache.
    pub fn scoring_batch_size(&self) -> usize {
        match self {
            ModelConfig::Bst(c) if c.transformer.scores_fused() => 2048,
            ModelConfig::DinSa(_) => 512,
            _ => 128,
        }
    }

    /// Whether the model weighs history events against the target ([`CtrModel::attention`]).
    pub fn has_target_attention(&self) -> bool {
        !matches!(self, ModelConfig::Base(_))
    }

    pub fn build(&self, p: nn::Path, fm: &FeatureMap) -> Result<Box<dyn CtrModel>> {
        Ok(match self {
            ModelConfig::Base(c) => Box::new(base::Base::new(p, c, fm)?),
            ModelConfig::Din(c) => Box::new(din::build(p, c, fm)?),
            ModelConfig::Bst(c) => Box::new(bst::Bst::new(p, c, fm)?),
            ModelConfig::DinSa(c) => Box::new(din_sa::build(p, c, fm)?),
            ModelConfig::AttnPool(c) => Box::new(attn_pool::TargetPool::new(p, fm, c.embed_dim, None, &c.attention, &c.pooling, &c.mlp)?),
            ModelConfig::Dien(c) => Box::new(dien::Dien::new(p, c, fm)?),
        })
    }
}

/// The embedding tables every model shares: user, item and genre, plus the side features and
/// time gaps the feature map has. An item is represented by `[item_emb, genre_emb, side…]` (width
/// [`Embeddings::item_dim`]), the same for targets and history events; a user by `[user_emb,
/// side…]` (width [`Embeddings::user_dim`]).
#[derive(Debug)]
pub struct Embeddings {
    pub user: nn::Embedding,
    pub item: nn::Embedding,
    pub genre: nn::Embedding,
    /// Added to each history event's representation when the feature map has time gaps.
    pub gap: Option<nn::Embedding>,
    /// Added to each history event's representation when the feature map has history feedback.
    pub feedback: Option<nn::Embedding>,
    pub user_side: Option<SideEmbeddings>,
    pub item_side: Option<SideEmbeddings>,
    pub dim: i64,
}

impl Embeddings {
    pub fn new(p: nn::Path, fm: &FeatureMap, dim: i64) -> Result<Self> {
        if !(1..=1024).contains(&dim) {
            return Err(Error::config(format!("embed_dim must be in 1..=1024, got {dim}")));
        }
        let std = 0.01;
        let user_side = fm.user_side.as_ref().map(|t| SideEmbeddings::new(&p / "user_side", t, dim, std));
        let item_side = fm.item_side.as_ref().map(|t| SideEmbeddings::new(&p / "item_side", t, dim, std));
        let item_dim = 2 * dim + item_side.as_ref().map_or(0, |s| s.dim());
        Ok(Embeddings {
            user: embedding(&p / "user", fm.user.size(), dim, std),
            item: embedding(&p / "item", fm.item.size(), dim, std),
            genre: embedding(&p / "genre", fm.genre.size(), dim, std),
            gap: fm.time_gap.then(|| embedding(&p / "gap", crate::features::GAP_BUCKETS, item_dim, std)),
            feedback: fm.history_feedback.then(|| embedding(&p / "feedback", crate::features::FEEDBACK_ROWS, item_dim, std)),
            user_side,
            item_side,
            dim,
        })
    }
    /// The shared tables as parameter groups: every table is an embedding; user, item and genre
    /// are the id tables.
    pub fn param_groups(&self) -> ParamGroups {
        let mut embeddings = vec![self.user.ws.shallow_clone(), self.item.ws.shallow_clone(), self.genre.ws.shallow_clone()];
        embeddings.extend([&self.gap, &self.feedback].into_iter().flatten().map(|e| e.ws.shallow_clone()));
        for side in [&self.user_side, &self.item_side].into_iter().flatten() {
            embeddings.extend(side.fields.iter().map(|(e, _, _)| e.ws.shallow_clone()));
        }
        let ids = IdTables { user: self.user.ws.shallow_clone(), item: self.item.ws.shallow_clone(), genre: self.genre.ws.shallow_clone() };
        ParamGroups { embeddings, ids: Some(ids) }
    }
    /// Width of an item representation.
    pub fn item_dim(&self) -> i64 {
        2 * self.dim + self.item_side.as_ref().map_or(0, |s| s.dim())
    }
    /// Width of a user representation.
    pub fn user_dim(&self) -> i64 {
        self.dim + self.user_side.as_ref().map_or(0, |s| s.dim())
    }
    /// Target item `[B, item_dim]`.
    pub fn target(&self, b: &Batch) -> Tensor {
        self.items(&b.item, &b.genre, &b.item_side)
    }
    /// Items `[..., item_dim]` from their item, genre and side-table indices `[...]`: the
    /// representation targets and history events share.
    pub fn items(&self, item: &Tensor, genre: &Tensor, side: &Tensor) -> Tensor {
        let mut parts = vec![self.embed(&self.item, item), self.embed(&self.genre, genre)];
        parts.extend(self.item_side.as_ref().map(|s| s.forward(side)));
        Tensor::cat(&parts, -1)
    }
    /// History items `[B, L, item_dim]` (padding rows are zero), plus the embeddings of their time
    /// gap to the sample and of their own label when the feature map has them (as BST adds its
    /// positions).
    pub fn history(&self, b: &Batch) -> Tensor {
        self.history_with_items(b).0
    }
    /// [`Self::history`], and apart the events' item representations alone (no time gap, no
    /// feedback): what each behavior is, as DIEN's auxiliary loss scores it against a negative.
    pub fn history_with_items(&self, b: &Batch) -> (Tensor, Tensor) {
        let (items, with_gap, feedback) = self.history_parts(b);
        let history = match feedback {
            Some(f) => with_gap + f,
            None => with_gap,
        };
        (history, items)
    }
    /// [`Self::history`] without the feedback, and the feedback's embedding apart (`[B, L,
    /// item_dim]`, when the feature map has it): for attention that matches on the events alone
    /// and pools what the user thought of them.
    pub fn history_and_feedback(&self, b: &Batch) -> (Tensor, Option<Tensor>) {
        let (_, with_gap, feedback) = self.history_parts(b);
        (with_gap, feedback)
    }
    /// The history's item representations alone, the same plus their time gaps' embeddings (the
    /// items themselves without gaps), and the feedback's embeddings when the feature map has them.
    fn history_parts(&self, b: &Batch) -> (Tensor, Tensor, Option<Tensor>) {
        let items = self.items(&b.hist_item, &b.hist_genre, &b.hist_item_side);
        let with_gap = match &self.gap {
            Some(gap) => &items + self.embed(gap, &b.hist_gap),
            None => items.shallow_clone(),
        };
        (items, with_gap, self.feedback.as_ref().map(|f| self.embed(f, &b.hist_feedback)))
    }
    /// User `[B, user_dim]`.
    pub fn user(&self, b: &Batch) -> Tensor {
        let u = self.embed(&self.user, &b.user);
        match &self.user_side {
            Some(s) => Tensor::cat(&[u, s.forward(&b.user_side)], -1),
            None => u,
        }
    }
    fn embed(&self, table: &nn::Embedding, idx: &Tensor) -> Tensor {
        lookup::embed(table, Some(PADDING), idx)
    }
}

/// A side table's features embedded ([`crate::features::side`]): each field through its own table,
/// a multi-valued field averaged over its present values, the fields concatenated. The table of
/// value indices is a constant of the model, built from the feature map, not a parameter.
#[derive(Debug)]
pub struct SideEmbeddings {
    /// `[rows, width]` i64.
    table: Tensor,
    /// Each field's embedding, first slot and number of slots.
    fields: Vec<(nn::Embedding, i64, i64)>,
    dim: i64,
}

impl SideEmbeddings {
    fn new(p: nn::Path, t: &crate::features::side::SideTable, dim: i64, std: f64) -> Self {
        let table = Tensor::from_slice(&t.values).view([t.rows() as i64, t.width() as i64]).to_device(p.device());
        let mut off = 0;
        let fields = t
            .fields
            .iter()
            .map(|f| {
                let e = (embedding(&p / f.name.as_str(), f.vocab.size(), dim, std), off, f.width as i64);
                off += f.width as i64;
                e
            })
            .collect();
        SideEmbeddings { table, fields, dim }
    }
    /// Width of the output.
    pub fn dim(&self) -> i64 {
        self.fields.len() as i64 * self.dim
    }
    /// Side-table rows `[...]` → `[..., dim()]` (zeros for row 0, padding).
    pub fn forward(&self, rows: &Tensor) -> Tensor {
        let mut shape = rows.size();
        let ids = self.table.index_select(0, &rows.reshape([-1]));
        let parts: Vec<Tensor> = self
            .fields
            .iter()
            .map(|(emb, off, width)| {
                let v = ids.narrow(1, *off, *width);
                let e = lookup::embed(emb, Some(PADDING), &v);
                if *width == 1 {
                    e.squeeze_dim(1)
                } else {
                    base::masked_mean(&e, &v.ne(0).to_kind(e.kind()))
                }
            })
            .collect();
        shape.push(self.dim());
        Tensor::cat(&parts, -1).view(shape.as_slice())
    }
}

/// In evaluation mode without gradients (scoring a user against many candidates), the rows
/// whose histories differ from the row before's ([`Batch::history_starts`]) as a batch of their
/// own, and each row's index among them (`[B]` i64), so that a model can embed and encode each
/// distinct history once. `None` when training, with gradients, or when no history repeats.
pub(crate) fn repeated_histories(b: &Batch, train: bool) -> Option<(Batch, Tensor)> {
    let n = b.size();
    if train || crate::nn::grad_enabled() || n < 2 || b.hist_mask.size()[1] == 0 {
        return None;
    }
    let starts = b.history_starts();
    let firsts = starts.nonzero().squeeze_dim(1);
    if firsts.size()[0] == n {
        return None;
    }
    // Row r starts a new run unless it repeats row r − 1; its group is the run's number.
    let group = starts.to_kind(tch::Kind::Int64).cumsum(0, tch::Kind::Int64) - 1;
    Some((b.rows(&firsts), group))
}
