//! attnrec's optimizers against torch.optim (fixtures from tests/fixtures/gen_optim.py): Adam,
//! AdamW and Adagrad with separate weight decay for embeddings and dense weights, and gradient
//! clipping, both through the one-pass CPU kernel and through tensor operators; and their state
//! survives a save/restore mid-run.
mod common;

use common::{fixture_text, T};
use attnrec::models::ParamGroups;
use attnrec::train::optim::{OptimSpec, Optimizer, OptimizerKind};
use serde::Deserialize;
use tch::{nn, Device, Kind, Tensor};

#[derive(Deserialize)]
struct Pair {
    emb: T,
    dense: T,
}

#[derive(Deserialize)]
struct Case {
    optimizer: String,
    lr: f64,
    weight_decay: f64,
    embedding_weight_decay: f64,
    clip: f64,
    after: Vec<Pair>,
}

#[derive(Deserialize)]
struct Fixture {
    emb: T,
    dense: T,
    grads: Vec<Pair>,
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    serde_json::from_str(&fixture_text("optim_torch.json")).unwrap()
}

fn spec(c: &Case, fused: bool) -> OptimSpec {
    let kind = match c.optimizer.as_str() {
        "adam" => OptimizerKind::Adam,
        "adamw" => OptimizerKind::AdamW,
        "adagrad" => OptimizerKind::Adagrad,
        other => panic!("unknown optimizer {other}"),
    };
    let eps = if kind == OptimizerKind::Adagrad { 1e-10 } else { 1e-8 };
    OptimSpec { kind, beta1: 0.9, beta2: 0.999, eps, weight_decay: c.weight_decay, embedding_weight_decay: c.embedding_weight_decay, fused }
}

/// A store holding `emb.item.weight` and `mlp.w` at the fixture's initial values.
fn store(f: &Fixture) -> (nn::VarStore, Tensor, Tensor) {
    let vs = nn::VarStore::new(Device::Cpu);
    let emb = vs.root().sub("emb").sub("item").var_copy("weight", &f.emb.tensor());
    let dense = vs.root().sub("mlp").var_copy("w", &f.dense.tensor());
    (vs, emb, dense)
}

/// The embedding table as the model would declare it (its own weight decay).
fn groups(emb: &Tensor) -> ParamGroups {
    ParamGroups { embeddings: vec![emb.shallow_clone()], ids: None }
}

/// Gradients equal to the fixture's, through a linear loss.
fn backward(emb: &Tensor, dense: &Tensor, g: &Pair) {
    ((emb * g.emb.tensor()).sum(Kind::Float) + (dense * g.dense.tensor()).sum(Kind::Float)).backward();
}

fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
    let d = (got - want).abs().max().double_value(&[]);
    assert!(d < 1e-5, "{what}: max |diff| {d:e}");
}

#[test]
fn optimizers_match_torch_optim() {
    let f = fixture();
    assert_eq!(f.cases.len(), 5);
    for (c, fused) in f.cases.iter().flat_map(|c| [(c, true), (c, false)]) {
        let (vs, emb, dense) = store(&f);
        let mut opt = Optimizer::new(&vs, &groups(&emb), spec(c, fused));
        for (i, (g, want)) in f.grads.iter().zip(&c.after).enumerate() {
            opt.zero_grad();
            backward(&emb, &dense, g);
            if c.clip > 0.0 {
                opt.clip_grad_norm(c.clip);
            }
            opt.step(c.lr);
            let what = format!("{} fused {fused} wd {}/{} clip {} step {}", c.optimizer, c.weight_decay, c.embedding_weight_decay, c.clip, i + 1);
            assert_close(&emb, &want.emb.tensor(), &format!("{what} emb"));
            assert_close(&dense, &want.dense.tensor(), &format!("{what} dense"));
        }
        assert_eq!(emb.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0, "{}: padding row moved", c.optimizer);
    }
}

#[test]
fn restored_state_continues_exactly() {
    let f = fixture();
    for (c, fused) in f.cases.iter().flat_map(|c| [(c, true), (c, false)]) {
        let spec = |c: &Case| spec(c, fused);
        let (vs, emb, dense) = store(&f);
        let mut opt = Optimizer::new(&vs, &groups(&emb), spec(c));
        let mut saved = None;
        for (i, g) in f.grads.iter().enumerate() {
            if i == 2 {
                // Restart from the weights and optimizer state saved after two steps.
                let state: Vec<(String, Tensor)> = opt.state().into_iter().map(|(k, t)| (k, t.copy())).collect();
                saved = Some((emb.copy(), dense.copy(), state));
                let (vs2, emb2, dense2) = store(&f);
                let (e, d, state) = saved.as_ref().unwrap();
                tch::no_grad(|| {
                    emb2.shallow_clone().copy_(e);
                    dense2.shallow_clone().copy_(d);
                });
                let mut opt2 = Optimizer::new(&vs2, &groups(&emb2), spec(c));
                opt2.load_state(state).unwrap();
                for g in &f.grads[2..] {
                    opt2.zero_grad();
                    backward(&emb2, &dense2, g);
                    opt2.step(c.lr);
                }
                let last = c.after.last().unwrap();
                if c.clip == 0.0 {
                    assert_close(&emb2, &last.emb.tensor(), &format!("{} resumed emb", c.optimizer));
                    assert_close(&dense2, &last.dense.tensor(), &format!("{} resumed dense", c.optimizer));
                }
            }
            opt.zero_grad();
            backward(&emb, &dense, g);
            if c.clip > 0.0 {
                opt.clip_grad_norm(c.clip);
            }
            opt.step(c.lr);
        }
        assert!(saved.is_some());
        // A state from another optimizer kind is refused by name.
        let (vs3, emb3, _) = store(&f);
        let other = if spec(c).kind == OptimizerKind::Adagrad { OptimizerKind::Adam } else { OptimizerKind::Adagrad };
        let mut wrong = Optimizer::new(&vs3, &groups(&emb3), OptimSpec { kind: other, ..spec(c) });
        assert!(wrong.load_state(&opt.state()).is_err());
    }
}
