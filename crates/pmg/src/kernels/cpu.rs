//! Quantized matrix multiplication on the CPU: `y[t, r] = sum_c x[t, c] * W[r, c]`.
//!
//! Q4_0/Q4_1/Q8_0 weights use integer dot products against 8-bit block-quantized activations
//! (AVX2 where the CPU has it, SIMD128 on wasm, a portable scalar kernel elsewhere; for several
//! tokens the wasm kernel unpacks each weight block once for 4 tokens); other types dequantize one
//! row at a time into a small buffer. Rows are split across threads natively (our spinning pool,
//! `host/pool.rs`); wasm runs one thread.

use super::QMatrix;
use super::q8::{self as quant, Q8Activations};

/// Fewest rows handed to one part of a parallel matmul, so a part outweighs its dispatch.
#[cfg(not(target_family = "wasm"))]
const ROWS_PER_TASK: usize = 64;

/// `x` is `[m, w.cols]` row-major; returns `[m, w.rows]`.
pub fn matmul(w: &QMatrix, x: &[f32], m: usize) -> Vec<f32> {
    assert_eq!(x.len(), m * w.cols, "activation shape does not match the weight");
    let n = w.rows;
    // Transposed result [n, m]: each task owns a contiguous block of output rows.
    let mut out_t = vec![0f32; n * m];
    if quant::has_q8_kernel(w.ty) {
        let acts = Q8Activations::quantize(x);
        let rb = w.row_bytes();
        for_each_row_block(&mut out_t, m, |r0, block| {
            let k = block.len() / m;
            let rows = &w.data[r0 * rb..(r0 + k) * rb];
            quant::dot_rows_q8_tokens(w.ty, rows, rb, &acts, m, block);
        });
    } else {
        for_each_row_block(&mut out_t, m, |r0, block| {
            let mut buf = vec![0f32; w.cols];
            for (i, o) in block.chunks_exact_mut(m).enumerate() {
                w.dequantize_row(r0 + i, &mut buf);
                for (t, v) in o.iter_mut().enumerate() {
                    *v = quant::dot_f32(&buf, &x[t * w.cols..(t + 1) * w.cols]);
                }
            }
        });
    }
    if m == 1 {
        return out_t;
    }
    // Transpose in blocks of 64 rows: the strided reads stay in L1, the writes are contiguous.
    let mut out = vec![0f32; m * n];
    for r0 in (0..n).step_by(64) {
        let r1 = (r0 + 64).min(n);
        for t in 0..m {
            for (o, r) in out[t * n + r0..t * n + r1].iter_mut().zip(r0..r1) {
                *o = out_t[r * m + t];
            }
        }
    }
    out
}

/// Calls `f(first_row, block)` for disjoint blocks of `out_t` (`m` values per row), in parallel
/// natively.
fn for_each_row_block(out_t: &mut [f32], m: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let rows = out_t.len() / m.max(1);
    #[cfg(not(target_family = "wasm"))]
    {
        let pool = crate::host::pool::Pool::global();
        // About two parts per thread balances uneven progress without many tiny parts.
        let per = rows.div_ceil(2 * pool.threads()).max(ROWS_PER_TASK).next_multiple_of(4);
        let parts = rows.div_ceil(per);
        let base = SendPtr(out_t.as_mut_ptr());
        pool.run(parts, &|p| {
            let r0 = p * per;
            let k = per.min(rows - r0);
            // SAFETY: parts cover disjoint row ranges of `out_t`, which outlives `run`.
            let block = unsafe { std::slice::from_raw_parts_mut(base.get().add(r0 * m), k * m) };
            f(r0, block);
        });
    }
    #[cfg(target_family = "wasm")]
    {
        let _ = rows;
        f(0, out_t);
    }
}

#[cfg(not(target_family = "wasm"))]
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint sub-slices to pool workers.
#[cfg(not(target_family = "wasm"))]
unsafe impl Send for SendPtr {}
#[cfg(not(target_family = "wasm"))]
unsafe impl Sync for SendPtr {}
#[cfg(not(target_family = "wasm"))]
impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}
