//! Attention and models on hand-computed examples, masking, and fully padded histories.
use attnrec::attention::{align, context, score, AlignConfig, Attention, AttentionConfig, ContextConfig, ScoreConfig};
use attnrec::nn::Activation;
use tch::nn::Module;
use tch::{nn, Device, Kind, Tensor};

fn t2(rows: &[[f32; 2]]) -> Tensor {
    Tensor::from_slice(&rows.concat()).view([rows.len() as i64, 2])
}

/// q: [2, 2]; keys: [2, 3, 2] with a padded position in each row (row 0: last; row 1: first,
/// holding non-zero values so that masking, not zero padding, must remove it).
fn example() -> (Tensor, Tensor, Tensor) {
    let q = t2(&[[1.0, 0.0], [0.0, 2.0]]);
    let keys = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 3.0, 3.0, 1.0, 1.0, -1.0, 2.0]).view([2, 3, 2]);
    let mask = Tensor::from_slice(&[true, true, false, false, true, true]).view([2, 3]);
    (q, keys, mask)
}

fn assert_close(a: &Tensor, expected: &[f32]) {
    let got = Vec::<f32>::try_from(&a.flatten(0, -1)).unwrap();
    assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    for (g, e) in got.iter().zip(expected) {
        assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
    }
}

/// DIN's activation unit with weights set by hand: h = relu(q0 + k1 + (q⊙k)0), score = 2h + 0.5.
fn din_with_known_weights(align: AlignConfig) -> (nn::VarStore, Attention) {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = AttentionConfig::new(ScoreConfig::DinMlp { hidden: vec![1], activation: Activation::Relu }, align, ContextConfig::Soft);
    let attn = Attention::new(vs.root() / "attn", &cfg, 2, 2, 2).unwrap();
    let vars = vs.variables();
    tch::no_grad(|| {
        // [q0, q1, k0, k1, (q-k)0, (q-k)1, (q*k)0, (q*k)1]
        vars["attn.score.mlp.layer0.linear.weight"].shallow_clone().copy_(&Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]).view([1, 8]));
        vars["attn.score.mlp.layer0.linear.bias"].shallow_clone().copy_(&Tensor::from_slice(&[0.0f32]));
        vars["attn.score.out.weight"].shallow_clone().copy_(&Tensor::from_slice(&[2.0f32]).view([1, 1]));
        vars["attn.score.out.bias"].shallow_clone().copy_(&Tensor::from_slice(&[0.5f32]));
    });
    (vs, attn)
}

#[test]
fn din_attention_matches_hand_computation() {
    let (q, keys, mask) = example();
    let (_vs, attn) = din_with_known_weights(AlignConfig::None);
    let (ctx, w) = attn.forward_t(&q, &keys, &keys, &mask, false);
    // Row 0: h = [1+0+1, 1+1+0] = [2, 2] → scores [4.5, 4.5], padded → 0; ctx = 4.5·[1,0] + 4.5·[0,1].
    // Row 1: h = [0+1+0, 0+2+0] = [1, 2] → scores [2.5, 4.5]; ctx = 2.5·[1,1] + 4.5·[-1,2].
    assert_close(&w, &[4.5, 4.5, 0.0, 0.0, 2.5, 4.5]);
    assert_close(&ctx, &[4.5, 4.5, -2.0, 11.5]);
}

#[test]
fn din_with_softmax_normalizes_over_present_positions() {
    let (q, keys, mask) = example();
    let (_vs, attn) = din_with_known_weights(AlignConfig::Softmax);
    let (ctx, w) = attn.forward_t(&q, &keys, &keys, &mask, false);
    let e = (-2.0f32).exp(); // exp(2.5 - 4.5)
    let (a, b) = (e / (1.0 + e), 1.0 / (1.0 + e));
    assert_close(&w, &[0.5, 0.5, 0.0, 0.0, a, b]);
    assert_close(&ctx, &[0.5, 0.5, a - b, a + 2.0 * b]);
}

#[test]
fn score_functions_by_hand() {
    let (q, keys, _) = example();
    assert_close(&score::dot(&q, &keys), &[1.0, 0.0, 0.0, 6.0, 2.0, 4.0]);
    let s = 2f32.sqrt();
    assert_close(&score::scaled_dot(&q, &keys), &[1.0 / s, 0.0, 0.0, 6.0 / s, 2.0 / s, 4.0 / s]);
    let w = t2(&[[0.0, 1.0], [1.0, 0.0]]); // swaps the query's coordinates
    assert_close(&score::general(&q, &keys, &w), &[0.0, 1.0, 0.0, 6.0, 2.0, -2.0]);
    let f = score::din_features(&q, &keys);
    assert_eq!(f.size(), vec![2, 3, 8]);
    assert_close(&f.get(1).get(2), &[0.0, 2.0, -1.0, 2.0, 1.0, 0.0, -0.0, 4.0]);
}

/// DIN's split first layer (`(Wq + Wd) q + [Wk − Wd, Wp] [k, q ⊙ k]`) equals the layer applied to
/// the concatenated `[q, k, q − k, q ⊙ k]`, for one query per row and for one per step, and so
/// do its gradients.
#[test]
fn din_first_layer_equals_the_layer_on_the_concatenated_features() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let first = nn::linear(vs.root() / "first", 4 * 5, 6, Default::default());
    let keys = Tensor::randn([3, 4, 5], (Kind::Float, Device::Cpu));
    for q in [Tensor::randn([3, 5], (Kind::Float, Device::Cpu)), Tensor::randn([3, 2, 5], (Kind::Float, Device::Cpu))] {
        let split = score::din_first_layer(&q, &keys, &first);
        let whole = first.forward(&score::din_features(&q, &keys));
        assert_eq!(split.size(), whole.size());
        let diff = f64::try_from((&split - &whole).abs().max()).unwrap();
        assert!(diff < 1e-5, "split and whole first layers differ by {diff}");
        let g = |t: &Tensor| Tensor::run_backward(&[(t * t).sum(Kind::Float)], &[&first.ws], false, false).remove(0);
        let (gs, gw) = (g(&score::din_first_layer(&q, &keys, &first)), g(&first.forward(&score::din_features(&q, &keys))));
        let diff = f64::try_from((&gs - &gw).abs().max()).unwrap();
        assert!(diff < 1e-4, "weight gradients differ by {diff}");
    }
}

#[test]
fn fully_masked_rows_give_zero_weights_and_finite_gradients() {
    let scores = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 0.5, 0.1, 9.0]).view([2, 3]).set_requires_grad(true);
    let mask = Tensor::from_slice(&[false, false, false, true, false, true]).view([2, 3]);
    let values = Tensor::ones([2, 3, 4], (Kind::Float, Device::Cpu));
    let q = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
    let vs = nn::VarStore::new(Device::Cpu);
    let aligns = [AlignConfig::Softmax, AlignConfig::Sigmoid, AlignConfig::None, AlignConfig::LocalM { window: 1 }, AlignConfig::LocalP { window: 2 }];
    for a in aligns {
        let w = attnrec::attention::Align::new(vs.root() / "align", a, 2).unwrap().forward(&scores, &mask, &q);
        let got = Vec::<f32>::try_from(&w.flatten(0, -1)).unwrap();
        assert_eq!(&got[..3], &[0.0, 0.0, 0.0], "{a:?}");
        assert_eq!(got[4], 0.0, "{a:?}");
        let ctx = context::soft(&w, &values);
        assert_close(&ctx.get(0), &[0.0; 4]);
        ctx.sum(Kind::Float).backward();
        let mut g = scores.grad();
        assert!(bool::try_from(g.isfinite().all()).unwrap(), "{a:?}: non-finite gradient");
        assert_close(&g.get(0), &[0.0, 0.0, 0.0]);
        let _ = g.zero_();
    }
    let w = align::softmax(&scores, &mask);
    assert!((w.get(1).sum(Kind::Float).double_value(&[]) - 1.0).abs() < 1e-6);
}

#[test]
fn hard_attention_is_one_hot_at_evaluation_and_trains_its_score() {
    let (q, keys, mask) = example();
    let vs = nn::VarStore::new(Device::Cpu);
    let attn = Attention::new(vs.root() / "attn", &AttentionConfig::preset("hard").unwrap(), 2, 2, 2).unwrap();
    let (ctx, w) = attn.forward_t(&q, &keys, &keys, &mask, false);
    // One position per row, always a present one, and the context is that position's value.
    let w_rows = Vec::<f32>::try_from(&w.flatten(0, -1)).unwrap();
    for (row, m) in w_rows.chunks(3).zip([[true, true, false], [false, true, true]]) {
        assert_eq!(row.iter().filter(|&&x| x == 1.0).count(), 1, "{row:?}");
        assert_eq!(row.iter().filter(|&&x| x == 0.0).count(), 2, "{row:?}");
        assert!(row.iter().zip(m).all(|(&x, on)| on || x == 0.0), "{row:?}");
    }
    assert_close(&ctx, &Vec::<f32>::try_from(&w.unsqueeze(1).bmm(&keys).flatten(0, -1)).unwrap());
    // The argmax is the softmax's argmax.
    let sw = align::softmax(&score::general(&q, &keys, &vs.variables()["attn.score.w"]), &mask);
    assert_eq!(Vec::<i64>::try_from(&sw.argmax(-1, false)).unwrap(), Vec::<i64>::try_from(&w.argmax(-1, false)).unwrap());

    // Training samples a position and still sends gradient into the score's parameters.
    tch::manual_seed(3);
    let (ctx, w) = attn.forward_t(&q, &keys, &keys, &mask, true);
    let w_rows = Vec::<f32>::try_from(&w.flatten(0, -1)).unwrap();
    for row in w_rows.chunks(3) {
        assert!(row.iter().filter(|&&x| (x - 1.0).abs() < 1e-6).count() == 1, "{row:?}");
    }
    (ctx * Tensor::from_slice(&[1.0f32, -2.0]).view([1, 2])).sum(Kind::Float).backward();
    let g = vs.variables()["attn.score.w"].grad();
    assert!(g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "no gradient reached the score");

    // A fully padded row gives zero weights and context in both modes.
    let none = Tensor::zeros([2, 3], (Kind::Bool, Device::Cpu));
    for train in [false, true] {
        let (ctx, w) = attn.forward_t(&q, &keys, &keys, &none, train);
        assert_eq!(w.abs().sum(Kind::Float).double_value(&[]), 0.0);
        assert_eq!(ctx.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}

#[test]
fn local_alignments_stay_inside_their_window() {
    // One row of 6 present events; local_m with window 1 weights only the 2 most recent.
    let scores = Tensor::from_slice(&[5.0f32, 4.0, 3.0, 2.0, 1.0, 0.0]).view([1, 6]);
    let mask = Tensor::ones([1, 6], (Kind::Bool, Device::Cpu));
    let w = align::local_m(&scores, &mask, 1);
    let e = (-1.0f32).exp();
    assert_close(&w, &[0.0, 0.0, 0.0, 0.0, 1.0 / (1.0 + e), e / (1.0 + e)]);
    // local_p centred on rank 1 with window 2: ranks 0..=3 inside, Gaussian σ = 1 around 1.
    let flat = Tensor::zeros([1, 6], (Kind::Float, Device::Cpu));
    let w = align::local_p(&flat, &mask, &Tensor::from_slice(&[1.0f32]), 2);
    let g = |d: f32| (-d * d / 2.0).exp() / 4.0;
    assert_close(&w, &[g(1.0), g(0.0), g(1.0), g(2.0), 0.0, 0.0]);
    // Ranks and recency count present events only.
    let holes = Tensor::from_slice(&[false, true, false, true, true, false]).view([1, 6]);
    assert_eq!(Vec::<f32>::try_from(&align::rank(&holes).flatten(0, -1)).unwrap(), vec![0.0, 0.0, 0.0, 1.0, 2.0, 0.0]);
    assert_eq!(Vec::<i64>::try_from(&align::recency(&holes).flatten(0, -1)).unwrap(), vec![0, 2, 0, 1, 0, 0]);
}

/// DIN's attention through its fused kernel, scores and pooling (values other than the keys, and
/// the keys themselves as values), against libtorch's operators: the same context and the same
/// gradients for the query, the keys, the values and every parameter.
#[test]
fn fused_din_pooling_matches_libtorch() {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = AttentionConfig::new(ScoreConfig::DinMlp { hidden: vec![6, 3], activation: Activation::Prelu }, AlignConfig::None, ContextConfig::Soft);
    let attn = Attention::new(vs.root() / "attn", &cfg, 4, 4, 5).unwrap();
    tch::manual_seed(3);
    let q = Tensor::randn([3, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let keys = Tensor::randn([3, 6, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let values = Tensor::randn([3, 6, 5], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mask = Tensor::from_slice(&[true, true, true, true, true, true, false, false, true, false, true, true, false, false, false, false, false, false]).view([3, 6]);
    let w = Tensor::randn([3, 5], (Kind::Float, Device::Cpu));
    let leaves: Vec<(String, Tensor)> = [("q", &q), ("keys", &keys), ("values", &values)].into_iter().map(|(k, t)| (k.to_string(), t.shallow_clone())).chain(vs.variables()).collect();
    let run = |fused: bool, same: bool| {
        for (_, t) in &leaves {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let v = if same { &keys } else { &values };
        let ctx = attnrec::nn::with_fused(fused, || {
            let tape = attnrec::nn::Tape::record();
            let ctx = attn.context_t(&q, &keys, v, &mask, true);
            let wv = if same { w.narrow(1, 0, 4) } else { w.shallow_clone() };
            tape.backward(&(&ctx * &wv).sum(Kind::Float));
            ctx
        });
        let grads: Vec<(String, Tensor)> = leaves.iter().filter(|(_, t)| t.grad().defined()).map(|(k, t)| (k.clone(), t.grad().copy())).collect();
        (ctx.detach(), grads)
    };
    for same in [false, true] {
        let (ctx, fused) = run(true, same);
        let (want_ctx, want) = run(false, same);
        assert!(f64::try_from((&ctx - &want_ctx).abs().max()).unwrap() < 1e-5, "same {same}: contexts differ");
        assert_eq!(ctx.narrow(0, 2, 1).abs().sum(Kind::Float).double_value(&[]), 0.0, "the empty row pools to 0");
        assert_eq!(fused.len(), want.len(), "same {same}: the same leaves get gradients");
        assert_eq!(fused.len(), 3 + vs.variables().len(), "same {same}: every leaf gets one");
        for ((k, g), (_, e)) in fused.iter().zip(&want) {
            let d = f64::try_from((g - e).abs().max()).unwrap();
            assert!(d < 1e-5, "same {same}: gradient of {k} differs by {d}");
        }
    }
}
