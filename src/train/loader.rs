//! Feeding the training step: batches are built from the encoded columns (reusing the
//! [`Batcher`]'s buffers) on a second thread, `prefetch` batches ahead, while the step computes.
use crate::error::Result;
use crate::features::{Batch, Batcher, Encoded};
use std::ops::ControlFlow;
use std::sync::mpsc::sync_channel;
use std::time::Instant;
use tch::Device;

/// Calls `step(batch, seconds_waited_for_it)` for the batch of every chunk, in order, until it
/// breaks or fails. With `prefetch` 0 the batches are built inline and the wait is the build time.
pub fn for_each_batch<F>(data: &Encoded, device: Device, chunks: &[&[usize]], prefetch: usize, mut step: F) -> Result<()>
where
    F: FnMut(Batch, f64) -> Result<ControlFlow<()>>,
{
    if prefetch == 0 {
        let mut batcher = Batcher::new(data, device);
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
            let mut batcher = Batcher::new(data, device);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::protocol::Split;

    #[test]
    fn prefetched_batches_equal_inline_ones_and_stop_early() {
        let data = crate::features::tests::toy_encoded();
        let idx = data.indices(Split::Train);
        let chunks: Vec<&[usize]> = idx.chunks(2).collect();
        let collect = |prefetch, limit: usize| {
            let mut seen = Vec::new();
            for_each_batch(&data, Device::Cpu, &chunks, prefetch, |b, waited| {
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
