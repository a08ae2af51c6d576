//! Where the kernels' threads come from.
//!
//! By default a kernel call splits its work over scoped `std` threads. A host whose own thread
//! pool busy-waits between its operations (libtorch's OpenMP workers spin after each parallel
//! region) should install a runner on that pool with [`set_runner`]: otherwise the kernel's
//! threads and the spinning workers share the cores, and both run at half speed.
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::Mutex;

/// Runs `f(0)`, …, `f(n − 1)`, possibly in parallel, and returns when all have returned (and
/// panics if one did).
pub type Runner = fn(n: usize, f: &(dyn Fn(usize) + Sync));

static RUNNER: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Installs `runner` for every later kernel call in this process.
pub fn set_runner(runner: Runner) {
    RUNNER.store(runner as *mut (), Ordering::Release);
}

/// The default runner: `f(0)` on this thread, the others on scoped threads.
pub fn std_threads(n: usize, f: &(dyn Fn(usize) + Sync)) {
    std::thread::scope(|s| {
        let handles: Vec<_> = (1..n).map(|i| s.spawn(move || f(i))).collect();
        if n > 0 {
            f(0);
        }
        for h in handles {
            if let Err(e) = h.join() {
                std::panic::resume_unwind(e);
            }
        }
    })
}

fn runner() -> Runner {
    let p = RUNNER.load(Ordering::Acquire);
    if p.is_null() {
        std_threads
    } else {
        // SAFETY: only `set_runner` stores here, and it stores a `Runner`.
        unsafe { std::mem::transmute::<*mut (), Runner>(p) }
    }
}

/// `f` on each part, in parallel through the installed runner (a single part runs inline);
/// results in part order.
pub(crate) fn run_parts<P: Send, T: Send>(parts: Vec<P>, f: impl Fn(P) -> T + Sync) -> Vec<T> {
    if parts.len() <= 1 {
        return parts.into_iter().map(f).collect();
    }
    let n = parts.len();
    let slots: Vec<Mutex<Option<P>>> = parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let out: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    runner()(n, &|i| {
        let p = slots[i].lock().expect("part lock").take().expect("each part runs once");
        let t = f(p);
        *out[i].lock().expect("result lock") = Some(t);
    });
    out.into_iter().map(|m| m.into_inner().expect("result lock").expect("the runner ran every part")).collect()
}

/// `rows` split into up to `threads` consecutive ranges of about equal size (one below 64 rows).
pub(crate) fn row_parts(rows: usize, threads: usize) -> Vec<std::ops::Range<usize>> {
    let t = if rows < 64 { 1 } else { threads.clamp(1, rows) };
    (0..t).map(|i| rows * i / t..rows * (i + 1) / t).collect()
}

/// Splits `s` into consecutive parts of the given lengths.
pub(crate) fn split_mut<T>(mut s: &mut [T], lens: impl IntoIterator<Item = usize>) -> Vec<&mut [T]> {
    let mut parts = Vec::new();
    for n in lens {
        let (head, tail) = std::mem::take(&mut s).split_at_mut(n);
        parts.push(head);
        s = tail;
    }
    parts
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_run_once_in_order() {
        let got = run_parts((0..7).collect(), |p: i32| p * 10);
        assert_eq!(got, vec![0, 10, 20, 30, 40, 50, 60]);
        assert_eq!(run_parts(vec![3], |p: i32| p + 1), vec![4]);
        assert!(run_parts(Vec::<i32>::new(), |p| p).is_empty());
    }
}
