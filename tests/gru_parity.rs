//! attnrec's GRU and AUGRU (DIEN's recurrent layers) against PyTorch: `torch.nn.GRU` and an AUGRU
//! written from the paper in tests/fixtures/gen_gru.py, on masked histories (left-padded, fully
//! padded, with holes). States and every gradient to 1e-5.
mod common;

use attnrec::nn::{Cell, Gru, Tape};
use common::{fixture_text, T};
use serde::Deserialize;
use std::collections::BTreeMap;
use tch::{nn, Device, Kind, Tensor};

#[derive(Deserialize)]
struct Case {
    x: T,
    att: Option<T>,
    g: T,
    params: BTreeMap<String, T>,
    states: T,
    grad_x: T,
    grad_att: Option<T>,
    grad_params: BTreeMap<String, T>,
}

#[derive(Deserialize)]
struct Fixture {
    hidden: i64,
    mask: Vec<i64>,
    mask_shape: Vec<i64>,
    gru: Case,
    augru: Case,
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// With `fused`, the step runs as the trainer's does (a tape records, so the fused CPU kernel
/// computes the recurrence and its backward); otherwise through libtorch's operators.
fn check(case: &Case, cell: Cell, fused: bool) {
    let f: Fixture = serde_json::from_str(&fixture_text("gru_torch.json")).unwrap();
    let mask = Tensor::from_slice(&f.mask).view(f.mask_shape.as_slice()).ne(0);
    let x = case.x.tensor().set_requires_grad(true);
    let d = x.size()[2];
    let vs = nn::VarStore::new(Device::Cpu);
    let gru = Gru::new(vs.root() / "rnn", d, f.hidden, cell);
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let key = name.strip_prefix("rnn.").unwrap();
            let v = case.params.get(key).unwrap_or_else(|| panic!("no fixture parameter {key}"));
            var.copy_(&v.tensor());
        }
    });
    assert_eq!(vs.variables().len(), case.params.len(), "parameter count");
    let att = case.att.as_ref().map(|a| a.tensor().set_requires_grad(true));
    let last = gru.last(&x, &mask, att.as_ref());
    let tape = fused.then(Tape::record);
    let states = gru.forward(&x, &mask, att.as_ref());
    let diff = max_diff(&states, &case.states.tensor());
    assert!(diff < 1e-5, "{cell:?} (fused {fused}) states differ by {diff}");
    let l = states.size()[1];
    assert!(max_diff(&last, &states.select(1, l - 1)) < 1e-6, "last() is the last state");
    let loss = (&states * case.g.tensor()).sum(Kind::Float);
    match tape {
        Some(t) => t.backward(&loss),
        None => loss.backward(),
    }
    let diff = max_diff(&x.grad(), &case.grad_x.tensor());
    assert!(diff < 1e-5, "{cell:?} (fused {fused}) input gradient differs by {diff}");
    if let (Some(a), Some(want)) = (&att, &case.grad_att) {
        let diff = max_diff(&a.grad(), &want.tensor());
        assert!(diff < 1e-5, "{cell:?} (fused {fused}) attention gradient differs by {diff}");
    }
    for (name, var) in vs.variables() {
        let key = name.strip_prefix("rnn.").unwrap();
        let diff = max_diff(&var.grad(), &case.grad_params[key].tensor());
        assert!(diff < 1e-5, "{cell:?} (fused {fused}) gradient of {key} differs by {diff}");
    }
}

#[test]
fn gru_matches_torch_nn_gru_on_masked_histories() {
    let f: Fixture = serde_json::from_str(&fixture_text("gru_torch.json")).unwrap();
    check(&f.gru, Cell::Gru, false);
    check(&f.gru, Cell::Gru, true);
}

#[test]
fn augru_matches_the_papers_equations_in_pytorch() {
    let f: Fixture = serde_json::from_str(&fixture_text("gru_torch.json")).unwrap();
    check(&f.augru, Cell::Augru, false);
    check(&f.augru, Cell::Augru, true);
}

/// Garbage at padded positions, and how many there are, changes no state of the present events.
#[test]
fn padding_changes_no_state() {
    for cell in [Cell::Gru, Cell::Augru] {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let gru = Gru::new(vs.root(), 3, 4, cell);
        let x = Tensor::randn([2, 4, 3], (Kind::Float, Device::Cpu));
        let a = Tensor::rand([2, 4], (Kind::Float, Device::Cpu));
        let on = Tensor::ones([2, 4], (Kind::Bool, Device::Cpu));
        let pad = Tensor::randn([2, 3, 3], (Kind::Float, Device::Cpu)) * 100.0;
        let x2 = Tensor::cat(&[&pad, &x], 1);
        let a2 = Tensor::cat(&[Tensor::rand([2, 3], (Kind::Float, Device::Cpu)), a.shallow_clone()], 1);
        let m2 = Tensor::cat(&[on.narrow(1, 0, 3).zeros_like(), on.shallow_clone()], 1);
        let att = |t: &Tensor| (cell == Cell::Augru).then(|| t.shallow_clone());
        let s1 = gru.forward(&x, &on, att(&a).as_ref());
        let s2 = gru.forward(&x2, &m2, att(&a2).as_ref());
        assert!(max_diff(&s1, &s2.narrow(1, 3, 4)) < 1e-6, "{cell:?}: padding changed a state");
        assert_eq!(s2.narrow(1, 0, 3).abs().max().double_value(&[]), 0.0, "{cell:?}: state before the first event is zero");
    }
}
