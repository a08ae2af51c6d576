//! The backward pass of an embedding lookup: `∂table[r] += Σ ∂out[i]` over the looked-up
//! positions `i` with `indices[i] = r`, the padding index excepted.
//!
//! libtorch's CPU `embedding_dense_backward` dispatches one `add` operator per looked-up row: 2.1 ms
//! for a batch of 256 histories of 50 rows of 16 floats on this project's 2-core CI machine (torch
//! 2.13), 8.4 ms at 1,024, for every table a history reads. This is one pass over the rows.
use crate::parallel::run_parts;

/// Below this many floats to add (about 20 µs of work on one thread), one thread does it all:
/// every worker reads all the indices, and waking one costs microseconds on libtorch's spinning
/// OpenMP workers (tens of microseconds on fresh threads).
const PARALLEL_MIN: usize = 1 << 16;

/// Adds row `i` of `grads` (`[n, dim]`) into row `indices[i]` of `table` (`[rows, dim]`) for every
/// `i` whose index is not `padding`.
///
/// The table's rows are split between up to `threads` workers, each of which reads every index
/// and adds only into its own rows, so that each row's sum is taken in index order whatever the
/// number of threads (the result is the same, bit for bit). Returns `Err(i)` for the first
/// position whose index is out of range, having changed nothing.
pub fn scatter_add_rows(table: &mut [f32], dim: usize, indices: &[i64], grads: &[f32], padding: Option<i64>, threads: usize) -> Result<(), usize> {
    assert!(dim > 0 && table.len() % dim == 0, "embedding backward: the table is not [rows, {dim}]");
    assert_eq!(grads.len(), indices.len() * dim, "embedding backward: gradients are not [indices, dim]");
    let rows = table.len() / dim;
    if let Some(i) = indices.iter().position(|&r| r < 0 || r as usize >= rows) {
        return Err(i);
    }
    let parts = if indices.len() * dim < PARALLEL_MIN { 1 } else { threads.clamp(1, rows.max(1)) };
    let per = rows.div_ceil(parts.max(1)).max(1);
    let pieces: Vec<(usize, &mut [f32])> = table.chunks_mut(per * dim).enumerate().map(|(p, t)| (p * per, t)).collect();
    let skip = padding.map_or(usize::MAX, |p| p as usize);
    run_parts(pieces, |(first, part)| match dim {
        // The common widths as constants, so that each row's sum is a few unrolled vector adds.
        8 => add_rows::<8>(part, first, indices, grads, skip),
        16 => add_rows::<16>(part, first, indices, grads, skip),
        32 => add_rows::<32>(part, first, indices, grads, skip),
        64 => add_rows::<64>(part, first, indices, grads, skip),
        _ => add_rows_dyn(part, dim, first, indices, grads, skip),
    });
    Ok(())
}

/// The rows `first..` that `part` holds: each index's gradient row added into its row, the
/// index `skip` and those of other parts passed over.
fn add_rows<const D: usize>(part: &mut [f32], first: usize, indices: &[i64], grads: &[f32], skip: usize) {
    let rows = part.len() / D;
    for (&r, g) in indices.iter().zip(grads.chunks_exact(D)) {
        let k = (r as usize).wrapping_sub(first);
        if k < rows && r as usize != skip {
            let t: &mut [f32; D] = (&mut part[k * D..(k + 1) * D]).try_into().expect("D floats");
            let g: &[f32; D] = g.try_into().expect("D floats");
            for c in 0..D {
                t[c] += g[c];
            }
        }
    }
}

fn add_rows_dyn(part: &mut [f32], dim: usize, first: usize, indices: &[i64], grads: &[f32], skip: usize) {
    let rows = part.len() / dim;
    for (&r, g) in indices.iter().zip(grads.chunks_exact(dim)) {
        let k = (r as usize).wrapping_sub(first);
        if k < rows && r as usize != skip {
            part[k * dim..][..dim].iter_mut().zip(g).for_each(|(t, &g)| *t += g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, one position at a time.
    fn naive(rows: usize, dim: usize, indices: &[i64], grads: &[f32], padding: Option<i64>) -> Vec<f32> {
        let mut t = vec![0.5f32; rows * dim];
        for (i, &r) in indices.iter().enumerate() {
            if Some(r) != padding {
                for c in 0..dim {
                    t[r as usize * dim + c] += grads[i * dim + c];
                }
            }
        }
        t
    }

    fn case(n: usize, rows: usize, dim: usize) -> (Vec<i64>, Vec<f32>) {
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let indices = (0..n).map(|_| (next() % rows as u64) as i64).collect();
        let grads = (0..n * dim).map(|_| (next() % 2001) as f32 / 1000.0 - 1.0).collect();
        (indices, grads)
    }

    #[test]
    fn matches_the_definition_for_any_thread_count() {
        // Small (one thread) and large enough to split (a constant width and another), with
        // repeated rows and the padding row.
        for (n, rows, dim) in [(7, 5, 3), (5000, 37, 16), (70_000, 4000, 16), (360_000, 1000, 3)] {
            let (indices, grads) = case(n, rows, dim);
            for padding in [None, Some(0), Some(3)] {
                let want = naive(rows, dim, &indices, &grads, padding);
                for threads in [1, 2, 3, 64] {
                    let mut got = vec![0.5f32; rows * dim];
                    scatter_add_rows(&mut got, dim, &indices, &grads, padding, threads).unwrap();
                    if threads == 1 {
                        let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                        assert!(d < 1e-4, "n {n} rows {rows} padding {padding:?}: off by {d}");
                    } else {
                        let mut one = vec![0.5f32; rows * dim];
                        scatter_add_rows(&mut one, dim, &indices, &grads, padding, 1).unwrap();
                        assert_eq!(got, one, "n {n} rows {rows}: {threads} threads differ from one");
                    }
                }
                if let Some(p) = padding {
                    let p = p as usize;
                    assert!(want[p * dim..(p + 1) * dim].iter().all(|&v| v == 0.5), "the padding row stays");
                }
            }
        }
    }

    #[test]
    fn an_index_out_of_range_changes_nothing() {
        let mut t = vec![1.0f32; 6];
        assert_eq!(scatter_add_rows(&mut t, 2, &[0, 3, 1], &[1.0; 6], None, 2), Err(1));
        assert_eq!(scatter_add_rows(&mut t, 2, &[-1], &[1.0; 2], None, 1), Err(0));
        assert_eq!(t, vec![1.0; 6]);
        scatter_add_rows(&mut t, 2, &[], &[], None, 2).unwrap();
        let mut empty: Vec<f32> = Vec::new();
        assert_eq!(scatter_add_rows(&mut empty, 4, &[0], &[0.0; 4], None, 2), Err(0));
    }
}
