//! Attention and models on hand-computed examples, masking, and fully padded histories.
use attnrec::attention::{align, context, score, AlignConfig, AttentionConfig, ContextConfig, ScoreConfig, TargetAttention};
use attnrec::features::{Batch, FeatureMap, FeatureSpec};
use attnrec::models::ModelConfig;
use attnrec::nn::Activation;
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
fn din_with_known_weights(align: AlignConfig) -> (nn::VarStore, TargetAttention) {
    let vs = nn::VarStore::new(Device::Cpu);
    let cfg = AttentionConfig {
        score: ScoreConfig::DinMlp { hidden: vec![1], activation: Activation::Relu },
        align,
        context: ContextConfig::Soft,
    };
    let attn = TargetAttention::new(vs.root() / "attn", &cfg, 2, 2).unwrap();
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

#[test]
fn fully_masked_rows_give_zero_weights_and_finite_gradients() {
    let scores = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 0.5, 0.1, 9.0]).view([2, 3]).set_requires_grad(true);
    let mask = Tensor::from_slice(&[false, false, false, true, false, true]).view([2, 3]);
    let values = Tensor::ones([2, 3, 4], (Kind::Float, Device::Cpu));
    for a in [AlignConfig::Softmax, AlignConfig::Sigmoid, AlignConfig::None] {
        let w = a.apply(&scores, &mask);
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

fn tiny_feature_map() -> FeatureMap {
    serde_json::from_value(serde_json::json!({
        "protocol": "ml-ctr-v1",
        "history_len": 4,
        "features": Vec::<FeatureSpec>::new(),
        "user": [1, 2],
        "item": [10, 11, 12],
        "genre": ["Comedy", "Drama"],
    }))
    .unwrap()
}

fn padded_batch() -> Batch {
    let i = |v: &[i64]| Tensor::from_slice(v);
    Batch {
        user: i(&[2, 3]),
        item: i(&[2, 4]),
        genre: i(&[2, 3]),
        hist_item: i(&[0, 0, 0, 0, 0, 0, 3, 4]).view([2, 4]),
        hist_genre: i(&[0, 0, 0, 0, 0, 0, 2, 3]).view([2, 4]),
        hist_mask: Tensor::from_slice(&[false, false, false, false, false, false, true, true]).view([2, 4]),
        label: Tensor::from_slice(&[1.0f32, 0.0]),
    }
}

#[test]
fn fully_padded_history_gives_finite_logits_and_gradients() {
    let fm = tiny_feature_map();
    for name in ["base", "din"] {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = ModelConfig::by_name(name).unwrap().build(vs.root(), &fm).unwrap();
        let b = padded_batch();
        let logits = model.forward_t(&b, true);
        assert_eq!(logits.size(), vec![2]);
        assert!(bool::try_from(logits.isfinite().all()).unwrap(), "{name}: non-finite logits");
        logits.sum(Kind::Float).backward();
        for (k, v) in vs.variables() {
            let g = v.grad();
            if g.defined() {
                assert!(bool::try_from(g.isfinite().all()).unwrap(), "{name}: non-finite gradient in {k}");
            }
        }
        // The padding row of every embedding stays zero and gets no gradient.
        for table in ["emb.item.weight", "emb.genre.weight", "emb.user.weight"] {
            let v = &vs.variables()[table];
            assert_eq!(v.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}: {table}[0]");
            assert_eq!(v.grad().get(0).abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}: {table} grad[0]");
        }
    }
}

#[test]
fn din_ignores_padding_width() {
    // The same samples with 2 extra padded columns give the same logits.
    let fm = tiny_feature_map();
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ModelConfig::by_name("din").unwrap().build(vs.root(), &fm).unwrap();
    let b = padded_batch();
    let pad = |t: &Tensor, v: i64| Tensor::cat(&[Tensor::full([2, 2], v, (t.kind(), Device::Cpu)), t.shallow_clone()], 1);
    let wide = Batch {
        hist_item: pad(&b.hist_item, 0),
        hist_genre: pad(&b.hist_genre, 0),
        hist_mask: Tensor::cat(&[Tensor::zeros([2, 2], (Kind::Bool, Device::Cpu)), b.hist_mask.shallow_clone()], 1),
        user: b.user.shallow_clone(),
        item: b.item.shallow_clone(),
        genre: b.genre.shallow_clone(),
        label: b.label.shallow_clone(),
    };
    let d = (model.forward_t(&b, false) - model.forward_t(&wide, false)).abs().max().double_value(&[]);
    assert!(d < 1e-6, "{d}");
}
