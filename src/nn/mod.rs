//! Layers shared by the models: embeddings with a zero, frozen padding row; an MLP with dropout and
//! optional batch norm; activations (ReLU, sigmoid, PReLU, Dice); and the [`Tape`] through which
//! the fused CPU kernels join libtorch's autograd.
pub mod activation;
pub mod dropout;
pub mod lookup;
pub mod mlp;
pub mod tape;
pub mod gru;
pub mod pair_loss;
pub(crate) mod kernel_io;
pub mod transformer;

pub use activation::{Act, Activation, Dice};
pub use dropout::dropout;
pub use tape::{with_fused, Tape};
pub(crate) use kernel_io::kernel_takes;
pub use gru::{Cell, Gru};
pub use mlp::{Mlp, MlpConfig};
pub use transformer::{Encoder, FfnActivation, TransformerBlock, TransformerConfig};

use tch::nn;

/// The padding row of the tables [`embedding`] builds.
pub const PADDING: i64 = 0;

/// An embedding table whose row [`PADDING`] is zero and receives no gradient.
/// Rows are drawn from N(0, init_std²); small std keeps early attention scores near zero.
pub fn embedding(p: nn::Path, rows: i64, dim: i64, init_std: f64) -> nn::Embedding {
    let cfg = nn::EmbeddingConfig {
        padding_idx: PADDING,
        ws_init: nn::Init::Randn { mean: 0.0, stdev: init_std },
        ..Default::default()
    };
    let emb = nn::embedding(p, rows, dim, cfg);
    tch::no_grad(|| {
        let _ = emb.ws.get(PADDING).zero_();
    });
    emb
}

/// Whether libtorch records operations for autograd on this thread.
pub fn grad_enabled() -> bool {
    // SAFETY: sets the thread-local flag and restores it at once; returns the previous value.
    unsafe {
        let prev = torch_sys::at_grad_set_enabled(1);
        torch_sys::at_grad_set_enabled(prev);
        prev != 0
    }
}

/// Applies `f` to `x: [..., C]` viewed as `[N, C]` and restores the leading dims: batch norm
/// normalizes per channel over every other position (all samples and sequence steps).
pub(crate) fn over_last_dim(x: &tch::Tensor, f: impl FnOnce(&tch::Tensor) -> tch::Tensor) -> tch::Tensor {
    let size = x.size();
    let c = *size.last().expect("at least 1-d");
    f(&x.reshape([-1, c])).view(size.as_slice())
}

/// Batch norm over the last dim. A training batch with one row has no variance to normalize by, so
/// it uses the running statistics (torch would raise an error; a trailing batch of 1 is ordinary).
pub(crate) fn batch_norm_last(bn: &nn::BatchNorm, x: &tch::Tensor, train: bool) -> tch::Tensor {
    use tch::nn::ModuleT;
    over_last_dim(x, |flat| {
        let train = train && flat.size()[0] > 1;
        bn.forward_t(flat, train)
    })
}
