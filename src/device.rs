//! Device selection. rustc links with `--as-needed`, which drops `libtorch_cuda.so` because no
//! symbol of it is referenced directly; without it libtorch sees no GPU. We load it on demand, from
//! the libtorch folder baked in at build time, only when a CUDA device is asked for.
use crate::error::{Error, Result};
use tch::Device;

/// Parses `cpu`, `cuda` or `cuda:N` (without checking that the device exists).
pub fn parse(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => Ok(Device::Cuda(n)),
            _ => Err(Error::config(format!("unknown device '{s}' (expected cpu, cuda or cuda:N)"))),
        },
    }
}

/// Parses `cpu` / `cuda` / `cuda:N` and checks that the device exists.
pub fn resolve(spec: &str) -> Result<Device> {
    let device = parse(spec)?;
    if let Device::Cuda(i) = device {
        load_cuda_backend();
        if !tch::Cuda::is_available() {
            return Err(Error::config(format!("device '{spec}': libtorch finds no CUDA GPU on this machine")));
        }
        let n = tch::Cuda::device_count() as usize;
        if i >= n {
            return Err(Error::config(format!("device '{spec}': only {n} CUDA device(s) present")));
        }
    }
    Ok(device)
}

fn load_cuda_backend() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = std::path::Path::new(env!("ATTNREC_LIBTORCH_LIB"));
        for lib in ["libtorch_cuda.so", "libc10_cuda.so"] {
            // The libtorch this binary was built with; where it has moved, the loader's own search
            // (LD_LIBRARY_PATH, ld.so.cache) by bare name.
            let path = dir.join(lib);
            let target = if path.is_file() { path.to_string_lossy().into_owned() } else { lib.to_string() };
            if let Ok(c) = std::ffi::CString::new(target) {
                // SAFETY: dlopen with a valid NUL-terminated path; the handle is kept for the
                // life of the process (libtorch registers its CUDA hooks in static initializers).
                unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
            }
        }
    });
}

/// Resolves a run's device and applies its thread count: the first tensor-facing step of every
/// command that trains (`train`, `train --resume`, `bench`).
pub fn setup(spec: &str, threads: usize) -> Result<Device> {
    let device = resolve(spec)?;
    set_threads(threads);
    flush_denormals();
    Ok(device)
}

/// Sets libtorch's intra-op threads (0 = all cores). Call before any tensor work.
pub fn set_threads(n: usize) {
    let n = if n == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { n };
    tch::set_num_threads(n as i32);
}

/// libtorch's intra-op thread count, set for as long as this lives and put back when it drops.
/// The count is process-wide in libtorch (every thread reads it), so a library call that needs its
/// own (scoring's workers, one thread each) holds one of these instead of leaving its setting to
/// whatever the caller runs next.
#[must_use = "the thread count is put back when this drops"]
pub struct ThreadsFor {
    previous: i32,
}

impl ThreadsFor {
    pub fn set(n: usize) -> ThreadsFor {
        let previous = tch::get_num_threads();
        set_threads(n);
        ThreadsFor { previous }
    }
}

impl Drop for ThreadsFor {
    fn drop(&mut self) {
        tch::set_num_threads(self.previous);
    }
}

/// Keeps freed tensor memory in the process for the next batch. glibc serves every block over its
/// dynamic mmap threshold (128 KiB at first) with a fresh `mmap` and unmaps it on free, so each
/// batch's activations were zero-filled page by page by the kernel again: on 2 cores, scoring din
/// spent 57 % of its time in page faults. Blocks up to 32 MiB (glibc's maximum threshold) now
/// come from the heap, and the heap is not trimmed below 1 GiB of free space. Called once at start.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// Treats denormal floats as zero on this thread (x86-64's FTZ and DAZ bits), as PyTorch's
/// `set_flush_denormal(True)` does: a trained model's tiny activations otherwise take the slow
/// path of every multiply. The results change by less than the smallest normal float.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: sets two bits of this thread's SSE control register; nothing else is touched.
    #[allow(deprecated)]
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}
