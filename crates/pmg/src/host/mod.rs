//! The host the library runs on: its CPU's SIMD kernels, its thread pool (native), and running the
//! library's async code. The pipelines (preference extraction, denoising,
//! personalize) are written once as async code because in a browser a WebGPU readback can only be
//! awaited; natively, and on the CPU backend anywhere, their futures never wait, and [`block_on`]
//! runs them to completion on the calling thread.

use std::future::Future;

#[cfg(not(target_family = "wasm"))]
pub mod pool;

/// Which integer dot-product kernel this CPU runs (`kernels::q8`; for reports).
pub fn cpu_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return "AVX2";
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return "wasm simd128";
    #[allow(unreachable_code)]
    "scalar"
}

/// AVX2 with FMA and F16C, detected once.
#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx2() -> bool {
    static A: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *A.get_or_init(|| {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    })
}

/// Run a future that never waits (native readbacks, blocking feeds and hosts) to completion. A
/// future that did wait would be polled again after a yield, not woken: this is not an executor
/// for I/O.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// Who drives a pipeline run (preference extraction, denoising, personalize), whatever its
/// progress `P` is: whether device readbacks may block the thread (natively, and on the CPU backend
/// anywhere) or must be awaited (WebGPU in a browser), and where progress goes (`false` cancels).
pub trait Host<P> {
    fn blocking(&self) -> bool;
    fn progress(&mut self, p: P) -> impl Future<Output = bool>;
}

/// A native host: blocking readbacks, progress to a closure.
pub struct Blocking<F>(pub F);

impl<P, F: FnMut(P) -> bool> Host<P> for Blocking<F> {
    fn blocking(&self) -> bool {
        true
    }
    fn progress(&mut self, p: P) -> impl Future<Output = bool> {
        std::future::ready((self.0)(p))
    }
}
