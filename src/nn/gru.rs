//! Gated recurrent units over masked histories: the cell of `torch.nn.GRU` (same equations, same
//! parameter layout), and DIEN's AUGRU (Zhou et al., AAAI 2019), whose update gate is scaled by an
//! attention weight per step.
//!
//! With `x_t` the input and `h` the state, both cells compute, per step,
//! `r = σ(W_ir x_t + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x_t + b_iz + W_hz h + b_hz)`,
//! `n = tanh(W_in x_t + b_in + r ⊙ (W_hn h + b_hn))`, and then
//! - GRU (torch's convention: `z` keeps the old state): `h' = (1 − z) ⊙ n + z ⊙ h`;
//! - AUGRU (the paper's and DeepCTR's convention: the gate admits the new state, scaled by the
//!   step's attention weight `a_t`): `u = a_t · z`, `h' = (1 − u) ⊙ h + u ⊙ n`.
//!
//! A masked step (a padded position) carries the state through unchanged, so a history's states
//! do not depend on how much padding surrounds it; the state starts at zero.
use tch::nn;
use tch::Tensor;

/// Which update a [`Gru`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    Gru,
    Augru,
}

/// One recurrent layer, batch first. Parameters, named as in `torch.nn.GRU` without its `_l0`:
/// `weight_ih [3H, D]`, `weight_hh [3H, H]`, `bias_ih [3H]`, `bias_hh [3H]`, gates in the order
/// reset, update, new; initialized as torch does, uniform in `±1/√H`.
#[derive(Debug)]
pub struct Gru {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    hidden: i64,
    cell: Cell,
}

impl Gru {
    pub fn new(p: nn::Path, input: i64, hidden: i64, cell: Cell) -> Gru {
        let k = 1.0 / (hidden as f64).sqrt();
        let init = nn::Init::Uniform { lo: -k, up: k };
        Gru {
            weight_ih: p.var("weight_ih", &[3 * hidden, input], init),
            weight_hh: p.var("weight_hh", &[3 * hidden, hidden], init),
            bias_ih: p.var("bias_ih", &[3 * hidden], init),
            bias_hh: p.var("bias_hh", &[3 * hidden], init),
            hidden,
            cell,
        }
    }

    pub fn hidden(&self) -> i64 {
        self.hidden
    }

    /// The state after every step, `[B, L, H]`, for `x: [B, L, D]` and `mask: [B, L]` bool (at a
    /// masked step: the state carried through it). `att: [B, L]` are the AUGRU's weights; a GRU
    /// takes none.
    pub fn forward(&self, x: &Tensor, mask: &Tensor, att: Option<&Tensor>) -> Tensor {
        let mut states = Vec::with_capacity(x.size()[1] as usize);
        let _ = self.run(x, mask, att, |h| states.push(h.shallow_clone()));
        match states.is_empty() {
            true => Tensor::zeros([x.size()[0], 0, self.hidden], (x.kind(), x.device())),
            false => Tensor::stack(&states, 1),
        }
    }

    /// The state after the last step, `[B, H]` (zeros for a row without a present step).
    pub fn last(&self, x: &Tensor, mask: &Tensor, att: Option<&Tensor>) -> Tensor {
        self.run(x, mask, att, |_| {})
    }

    fn run(&self, x: &Tensor, mask: &Tensor, att: Option<&Tensor>, mut each: impl FnMut(&Tensor)) -> Tensor {
        assert_eq!(att.is_some(), self.cell == Cell::Augru, "an AUGRU takes attention weights and a GRU none");
        let b = x.size()[0];
        let hd = self.hidden;
        // The input's share of every gate, for all steps at once, then one view per step:
        // `unbind`'s backward is one stack, where a `select` per step would each zero a whole
        // [B, L, 3H] gradient (quadratic in L).
        let gi = (x.matmul(&self.weight_ih.tr()) + &self.bias_ih).unbind(1);
        let keep = mask.unsqueeze(-1).unbind(1);
        let att = att.map(|a| a.to_kind(x.kind()).unsqueeze(-1).unbind(1));
        let w_hh = self.weight_hh.tr();
        let mut h = Tensor::zeros([b, hd], (x.kind(), x.device()));
        for (t, gi_t) in gi.iter().enumerate() {
            let gh = self.bias_hh.addmm(&h, &w_hh);
            let (i, g) = (gi_t.split(hd, 1), gh.split(hd, 1));
            let r = (&i[0] + &g[0]).sigmoid();
            let z = (&i[1] + &g[1]).sigmoid();
            let n = (&i[2] + r * &g[2]).tanh();
            let next = match &att {
                None => &n + z * (&h - &n),
                Some(a) => &h + (&a[t] * z) * (n - &h),
            };
            h = next.where_self(&keep[t], &h);
            each(&h);
        }
        h
    }
}
