//! Where a DIEN step's time goes on this machine: the GRU extractor, the target attention over
//! its states, the AUGRU and the auxiliary net, forward and forward + backward, for a batch of
//! 1,024 histories of 50 events 32 wide (DIEN at embed 16 on the synthetic presets).
//!
//!     source scripts/env.sh && cargo run --example profile_dien -- [THREADS]
use attnrec::attention::{AlignConfig, Attention, AttentionConfig, ContextConfig, ScoreConfig};
use attnrec::nn::{Activation, Cell, Gru, Mlp, MlpConfig};
use std::time::Instant;
use tch::nn::{self, Module, ModuleT};
use tch::{Device, Kind, Tensor};

fn time(name: &str, f: impl Fn()) {
    f();
    let t = Instant::now();
    for _ in 0..5 {
        f();
    }
    println!("{name:40} {:8.2} ms", t.elapsed().as_secs_f64() * 1000.0 / 5.0);
}

fn main() {
    let threads: i32 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(2);
    tch::set_num_threads(threads);
    let (b, l, d) = (1024, 50, 32);
    let x = Tensor::randn([b, l, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let q = Tensor::randn([b, d], (Kind::Float, Device::Cpu));
    let mask = Tensor::ones([b, l], (Kind::Bool, Device::Cpu));
    let vs = nn::VarStore::new(Device::Cpu);
    let gru = Gru::new(vs.root() / "g", d, d, Cell::Gru);
    let augru = Gru::new(vs.root() / "a", d, d, Cell::Augru);
    let acfg = AttentionConfig::new(ScoreConfig::din_default(), AlignConfig::Softmax, ContextConfig::Soft);
    let attn = Attention::new(vs.root() / "t", &acfg, d, d, d).unwrap();
    let aux = Mlp::new(vs.root() / "x", 2 * d, &MlpConfig { hidden: vec![100, 50], activation: Activation::Sigmoid, dropout: 0.0, batch_norm: false });
    let out = nn::linear(vs.root() / "o", 50, 1, Default::default());
    let w = Tensor::rand([b, l], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    time("gru fwd", || { let _ = gru.forward(&x, &mask, None); });
    time("gru fwd+bwd", || { gru.forward(&x, &mask, None).sum(Kind::Float).backward(); });
    time("gru last fwd+bwd", || { gru.last(&x, &mask, None).sum(Kind::Float).backward(); });
    time("augru last fwd+bwd", || { augru.last(&x, &mask, Some(&w)).sum(Kind::Float).backward(); });
    time("attention weights fwd+bwd", || { attn.forward_t(&q, &x, &x, &mask, true).1.sum(Kind::Float).backward(); });
    let pairs = Tensor::randn([2 * b * (l - 1), 2 * d], (Kind::Float, Device::Cpu));
    time("aux net fwd+bwd", || { out.forward(&aux.forward_t(&pairs, true)).sum(Kind::Float).backward(); });
}
