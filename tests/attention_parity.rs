//! attnrec's attention, Transformer block and Dice against PyTorch (fixtures written by
//! tests/fixtures/gen_attention.py with torch from the project's venv). Parameters are copied in
//! by checkpoint key, so a renamed or missing parameter fails here too.
mod common;

use common::{fixture_text, T};
use attnrec::attention::{Attention, AttentionConfig};
use attnrec::nn::{Dice, TransformerBlock, TransformerConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use tch::nn::{self, ModuleT};
use tch::{Device, Tensor};

#[derive(Deserialize)]
struct Combo {
    name: String,
    config: serde_json::Value,
    params: BTreeMap<String, T>,
    context: T,
    weights: T,
}

#[derive(Deserialize)]
struct Heads {
    rows: Vec<i64>,
    params: BTreeMap<String, T>,
    context: T,
    weights: Option<T>,
}

#[derive(Deserialize)]
struct Block {
    rows: Vec<i64>,
    heads: i64,
    ffn_dim: i64,
    params: BTreeMap<String, T>,
    output: T,
}

#[derive(Deserialize)]
struct DiceCase {
    alpha: T,
    x_train: T,
    train: T,
    running_mean: T,
    running_var: T,
    x_eval: T,
    eval: T,
}

#[derive(Deserialize)]
struct Fixture {
    q: T,
    keys: T,
    values: T,
    mask: Vec<i64>,
    mask_shape: Vec<i64>,
    combos: Vec<Combo>,
    self_attention: Heads,
    target_attention: Heads,
    bst_block: Block,
    dice: DiceCase,
}

fn fixture() -> Fixture {
    serde_json::from_str(&fixture_text("attention_torch.json")).unwrap()
}

impl Fixture {
    fn mask(&self) -> Tensor {
        Tensor::from_slice(&self.mask).view(self.mask_shape.as_slice()).to_kind(tch::Kind::Bool)
    }
}

/// Copies every parameter of `vs` under `prefix` from `params`; both sides must name the same set.
fn load(vs: &nn::VarStore, prefix: &str, params: &BTreeMap<String, T>, what: &str) {
    let vars = vs.variables();
    let ours: Vec<String> = vars.keys().filter_map(|k| k.strip_prefix(prefix).map(str::to_string)).collect();
    let mut ours_sorted = ours.clone();
    ours_sorted.sort();
    let theirs: Vec<String> = params.keys().cloned().collect();
    assert_eq!(ours_sorted, theirs, "{what}: parameter names differ");
    tch::no_grad(|| {
        for name in &ours {
            let src = params[name].tensor();
            let dst = &vars[&format!("{prefix}{name}")];
            assert_eq!(dst.size(), src.size(), "{what}: shape of {name}");
            dst.shallow_clone().copy_(&src);
        }
    });
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let diff = (got - want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]).max(1.0);
    assert!(diff <= 1e-5 * scale, "{what}: max |diff| {diff:e}");
}

#[test]
fn every_score_and_align_matches_pytorch() {
    let f = fixture();
    let (q, keys, values, mask) = (f.q.tensor(), f.keys.tensor(), f.values.tensor(), f.mask());
    assert_eq!(f.combos.len(), 30);
    for c in &f.combos {
        let cfg: AttentionConfig = serde_json::from_value(c.config.clone()).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let vs = nn::VarStore::new(Device::Cpu);
        let attn = Attention::new(vs.root() / "attn", &cfg, 4, 4, 4).unwrap();
        load(&vs, "attn.", &c.params, &c.name);
        let (ctx, w) = attn.forward_t(&q, &keys, &values, &mask, false);
        assert_close(&w, &c.weights.tensor(), &format!("{} weights", c.name));
        assert_close(&ctx, &c.context.tensor(), &format!("{} context", c.name));
        // The context-only path agrees with the full one.
        let fast = attn.context_t(&q, &keys, &values, &mask, false);
        assert_close(&fast, &ctx, &format!("{} context_t", c.name));
    }
}

fn transformer_heads() -> AttentionConfig {
    AttentionConfig { heads: 2, dim: Some(4), ..AttentionConfig::preset("transformer").unwrap() }
}

#[test]
fn multi_head_self_attention_matches_torch_multihead_attention() {
    let f = fixture();
    let h = &f.self_attention;
    let rows = Tensor::from_slice(&h.rows);
    let x = f.keys.tensor().index_select(0, &rows);
    let mask = f.mask().index_select(0, &rows);
    let vs = nn::VarStore::new(Device::Cpu);
    let attn = Attention::new(vs.root() / "mha", &transformer_heads(), 4, 4, 4).unwrap();
    load(&vs, "mha.", &h.params, "self-attention");
    let (ctx, w) = attn.forward_t(&x, &x, &x, &mask, false);
    assert_eq!(w.size(), vec![3, 2, 5, 5]);
    assert_close(&w, &h.weights.as_ref().unwrap().tensor(), "per-head weights");
    assert_close(&ctx, &h.context.tensor(), "context");
    // libtorch's fused kernel (the training path) gives the same context.
    assert_close(&attn.context_t(&x, &x, &x, &mask, false), &h.context.tensor(), "fused context");
}

#[test]
fn multi_head_target_attention_matches_scaled_dot_product_attention() {
    let f = fixture();
    let h = &f.target_attention;
    let rows = Tensor::from_slice(&h.rows);
    let pick = |t: &Tensor| t.index_select(0, &rows);
    let (q, keys, values, mask) = (pick(&f.q.tensor()), pick(&f.keys.tensor()), pick(&f.values.tensor()), pick(&f.mask()));
    let vs = nn::VarStore::new(Device::Cpu);
    let attn = Attention::new(vs.root() / "mha", &transformer_heads(), 4, 4, 4).unwrap();
    load(&vs, "mha.", &h.params, "target attention");
    let (ctx, w) = attn.forward_t(&q, &keys, &values, &mask, false);
    assert_eq!(w.size(), vec![3, 2, 5]);
    assert_close(&ctx, &h.context.tensor(), "context");
    assert_close(&attn.context_t(&q, &keys, &values, &mask, false), &h.context.tensor(), "fused context");
    // Each head's weights form a distribution over the present positions only.
    let sums = w.sum_dim_intlist(-1, false, tch::Kind::Float);
    assert_close(&sums, &Tensor::ones([3, 2], (tch::Kind::Float, Device::Cpu)), "head weight sums");
}

#[test]
fn bst_block_matches_torch_transformer_encoder_layer() {
    let f = fixture();
    let b = &f.bst_block;
    let rows = Tensor::from_slice(&b.rows);
    let x = f.keys.tensor().index_select(0, &rows);
    let mask = f.mask().index_select(0, &rows);
    let cfg = TransformerConfig { heads: b.heads, ffn_dim: Some(b.ffn_dim), dropout: 0.0, ..Default::default() };
    let vs = nn::VarStore::new(Device::Cpu);
    let block = TransformerBlock::new(vs.root() / "block", &cfg, 4).unwrap();
    load(&vs, "block.", &b.params, "BST block");
    assert_close(&block.forward_t(&x, &mask, false), &b.output.tensor(), "block output");
}

#[test]
fn dice_matches_batch_norm_reference_in_train_and_eval() {
    let f = fixture();
    let d = &f.dice;
    let vs = nn::VarStore::new(Device::Cpu);
    let dice = Dice::new(vs.root() / "dice", 3);
    tch::no_grad(|| vs.variables()["dice.alpha"].shallow_clone().copy_(&d.alpha.tensor()));
    assert_close(&dice.forward_t(&d.x_train.tensor(), true), &d.train.tensor(), "train output");
    let vars = vs.variables();
    assert_close(&vars["dice.bn.running_mean"], &d.running_mean.tensor(), "running mean");
    assert_close(&vars["dice.bn.running_var"], &d.running_var.tensor(), "running var");
    assert_close(&dice.forward_t(&d.x_eval.tensor(), false), &d.eval.tensor(), "eval output");
}
