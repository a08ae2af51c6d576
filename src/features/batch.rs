//! Mini-batches as tensors. Histories are right-aligned (most recent event in the last column) and
//! cut to the longest history in the batch, so short histories do not pay for `L` padded columns;
//! masked positions contribute exactly nothing, so the result does not depend on that width.
use super::Encoded;
use tch::{Device, Kind, Tensor};

/// One mini-batch. Shapes: `B` samples, `L` ≤ history_len columns.
#[derive(Debug)]
pub struct Batch {
    /// `[B]` i64
    pub user: Tensor,
    /// `[B]` i64
    pub item: Tensor,
    /// `[B]` i64
    pub genre: Tensor,
    /// `[B, L]` i64, 0 = padding
    pub hist_item: Tensor,
    /// `[B, L]` i64, 0 = padding
    pub hist_genre: Tensor,
    /// `[B, L]` i64: [`super::gap_bucket`] of the time from each history event to the sample, 0 =
    /// padding
    pub hist_gap: Tensor,
    /// `[B, L]` i64: [`super::feedback_index`] of each history event's own label (1 = no click, 2 =
    /// click, 3 = the sample's own second: not yet known), 0 = padding
    pub hist_feedback: Tensor,
    /// `[B, L]` bool, true where a history event is present
    pub hist_mask: Tensor,
    /// `[B]` i64: the user's and the item's rows in the feature map's side tables, and `[B, L]`
    /// the history items' (0 = padding; all 0 without side features)
    pub user_side: Tensor,
    pub item_side: Tensor,
    pub hist_item_side: Tensor,
    /// `[B]` f32 in {0, 1}
    pub label: Tensor,
    /// A negative event for each history event, for an auxiliary loss (DIEN's): training batches
    /// of a model that asks for them ([`crate::models::CtrModel::wants_negatives`]), else `None`.
    pub negatives: Option<Negatives>,
}

/// Each history event's negative: another event's item, genre and side-table row (`[B, L]` i64,
/// 0 at padding), drawn by [`NegativePool::draw`].
#[derive(Debug)]
pub struct Negatives {
    pub item: Tensor,
    pub genre: Tensor,
    pub side: Tensor,
}

/// The events an auxiliary loss draws negative behaviors from: the training samples, so that a
/// draw sees nothing of a later split, and an item is drawn as often as it was rated (by
/// popularity, as DIEN's reference code samples). The negative of history event `e` is a function
/// of `e` alone (a hash), so it is drawn once: the same in every epoch, batch and sample whose
/// history holds `e`, and after a resume. It is never `e`'s own item, unless the pool holds no
/// other.
#[derive(Debug, Clone)]
pub struct NegativePool {
    events: Vec<u32>,
}

impl NegativePool {
    /// A pool of the events `train` (indices into the encoded arrays).
    pub fn new(train: &[usize]) -> Self {
        let mut events: Vec<u32> = train.iter().map(|&k| k as u32).collect();
        // The draw must not depend on the order the caller happened to list them in.
        events.sort_unstable();
        NegativePool { events }
    }

    /// The event whose item is history event `e`'s negative; `None` for an empty pool.
    pub fn draw(&self, data: &Encoded, e: usize) -> Option<usize> {
        let n = self.events.len() as u64;
        if n == 0 {
            return None;
        }
        let mut state = e as u64;
        let mut pick = 0;
        // Redraw while the draw is `e`'s own item: with popular items ~1 % of draws; 16 tries
        // leave a repeat only when almost every pooled event is that item.
        for _ in 0..16 {
            state = splitmix64(state);
            pick = self.events[(state % n) as usize] as usize;
            if data.item[pick] != data.item[e] {
                break;
            }
        }
        Some(pick)
    }
}

/// SplitMix64's output function (Steele et al. 2014): a well-mixed 64-bit hash of `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Batch {
    pub fn size(&self) -> i64 {
        self.user.size()[0]
    }
}

/// Builds batches from encoded events, reusing its buffers between batches.
pub struct Batcher<'a> {
    data: &'a Encoded,
    device: Device,
    hist_item: Vec<i64>,
    hist_genre: Vec<i64>,
    hist_gap: Vec<i64>,
    hist_side: Vec<i64>,
    hist_feedback: Vec<i64>,
    mask: Vec<bool>,
    min_width: usize,
    negatives: Option<(&'a NegativePool, [Vec<i64>; 3])>,
}

impl<'a> Batcher<'a> {
    pub fn new(data: &'a Encoded, device: Device) -> Self {
        Batcher { data, device, hist_item: Vec::new(), hist_genre: Vec::new(), hist_gap: Vec::new(), hist_side: Vec::new(), hist_feedback: Vec::new(), mask: Vec::new(), min_width: 1, negatives: None }
    }

    /// Gives every batch [`Negatives`] drawn from `pool`.
    pub fn with_negatives(mut self, pool: Option<&'a NegativePool>) -> Self {
        self.negatives = pool.map(|p| (p, Default::default()));
        self
    }

    /// Pads every batch's histories to at least `w` columns (a fixed-shape export traces `L`).
    pub fn with_min_width(mut self, w: usize) -> Self {
        self.min_width = w.max(1);
        self
    }

    /// The batch of events `idx` (indices into the encoded arrays).
    pub fn batch(&mut self, idx: &[usize]) -> Batch {
        let d = self.data;
        self.batch_with(idx.len(), |r| {
            let k = idx[r];
            Row {
                user: d.user[k],
                item: d.item[k],
                genre: d.genre[k],
                history: d.history(k),
                timestamp: d.timestamp[k],
                known_before: d.timestamp[k],
                user_side: d.user_side.get(k).copied().unwrap_or(0),
                item_side: d.item_side.get(k).copied().unwrap_or(0),
                label: d.label[k],
            }
        })
    }

    /// The batch of `rows`, whose histories are ranges of the encoded histories (scoring new
    /// candidates against a logged history).
    pub fn batch_rows(&mut self, rows: &[Row]) -> Batch {
        self.batch_with(rows.len(), |r| rows[r].clone())
    }

    /// The batch of `b` rows given by `row(0..b)` (rows held inside the caller's own records).
    pub fn batch_with(&mut self, b: usize, row: impl Fn(usize) -> Row) -> Batch {
        let d = self.data;
        let width = (0..b).map(|r| row(r).history.len()).max().unwrap_or(0).max(self.min_width);
        self.hist_item.clear();
        self.hist_item.resize(b * width, 0);
        self.hist_genre.clear();
        self.hist_genre.resize(b * width, 0);
        self.hist_gap.clear();
        self.hist_gap.resize(b * width, 0);
        self.hist_side.clear();
        self.hist_side.resize(b * width, 0);
        self.hist_feedback.clear();
        self.hist_feedback.resize(b * width, 0);
        let sided = !d.item_side.is_empty();
        self.mask.clear();
        self.mask.resize(b * width, false);
        if let Some((_, bufs)) = &mut self.negatives {
            for v in bufs.iter_mut() {
                v.clear();
                v.resize(b * width, 0);
            }
        }
        let (mut user, mut item, mut genre, mut label) =
            (Vec::with_capacity(b), Vec::with_capacity(b), Vec::with_capacity(b), Vec::with_capacity(b));
        let (mut user_side, mut item_side) = (Vec::with_capacity(b), Vec::with_capacity(b));
        for r in 0..b {
            let x = row(r);
            let h = x.history;
            let off = r * width + width - h.len();
            for (c, j) in h.clone().enumerate() {
                let e = d.history_event(j);
                self.hist_item[off + c] = d.item[e];
                self.hist_genre[off + c] = d.genre[e];
                self.hist_gap[off + c] = super::gap_bucket(x.timestamp - d.timestamp[e]);
                self.hist_feedback[off + c] = super::feedback_index(d.label[e], d.timestamp[e], x.known_before);
                if sided {
                    self.hist_side[off + c] = d.item_side[e] as i64;
                }
                if let Some((pool, [item, genre, side])) = &mut self.negatives {
                    if let Some(n) = pool.draw(d, e) {
                        item[off + c] = d.item[n];
                        genre[off + c] = d.genre[n];
                        side[off + c] = d.item_side.get(n).map_or(0, |&s| s as i64);
                    }
                }
            }
            self.mask[off..off + h.len()].fill(true);
            user.push(x.user);
            item.push(x.item);
            genre.push(x.genre);
            label.push(x.label);
            user_side.push(x.user_side as i64);
            item_side.push(x.item_side as i64);
        }
        let shape = [b as i64, width as i64];
        let batch = Batch {
            user: Tensor::from_slice(&user),
            item: Tensor::from_slice(&item),
            genre: Tensor::from_slice(&genre),
            hist_item: Tensor::from_slice(&self.hist_item).view(shape),
            hist_genre: Tensor::from_slice(&self.hist_genre).view(shape),
            hist_gap: Tensor::from_slice(&self.hist_gap).view(shape),
            hist_feedback: Tensor::from_slice(&self.hist_feedback).view(shape),
            hist_mask: Tensor::from_slice(&self.mask).view(shape),
            user_side: Tensor::from_slice(&user_side),
            item_side: Tensor::from_slice(&item_side),
            hist_item_side: Tensor::from_slice(&self.hist_side).view(shape),
            label: Tensor::from_slice(&label),
            negatives: self.negatives.as_ref().map(|(_, [item, genre, side])| Negatives {
                item: Tensor::from_slice(item).view(shape),
                genre: Tensor::from_slice(genre).view(shape),
                side: Tensor::from_slice(side).view(shape),
            }),
        };
        if self.device == Device::Cpu {
            batch
        } else {
            batch.to_device(self.device)
        }
    }
}

/// One sample to batch: encoded ids, its history as a range of history positions (see
/// [`Encoded::history`]; at most `history_len` events, oldest first) and its time in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub user: i64,
    pub item: i64,
    pub genre: i64,
    pub history: std::ops::Range<usize>,
    pub timestamp: i64,
    /// The labels of history events strictly before this time are known to the sample (see
    /// [`super::feedback_index`]): its timestamp, or `i64::MAX` for a request without one, which
    /// comes after every logged event.
    pub known_before: i64,
    /// Rows in the feature map's side tables (0 without side features).
    pub user_side: u32,
    pub item_side: u32,
    pub label: f32,
}

impl Batch {
    /// Every tensor of the batch through `f` (the negatives' too).
    pub fn map(&self, f: impl Fn(&Tensor) -> Tensor) -> Batch {
        Batch {
            user: f(&self.user),
            item: f(&self.item),
            genre: f(&self.genre),
            hist_item: f(&self.hist_item),
            hist_genre: f(&self.hist_genre),
            hist_gap: f(&self.hist_gap),
            hist_feedback: f(&self.hist_feedback),
            hist_mask: f(&self.hist_mask),
            user_side: f(&self.user_side),
            item_side: f(&self.item_side),
            hist_item_side: f(&self.hist_item_side),
            label: f(&self.label),
            negatives: self.negatives.as_ref().map(|n| Negatives { item: f(&n.item), genre: f(&n.genre), side: f(&n.side) }),
        }
    }

    pub fn to_device(&self, device: Device) -> Batch {
        self.map(|t| t.to_device(device))
    }

    /// The rows `rows` (`[R]` i64), in that order.
    pub fn rows(&self, rows: &Tensor) -> Batch {
        self.map(|t| t.index_select(0, rows))
    }

    /// `[B]` bool: whether row `r`'s history differs from row `r − 1`'s (row 0: true), in any
    /// of the history's inputs: its events' items, genres, side rows, time gaps, feedback and
    /// presence. Rows where it is false carry the history of the row before, so a model's
    /// history embeddings (a function of these inputs alone) are equal there. A new `[B, L]`
    /// history input belongs in this list.
    pub fn history_starts(&self) -> Tensor {
        let n = self.size();
        let first = Tensor::ones([n.min(1)], (Kind::Bool, self.hist_mask.device()));
        if n < 2 {
            return first;
        }
        let inputs = [&self.hist_item, &self.hist_genre, &self.hist_item_side, &self.hist_gap, &self.hist_feedback, &self.hist_mask];
        if inputs.iter().all(|t| t.device() == Device::Cpu && t.is_contiguous() && t.size()[0] == n) {
            // Rows compared as bytes in place: libtorch's comparisons and `all` reductions over
            // the same `[B, L]` tensors were 3–4 % of scoring a bst.
            // SAFETY: contiguous CPU tensors of `n` rows, read while `self` holds them.
            let rows: Vec<(&[u8], usize)> = inputs
                .iter()
                .map(|t| {
                    let s = unsafe { crate::nn::kernel_io::raw_bytes(t) };
                    (s, s.len() / n as usize)
                })
                .collect();
            let starts: Vec<bool> = (0..n as usize).map(|r| r == 0 || rows.iter().any(|(s, w)| s[r * w..(r + 1) * w] != s[(r - 1) * w..r * w])).collect();
            return Tensor::from_slice(&starts);
        }
        Self::history_starts_of(&inputs, first)
    }

    /// [`Self::history_starts`] through libtorch's comparisons, on any device.
    fn history_starts_of(inputs: &[&Tensor], first: Tensor) -> Tensor {
        let n = inputs[0].size()[0];
        let same = inputs
            .iter()
            .map(|t| t.narrow(0, 1, n - 1).eq_tensor(&t.narrow(0, 0, n - 1)).flatten(1, -1).all_dim(1, false))
            .reduce(|a, b| a.logical_and(&b))
            .expect("history inputs");
        Tensor::cat(&[first, same.logical_not()], 0)
    }

    /// `[B, L]` f32 mask (1 where present).
    pub fn mask_f32(&self) -> Tensor {
        self.hist_mask.to_kind(Kind::Float)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Six rows of two-event histories: row 1 repeats row 0, rows 2–5 each differ from the row
    /// before in one input alone (item, genre, gap, feedback, side row, presence), the last row
    /// repeats the one before it. Both the in-place byte comparison and libtorch's (taken for
    /// tensors that are not contiguous) find exactly those starts.
    #[test]
    fn history_starts_follow_every_history_input() {
        let rows = |v: [[i64; 2]; 8]| Tensor::from_slice(&v.concat()).view([8, 2]);
        let same = [[5, 6]; 8];
        let mut item = same;
        item[2] = [5, 7];
        item[3..].fill([5, 7]);
        let mut genre = same;
        genre[3] = [1, 1];
        genre[4..].fill([1, 1]);
        let mut gap = same;
        gap[4..].fill([2, 3]);
        let mut feedback = same;
        feedback[5..].fill([1, 2]);
        let mut side = same;
        side[6..].fill([4, 4]);
        let mut mask = [[1i64, 1]; 8];
        mask[7] = [0, 1];
        let zeros = Tensor::zeros([8], (Kind::Int64, Device::Cpu));
        let b = Batch {
            user: zeros.copy(),
            item: zeros.copy(),
            genre: zeros.copy(),
            hist_item: rows(item),
            hist_genre: rows(genre),
            hist_gap: rows(gap),
            hist_feedback: rows(feedback),
            hist_mask: rows(mask).to_kind(Kind::Bool),
            user_side: zeros.copy(),
            item_side: zeros.copy(),
            hist_item_side: rows(side),
            label: zeros.to_kind(Kind::Float),
            negatives: None,
        };
        let want = Tensor::from_slice(&[true, false, true, true, true, true, true, true]);
        assert!(b.history_starts().equal(&want), "{:?}", Vec::<bool>::try_from(&b.history_starts()).unwrap());
        // Not contiguous: libtorch's path.
        let strided = b.map(|t| if t.dim() == 2 { t.tr().contiguous().tr() } else { t.shallow_clone() });
        assert!(!strided.hist_item.is_contiguous());
        assert!(strided.history_starts().equal(&want));
        assert!(b.rows(&Tensor::from_slice(&[0i64])).history_starts().equal(&Tensor::from_slice(&[true])));
    }
}
