//! Every model on hand-made batches (masking, padding, fully padded histories, save/load) and on
//! the `tiny` synthetic preset (it must learn).
use attnrec::config::RunConfig;
use attnrec::data::protocol::Split;
use attnrec::data::synth::{generate, Preset};
use attnrec::features::{Batch, FeatureMap, FeatureSpec, Negatives};
use attnrec::models::{CtrModel, ModelConfig};
use attnrec::nn::{with_fused, Activation, Tape};
use attnrec::run::prepare;
use attnrec::train::{evaluate, fit, Silent};
use tch::{nn, Device, Kind, Tensor};

/// Every model, and attn_pool with every attention preset.
fn all_models() -> Vec<(String, ModelConfig)> {
    use attnrec::util::Choice;
    let mut names: Vec<String> = attnrec::models::ModelKind::ALL.iter().map(|k| k.name().to_string()).collect();
    names.extend(attnrec::attention::AttentionPreset::ALL.iter().map(|p| format!("attn_pool:{}", p.name_of())));
    let mut out: Vec<(String, ModelConfig)> = names.into_iter().map(|n| (n.clone(), ModelConfig::by_name(&n).unwrap())).collect();
    // DIN with Dice everywhere and a batch-normalized head: running statistics must round-trip too.
    let mut dice = ModelConfig::by_name("din").unwrap();
    if let ModelConfig::Din(c) = &mut dice {
        c.mlp.activation = Activation::Dice;
        c.mlp.batch_norm = true;
        c.attention.score = attnrec::attention::ScoreConfig::DinMlp { hidden: vec![8, 4], activation: Activation::Dice };
    }
    out.push(("din+dice+bn".into(), dice));
    out.push(("din+pooling".into(), din_pooled()));
    out.push(("din+split".into(), din_split()));
    out.push(("base+split".into(), base_split()));
    out.push(("dien+aux_din_unit".into(), dien_aux_din_unit()));
    out
}

/// DIEN with DIN's activation unit (run by the fused kernel) as the auxiliary net, not the default
/// general score.
fn dien_aux_din_unit() -> ModelConfig {
    let mut c = ModelConfig::by_name("dien").unwrap();
    if let ModelConfig::Dien(d) = &mut c {
        d.aux_score = attnrec::attention::ScoreConfig::DinMlp { hidden: vec![100, 50], activation: Activation::Sigmoid };
    }
    c
}

/// DIN with the history pooled apart by feedback, as a weighted mean, with the plain mean beside.
fn din_split() -> ModelConfig {
    use attnrec::models::attn_pool::{FeedbackIn, InterestScale, PoolingConfig};
    let mut c = ModelConfig::by_name("din").unwrap();
    if let ModelConfig::Din(d) = &mut c {
        d.pooling = PoolingConfig { scale: InterestScale::Mean, with_mean: true, feedback: FeedbackIn::Split };
    }
    c
}

fn base_split() -> ModelConfig {
    let mut c = ModelConfig::by_name("base").unwrap();
    if let ModelConfig::Base(b) = &mut c {
        b.feedback = attnrec::models::attn_pool::FeedbackIn::Split;
    }
    c
}

/// DIN with every pooling option off its default: the interest as a weighted mean, the history's
/// plain mean beside it, and the feedback in the values only.
fn din_pooled() -> ModelConfig {
    use attnrec::models::attn_pool::{FeedbackIn, InterestScale, PoolingConfig};
    let mut c = ModelConfig::by_name("din").unwrap();
    if let ModelConfig::Din(d) = &mut c {
        d.pooling = PoolingConfig { scale: InterestScale::Mean, with_mean: true, feedback: FeedbackIn::Values };
    }
    c
}

fn feature_map() -> FeatureMap {
    serde_json::from_value(serde_json::json!({
        "protocol": "ml-ctr-v1",
        "history_len": 4,
        // Every model here also embeds the time gaps and the history's feedback, so the mask tests
        // cover them too.
        "time_gap": true,
        "history_feedback": true,
        "features": Vec::<FeatureSpec>::new(),
        // ... and side features: one user field; an item year and up to 2 genres.
        "user_side": {
            "fields": [{"name": "user_age", "width": 1, "vocab": ["18", "25"]}],
            "ids": [1, 2],
            "values": [0, 1, 2, 3],
        },
        "item_side": {
            "fields": [
                {"name": "item_year", "width": 1, "vocab": ["1995", "1996"]},
                {"name": "item_genres", "width": 2, "vocab": ["A", "B", "C"]},
            ],
            "ids": [10, 11],
            "values": [0, 0, 0, 1, 1, 0, 2, 2, 3, 3, 4, 0],
        },
        "user": [1, 2],
        "item": [10, 11, 12, 13],
        "genre": ["Comedy", "Drama"],
    }))
    .unwrap()
}

/// Three samples: a full history, a partial one, an empty one.
fn batch() -> Batch {
    let i = |v: &[i64]| Tensor::from_slice(v);
    Batch {
        user: i(&[2, 3, 2]),
        item: i(&[2, 4, 5]),
        genre: i(&[2, 3, 2]),
        hist_item: i(&[2, 3, 4, 5, 0, 0, 3, 4, 0, 0, 0, 0]).view([3, 4]),
        hist_genre: i(&[2, 3, 2, 3, 0, 0, 2, 3, 0, 0, 0, 0]).view([3, 4]),
        hist_gap: i(&[30, 20, 9, 1, 0, 0, 33, 2, 0, 0, 0, 0]).view([3, 4]),
        hist_feedback: i(&[1, 2, 2, 1, 0, 0, 2, 1, 0, 0, 0, 0]).view([3, 4]),
        hist_mask: i(&[1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0]).view([3, 4]).to_kind(Kind::Bool),
        user_side: i(&[2, 1, 3]),
        item_side: i(&[2, 3, 1]),
        hist_item_side: i(&[3, 2, 1, 2, 0, 0, 2, 3, 0, 0, 0, 0]).view([3, 4]),
        label: Tensor::from_slice(&[1.0f32, 0.0, 1.0]),
        negatives: None,
    }
}

fn build(cfg: &ModelConfig) -> (nn::VarStore, Box<dyn CtrModel>) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = cfg.build(vs.root(), &feature_map()).unwrap();
    // Move every parameter off its initial value (zero slopes, unit norms) so masks are tested
    // against weights that do not hide mistakes. Randomly initialized ones are replaced outright:
    // libtorch's generator is shared with the tests running beside these, so their values would
    // differ from run to run (and once left a batch's histories without any gradient).
    tch::no_grad(|| {
        for (name, v) in vs.variables() {
            if !v.requires_grad() {
                continue;
            }
            // (A one-element tensor tells nothing: an output bias is random, so it is replaced.)
            let constant = v.numel() > 1 && v.min().double_value(&[]) == v.max().double_value(&[]);
            let base = if constant { v.copy() } else { v.zeros_like() };
            let _ = v.shallow_clone().copy_(&(base + noise(&v, &name) * 0.3));
            if name.starts_with("emb.") {
                let _ = v.get(0).zero_(); // the padding row stays zero, as training keeps it
            }
        }
    });
    // Dice and batch norm: move the running statistics off their defaults.
    let _ = model.forward_t(&batch(), true);
    (vs, model)
}

/// Uniform noise of unit variance shaped like `v`, a function of `name` alone.
fn noise(v: &Tensor, name: &str) -> Tensor {
    let mut s = name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3)) | 1;
    let values: Vec<f32> = (0..v.numel())
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * 3f32.sqrt()
        })
        .collect();
    Tensor::from_slice(&values).view(v.size().as_slice())
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn fully_padded_histories_give_finite_logits_and_gradients() {
    for (name, cfg) in all_models() {
        let (vs, model) = build(&cfg);
        let tape = Tape::record();
        let logits = model.forward_t(&batch(), true);
        assert_eq!(logits.size(), vec![3], "{name}");
        assert!(bool::try_from(logits.isfinite().all()).unwrap(), "{name}: non-finite logits");
        tape.backward(&logits.sum(Kind::Float));
        for (k, v) in vs.variables() {
            let g = v.grad();
            if g.defined() {
                assert!(bool::try_from(g.isfinite().all()).unwrap(), "{name}: non-finite gradient in {k}");
            }
        }
        let vars = vs.variables();
        for table in ["emb.item.weight", "emb.genre.weight", "emb.user.weight"] {
            let v = &vars[table];
            assert_eq!(v.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}: {table}[0]");
            assert_eq!(v.grad().get(0).abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}: {table} grad[0]");
        }
        if let Some(w) = model.attention(&batch()) {
            let heads = w.size()[1];
            assert_eq!(w.size(), vec![3, heads, 4], "{name}: attention shape");
            let padded = w.masked_select(&batch().hist_mask.logical_not().unsqueeze(1));
            assert_eq!(padded.abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}: weight on padding");
        }
        if let Some(w) = model.self_attention(&batch()) {
            let (t, heads) = (w.size()[2], w.size()[1]);
            assert_eq!(w.size(), vec![3, heads, t, t], "{name}: self-attention shape");
            // Each present query's weights are a distribution over present keys.
            let mask = batch().hist_mask;
            let keys = if t == 4 { mask.shallow_clone() } else { Tensor::cat(&[mask.shallow_clone(), Tensor::ones([3, 1], (Kind::Bool, Device::Cpu))], 1) };
            let on_padding = w.masked_select(&keys.logical_not().unsqueeze(1).unsqueeze(1)).abs().sum(Kind::Float).double_value(&[]);
            assert_eq!(on_padding, 0.0, "{name}: self-attention on padded keys");
            let sums = w.sum_dim_intlist(-1, false, Kind::Float).masked_select(&keys.unsqueeze(1));
            assert!(f64::try_from((sums - 1.0).abs().max()).unwrap() < 1e-5, "{name}: rows sum to 1");
        }
    }
}

/// Logits and every parameter's gradient of one training step, as the trainer runs it (a tape
/// records the forward pass, the step ends in its backward), with the fused kernels on or off, in
/// training mode (libtorch reseeded first: the same dropout masks on every call) or not (no
/// dropout; batch norm on its running statistics).
fn step(vs: &nn::VarStore, model: &dyn CtrModel, b: &Batch, train: bool, fused: bool) -> (Tensor, Vec<(String, Tensor)>) {
    tch::manual_seed(7);
    for (_, v) in vs.variables() {
        let mut g = v.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    let logits = with_fused(fused, || {
        let tape = Tape::record();
        let logits = model.forward_t(b, train);
        tape.backward(&logits.binary_cross_entropy_with_logits::<Tensor>(&b.label, None, None, tch::Reduction::Mean));
        logits
    });
    let mut grads: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, v)| v.grad().defined()).map(|(k, v)| (k, v.grad().copy())).collect();
    grads.sort_by(|a, b| a.0.cmp(&b.0));
    (logits.detach(), grads)
}

/// DIN's fused CPU kernel against libtorch's operators on the same weights and batches (a partial
/// history, an empty one, left padding): the same logits and the same gradient for every
/// parameter, up to float rounding, for each activation of the unit and with an encoder before it.
#[test]
fn fused_din_unit_matches_libtorch() {
    use attnrec::attention::ScoreConfig;
    let mut configs: Vec<(String, ModelConfig)> = ["din", "din_sa", "attn_pool:din"].iter().map(|n| (n.to_string(), ModelConfig::by_name(n).unwrap())).collect();
    // No dropout in din_sa's encoder: libtorch's generator is shared with the tests running beside
    // this one, so reseeding would not give both passes the same masks.
    if let ModelConfig::DinSa(c) = &mut configs[1].1 {
        c.encoder.dropout = 0.0;
    }
    for (act, hidden) in [(Activation::Sigmoid, vec![8, 4]), (Activation::Relu, vec![16]), (Activation::Prelu, vec![6, 5, 3])] {
        let mut c = ModelConfig::by_name("din").unwrap();
        if let ModelConfig::Din(d) = &mut c {
            d.attention.score = ScoreConfig::DinMlp { hidden: hidden.clone(), activation: act };
        }
        configs.push((format!("din {act:?} {hidden:?}"), c));
    }
    configs.push(("din+pooling".into(), din_pooled()));
    configs.push(("din+split".into(), din_split()));
    for (name, cfg) in configs {
        let (vs, model) = build(&cfg);
        let fused = assert_fused_matches_libtorch(&name, &vs, model.as_ref(), true);
        assert!(fused.iter().any(|(k, g)| k.contains("score.mlp") && g.abs().max().double_value(&[]) > 0.0), "{name}: the unit gets gradients");
    }
}

/// Split pooling puts each event in the slot of its feedback: hand-written values.
#[test]
fn split_by_feedback_puts_each_event_in_its_slot() {
    use attnrec::models::attn_pool::split_by_feedback;
    // One row, 4 events of width 2: feedback no click, click, not yet known, padding.
    let items = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).view([1, 4, 2]);
    let feedback = Tensor::from_slice(&[1i64, 2, 3, 0]).view([1, 4]);
    let got = Vec::<f32>::try_from(split_by_feedback(&items, &feedback).reshape([-1])).unwrap();
    #[rustfmt::skip]
    let want = [
        // [click, no click, not yet known]
        0.0, 0.0, 1.0, 2.0, 0.0, 0.0,
        3.0, 4.0, 0.0, 0.0, 0.0, 0.0,
        0.0, 0.0, 0.0, 0.0, 5.0, 6.0,
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
    ];
    assert_eq!(got, want);
}

/// Split pooling without feedback in the data, or with an encoder, is a configuration error.
#[test]
fn split_pooling_needs_feedback_and_no_encoder() {
    use attnrec::models::attn_pool::FeedbackIn;
    let mut fm = feature_map();
    fm.history_feedback = false;
    for cfg in [din_split(), base_split()] {
        let vs = nn::VarStore::new(Device::Cpu);
        let err = cfg.build(vs.root(), &fm).err().expect("refused").to_string();
        assert!(err.contains("history_feedback"), "{err}");
    }
    let mut sa = ModelConfig::by_name("din_sa").unwrap();
    if let ModelConfig::DinSa(c) = &mut sa {
        c.pooling.feedback = FeedbackIn::Split;
    }
    let vs = nn::VarStore::new(Device::Cpu);
    assert!(sa.build(vs.root(), &feature_map()).err().expect("refused").to_string().contains("encoder"));
}

/// The batch with 2 padded columns on the left of its histories.
fn left_padded(b: &Batch) -> Batch {
    let pad = |t: &Tensor| Tensor::cat(&[Tensor::zeros([3, 2], (t.kind(), Device::Cpu)), t.shallow_clone()], 1);
    Batch {
        hist_item: pad(&b.hist_item),
        hist_genre: pad(&b.hist_genre),
        hist_gap: pad(&b.hist_gap),
        hist_feedback: pad(&b.hist_feedback),
        hist_item_side: pad(&b.hist_item_side),
        hist_mask: pad(&b.hist_mask),
        ..batch()
    }
}

/// One step with the fused kernels on and one with them off, on [`batch`] and on it left-padded:
/// the same logits and the same gradient for every parameter, up to float rounding. Returns the
/// fused step's gradients on [`batch`].
fn assert_fused_matches_libtorch(name: &str, vs: &nn::VarStore, model: &dyn CtrModel, train: bool) -> Vec<(String, Tensor)> {
    let b = batch();
    let mut first = None;
    for (which, b) in [("batch", &b), ("left-padded", &left_padded(&b))] {
        let (logits, fused) = step(vs, model, b, train, true);
        let (want_logits, want) = step(vs, model, b, train, false);
        let scale = want_logits.abs().max().double_value(&[]).max(1.0);
        assert!(max_diff(&logits, &want_logits) < 1e-5 * scale, "{name} {which}: logits differ by {}", max_diff(&logits, &want_logits));
        let names = |g: &[(String, Tensor)]| g.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        assert_eq!(names(&fused), names(&want), "{name} {which}: the same parameters get gradients");
        for ((k, g), (_, w)) in fused.iter().zip(&want) {
            let tol = 1e-5 + 1e-4 * w.abs().max().double_value(&[]);
            assert!(max_diff(g, w) < tol, "{name} {which}: gradient of {k} differs by {} (tolerance {tol})", max_diff(g, w));
        }
        first.get_or_insert(fused);
    }
    first.expect("two batches")
}

/// The embedding lookups' own backward (every table, the side features' multi-valued fields and
/// BST's positions) against libtorch's, for every model; in evaluation mode, so that dropout
/// draws nothing from the generator that the tests running beside this one share.
#[test]
fn fused_lookups_match_libtorch() {
    for (name, cfg) in all_models() {
        let (vs, model) = build(&cfg);
        let grads = assert_fused_matches_libtorch(&name, &vs, model.as_ref(), false);
        for table in ["emb.item.weight", "emb.genre.weight", "emb.user.weight", "emb.gap.weight", "emb.feedback.weight", "emb.item_side.item_genres.weight"] {
            let g = grads.iter().find(|(k, _)| k == table).map(|(_, g)| g).unwrap_or_else(|| panic!("{name}: no gradient for {table}"));
            assert!(g.abs().max().double_value(&[]) > 0.0, "{name}: {table} gets gradients");
            assert_eq!(g.get(0).abs().sum(Kind::Float).double_value(&[]), 0.0, "{name}: {table}'s padding row gets none");
        }
    }
}

/// [`batch`] with real items (not the padding id) behind the mask, and with 2 extra padded
/// columns on the left.
fn padding_variants() -> [Batch; 2] {
    let b = batch();
    let off = b.hist_mask.logical_not();
    let junk = |t: &Tensor| t.masked_fill(&off, 3);
    let widen = |t: &Tensor, v: i64| Tensor::cat(&[Tensor::full([3, 2], v, (t.kind(), Device::Cpu)), t.shallow_clone()], 1);
    [
        Batch {
            hist_item: junk(&b.hist_item),
            hist_genre: junk(&b.hist_genre),
            hist_gap: junk(&b.hist_gap),
            hist_feedback: b.hist_feedback.masked_fill(&off, 2),
            hist_item_side: junk(&b.hist_item_side),
            ..batch()
        },
        Batch {
            hist_item: widen(&b.hist_item, 2),
            hist_genre: widen(&b.hist_genre, 2),
            hist_gap: widen(&b.hist_gap, 5),
            hist_feedback: widen(&b.hist_feedback, 2),
            hist_item_side: widen(&b.hist_item_side, 2),
            hist_mask: Tensor::cat(&[Tensor::zeros([3, 2], (Kind::Bool, Device::Cpu)), b.hist_mask.shallow_clone()], 1),
            ..batch()
        },
    ]
}

#[test]
fn what_sits_in_padded_positions_changes_nothing() {
    let b = batch();
    let variants = padding_variants();
    for (name, cfg) in all_models() {
        let (_vs, model) = build(&cfg);
        let want = model.forward_t(&b, false);
        for (i, v) in variants.iter().enumerate() {
            let d = max_diff(&want, &model.forward_t(v, false));
            // Float noise from summing over a different width is ~1e-6 relative; a leak through
            // the mask moves logits by far more.
            let scale = want.abs().max().double_value(&[]).max(1.0);
            assert!(d < 1e-5 * scale, "{name}: variant {i} moved the logits by {d}");
        }
    }
}

/// In training, an activation unit with Dice (batch statistics over its rows) sees the present
/// (query, key) pairs only: neither what sits behind the mask nor extra padded columns move the
/// logits or the running statistics. (It saw every padded position once, as `[B·L, H]` rows.)
#[test]
fn padding_stays_out_of_the_units_batch_statistics() {
    let dice_unit = attnrec::attention::ScoreConfig::DinMlp { hidden: vec![8, 4], activation: Activation::Dice };
    let mut din_sa = ModelConfig::by_name("din_sa").unwrap();
    if let ModelConfig::DinSa(c) = &mut din_sa {
        c.attention.score = dice_unit.clone();
        c.encoder.dropout = 0.0;
    }
    let dice = all_models().into_iter().find(|(n, _)| n == "din+dice+bn").unwrap().1;
    for (name, cfg) in [("din+dice+bn", dice), ("din_sa+dice", din_sa)] {
        let (vs, model) = build(&cfg);
        let want = model.forward_t(&batch(), true);
        for (i, v) in padding_variants().iter().enumerate() {
            let (vs2, model2) = build(&cfg);
            let d = max_diff(&want, &model2.forward_t(v, true));
            assert!(d < 1e-5, "{name}: variant {i} moved the training logits by {d}");
            let vars2 = vs2.variables();
            for (k, t) in vs.variables() {
                if k.contains("running") {
                    let d = max_diff(&t, &vars2[&k]);
                    assert!(d < 1e-6, "{name}: variant {i} moved {k} by {d}");
                }
            }
        }
    }
}

#[test]
fn saved_weights_reload_to_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    for (name, cfg) in all_models() {
        let (vs, model) = build(&cfg);
        let path = dir.path().join(format!("{}.safetensors", name.replace(':', "-")));
        vs.save(&path).unwrap();
        let mut vs2 = nn::VarStore::new(Device::Cpu);
        let again = cfg.build(vs2.root(), &feature_map()).unwrap();
        vs2.load(&path).unwrap();
        let d = max_diff(&model.forward_t(&batch(), false), &again.forward_t(&batch(), false));
        assert_eq!(d, 0.0, "{name}");
    }
}

/// A model knows nothing of the fused kernels: a forward pass with gradients but no tape (as any
/// new model's own test would run it) takes libtorch's path and gives every parameter the same
/// gradient as the trainer's step with its tape and kernels; nothing is left without one.
#[test]
fn without_a_tape_every_parameter_still_gets_its_gradient() {
    for (name, cfg) in all_models() {
        let (vs, model) = build(&cfg);
        // The trainer's loss: with an auxiliary loss (DIEN's), the training forward on a batch
        // with negatives, so that the auxiliary net's parameters are covered too.
        let aux = model.wants_negatives();
        let b = if aux { with_negatives(batch()) } else { batch() };
        let loss = || {
            let (logits, extra) = if aux { model.forward_train(&b) } else { (model.forward_t(&b, false), None) };
            let bce = logits.binary_cross_entropy_with_logits::<Tensor>(&b.label, None, None, tch::Reduction::Mean);
            extra.map_or_else(|| bce.shallow_clone(), |x| &bce + x)
        };
        let zero_grads = || {
            for (_, v) in vs.variables() {
                let mut g = v.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        };
        let taped_step = || {
            with_fused(true, || {
                let tape = Tape::record();
                tape.backward(&loss());
            });
            let mut taped: Vec<(String, Tensor)> = vs.variables().into_iter().filter(|(_, v)| v.grad().defined()).map(|(k, v)| (k, v.grad().copy())).collect();
            taped.sort_by(|a, b| a.0.cmp(&b.0));
            taped
        };
        // The first step, where no parameter has a gradient yet ...
        let first = taped_step();
        zero_grads();
        loss().backward();
        let trainable: Vec<String> = vs.variables().into_iter().filter(|(_, v)| v.requires_grad()).map(|(k, _)| k).collect();
        let vars = vs.variables();
        let plain: Vec<(String, Tensor)> = vars.iter().filter(|(_, v)| v.grad().defined()).map(|(k, v)| (k.clone(), v.grad().copy())).collect();
        // ... and a later one, where each has a gradient (zeroed, as the optimizer leaves it),
        // which the tape adds a kernel's parameter gradients into in place.
        zero_grads();
        let later = taped_step();
        // Hard attention's score gets no gradient either way (its choice is not differentiable).
        let mut plain_names: Vec<&String> = trainable.iter().filter(|k| plain.iter().any(|(p, _)| p == *k)).collect();
        plain_names.sort();
        assert!(plain_names.len() + 1 >= trainable.len(), "{name}: at most one parameter without a gradient");
        for (when, taped) in [("first step", &first), ("later step", &later)] {
            assert_eq!(plain_names, taped.iter().map(|(k, _)| k).collect::<Vec<_>>(), "{name}, {when}: the same parameters get gradients");
            for k in &plain_names {
                let (_, got) = plain.iter().find(|(p, _)| p == *k).expect("a plain gradient");
                let (_, want) = taped.iter().find(|(t, _)| t == *k).expect("the same names");
                let tol = 1e-5 + 1e-4 * want.abs().max().double_value(&[]);
                assert!(max_diff(got, want) < tol, "{name}, {when}: gradient of {k} differs by {}", max_diff(got, want));
            }
        }
    }
}

/// [`batch`] with a negative for each history event (0 at padding).
fn with_negatives(b: Batch) -> Batch {
    let i = |v: &[i64]| Tensor::from_slice(v).view([3, 4]);
    let negatives = Negatives {
        item: i(&[5, 4, 5, 2, 0, 0, 5, 2, 0, 0, 0, 0]),
        genre: i(&[3, 3, 3, 2, 0, 0, 3, 2, 0, 0, 0, 0]),
        side: i(&[1, 3, 1, 3, 0, 0, 1, 1, 0, 0, 0, 0]),
    };
    Batch { negatives: Some(negatives), ..b }
}

/// DIEN's auxiliary loss reads only pairs of present consecutive events: junk behind the mask
/// (in the history and its negatives) and extra padded columns change neither it nor the logits;
/// it is a positive number that reaches the extractor; switched off, no negatives are asked for.
#[test]
fn dien_aux_loss_reads_only_present_pairs() {
    // The default auxiliary net (the general score) and DIN's unit.
    check_dien_aux(&ModelConfig::by_name("dien").unwrap(), "aux.w");
    check_dien_aux(&dien_aux_din_unit(), "aux.mlp.layer0.linear.weight");
}

fn check_dien_aux(cfg: &ModelConfig, aux_param: &str) {
    let (vs, model) = build(cfg);
    assert!(model.wants_negatives());
    let b = with_negatives(batch());
    let off = b.hist_mask.logical_not();
    let n = b.negatives.as_ref().unwrap();
    let junk = |t: &Tensor| t.masked_fill(&off, 3);
    let widen = |t: &Tensor| Tensor::cat(&[Tensor::full([3, 2], 2, (t.kind(), Device::Cpu)), t.shallow_clone()], 1);
    let variants = [
        Batch {
            hist_item: junk(&b.hist_item),
            hist_genre: junk(&b.hist_genre),
            hist_item_side: junk(&b.hist_item_side),
            negatives: Some(Negatives { item: junk(&n.item), genre: junk(&n.genre), side: junk(&n.side) }),
            ..with_negatives(batch())
        },
        Batch {
            hist_item: widen(&b.hist_item),
            hist_genre: widen(&b.hist_genre),
            hist_gap: widen(&b.hist_gap),
            hist_feedback: widen(&b.hist_feedback),
            hist_item_side: widen(&b.hist_item_side),
            hist_mask: Tensor::cat(&[Tensor::zeros([3, 2], (Kind::Bool, Device::Cpu)), b.hist_mask.shallow_clone()], 1),
            negatives: Some(Negatives { item: widen(&n.item), genre: widen(&n.genre), side: widen(&n.side) }),
            ..with_negatives(batch())
        },
    ];
    let (logits, aux) = model.forward_train(&b);
    let aux = aux.expect("an auxiliary loss");
    let value = aux.double_value(&[]);
    assert!(value.is_finite() && value > 0.0, "aux loss {value}");
    for (i, v) in variants.iter().enumerate() {
        let (l2, a2) = model.forward_train(v);
        assert!(max_diff(&logits, &l2) < 1e-5, "variant {i} moved the logits by {}", max_diff(&logits, &l2));
        let d = (a2.unwrap().double_value(&[]) - value).abs();
        assert!(d < 1e-6 * value.max(1.0), "variant {i} moved the aux loss by {d}");
    }
    aux.backward();
    let vars = vs.variables();
    for k in ["extractor.weight_ih", "extractor.weight_hh", aux_param, "emb.item.weight"] {
        assert!(vars[k].grad().abs().max().double_value(&[]) > 0.0, "the aux loss reaches {k}");
    }
    // The evolution GRU and the head do not take part in the auxiliary loss.
    assert!(!vars["evolution.weight_ih"].grad().defined() || vars["evolution.weight_ih"].grad().abs().max().double_value(&[]) == 0.0);
    let mut off_cfg = cfg.clone();
    if let ModelConfig::Dien(c) = &mut off_cfg {
        c.aux_weight = 0.0;
    }
    let (_vs, plain) = build(&off_cfg);
    assert!(!plain.wants_negatives());
    assert!(plain.forward_train(&batch()).1.is_none());
}

/// libtorch's generator and thread count are process-wide: the training test runs alone.
#[test]
fn every_model_learns_on_the_tiny_preset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    tch::set_num_threads(1);
    for name in ["base", "din", "bst", "din_sa", "dien", "attn_pool", "attn_pool:local_p", "attn_pool:hard", "attn_pool:bahdanau"] {
        let mut cfg = RunConfig::new(data.clone(), ModelConfig::by_name(name).unwrap());
        // 10 epochs: with each history event's label as an input (the default), din_sa starts
        // at a valid AUC of 0.565 on tiny and needs more than 6 epochs to gain 0.03 on it.
        cfg.train.epochs = 10;
        cfg.train.patience = 10;
        cfg.train.lr = 0.005;
        cfg.train.batch_size = 64;
        let prepared = prepare(&cfg, &data, None).unwrap();
        let (vs, model) = cfg.model.fresh(&prepared.feature_map, Device::Cpu, cfg.train.seed).unwrap();
        let before = evaluate(model.as_ref(), &prepared.encoded, Split::Valid, 4096, Device::Cpu).auc.unwrap();
        fit(model.as_ref(), &vs, &prepared.encoded, &cfg.train, None, &mut Silent).unwrap();
        let after = evaluate(model.as_ref(), &prepared.encoded, Split::Valid, 4096, Device::Cpu).auc.unwrap();
        assert!(after > before + 0.03, "{name}: valid AUC {before:.4} → {after:.4}");
        eprintln!("{name}: valid AUC {before:.4} → {after:.4}");
    }
}

/// Every model declares its embedding tables to the trainer (`param_groups`; they get
/// `train.embedding_weight_decay`): exactly the variables its builders put under `emb.` and an
/// encoder's `positions`, each once, and the shared user, item and genre tables as the id tables.
#[test]
fn every_model_declares_its_embedding_tables() {
    for (name, cfg) in all_models() {
        let (vs, model) = build(&cfg);
        let groups = model.param_groups();
        let vars = vs.variables();
        let mut declared: Vec<&String> = vars.iter().filter(|(_, v)| groups.is_embedding(v)).map(|(k, _)| k).collect();
        declared.sort();
        let mut placed: Vec<&String> = vars.keys().filter(|k| k.starts_with("emb.") || k.contains(".positions.")).collect();
        placed.sort();
        assert_eq!(declared, placed, "{name}");
        assert_eq!(groups.embeddings.len(), declared.len(), "{name}: each table once, and only the model's variables");
        let ids = groups.ids.expect("the shared id tables");
        for (t, key) in [(&ids.user, "emb.user.weight"), (&ids.item, "emb.item.weight"), (&ids.genre, "emb.genre.weight")] {
            assert_eq!(t.data_ptr(), vars[key].data_ptr(), "{name}: {key}");
        }
    }
}

/// A model written here, as a user would add one: embeddings, a sigmoid gate over the history,
/// an MLP; no line of code for the fused kernels. One step of the trainer (its tape, fused
/// kernels and optimizer) moves every one of its parameters.
#[test]
fn a_new_model_without_fused_code_trains_every_parameter() {
    use attnrec::models::{Embeddings, ParamGroups};
    use attnrec::nn::{Mlp, MlpConfig};
    use tch::nn::{Module, ModuleT};
    struct Gated {
        emb: Embeddings,
        gate: nn::Linear,
        mlp: Mlp,
        out: nn::Linear,
    }
    impl CtrModel for Gated {
        fn forward_t(&self, b: &Batch, train: bool) -> Tensor {
            let hist = self.emb.history(b);
            let w = self.gate.forward(&hist).sigmoid() * b.hist_mask.unsqueeze(-1).to_kind(Kind::Float);
            let pooled = (hist * w).sum_dim_intlist(1, false, Kind::Float);
            let x = Tensor::cat(&[self.emb.user(b), self.emb.target(b), pooled], -1);
            self.out.forward(&self.mlp.forward_t(&x, train)).squeeze_dim(-1)
        }
        fn param_groups(&self) -> ParamGroups {
            self.emb.param_groups()
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let cfg = RunConfig::new(data.clone(), ModelConfig::by_name("base").unwrap());
    let prepared = prepare(&cfg, &data, None).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    let emb = Embeddings::new(&p / "emb", &prepared.feature_map, 8).unwrap();
    let item_dim = emb.item_dim();
    let mlp = Mlp::new(&p / "mlp", emb.user_dim() + 2 * item_dim, &MlpConfig::default());
    let model = Gated { gate: nn::linear(&p / "gate", item_dim, 1, Default::default()), out: nn::linear(&p / "out", mlp.out_dim(), 1, Default::default()), mlp, emb };
    let train = prepared.encoded.indices(Split::Train);
    let mut stepper = attnrec::train::Stepper::new(&model, &vs, &prepared.encoded, &train, &cfg.train).unwrap();
    let batch = attnrec::features::Batcher::new(&prepared.encoded, Device::Cpu).batch(&train[..256]);
    let before: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
    let loss = stepper.step(&batch, 0);
    assert!(loss.double_value(&[]).is_finite());
    let vars = vs.variables();
    for (k, old) in before {
        if !vars[&k].requires_grad() {
            continue;
        }
        assert!(max_diff(&vars[&k], &old) > 0.0, "{k} did not move in one step");
    }
}

/// A model kind's name is its serde name (configs' `kind`), and each names its own config.
#[test]
fn model_kinds_name_their_configs() {
    use attnrec::models::ModelKind;
    use attnrec::util::Choice;
    for &k in ModelKind::ALL {
        assert_eq!(k.name(), k.name_of());
        assert_eq!(ModelConfig::by_name(k.name()).unwrap().kind(), k);
        assert_eq!(k.default_config().name(), k.name());
    }
    let err = ModelConfig::by_name("dinn").err().unwrap().to_string();
    assert!(err.contains("unknown model 'dinn'") && err.contains("din_sa") && err.contains("local_p"), "{err}");
}

/// A model written here, as a user would add one, with no line for the fused kernels: shared
/// embeddings, DIN's target attention from the library (which takes its fused kernel on its
/// own), a linear head. One training step as the trainer runs it (tape recording, kernels on)
/// leaves every one of its parameters with a non-zero gradient.
struct UserModel {
    emb: attnrec::models::Embeddings,
    attn: attnrec::attention::Attention,
    head: nn::Linear,
}

impl CtrModel for UserModel {
    fn forward_t(&self, b: &Batch, train: bool) -> Tensor {
        let target = self.emb.target(b);
        let history = self.emb.history(b);
        let (interest, _) = self.attn.forward_t(&target, &history, &history, &b.hist_mask, train);
        let x = Tensor::cat(&[self.emb.user(b), target, interest], -1);
        nn::Module::forward(&self.head, &x).squeeze_dim(-1)
    }

    fn param_groups(&self) -> attnrec::models::ParamGroups {
        self.emb.param_groups()
    }
}

#[test]
fn a_new_model_using_the_library_din_attention_trains_every_parameter() {
    use attnrec::attention::{Attention, AttentionConfig};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tiny");
    generate(&Preset::Tiny.spec(), 42, &data).unwrap();
    let cfg = RunConfig::new(data.clone(), ModelConfig::by_name("din").unwrap());
    let prepared = prepare(&cfg, &data, None).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let emb = attnrec::models::Embeddings::new(&root / "emb", &prepared.feature_map, 8).unwrap();
    let d = emb.item_dim();
    let attn = Attention::new(&root / "attn", &AttentionConfig::preset("din").unwrap(), d, d, d).unwrap();
    let head = nn::linear(&root / "head", emb.user_dim() + 2 * d, 1, Default::default());
    let model = UserModel { emb, attn, head };
    let train = prepared.encoded.indices(Split::Train);
    assert!(cfg.train.fused, "the trainer's default: kernels on");
    let mut stepper = attnrec::train::Stepper::new(&model, &vs, &prepared.encoded, &train, &cfg.train).unwrap();
    let b = attnrec::features::Batcher::new(&prepared.encoded, Device::Cpu).batch(&train[..256]);
    assert!(stepper.step(&b, 0).double_value(&[]).is_finite());
    let vars = vs.variables();
    assert!(vars.len() >= 6, "{:?}", vars.keys());
    for (name, v) in &vars {
        let g = v.grad();
        assert!(g.defined(), "{name} got no gradient");
        assert!(g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{name}'s gradient is zero");
    }
}

/// `batch()`'s rows repeated as a user scored against several candidates would be: rows 0, 0, 0,
/// 1, 2, 2, 0, each with its own target.
fn repeated_histories() -> Batch {
    let b = batch();
    let rows = Tensor::from_slice(&[0i64, 0, 0, 1, 2, 2, 0]);
    let pick = |t: &Tensor| t.index_select(0, &rows);
    let i = |v: &[i64]| Tensor::from_slice(v);
    Batch {
        user: pick(&b.user),
        item: i(&[2, 3, 4, 5, 2, 3, 5]),
        genre: i(&[2, 3, 2, 3, 3, 2, 2]),
        hist_item: pick(&b.hist_item),
        hist_genre: pick(&b.hist_genre),
        hist_gap: pick(&b.hist_gap),
        hist_feedback: pick(&b.hist_feedback),
        hist_mask: pick(&b.hist_mask),
        user_side: pick(&b.user_side),
        item_side: i(&[2, 3, 1, 2, 1, 3, 0]),
        hist_item_side: pick(&b.hist_item_side),
        label: Tensor::zeros([7], (Kind::Float, Device::Cpu)),
        negatives: None,
    }
}

/// Scoring (no gradients) shares a repeated history's work across its rows: BST's history part
/// of its first attention (and, for one block, the fused kernel's whole encoder), din_sa's
/// encoding of the history; the logits are those of the plain pass (gradients on) and of each
/// row scored alone.
#[test]
fn self_attention_models_score_repeated_histories_as_the_plain_pass() {
    let mut two_blocks = ModelConfig::by_name("bst").unwrap();
    if let ModelConfig::Bst(c) = &mut two_blocks {
        c.transformer.blocks = 2;
        c.transformer.heads = 4;
    }
    for (name, cfg) in [("bst", ModelConfig::by_name("bst").unwrap()), ("bst, 2 blocks of 4 heads", two_blocks), ("din_sa", ModelConfig::by_name("din_sa").unwrap())] {
        let (_vs, model) = build(&cfg);
        let b = repeated_histories();
        let shared = tch::no_grad(|| model.forward_t(&b, false));
        let plain = model.forward_t(&b, false);
        // Relative to the logits' size: this head's weights (see `build`) make logits of ~20 and
        // turn the split softmax's float rounding (~1e-7 in the encoder) into ~1e-6 of them; a
        // wrong term would move them by whole units. Without repeated rows the two passes agree
        // exactly.
        let scale = 1.0 + plain.abs().max().double_value(&[]);
        assert!(max_diff(&shared, &plain) < 1e-5 * scale, "{name}: {} (logits up to {scale})", max_diff(&shared, &plain));
        for r in 0..7 {
            let one = |t: &Tensor| t.narrow(0, r, 1);
            let row = Batch {
                user: one(&b.user),
                item: one(&b.item),
                genre: one(&b.genre),
                hist_item: one(&b.hist_item),
                hist_genre: one(&b.hist_genre),
                hist_gap: one(&b.hist_gap),
                hist_feedback: one(&b.hist_feedback),
                hist_mask: one(&b.hist_mask),
                user_side: one(&b.user_side),
                item_side: one(&b.item_side),
                hist_item_side: one(&b.hist_item_side),
                label: one(&b.label),
                negatives: None,
            };
            let alone = tch::no_grad(|| model.forward_t(&row, false));
            let d = (alone.double_value(&[0]) - shared.double_value(&[r])).abs();
            assert!(d < 1e-5 * scale, "{name}, row {r}: {d}");
        }
    }
}
