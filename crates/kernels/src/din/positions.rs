//! Which positions of a batch hold history, and their keys gathered.
use super::*;

/// Which positions of a `[rows, len]` batch hold history: row `r`'s are `pos[start[r]..start[r + 1]]`.
#[derive(Debug, Clone)]
pub struct Positions {
    pub rows: usize,
    pub len: usize,
    pub(super) start: Vec<usize>,
    pub(super) pos: Vec<u32>,
}

impl Positions {
    /// `mask`: `[rows, len]`, nonzero where there is history.
    pub fn from_mask(mask: &[u8], rows: usize, len: usize) -> Positions {
        assert_eq!(mask.len(), rows * len, "mask is not [rows, len]");
        let mut start = Vec::with_capacity(rows + 1);
        let mut pos = Vec::with_capacity(mask.iter().filter(|&&m| m != 0).count());
        start.push(0);
        for row in mask.chunks_exact(len.max(1)).take(rows) {
            pos.extend(row.iter().enumerate().filter(|(_, &m)| m != 0).map(|(l, _)| l as u32));
            start.push(pos.len());
        }
        start.resize(rows + 1, pos.len());
        Positions { rows, len, start, pos }
    }

    /// Number of history positions.
    pub fn count(&self) -> usize {
        self.pos.len()
    }

    pub(super) fn of(&self, r: usize) -> &[u32] {
        &self.pos[self.start[r]..self.start[r + 1]]
    }

    /// The first position of row `r` when its positions are consecutive (a left- or right-padded
    /// history, the usual case), so that its keys are one slice.
    pub(super) fn consecutive(&self, r: usize) -> Option<usize> {
        let p = self.of(r);
        let (&first, &last) = (p.first()?, p.last()?);
        ((last - first) as usize + 1 == p.len()).then_some(first as usize)
    }

    pub(super) fn span(&self, rows: &Range<usize>) -> Range<usize> {
        self.start[rows.start]..self.start[rows.end]
    }

    /// Consecutive rows holding at most [`CHUNK`] positions (or one row, however long).
    pub(super) fn chunks(&self, rows: Range<usize>) -> impl Iterator<Item = Range<usize>> + '_ {
        let mut r = rows.start;
        std::iter::from_fn(move || {
            if r >= rows.end {
                return None;
            }
            let first = r;
            r += 1;
            while r < rows.end && self.start[r + 1] - self.start[first] <= CHUNK {
                r += 1;
            }
            Some(first..r)
        })
    }

    /// `threads + 1` row bounds that give each thread about the same number of positions.
    pub(super) fn partition(&self, threads: usize) -> Vec<usize> {
        let t = threads.clamp(1, self.rows.max(1));
        let mut bounds: Vec<usize> = (0..t).map(|i| self.start.partition_point(|&s| s < self.count() * i / t).min(self.rows)).collect();
        bounds[0] = 0;
        bounds.push(self.rows);
        bounds
    }
}

/// The keys of the positions of `rows`, `[n, d]`.
pub(super) fn build_x(d: usize, keys: &[f32], pos: &Positions, rows: Range<usize>, x: &mut Vec<f32>) {
    x.clear();
    for r in rows {
        match pos.consecutive(r) {
            Some(l) => x.extend_from_slice(&keys[(r * pos.len + l) * d..][..pos.of(r).len() * d]),
            None => {
                for &l in pos.of(r) {
                    x.extend_from_slice(&keys[(r * pos.len + l as usize) * d..][..d]);
                }
            }
        }
    }
}

