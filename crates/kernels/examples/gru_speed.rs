//! DIEN's GRU kernel alone at its training shapes (batch 1,024, 50 steps, 32 in, 32 hidden, full
//! histories), forward and backward, with the GEMMs' share: the same GEMM shapes timed apart.
//! `cargo run -p attnrec-kernels --example gru_speed` (the dev profile is the optimized one).
//! Best of 5 runs each; the machine this was written on swings by ±30 % from run to run.
//! `gru_speed forward` (or `backward`) repeats one pass of the GRU alone on one thread, for `perf`.
use attnrec_kernels::gemm::{gemm, mat};
use attnrec_kernels::gru::*;
use std::time::Instant;

extern "C" {
    fn mallopt(param: i32, value: i32) -> i32;
}

fn main() {
    // As attnrec sets glibc's allocator (src/device.rs): freed buffers stay in the heap, so a
    // pass's scratch does not come back as fresh zeroed pages from the kernel at every call.
    // SAFETY: only sets allocator parameters, before any other thread exists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        mallopt(-3, 32 << 20); // M_MMAP_THRESHOLD
        mallopt(-1, 1 << 30); // M_TRIM_THRESHOLD
    }
    let (rows, len, d, h) = (1024usize, 50usize, 32usize, 32usize);
    let s = Shape { rows, len, input: d, hidden: h };
    let val = |i: usize, k: f32| ((i * 7919) % 23) as f32 * k - 11.0 * k;
    let x: Vec<f32> = (0..rows * len * d).map(|i| val(i, 0.02)).collect();
    let (w_ih, w_hh) = ((0..3 * h * d).map(|i| val(i, 0.01)).collect::<Vec<_>>(), (0..3 * h * h).map(|i| val(i + 3, 0.01)).collect::<Vec<_>>());
    let (b_ih, b_hh) = (vec![0.01f32; 3 * h], vec![-0.01f32; 3 * h]);
    let w = Weights { w_ih: &w_ih, b_ih: &b_ih, w_hh: &w_hh, b_hh: &b_hh };
    let keep = vec![1u8; rows * len];
    let att: Vec<f32> = (0..rows * len).map(|i| (i % 10) as f32 * 0.1).collect();
    let dstates: Vec<f32> = (0..rows * len * h).map(|i| val(i, 0.001)).collect();
    // Multiply-adds: forward x·W_ihᵀ and h·W_hhᵀ per row and step; backward twice that.
    let fwd = (rows * len) as f64 * 2.0 * (d * 3 * h + h * 3 * h) as f64;
    // `gru_speed forward|backward`: that pass of the GRU alone, 50 times on one thread, for `perf`.
    if let Some(pass) = std::env::args().nth(1) {
        let mut states = vec![0.0f32; rows * len * h];
        let mut saved = Saved::default();
        let mut dx = vec![0.0f32; rows * len * d];
        forward(s, &x, w, &keep, None, 1, &mut states, Some(&mut saved));
        let t = Instant::now();
        for _ in 0..50 {
            match pass.as_str() {
                "forward" => forward(s, &x, w, &keep, None, 1, &mut states, Some(&mut saved)),
                "backward" => drop(std::hint::black_box(backward(s, w, &keep, None, &mut saved, &dstates, 1, &mut dx))),
                _ => panic!("usage: gru_speed [forward|backward]"),
            }
        }
        println!("{pass}: {:.2} ms a pass", t.elapsed().as_secs_f64() * 1e3 / 50.0);
        return;
    }
    for threads in [1, 2] {
        for (name, a) in [("gru", None), ("augru", Some(&att[..]))] {
            let mut states = vec![0.0f32; rows * len * h];
            let mut saved = Saved::default();
            let mut dx = vec![0.0f32; rows * len * d];
            let (mut tf, mut tb, mut tn) = (f64::MAX, f64::MAX, f64::MAX);
            for _ in 0..5 {
                // Scoring's forward pass: nothing kept for a backward pass.
                let t = Instant::now();
                forward(s, &x, w, &keep, a, threads, &mut states, None);
                tn = tn.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                forward(s, &x, w, &keep, a, threads, &mut states, Some(&mut saved));
                tf = tf.min(t.elapsed().as_secs_f64());
                let t = Instant::now();
                std::hint::black_box(backward(s, w, &keep, a, &mut saved, &dstates, threads, &mut dx));
                tb = tb.min(t.elapsed().as_secs_f64());
            }
            println!(
                "{name:6} threads {threads}: forward {:6.2} ms ({:5.1} GFLOP/s; {:6.2} ms keeping nothing), backward {:6.2} ms ({:5.1} GFLOP/s)",
                tf * 1e3,
                fwd / tf / 1e9,
                tn * 1e3,
                tb * 1e3,
                2.0 * fwd / tb / 1e9
            );
        }
    }
    // The forward pass's two GEMMs per step, one thread over all rows: what they cost alone.
    let m = rows;
    let xb: Vec<f32> = x[..m * d].to_vec();
    let mut out = vec![0.0f32; m * 3 * h];
    let t = Instant::now();
    for _ in 0..2 * len {
        gemm(m, d, 3 * h, mat(&xb, d, 1), &w_ih, 3 * h, 0.0, &mut out, 3 * h);
    }
    let tg = t.elapsed().as_secs_f64();
    println!("forward GEMMs alone, 1 thread: {:6.2} ms ({:5.1} GFLOP/s)", tg * 1e3, fwd / tg / 1e9);
    let mut dw = vec![0.0f32; 3 * h * d];
    let t = Instant::now();
    for _ in 0..2 * len {
        gemm(3 * h, m, d, mat(&out, 1, 3 * h), &xb, d, 1.0, &mut dw, d);
    }
    let tg = t.elapsed().as_secs_f64();
    println!("weight-gradient GEMMs alone (Aᵀ·B), 1 thread: {:6.2} ms ({:5.1} GFLOP/s)", tg * 1e3, fwd / tg / 1e9);
}
