//! BST's fused scoring encoder alone (`encoder::encode_shared`) at the shapes `attnrec score`
//! gives it on `ml1m`: 2,048 rows a call, items 32 wide, 2 heads, a 128-wide feed-forward, full
//! histories of 50 events, each history shared by 100 rows. Prints the best of 7 calls on one
//! thread and on two, in rows/s and in GFLOP/s of its multiply-adds: the feed-forward at every
//! position, and per row the attention's (each history query against the target's key, the
//! target's query against every key, and the heads' projected values weighted, per position).
//! `cargo run -p attnrec-kernels --example encoder_speed` (the dev profile is the optimized one).
use attnrec_kernels::encoder::*;
use std::time::Instant;

fn main() {
    let (rows, len, d, f, heads, per_history) = (2048usize, 50usize, 32usize, 128usize, 2usize, 100usize);
    let u = rows.div_ceil(per_history);
    let val = |n: usize, seed: usize| (0..n).map(|i| (((i + seed) * 7919) % 23) as f32 * 0.02 - 0.22).collect::<Vec<f32>>();
    let (w1, b1, w2, b2, bo) = (val(f * d, 1), val(f, 2), val(d * f, 3), val(d, 4), val(d, 6));
    let (g1, c1, g2, c2) = (vec![1.0f32; d], vec![0.0f32; d], vec![1.0f32; d], vec![0.0f32; d]);
    let tail = Tail {
        d,
        f,
        norm1: Norm { weight: &g1, bias: &c1, eps: 1e-5 },
        w1: &w1,
        b1: &b1,
        w2: &w2,
        b2: &b2,
        act: Act::LeakyRelu(0.01),
        norm2: Norm { weight: &g2, bias: &c2, eps: 1e-5 },
    };
    let block = Block { heads, bo: &bo, tail };
    let ev = u * len;
    let (x, q, k, v_o, acc_o) = (val(ev * d, 7), val(ev * d, 8), val(ev * d, 9), val(ev * heads * d, 10), val(ev * heads * d, 11));
    let (max, sum) = (val(ev * heads, 12), vec![3.0f32; ev * heads]);
    let mask = vec![1u8; ev];
    let hist = Histories { len, x: &x, mask: &mask, q: &q, k: &k, max: &max, sum: &sum, acc_o: &acc_o, v_o: &v_o };
    let group: Vec<usize> = (0..rows).map(|r| r / per_history).collect();
    let (tx, tq, tk, tv_o) = (val(rows * d, 13), val(rows * d, 14), val(rows * d, 15), val(rows * heads * d, 16));
    let targets = Targets { group: &group, x: &tx, q: &tq, k: &tk, v_o: &tv_o };
    let mut out = vec![0.0f32; rows * 2 * d];
    // Multiply-adds a row: the feed-forward at its L + 1 positions; the scores (each history
    // query against the target's key, the target's query against every key); the heads'
    // projected values weighted, two terms per history position and one per event for the
    // target.
    let positions = (len + 1) as f64;
    let macs = positions * (2 * d * f) as f64 + (2 * len * d) as f64 + (3 * len * heads * d) as f64;
    for threads in [1, 2] {
        let mut best = f64::MAX;
        for _ in 0..7 {
            let t = Instant::now();
            encode_shared(&block, &hist, &targets, threads, &mut out);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "{threads} thread(s): {:.2} ms a call of {rows} rows, {:.0} rows/s, {:.1} GFLOP/s",
            best * 1e3,
            rows as f64 / best,
            2.0 * macs * rows as f64 / best / 1e9
        );
    }
}
