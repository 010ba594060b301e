//! Running the library's async code on the host. The pipelines (preference extraction, denoising,
//! personalize) are written once as async code because in a browser a WebGPU readback can only be
//! awaited; natively, and on the CPU backend anywhere, their futures never wait, and [`block_on`]
//! runs them to completion on the calling thread.

use std::future::Future;

/// Run a future that never waits (native readbacks, `SyncFeed`, blocking hosts) to completion. A
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
