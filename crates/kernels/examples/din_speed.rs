//! The fused DIN unit alone at ml1m's shapes (batch 1024, 50 positions, d = 32, 80 → 40 PReLU):
//! `cargo run --release -p attnrec-kernels --example din_speed`.
use attnrec_kernels::din::*;
use std::time::Instant;
fn main() {
    let (rows, len, d) = (1024usize, 50usize, 32usize);
    let hidden = [80usize, 40];
    let mut ws = vec![]; let mut bs = vec![]; let mut ss = vec![];
    let mut inp = 4 * d;
    for &h in &hidden { ws.push(vec![0.01f32; h * inp]); bs.push(vec![0.1f32; h]); ss.push(vec![0.25f32; h]); inp = h; }
    let out_w = vec![0.1f32; inp];
    let layers = (0..hidden.len()).map(|i| Layer { w: &ws[i], b: &bs[i], act: Act::Prelu, slope: Some(&ss[i]) }).collect();
    let unit = Unit { d, layers, out_w: &out_w, out_b: 0.0 };
    let q: Vec<f32> = (0..rows * d).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
    let keys: Vec<f32> = (0..rows * len * d).map(|i| (i % 11) as f32 * 0.1 - 0.5).collect();
    let mask = vec![1u8; rows * len];
    let g = vec![0.01f32; rows * len];
    // Multiply-adds per position: k · M_q (d × 80), 80 → 40, 40 → 1.
    let flops_fwd = (rows * len) as f64 * 2.0 * (d as f64 * 80.0 + 80.0 * 40.0 + 40.0);
    let mut scores = vec![0.0; rows * len];
    let mut saved = Saved::default();
    let (mut dq, mut dk) = (vec![0.0; q.len()], vec![0.0; keys.len()]);
    for threads in [1, 2] {
        for _ in 0..4 {
            let t = Instant::now();
            forward(&unit, &q, &keys, &mask, rows, len, threads, &mut scores, Some(&mut saved));
            let tf = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let _ = backward(&unit, &saved, &q, &keys, &g, threads, &mut dq, &mut dk);
            let tb = t.elapsed().as_secs_f64();
            println!("threads {threads}: forward {:.1} ms ({:.1} GFLOP/s), backward {:.1} ms ({:.1} GFLOP/s)", tf * 1e3, flops_fwd / tf / 1e9, tb * 1e3, 2.0 * flops_fwd / tb / 1e9);
        }
    }
}
