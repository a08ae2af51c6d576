//! Where a Transformer block's time goes on this machine: forward and backward of one block at
//! 8, 2 and 1 heads, libtorch's fused attention against the composed one, and the feed-forward,
//! layer-norm and dropout pieces, for a batch of 256 sequences of 51 events 32 wide (BST on the
//! synthetic presets).
//!
//!     source scripts/env.sh && cargo run --example profile_block -- [THREADS]
use attnrec::attention::{Attention, AttentionConfig};
use attnrec::nn::{TransformerBlock, TransformerConfig};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

fn time(name: &str, f: impl Fn()) {
    f();
    let t = Instant::now();
    for _ in 0..20 {
        f();
    }
    println!("{name:40} {:8.2} ms", t.elapsed().as_secs_f64() * 1000.0 / 20.0);
}

fn main() {
    let threads: i32 = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(2);
    tch::set_num_threads(threads);
    let (b, l, d) = (256, 51, 32);
    let x = Tensor::randn([b, l, d], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mask = Tensor::rand([b, l], (Kind::Float, Device::Cpu)).gt(0.3);
    for heads in [8, 2, 1] {
        let vs = nn::VarStore::new(Device::Cpu);
        let cfg = TransformerConfig { heads, dropout: 0.1, ..Default::default() };
        let block = TransformerBlock::new(vs.root(), &cfg, d).unwrap();
        time(&format!("block h={heads} fwd"), || { let _ = block.forward_t(&x, &mask, true); });
        time(&format!("block h={heads} fwd+bwd"), || { block.forward_t(&x, &mask, true).sum(Kind::Float).backward(); });
        let acfg = AttentionConfig { heads, dim: Some(d), ..AttentionConfig::preset("transformer").unwrap() };
        let attn = Attention::new(vs.root() / "a", &acfg, d, d, d).unwrap();
        time(&format!("attn fused h={heads} fwd+bwd"), || { attn.context_t(&x, &x, &x, &mask, true).sum(Kind::Float).backward(); });
        time(&format!("attn manual h={heads} fwd+bwd"), || { attn.forward_t(&x, &x, &x, &mask, true).0.sum(Kind::Float).backward(); });
    }
    {
        let vs = nn::VarStore::new(Device::Cpu);
        let acfg = AttentionConfig { heads: 1, dim: Some(d), ..AttentionConfig::preset("transformer").unwrap() };
        let attn = Attention::new(vs.root() / "a", &acfg, d, d, d).unwrap();
        time("attn fused h=1 fwd only", || { let _ = attn.context_t(&x, &x, &x, &mask, true); });
        let xd = x.detach();
        time("attn fused h=1 fwd nograd", || { let _ = attn.context_t(&xd, &xd, &xd, &mask, true); });
        let q4 = xd.unsqueeze(1);
        let m4 = mask.view([b, 1, 1, l]);
        time("raw sdpa bool mask", || { let _ = Tensor::scaled_dot_product_attention(&q4, &q4, &q4, Some(&m4), 0.0, false, None, false); });
        let fm = Tensor::zeros([b, 1, 1, l], (Kind::Float, Device::Cpu)).masked_fill(&m4.logical_not(), f64::NEG_INFINITY);
        time("raw sdpa float mask", || { let _ = Tensor::scaled_dot_product_attention(&q4, &q4, &q4, Some(&fm), 0.0, false, None, false); });
        time("raw sdpa no mask", || { let _ = Tensor::scaled_dot_product_attention(&q4, &q4, &q4, None::<Tensor>, 0.0, false, None, false); });
        time("manual matmul softmax", || { let s = q4.matmul(&q4.transpose(-2, -1)).masked_fill(&m4.logical_not(), -1e30).softmax(-1, Kind::Float); let _ = s.matmul(&q4); });
    }
    let lin = nn::linear(nn::VarStore::new(Device::Cpu).root(), d, 128, Default::default());
    use tch::nn::Module;
    time("ffn linear fwd+bwd", || { lin.forward(&x).sum(Kind::Float).backward(); });
    let ln = nn::layer_norm(nn::VarStore::new(Device::Cpu).root(), vec![d], Default::default());
    time("layernorm fwd+bwd", || { ln.forward(&x).sum(Kind::Float).backward(); });
    time("dropout fwd+bwd", || { x.dropout(0.1, true).sum(Kind::Float).backward(); });
}
