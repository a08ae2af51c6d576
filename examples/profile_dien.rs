//! Where a DIEN training step's time goes on this machine, each piece as the trainer runs it (a
//! tape records, so the fused kernels run): the GRU extractor, the target attention over its
//! states, the AUGRU, the auxiliary score, for a batch of 1,024 histories of 50 events 32 wide
//! (DIEN at embed 16 on the synthetic presets), forward and backward.
//!
//!     source scripts/env.sh && cargo run --example profile_dien -- [THREADS] [ONLY]
//!
//! `ONLY`: time only the pieces whose name contains it (for `perf record` on one of them).
use attnrec::attention::{AlignConfig, Attention, AttentionConfig, ContextConfig, Score, ScoreConfig};
use attnrec::nn::{Activation, Cell, Gru, Tape};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

fn time(name: &str, f: impl Fn() -> Tensor) {
    if std::env::args().nth(2).is_some_and(|only| !name.contains(&only)) {
        return;
    }
    let run = || {
        let tape = Tape::record();
        let loss = f().sum(Kind::Float);
        tape.backward(&loss);
    };
    run();
    let t = Instant::now();
    for _ in 0..5 {
        run();
    }
    println!("{name:40} {:8.2} ms", t.elapsed().as_secs_f64() * 1000.0 / 5.0);
}

fn main() {
    let threads: i32 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(2);
    tch::set_num_threads(threads);
    let (b, l, d) = (1024, 50, 32);
    let x = Tensor::randn([b, l, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let q = Tensor::randn([b, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mask = Tensor::ones([b, l], (Kind::Bool, Device::Cpu));
    let vs = nn::VarStore::new(Device::Cpu);
    let gru = Gru::new(vs.root() / "g", d, d, Cell::Gru);
    let augru = Gru::new(vs.root() / "a", d, d, Cell::Augru);
    let acfg = AttentionConfig::new(ScoreConfig::din_default(), AlignConfig::Softmax, ContextConfig::Soft);
    let attn = Attention::new(vs.root() / "t", &acfg, d, d, d).unwrap();
    let aux = Score::new(vs.root() / "x", &ScoreConfig::DinMlp { hidden: vec![100, 50], activation: Activation::Sigmoid }, d, d).unwrap();
    let w = Tensor::rand([b, l], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    time("gru (fused) fwd+bwd", || gru.forward(&x, &mask, None));
    time("augru (fused) fwd+bwd", || augru.last(&x, &mask, Some(&w)));
    time("attention weights fwd+bwd", || attn.forward_t(&q, &x, &x, &mask, true).1);
    let gcfg = AttentionConfig::new(ScoreConfig::General, AlignConfig::Softmax, ContextConfig::Soft);
    let gattn = Attention::new(vs.root() / "tg", &gcfg, d, d, d).unwrap();
    time("attention weights, general score fwd+bwd", || gattn.forward_t(&q, &x, &x, &mask, true).1);
    let p = b * (l - 1);
    let h = Tensor::randn([p, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let both = Tensor::randn([p, 2, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let on = Tensor::ones([p, 2], (Kind::Bool, Device::Cpu));
    time("aux score on 2 x 50,176 pairs fwd+bwd", || aux.forward_masked_t(&h, &both, &on, true));
    let general = Score::new(vs.root() / "y", &ScoreConfig::General, d, d).unwrap();
    time("aux general score fwd+bwd", || general.forward_masked_t(&h, &both, &on, true));
    let items = Tensor::randn([b, l, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let negs = Tensor::randn([b, l, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let wg = (Tensor::randn([d, d], (Kind::Float, Device::Cpu)) * 0.1).set_requires_grad(true);
    time("aux loss, general, fused kernel fwd+bwd", || attnrec::nn::pair_loss::general_pair_bce(&x, &items, &negs, &wg, &mask).unwrap());
    time("aux loss, general, libtorch fwd+bwd", || {
        let next = |t: &Tensor| t.narrow(1, 1, l - 1).reshape([-1, d]);
        let hw = x.narrow(1, 0, l - 1).reshape([-1, d]).matmul(&wg);
        let both = Tensor::stack(&[next(&items), next(&negs)], 1);
        let logits = (both * hw.unsqueeze(1)).sum_dim_intlist(-1, false, None);
        let labels = Tensor::from_slice(&[1.0f32, 0.0]).expand_as(&logits);
        logits.binary_cross_entropy_with_logits::<Tensor>(&labels, None, None, tch::Reduction::Sum) / (b * (l - 1)) as f64
    });
    {
        use attnrec_kernels::pair_bce as k;
        let shape = k::Shape { rows: b as usize, len: l as usize, dim: d as usize };
        let v = |t: &Tensor| Vec::<f32>::try_from(t.detach().reshape([-1])).unwrap();
        let (xs, is, ns, ws) = (v(&x), v(&items), v(&negs), v(&wg));
        let keep = vec![1u8; (b * l) as usize];
        let t = Instant::now();
        for _ in 0..5 { std::hint::black_box(k::forward(shape, &xs, &is, &ns, &ws, &keep, threads as usize)); }
        println!("{:40} {:8.2} ms", "aux kernel forward alone", t.elapsed().as_secs_f64() * 200.0);
        let (mut a, mut c, mut e) = (vec![0f32; xs.len()], vec![0f32; xs.len()], vec![0f32; xs.len()]);
        let t = Instant::now();
        for _ in 0..5 { std::hint::black_box(k::backward(shape, &xs, &is, &ns, &ws, &keep, 1.0, threads as usize, &mut a, &mut c, &mut e)); }
        println!("{:40} {:8.2} ms", "aux kernel backward alone", t.elapsed().as_secs_f64() * 200.0);
    }
    let mlp = attnrec::nn::Mlp::new(vs.root() / "z", 2 * d, &attnrec::nn::MlpConfig { hidden: vec![100, 50], activation: Activation::Sigmoid, dropout: 0.0, batch_norm: false });
    let out = nn::linear(vs.root() / "zo", 50, 1, Default::default());
    let cat = Tensor::cat(&[Tensor::cat(&[&h, &both.select(1, 0)], -1), Tensor::cat(&[&h, &both.select(1, 1)], -1)], 0);
    time("aux paper MLP [h, e] (libtorch) fwd+bwd", || { use tch::nn::{Module, ModuleT}; out.forward(&mlp.forward_t(&cat, true)) });
    time("gi projection alone fwd+bwd", || x.matmul(&Tensor::randn([d, 3 * d], (Kind::Float, Device::Cpu))));
}
