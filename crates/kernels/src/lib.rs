//! Fused CPU kernels for attnrec's hot paths, in plain Rust over `f32` slices.
//!
//! They live in their own crate so that the dev profile can build them optimized (opt-level 3)
//! while attnrec itself stays quick to rebuild; attnrec wraps them into its libtorch models and
//! tests them against libtorch's own autograd.
pub mod din;
pub mod dropout;
pub mod embedding;
pub mod encoder;
pub mod gemm;
pub mod gru;
pub mod optim;
pub mod pair_bce;
pub mod parallel;
#[cfg(test)]
mod testing;
