//! libtorch's OpenMP thread pool as the runner of attnrec's fused kernels
//! ([`attnrec_kernels::parallel`]).
//!
//! After each parallel operator libtorch's OpenMP workers busy-wait for the next one. A kernel on
//! threads of its own then shares the 2 cores of a small machine with spinning workers: measured
//! on the din step at batch 1024, the fused forward took 18 ms instead of 9 (`GOMP_SPINCOUNT`
//! lowered at launch gave the 9). Running the kernel's parts as an OpenMP parallel region puts
//! them on those very workers. The entry points are looked up in the process (libtorch loads
//! libgomp); without them the kernels keep `std` threads.
use std::ffi::c_void;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};

type Parallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, u32, u32);
type Query = unsafe extern "C" fn() -> i32;

struct Omp {
    /// `GOMP_parallel(fn, data, num_threads, flags)`: `#pragma omp parallel` in libgomp's ABI.
    parallel: Parallel,
    thread_num: Query,
    num_threads: Query,
}

fn omp() -> Option<&'static Omp> {
    static OMP: OnceLock<Option<Omp>> = OnceLock::new();
    OMP.get_or_init(|| {
        // SAFETY: dlsym on the global scope; each symbol, when present, has libgomp's signature.
        unsafe {
            let sym = |name: &std::ffi::CStr| libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
            let (p, t, n) = (sym(c"GOMP_parallel"), sym(c"omp_get_thread_num"), sym(c"omp_get_num_threads"));
            if p.is_null() || t.is_null() || n.is_null() {
                return None;
            }
            Some(Omp {
                parallel: std::mem::transmute::<*mut c_void, Parallel>(p),
                thread_num: std::mem::transmute::<*mut c_void, Query>(t),
                num_threads: std::mem::transmute::<*mut c_void, Query>(n),
            })
        }
    })
    .as_ref()
}

struct Region<'a> {
    n: usize,
    f: &'a (dyn Fn(usize) + Sync),
    omp: &'static Omp,
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

/// One OpenMP thread's share: parts `thread_num`, `thread_num + team size`, …, so that every part
/// runs even if the team is smaller than asked. A panic is caught (it must not unwind into C) and
/// re-raised by [`runner`].
extern "C" fn region(data: *mut c_void) {
    // SAFETY: `runner` passes its `Region`, alive until GOMP_parallel returns.
    let r = unsafe { &*(data as *const Region) };
    let (t, team) = unsafe { ((r.omp.thread_num)().max(0) as usize, (r.omp.num_threads)().max(1) as usize) };
    let mut i = t;
    while i < r.n {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| (r.f)(i))) {
            *r.panic.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        }
        i += team;
    }
}

fn runner(n: usize, f: &(dyn Fn(usize) + Sync)) {
    let Some(omp) = omp() else { return attnrec_kernels::parallel::std_threads(n, f) };
    let r = Region { n, f, omp, panic: Mutex::new(None) };
    // SAFETY: `region` has the signature GOMP_parallel expects and reads `r` only while it runs.
    unsafe { (omp.parallel)(region, &r as *const Region as *mut c_void, n as u32, 0) };
    if let Some(e) = r.panic.into_inner().unwrap_or_else(|p| p.into_inner()) {
        resume_unwind(e);
    }
}

/// Makes the kernels run on libtorch's OpenMP workers when this process has them (idempotent).
pub fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if omp().is_some() {
            attnrec_kernels::parallel::set_runner(runner);
        }
    });
}

/// Whether the kernels run on OpenMP's workers (after [`install`]).
pub fn available() -> bool {
    omp().is_some()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_part_runs_once_on_the_openmp_team() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        // Load libtorch (and with it libgomp) before looking.
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, tch::Device::Cpu));
        assert!(super::available(), "libgomp's entry points are in the process");
        let hits: Vec<AtomicUsize> = (0..13).map(|_| AtomicUsize::new(0)).collect();
        super::runner(13, &|i| {
            hits[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        let panicked = std::panic::catch_unwind(|| super::runner(3, &|i| assert!(i != 1, "expected panic: part 1 fails on purpose")));
        assert!(panicked.is_err(), "a part's panic reaches the caller");
    }
}
