//! Feeding the training step: batches are built from the encoded columns (reusing the
//! [`Batcher`]'s buffers) on a second thread, `prefetch` batches ahead, while the step computes.
use crate::error::Result;
use crate::features::{Batch, Batcher, Encoded, NegativePool};
use std::ops::ControlFlow;
use std::sync::mpsc::sync_channel;
use std::time::Instant;
use tch::Device;

/// Calls `step(batch, seconds_waited_for_it)` for the batch of every chunk, in order, until it
/// breaks or fails. With `prefetch` 0 the batches are built inline and the wait is the build time.
/// With `negatives`, every batch carries negative history events drawn from that pool.
pub fn for_each_batch<F>(
    data: &Encoded,
    device: Device,
    chunks: &[&[usize]],
    prefetch: usize,
    negatives: Option<&NegativePool>,
    mut step: F,
) -> Result<()>
where
    F: FnMut(Batch, f64) -> Result<ControlFlow<()>>,
{
    if prefetch == 0 {
        let mut batcher = Batcher::new(data, device).with_negatives(negatives);
        for chunk in chunks {
            let t = Instant::now();
            let b = batcher.batch(chunk);
            if step(b, t.elapsed().as_secs_f64())?.is_break() {
                break;
            }
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Batch>(prefetch);
        scope.spawn(move || {
            let mut batcher = Batcher::new(data, device).with_negatives(negatives);
            for chunk in chunks {
                // The receiver is gone when the step broke or failed: stop building.
                if tx.send(batcher.batch(chunk)).is_err() {
                    break;
                }
            }
        });
        loop {
            let t = Instant::now();
            let Ok(b) = rx.recv() else { return Ok(()) };
            if step(b, t.elapsed().as_secs_f64())?.is_break() {
                return Ok(());
            }
        }
        // `rx` is dropped before the scope joins the builder, which unblocks its `send`.
    })
}

/// Groups an epoch's shuffled `order` into batches of similar history length: each window of
/// `window` batches (`window × batch_size` samples) is sorted by history length (stably, so ties
/// keep the shuffle's order), cut into batches, and the batches of the window are shuffled by
/// `rng`. A batch's tensors are as wide as its longest history, so a batch of short histories
/// costs less; which samples share a batch changes, and with it the run's results.
pub fn bucket_by_length(order: &mut [usize], data: &Encoded, batch_size: usize, window: usize, rng: &mut impl rand::Rng) {
    use rand::seq::SliceRandom;
    let batch_size = batch_size.max(1);
    for w in order.chunks_mut(batch_size * window.max(1)) {
        w.sort_by_key(|&k| data.history(k).len());
        let mut batches: Vec<Vec<usize>> = w.chunks(batch_size).map(<[usize]>::to_vec).collect();
        // A short last batch (the epoch's end) stays last, so that every other batch is full.
        let full = if batches.last().is_some_and(|b| b.len() < batch_size) { batches.len() - 1 } else { batches.len() };
        batches[..full].shuffle(rng);
        for (dst, src) in w.iter_mut().zip(batches.iter().flatten()) {
            *dst = *src;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::protocol::Split;

    #[test]
    fn length_buckets_permute_the_shuffle_into_batches_of_similar_length() {
        use rand::SeedableRng;
        let data = crate::features::tests::toy_encoded();
        let shuffled: Vec<usize> = (0..data.len()).rev().collect();
        let len = |k: usize| data.history(k).len();
        assert!(shuffled.iter().map(|&k| len(k)).collect::<std::collections::HashSet<_>>().len() > 2, "the toy data needs varied lengths");
        let bucket = |seed| {
            let mut order = shuffled.clone();
            bucket_by_length(&mut order, &data, 2, 3, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
            order
        };
        let order = bucket(1);
        assert_eq!(order, bucket(1), "deterministic for a seed");
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..data.len()).collect::<Vec<_>>(), "a permutation");
        // Within each window of 3 batches of 2, the batches hold consecutive runs of the window's
        // samples sorted by length: no batch's length range overlaps another's.
        for w in order.chunks(6) {
            let mut ranges: Vec<(usize, usize)> =
                w.chunks(2).map(|b| (b.iter().map(|&k| len(k)).min().unwrap(), b.iter().map(|&k| len(k)).max().unwrap())).collect();
            ranges.sort();
            assert!(ranges.windows(2).all(|p| p[0].1 <= p[1].0), "{ranges:?}");
        }
        // The window's samples stay in their window.
        for (a, b) in order.chunks(6).zip(shuffled.chunks(6)) {
            let (mut a, mut b) = (a.to_vec(), b.to_vec());
            a.sort();
            b.sort();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn prefetched_batches_equal_inline_ones_and_stop_early() {
        let data = crate::features::tests::toy_encoded();
        let idx = data.indices(Split::Train);
        let chunks: Vec<&[usize]> = idx.chunks(2).collect();
        let collect = |prefetch, limit: usize| {
            let mut seen = Vec::new();
            for_each_batch(&data, Device::Cpu, &chunks, prefetch, None, |b, waited| {
                assert!(waited >= 0.0);
                seen.push(Vec::<i64>::try_from(b.hist_item.flatten(0, -1)).unwrap());
                Ok(if seen.len() == limit { ControlFlow::Break(()) } else { ControlFlow::Continue(()) })
            })
            .unwrap();
            seen
        };
        let inline = collect(0, usize::MAX);
        assert_eq!(inline.len(), chunks.len());
        assert_eq!(collect(2, usize::MAX), inline);
        assert_eq!(collect(1, 1), inline[..1].to_vec());
    }
}
