//! How the fused CPU kernels read and write libtorch tensors: slices over contiguous CPU tensors'
//! storage, and the thread count they split their work over.
use tch::{Device, Kind, Tensor};

/// Whether a fused kernel can take `t`: an `f32` tensor on the CPU. The kernels are CPU-only;
/// on CUDA (or in another dtype) every fused layer, the dropout mask and the optimizer's update
/// take libtorch's path instead. This is the one place that decides it.
pub(crate) fn kernel_takes(t: &Tensor) -> bool {
    t.device() == Device::Cpu && t.kind() == Kind::Float
}

/// A contiguous CPU tensor's elements as `T`s.
///
/// # Safety
/// `t` must be a contiguous CPU tensor of `kind`, whose elements are `T`s, that no one writes
/// while the slice lives.
pub(crate) unsafe fn elements<T>(t: &Tensor, kind: Kind) -> &[T] {
    debug_assert!(t.kind() == kind && t.is_contiguous() && t.device() == Device::Cpu);
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    std::slice::from_raw_parts(t.data_ptr() as *const T, n)
}

/// A contiguous CPU tensor's storage as bytes, whatever its kind.
///
/// # Safety
/// As for [`elements`].
pub(crate) unsafe fn raw_bytes(t: &Tensor) -> &[u8] {
    debug_assert!(t.is_contiguous() && t.device() == Device::Cpu);
    let n = t.numel() * t.kind().elt_size_in_bytes();
    if n == 0 {
        return &[];
    }
    std::slice::from_raw_parts(t.data_ptr() as *const u8, n)
}

/// # Safety
/// As for [`elements`], of a `Float` tensor.
pub(crate) unsafe fn floats(t: &Tensor) -> &[f32] {
    elements(t, Kind::Float)
}

/// # Safety
/// As for [`elements`], of a `Uint8` tensor.
pub(crate) unsafe fn bytes(t: &Tensor) -> &[u8] {
    elements(t, Kind::Uint8)
}

/// A fresh contiguous CPU `f32` tensor of `shape` (uninitialized), for a kernel to fill through
/// [`floats_mut`].
pub(crate) fn output(shape: &[i64]) -> Tensor {
    Tensor::empty(shape, (Kind::Float, Device::Cpu))
}

/// The elements of a tensor made by [`output`], for as long as it is borrowed.
///
/// # Safety
/// `t` must come from [`output`] and not be shared (no view or shallow clone of it is read
/// while the slice lives).
pub(crate) unsafe fn floats_mut(t: &mut Tensor) -> &mut [f32] {
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n)
}

/// The kernels split their work over libtorch's intra-op thread count.
pub(crate) fn threads() -> usize {
    tch::get_num_threads().max(1) as usize
}
