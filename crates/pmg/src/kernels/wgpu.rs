//! Quantized matmul on burn's wgpu runtime: our own CubeCL kernels read GGUF blocks from a u32
//! buffer on the device and dequantize inside the dot product (no f32 copy of the weights).
//!
//! Device layout (u32 little-endian words, each block starting on a word boundary):
//! - Q4_1 as in the file: 5 words = `d | m << 16` (two f16), then 16 bytes of nibbles.
//! - Q4_0 repacked to Q4_1 at upload with `m = -8 d` (exact in f16: a power-of-two scale).
//! - Q8_0 repacked from 34 to 36 bytes: word 0 = `d` (f16, upper half zero), words 1..9 = 32
//!   signed bytes.
//!
//! Other types (K-quants, floats) run the CPU kernel on a host copy of the activations: correct,
//! and slower; a GPU kernel for them is future work.
//!
//! One invocation computes a few output rows for a few tokens; no shared memory or barriers
//! (barriers are very slow on software GPUs such as SwiftShader and lavapipe).

use burn::backend::wgpu::CubeTensor;
use burn::backend::{Cube, CubeDevice, DispatchDevice};
use burn::tensor::{DType, Int, Shape, Tensor, TensorData};
use cubecl::prelude::*;

use super::QMatrix;
use crate::device::PmgDevice;
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::gguf::quant::QK;

/// Invocations per workgroup (8-64 measured alike on lavapipe).
const WG: u32 = 16;

/// f16 bits (low 16 bits of `h`) to f32 without shader f16 support; subnormals included, inf/NaN
/// not (GGUF scales are finite).
#[cube]
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u32) << 16u32;
    let exp = (h >> 10u32) & 0x1Fu32;
    let mant = h & 0x3FFu32;
    let normal = f32::reinterpret(sign | ((exp + 112u32) << 23u32) | (mant << 13u32));
    let sub_mag = f32::cast_from(mant) * 5.960_464_5e-8f32;
    let sub = select(sign != 0u32, -sub_mag, sub_mag);
    select(exp == 0u32, sub, normal)
}

/// Signed byte `k` (0..4) of `q` as f32.
#[cube]
fn sbyte(q: u32, #[comptime] k: u32) -> f32 {
    let b = (q >> (8u32 * k)) & 0xFFu32;
    f32::cast_from(b) - select(b >= 128u32, 256.0f32, 0.0f32)
}

/// `out[t, r] = sum_c x[t, c] * W[r, c]` for Q4_1 blocks (5 words: `d | m << 16`, 16 bytes of
/// nibbles) or, with `q8`, repacked Q8_0 blocks (9 words: `d`, 32 signed bytes).
///
/// One invocation computes `rpt` consecutive rows for `tb` consecutive tokens; every weight word
/// and activation is loaded once per invocation and reused from registers (on SIMD-on-CPU drivers
/// such as lavapipe and SwiftShader every buffer load is a per-lane gather, and loads dominate).
#[cube(launch_unchecked)]
fn qmatmul_kernel(
    x: &[f32],
    w: &[u32],
    out: &mut [f32],
    m: u32,
    rows: u32,
    nb: u32,
    #[comptime] tb: usize,
    #[comptime] rpt: usize,
    #[comptime] q8: bool,
    #[comptime] add: bool,
) {
    let qw = comptime!(if q8 { 8usize } else { 4usize });
    let rows = rows as usize;
    let r0 = (ABSOLUTE_POS_X as usize) * rpt;
    if r0 >= rows {
        terminate!();
    }
    let t0 = (CUBE_POS_Y as usize) * tb;
    let m = m as usize;
    let nb = nb as usize;
    let cols = nb * 32;
    let mut acc = Array::<f32>::new(comptime!(tb * rpt));
    #[unroll]
    for i in 0..tb * rpt {
        acc[i] = 0.0f32;
    }
    let mut wq = Array::<u32>::new(comptime!(rpt * qw));
    let mut dd = Array::<f32>::new(rpt);
    let mut mm = Array::<f32>::new(rpt);
    let mut xv = Array::<f32>::new(32usize);
    for b in 0..nb {
        #[unroll]
        for rr in 0..rpt {
            // Rows past the end read the last row and are not written.
            let row = select(r0 + rr < rows, r0 + rr, rows - 1);
            let base = (row * nb + b) * (qw + 1);
            let dm = w[base];
            dd[rr] = f16_bits_to_f32(dm & 0xFFFFu32);
            // Q8_0 has no min: its upper half-word is zero padding, which decodes to 0.0.
            mm[rr] = f16_bits_to_f32(dm >> 16u32);
            #[unroll]
            for k in 0..qw {
                wq[rr * qw + k] = w[base + 1 + k];
            }
        }
        #[unroll]
        for ti in 0..tb {
            // Tokens past the end read the last token and are not written.
            let t = select(t0 + ti < m, t0 + ti, m - 1);
            let xo = t * cols + b * 32;
            let mut xs = 0.0f32;
            #[unroll]
            for j in 0..32usize {
                let v = x[xo + j];
                xv[j] = v;
                xs += v;
            }
            #[unroll]
            for rr in 0..rpt {
                let mut dot = 0.0f32;
                if q8 {
                    #[unroll]
                    for k in 0..8usize {
                        let q = wq[rr * 8 + k];
                        dot += xv[4 * k] * sbyte(q, 0u32)
                            + xv[4 * k + 1] * sbyte(q, 1u32)
                            + xv[4 * k + 2] * sbyte(q, 2u32)
                            + xv[4 * k + 3] * sbyte(q, 3u32);
                    }
                } else {
                    // Word k holds bytes 4k..4k+4: low nibbles are elements 4k+i, high nibbles 16+4k+i.
                    #[unroll]
                    for k in 0..4usize {
                        let q = wq[rr * 4 + k];
                        dot += xv[4 * k] * f32::cast_from(q & 0xFu32)
                            + xv[4 * k + 1] * f32::cast_from((q >> 8u32) & 0xFu32)
                            + xv[4 * k + 2] * f32::cast_from((q >> 16u32) & 0xFu32)
                            + xv[4 * k + 3] * f32::cast_from((q >> 24u32) & 0xFu32)
                            + xv[16 + 4 * k] * f32::cast_from((q >> 4u32) & 0xFu32)
                            + xv[16 + 4 * k + 1] * f32::cast_from((q >> 12u32) & 0xFu32)
                            + xv[16 + 4 * k + 2] * f32::cast_from((q >> 20u32) & 0xFu32)
                            + xv[16 + 4 * k + 3] * f32::cast_from(q >> 28u32);
                    }
                }
                // sum_j x_j (d q_j + m) = d * sum_j x_j q_j + m * sum_j x_j
                acc[ti * rpt + rr] += dd[rr] * dot + mm[rr] * xs;
            }
        }
    }
    #[unroll]
    for ti in 0..tb {
        #[unroll]
        for rr in 0..rpt {
            let t = t0 + ti;
            let row = r0 + rr;
            if t < m && row < rows {
                if add {
                    out[t * rows + row] += acc[ti * rpt + rr];
                } else {
                    out[t * rows + row] = acc[ti * rpt + rr];
                }
            }
        }
    }
}

// ---- Decode step (one token): the kernels a token's forward pass is made of on wgpu. ----
//
// Every kernel below is written for m = 1 and software GPUs first: no shared memory, no barriers,
// a few outputs per invocation. Sizes and positions are launch scalars; nothing is read back.

/// Loads the 32 activations of block `b` into `xv` and returns their sum.
#[cube]
fn load_x_block(x: &[f32], b: usize, xv: &mut Array<f32>) -> f32 {
    let xo = b * 32;
    let mut xs = 0.0f32;
    #[unroll]
    for j in 0..32usize {
        let v = x[xo + j];
        xv[j] = v;
        xs += v;
    }
    xs
}

/// `sum_j x_j w_j` over block `b` of weight row `row` (layouts as in [`qmatmul_kernel`]).
#[cube]
fn block_dot(w: &[u32], row: usize, nb: usize, b: usize, xv: &Array<f32>, xs: f32, #[comptime] q8: bool) -> f32 {
    let qw = comptime!(if q8 { 8usize } else { 4usize });
    let base = (row * nb + b) * (qw + 1);
    let dm = w[base];
    let d = f16_bits_to_f32(dm & 0xFFFFu32);
    let mn = f16_bits_to_f32(dm >> 16u32);
    let mut dot = 0.0f32;
    if q8 {
        #[unroll]
        for k in 0..8usize {
            let q = w[base + 1 + k];
            dot += xv[4 * k] * sbyte(q, 0u32)
                + xv[4 * k + 1] * sbyte(q, 1u32)
                + xv[4 * k + 2] * sbyte(q, 2u32)
                + xv[4 * k + 3] * sbyte(q, 3u32);
        }
    } else {
        #[unroll]
        for k in 0..4usize {
            let q = w[base + 1 + k];
            dot += xv[4 * k] * f32::cast_from(q & 0xFu32)
                + xv[4 * k + 1] * f32::cast_from((q >> 8u32) & 0xFu32)
                + xv[4 * k + 2] * f32::cast_from((q >> 16u32) & 0xFu32)
                + xv[4 * k + 3] * f32::cast_from((q >> 24u32) & 0xFu32)
                + xv[16 + 4 * k] * f32::cast_from((q >> 4u32) & 0xFu32)
                + xv[16 + 4 * k + 1] * f32::cast_from((q >> 12u32) & 0xFu32)
                + xv[16 + 4 * k + 2] * f32::cast_from((q >> 20u32) & 0xFu32)
                + xv[16 + 4 * k + 3] * f32::cast_from(q >> 28u32);
        }
    }
    d * dot + mn * xs
}

/// Rows `r0..r0 + rpt` of `W x` (one token) into `out[off + r]`.
#[cube]
fn matvec_rows(
    x: &[f32],
    w: &[u32],
    out: &mut [f32],
    off: usize,
    r0: usize,
    rows: usize,
    nb: usize,
    #[comptime] rpt: usize,
    #[comptime] q8: bool,
) {
    let mut acc = Array::<f32>::new(rpt);
    #[unroll]
    for rr in 0..rpt {
        acc[rr] = 0.0f32;
    }
    let mut xv = Array::<f32>::new(32usize);
    for b in 0..nb {
        let xs = load_x_block(x, b, &mut xv);
        #[unroll]
        for rr in 0..rpt {
            // Rows past the end read the last row and are not written.
            let row = select(r0 + rr < rows, r0 + rr, rows - 1);
            acc[rr] += block_dot(w, row, nb, b, &xv, xs, q8);
        }
    }
    #[unroll]
    for rr in 0..rpt {
        if r0 + rr < rows {
            out[off + r0 + rr] = acc[rr];
        }
    }
}

/// `out = [W0 x | W1 x | W2 x]` in one launch (the q, k and v projections): invocations
/// `0..c0` take `W0`'s rows, `c0..c0 + c1` `W1`'s, the rest `W2`'s.
#[cube(launch_unchecked)]
fn matvec3_kernel(
    x: &[f32],
    w0: &[u32],
    w1: &[u32],
    w2: &[u32],
    out: &mut [f32],
    rows0: u32,
    rows1: u32,
    rows2: u32,
    c0: u32,
    c1: u32,
    nb: u32,
    #[comptime] rpt: usize,
    #[comptime] q8: bool,
) {
    let i = ABSOLUTE_POS_X as usize;
    let (rows0, rows1, rows2) = (rows0 as usize, rows1 as usize, rows2 as usize);
    let (c0, c1) = (c0 as usize, c1 as usize);
    let nb = nb as usize;
    if i < c0 {
        matvec_rows(x, w0, out, 0usize, i * rpt, rows0, nb, rpt, q8);
    } else if i < c0 + c1 {
        matvec_rows(x, w1, out, rows0, (i - c0) * rpt, rows1, nb, rpt, q8);
    } else if (i - c0 - c1) * rpt < rows2 {
        matvec_rows(x, w2, out, rows0 + rows1, (i - c0 - c1) * rpt, rows2, nb, rpt, q8);
    }
}

/// `out = silu(Wg x) * (Wu x)` (SwiGLU's first half, one token).
#[cube(launch_unchecked)]
fn gate_up_kernel(
    x: &[f32],
    wg: &[u32],
    wu: &[u32],
    out: &mut [f32],
    rows: u32,
    nb: u32,
    #[comptime] rpt: usize,
    #[comptime] q8: bool,
) {
    let rows = rows as usize;
    let nb = nb as usize;
    let r0 = (ABSOLUTE_POS_X as usize) * rpt;
    if r0 >= rows {
        terminate!();
    }
    let mut g = Array::<f32>::new(rpt);
    let mut u = Array::<f32>::new(rpt);
    #[unroll]
    for rr in 0..rpt {
        g[rr] = 0.0f32;
        u[rr] = 0.0f32;
    }
    let mut xv = Array::<f32>::new(32usize);
    for b in 0..nb {
        let xs = load_x_block(x, b, &mut xv);
        #[unroll]
        for rr in 0..rpt {
            let row = select(r0 + rr < rows, r0 + rr, rows - 1);
            g[rr] += block_dot(wg, row, nb, b, &xv, xs, q8);
            u[rr] += block_dot(wu, row, nb, b, &xv, xs, q8);
        }
    }
    #[unroll]
    for rr in 0..rpt {
        if r0 + rr < rows {
            // silu(g) = g * sigmoid(g), as burn computes it.
            let s = 1.0f32 / (1.0f32 + f32::exp(-g[rr]));
            out[r0 + rr] = g[rr] * s * u[rr];
        }
    }
}

/// `out = x / sqrt(mean(x^2) + eps) * w` for one row of `n`; each invocation sums the squares
/// itself (no barriers) and writes `per` elements.
#[allow(clippy::needless_range_loop)]
#[cube(launch_unchecked)]
fn rms_norm_kernel(x: &[f32], w: &[f32], out: &mut [f32], n: u32, eps: f32, #[comptime] per: usize) {
    let n = n as usize;
    let i0 = (ABSOLUTE_POS_X as usize) * per;
    if i0 >= n {
        terminate!();
    }
    let mut ss = 0.0f32;
    for j in 0..n {
        let v = x[j];
        ss += v * v;
    }
    let r = 1.0f32 / f32::sqrt(ss / f32::cast_from(n) + eps);
    #[unroll]
    for k in 0..per {
        let i = i0 + k;
        if i < n {
            out[i] = x[i] * r * w[i];
        }
    }
}

/// RoPE (adjacent pairs) on q and k of `qkv = [q (nh heads) | k (nkv) | v (nkv)]` at position
/// `pos`: q goes to `q`, k and v into the caches `[nkv, n_ctx, hd]` at `pos`. One invocation per
/// rotated pair.
#[cube(launch_unchecked)]
fn rope_kv_kernel(
    qkv: &[f32],
    cos: &[f32],
    sin: &[f32],
    q: &mut [f32],
    kc: &mut [f32],
    vc: &mut [f32],
    pos: u32,
    n_ctx: u32,
    nh: u32,
    nkv: u32,
    #[comptime] half: usize,
) {
    let hd = comptime!(2 * half);
    let i = ABSOLUTE_POS_X as usize;
    let (pos, n_ctx, nh, nkv) = (pos as usize, n_ctx as usize, nh as usize, nkv as usize);
    let head = i / half;
    let p = i % half;
    if head >= nh + nkv {
        terminate!();
    }
    let c = cos[pos * half + p];
    let s = sin[pos * half + p];
    let src = head * hd + 2 * p;
    let x0 = qkv[src];
    let x1 = qkv[src + 1];
    let r0 = x0 * c - x1 * s;
    let r1 = x0 * s + x1 * c;
    if head < nh {
        q[src] = r0;
        q[src + 1] = r1;
    } else {
        let kh = head - nh;
        let dst = (kh * n_ctx + pos) * hd + 2 * p;
        kc[dst] = r0;
        kc[dst + 1] = r1;
        let vsrc = (nh + nkv + kh) * hd + 2 * p;
        vc[dst] = qkv[vsrc];
        vc[dst + 1] = qkv[vsrc + 1];
    }
}

/// `s[h, j] = scale * q[h] . k[h / group, j]` for `j < t`; one invocation per (head, position).
#[cube(launch_unchecked)]
fn scores_kernel(
    q: &[f32],
    kc: &[f32],
    s: &mut [f32],
    t: u32,
    n_ctx: u32,
    nh: u32,
    group: u32,
    scale: f32,
    #[comptime] hd: usize,
) {
    let (t, n_ctx, nh, group) = (t as usize, n_ctx as usize, nh as usize, group as usize);
    let i = ABSOLUTE_POS_X as usize;
    let h = i / t;
    let j = i % t;
    if h >= nh {
        terminate!();
    }
    let kb = ((h / group) * n_ctx + j) * hd;
    let qb = h * hd;
    let mut dot = 0.0f32;
    #[unroll]
    for d in 0..hd {
        dot += q[qb + d] * kc[kb + d];
    }
    s[h * t + j] = dot * scale;
}

/// `out[h, d] = sum_j softmax(s[h])_j v[h / group, j, d]`; one invocation per (head, `dpi` dims).
#[cube(launch_unchecked)]
fn attend_kernel(
    s: &[f32],
    vc: &[f32],
    out: &mut [f32],
    t: u32,
    n_ctx: u32,
    nh: u32,
    group: u32,
    #[comptime] hd: usize,
    #[comptime] dpi: usize,
) {
    let (t, n_ctx, nh, group) = (t as usize, n_ctx as usize, nh as usize, group as usize);
    let per_head = comptime!(hd / dpi);
    let i = ABSOLUTE_POS_X as usize;
    let h = i / per_head;
    let d0 = (i % per_head) * dpi;
    if h >= nh {
        terminate!();
    }
    let sb = h * t;
    let mut mx = s[sb];
    for j in 1..t {
        let v = s[sb + j];
        mx = select(v > mx, v, mx);
    }
    let mut acc = Array::<f32>::new(dpi);
    #[unroll]
    for k in 0..dpi {
        acc[k] = 0.0f32;
    }
    let mut sum = 0.0f32;
    let vb0 = (h / group) * n_ctx * hd + d0;
    for j in 0..t {
        let e = f32::exp(s[sb + j] - mx);
        sum += e;
        let vb = vb0 + j * hd;
        #[unroll]
        for k in 0..dpi {
            acc[k] += e * vc[vb + k];
        }
    }
    #[unroll]
    for k in 0..dpi {
        out[h * hd + d0 + k] = acc[k] / sum;
    }
}

/// Partial argmax: invocation `i < p` scans `x[i], x[i + p], ...` (first maximum wins).
#[cube(launch_unchecked)]
fn argmax_partial_kernel(x: &[f32], pv: &mut [f32], pi: &mut [u32], n: u32, p: u32) {
    let i = ABSOLUTE_POS_X;
    if i >= p {
        terminate!();
    }
    // The lowest finite f32 (WGSL has no infinity literal): a lane of only -inf/NaN answers its
    // first index, so all -inf gives 0 as on the host.
    let mut best = f32::new(-3.402_823_5e38);
    let mut bi = i;
    let steps = (n - i).div_ceil(p);
    for k in 0..steps {
        let j = i + k * p;
        let v = x[j as usize];
        if v > best {
            best = v;
            bi = j;
        }
    }
    pv[i as usize] = best;
    pi[i as usize] = bi;
}

/// Final argmax over the `p` partials (one invocation): the largest value, the smallest index
/// among equals, as [`crate::llm::sampler::argmax`].
#[cube(launch_unchecked)]
fn argmax_final_kernel(pv: &[f32], pi: &[u32], out: &mut [u32], p: u32) {
    if ABSOLUTE_POS_X != 0 {
        terminate!();
    }
    let mut best = pv[0];
    let mut bi = pi[0];
    for k in 1..p as usize {
        let v = pv[k];
        let j = pi[k];
        if v > best || (v == best && j < bi) {
            best = v;
            bi = j;
        }
    }
    out[0] = bi;
}

/// Row `id[0]` of a weight matrix in a kernel layout, dequantized (`out: [nb * 32]`): the token
/// embedding of a token id that lives on the device. One invocation per element.
#[cube(launch_unchecked)]
fn embed_kernel(w: &[u32], id: &[u32], out: &mut [f32], nb: u32, #[comptime] q8: bool) {
    let qw = comptime!(if q8 { 8usize } else { 4usize });
    let nb = nb as usize;
    let i = ABSOLUTE_POS_X as usize;
    if i >= nb * 32 {
        terminate!();
    }
    let b = i / 32;
    let j = i % 32;
    let base = ((id[0] as usize) * nb + b) * (qw + 1);
    let dm = w[base];
    let d = f16_bits_to_f32(dm & 0xFFFFu32);
    if q8 {
        let q = (w[base + 1 + j / 4] >> (8u32 * ((j % 4) as u32))) & 0xFFu32;
        out[i] = d * (f32::cast_from(q) - select(q >= 128u32, 256.0f32, 0.0f32));
    } else {
        // Byte k holds elements k (low nibble) and k + 16 (high nibble).
        let k = j % 16;
        let byte = (w[base + 1 + k / 4] >> (8u32 * ((k % 4) as u32))) & 0xFFu32;
        let q = select(j < 16, byte & 0xFu32, byte >> 4u32);
        out[i] = d * f32::cast_from(q) + f16_bits_to_f32(dm >> 16u32);
    }
}

/// Repetition penalty on the logits of `ids` (distinct): positive logits divided, others multiplied.
#[cube(launch_unchecked)]
fn penalty_kernel(logits: &mut [f32], ids: &[u32], n_ids: u32, vocab: u32, penalty: f32) {
    let i = ABSOLUTE_POS_X;
    if i >= n_ids {
        terminate!();
    }
    let id = ids[i as usize];
    if id < vocab {
        let l = logits[id as usize];
        logits[id as usize] = select(l > 0.0f32, l / penalty, l * penalty);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Q4_1,
    Q8_0,
}

/// A weight matrix on the GPU, in a kernel's block layout.
pub struct GpuQMatrix {
    words: Tensor<1, Int>,
    layout: Layout,
    rows: usize,
    cols: usize,
    /// Output rows per invocation: many on software GPUs (loads are gathers), few on hardware
    /// GPUs (enough invocations to fill the device).
    rpt: usize,
}

fn f16_bits(b: &[u8], i: usize) -> u32 {
    u16::from_le_bytes([b[i], b[i + 1]]) as u32
}

impl GpuQMatrix {
    /// Upload `w` for a kernel; `None` when no GPU kernel handles its type yet.
    pub fn upload(w: &QMatrix, dev: &PmgDevice) -> Result<Option<Self>> {
        let ts = w.ty.type_size();
        let (layout, words): (Layout, Vec<u32>) = match w.ty {
            GgmlType::Q4_1 => {
                (Layout::Q4_1, w.data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
            }
            GgmlType::Q4_0 => {
                let mut v = Vec::with_capacity(w.data.len() / ts * 5);
                for b in w.data.chunks_exact(ts) {
                    let d = half::f16::from_bits(f16_bits(b, 0) as u16);
                    let m = half::f16::from_f32(-8.0 * d.to_f32());
                    v.push(d.to_bits() as u32 | (m.to_bits() as u32) << 16);
                    v.extend(b[2..18].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                }
                (Layout::Q4_1, v)
            }
            GgmlType::Q8_0 => {
                let mut v = Vec::with_capacity(w.data.len() / ts * 9);
                for b in w.data.chunks_exact(ts) {
                    v.push(f16_bits(b, 0));
                    v.extend(b[2..34].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
                }
                (Layout::Q8_0, v)
            }
            _ => return Ok(None),
        };
        let n = words.len();
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        // An explicit dtype: burn would otherwise convert to the device's default int type.
        let data = TensorData::from_bytes_vec(bytes, [n], DType::U32);
        let words = Tensor::<1, Int>::from_data(data, (&dev.device, DType::U32));
        let rpt = if dev.is_software { 8 } else { 2 };
        Ok(Some(GpuQMatrix { words, layout, rows: w.rows, cols: w.cols, rpt }))
    }
}

/// `x: [m, cols]` (on the wgpu device) -> `[m, rows]`.
pub fn matmul(w: &GpuQMatrix, x: Tensor<2>) -> Result<Tensor<2>> {
    let [m, cols] = x.dims();
    debug_assert_eq!(cols, w.cols);
    let nb = cols / QK;
    let rows = w.rows;
    let wrong = |what: &str| Error::Device { device: "wgpu".into(), reason: format!("{what} is not a wgpu tensor") };
    // The kernel indexes x as dense row-major memory.
    let x: CubeTensor = x.try_into_primitive::<Cube>().map_err(|_| wrong("activation"))?;
    let x = if x.is_contiguous() { x } else { burn_cubecl_contiguous(x) };
    let wt: CubeTensor = w.words.clone().try_into_primitive::<Cube>().map_err(|_| wrong("weight"))?;
    let client = x.client.clone();
    let out_handle = client.empty(m * rows * size_of::<f32>());
    let out =
        CubeTensor::new_contiguous(client.clone(), x.device.clone(), Shape::new([m, rows]), out_handle, DType::F32);
    // Several tokens per invocation reuse each dequantized block during prefill.
    let tb: usize = if m == 1 { 1 } else { 4 };
    let rpt = w.rpt;
    let count = CubeCount::Static((rows.div_ceil(rpt) as u32).div_ceil(WG), m.div_ceil(tb) as u32, 1);
    let dim = CubeDim::new_1d(WG);
    // SAFETY: buffer sizes follow from the shapes checked above; the kernels guard r < rows and
    // t < m and read only x rows < m and weight blocks < rows * nb.
    let q8 = w.layout == Layout::Q8_0;
    unsafe {
        qmatmul_kernel::launch_unchecked(
            &client,
            count,
            dim,
            x.into_buffer_arg(),
            wt.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            m as u32,
            rows as u32,
            nb as u32,
            tb,
            rpt,
            q8,
            false,
        )
    };
    Ok(Tensor::<2>::from_primitive::<Cube>(out))
}

/// A float tensor on burn's wgpu runtime as the cubecl tensor our kernels bind (a contiguous copy
/// if it is a view).
pub fn cube<const D: usize>(t: Tensor<D>) -> Result<CubeTensor> {
    let t = cube_in_place(t)?;
    Ok(if t.is_contiguous() { t } else { burn_cubecl_contiguous(t) })
}

/// The cubecl tensor sharing `t`'s buffer, for kernels that write into it (the KV cache).
pub fn cube_shared<const D: usize>(t: Tensor<D>) -> Result<CubeTensor> {
    let t = cube_in_place(t)?;
    if !t.is_contiguous() {
        return Err(Error::Device {
            device: "wgpu".into(),
            reason: "a tensor written in place must be contiguous".into(),
        });
    }
    Ok(t)
}

fn cube_in_place<const D: usize>(t: Tensor<D>) -> Result<CubeTensor> {
    t.try_into_primitive::<Cube>()
        .map_err(|_| Error::Device { device: "wgpu".into(), reason: "not a wgpu tensor".into() })
}

/// The burn tensor of a cubecl float tensor.
pub fn tensor<const D: usize>(t: CubeTensor) -> Tensor<D> {
    Tensor::<D>::from_primitive::<Cube>(t)
}

/// A fresh (uninitialised) contiguous tensor on `like`'s device.
fn empty(like: &CubeTensor, shape: &[usize], dtype: DType) -> CubeTensor {
    let n: usize = shape.iter().product();
    let handle = like.client.empty(n * dtype.size());
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), Shape::from(shape.to_vec()), handle, dtype)
}

fn count_1d(invocations: usize) -> (CubeCount, CubeDim) {
    (CubeCount::Static((invocations as u32).div_ceil(WG).max(1), 1, 1), CubeDim::new_1d(WG))
}

impl GpuQMatrix {
    fn cube(&self) -> CubeTensor {
        self.words.clone().try_into_primitive::<Cube>().unwrap_or_else(|_| unreachable!("uploaded to wgpu"))
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Whether two matrices can share a fused launch (same block layout and row length).
    pub fn fuses_with(&self, other: &GpuQMatrix) -> bool {
        self.layout == other.layout && self.cols == other.cols && self.rpt == other.rpt
    }
}

/// `acc += W x` for one token (`x: [cols]`, `acc: [rows]`, updated in place: the residual add).
pub fn matvec_add(w: &GpuQMatrix, x: &CubeTensor, acc: &CubeTensor) {
    let (count, dim) = count_1d(w.rows.div_ceil(w.rpt));
    // SAFETY: x holds cols floats, acc rows floats, the weights rows * nb blocks; the kernel guards
    // rows and reads one token.
    unsafe {
        qmatmul_kernel::launch_unchecked(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            w.cube().into_buffer_arg(),
            acc.clone().into_buffer_arg(),
            1,
            w.rows as u32,
            (w.cols / QK) as u32,
            1,
            w.rpt,
            w.layout == Layout::Q8_0,
            true,
        )
    };
}

/// `[W0 x | W1 x | W2 x]` for one token in one launch; the matrices must [`fuse`](GpuQMatrix::fuses_with).
pub fn matvec3(w: [&GpuQMatrix; 3], x: &CubeTensor) -> CubeTensor {
    let rpt = w[0].rpt;
    let c: Vec<usize> = w.iter().map(|m| m.rows.div_ceil(rpt)).collect();
    let out = empty(x, &[w.iter().map(|m| m.rows).sum()], DType::F32);
    let (count, dim) = count_1d(c.iter().sum());
    // SAFETY: as matvec_add; each segment guards its own rows.
    unsafe {
        matvec3_kernel::launch_unchecked(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            w[0].cube().into_buffer_arg(),
            w[1].cube().into_buffer_arg(),
            w[2].cube().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            w[0].rows as u32,
            w[1].rows as u32,
            w[2].rows as u32,
            c[0] as u32,
            c[1] as u32,
            (w[0].cols / QK) as u32,
            rpt,
            w[0].layout == Layout::Q8_0,
        )
    };
    out
}

/// `silu(Wg x) * (Wu x)` for one token; the matrices must [`fuse`](GpuQMatrix::fuses_with).
pub fn gate_up(wg: &GpuQMatrix, wu: &GpuQMatrix, x: &CubeTensor) -> CubeTensor {
    let out = empty(x, &[wg.rows], DType::F32);
    let (count, dim) = count_1d(wg.rows.div_ceil(wg.rpt));
    // SAFETY: as matvec_add.
    unsafe {
        gate_up_kernel::launch_unchecked(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            wg.cube().into_buffer_arg(),
            wu.cube().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            wg.rows as u32,
            (wg.cols / QK) as u32,
            wg.rpt,
            wg.layout == Layout::Q8_0,
        )
    };
    out
}

/// RMSNorm of one row `x: [n]` with weights `w: [n]`.
pub fn rms_norm(x: &CubeTensor, w: &CubeTensor, eps: f32) -> CubeTensor {
    const PER: usize = 16;
    let n = x.meta.shape().num_elements();
    let out = CubeTensor::new_contiguous(
        x.client.clone(),
        x.device.clone(),
        x.meta.shape().clone(),
        x.client.empty(n * size_of::<f32>()),
        DType::F32,
    );
    let (count, dim) = count_1d(n.div_ceil(PER));
    // SAFETY: x, w and out hold n floats; the kernel guards i < n.
    unsafe {
        rms_norm_kernel::launch_unchecked(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            w.clone().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            n as u32,
            eps,
            PER,
        )
    };
    out
}

/// Attention shapes of one decode step.
#[derive(Debug, Clone, Copy)]
pub struct AttnDims {
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ctx: usize,
}

/// RoPE on q and k of `qkv` at `pos`; k and v are stored in the caches (`[nkv, n_ctx, hd]`,
/// written in place at `pos`), the rotated q is returned.
pub fn rope_store_kv(
    qkv: &CubeTensor,
    cos: &CubeTensor,
    sin: &CubeTensor,
    kc: &CubeTensor,
    vc: &CubeTensor,
    pos: usize,
    a: AttnDims,
) -> CubeTensor {
    let half = a.head_dim / 2;
    let q = empty(qkv, &[a.n_head * a.head_dim], DType::F32);
    let (count, dim) = count_1d((a.n_head + a.n_head_kv) * half);
    // SAFETY: qkv holds (nh + 2 nkv) hd floats, the tables n_ctx * half, the caches nkv * n_ctx * hd
    // with pos < n_ctx (checked by the caller); the kernel guards the head index.
    unsafe {
        rope_kv_kernel::launch_unchecked(
            &qkv.client,
            count,
            dim,
            qkv.clone().into_buffer_arg(),
            cos.clone().into_buffer_arg(),
            sin.clone().into_buffer_arg(),
            q.clone().into_buffer_arg(),
            kc.clone().into_buffer_arg(),
            vc.clone().into_buffer_arg(),
            pos as u32,
            a.n_ctx as u32,
            a.n_head as u32,
            a.n_head_kv as u32,
            half,
        )
    };
    q
}

/// Attention of one query (`q: [nh * hd]`, roped) over cache positions `0..t`: `[nh * hd]`.
pub fn attention(q: &CubeTensor, kc: &CubeTensor, vc: &CubeTensor, t: usize, a: AttnDims) -> CubeTensor {
    const DPI: usize = 4;
    let group = a.n_head / a.n_head_kv;
    let scores = empty(q, &[a.n_head * t], DType::F32);
    let out = empty(q, &[a.n_head * a.head_dim], DType::F32);
    let scale = 1.0 / (a.head_dim as f32).sqrt();
    let (count, dim) = count_1d(a.n_head * t);
    // SAFETY: q holds nh * hd floats, the caches nkv * n_ctx * hd with t <= n_ctx, scores nh * t;
    // the kernels guard the head index.
    unsafe {
        scores_kernel::launch_unchecked(
            &q.client,
            count,
            dim,
            q.clone().into_buffer_arg(),
            kc.clone().into_buffer_arg(),
            scores.clone().into_buffer_arg(),
            t as u32,
            a.n_ctx as u32,
            a.n_head as u32,
            group as u32,
            scale,
            a.head_dim,
        )
    };
    let (count, dim) = count_1d(a.n_head * a.head_dim / DPI);
    unsafe {
        attend_kernel::launch_unchecked(
            &q.client,
            count,
            dim,
            scores.into_buffer_arg(),
            vc.clone().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            t as u32,
            a.n_ctx as u32,
            a.n_head as u32,
            group as u32,
            a.head_dim,
            DPI,
        )
    };
    out
}

/// Index of the largest element of `x` (the first on ties) as a `u32` tensor `[1]` on the device.
pub fn argmax(x: &CubeTensor) -> CubeTensor {
    let n = x.meta.shape().num_elements();
    let p = n.min(256);
    let pv = empty(x, &[p], DType::F32);
    let pi = empty(x, &[p], DType::U32);
    let out = empty(x, &[1], DType::U32);
    let (count, dim) = count_1d(p);
    // SAFETY: x holds n >= p floats, the partials p entries; invocations guard i < p.
    unsafe {
        argmax_partial_kernel::launch_unchecked(
            &x.client,
            count,
            dim,
            x.clone().into_buffer_arg(),
            pv.clone().into_buffer_arg(),
            pi.clone().into_buffer_arg(),
            n as u32,
            p as u32,
        );
        argmax_final_kernel::launch_unchecked(
            &x.client,
            CubeCount::Static(1, 1, 1),
            CubeDim::new_1d(1),
            pv.into_buffer_arg(),
            pi.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            p as u32,
        );
    }
    out
}

/// The embedding row `[1, cols]` of the token id in `id` (a `u32` tensor `[1]` on the device,
/// such as [`argmax`]'s answer), gathered from the matrix without a round trip to the host.
pub fn embed(w: &GpuQMatrix, id: &CubeTensor) -> CubeTensor {
    let out = empty(id, &[1, w.cols], DType::F32);
    let (count, dim) = count_1d(w.cols);
    // SAFETY: the id indexes a row of w (an argmax over w's rows, or checked by the caller); out
    // holds cols floats and the kernel guards i < cols.
    unsafe {
        embed_kernel::launch_unchecked(
            &id.client,
            count,
            dim,
            w.cube().into_buffer_arg(),
            id.clone().into_buffer_arg(),
            out.clone().into_buffer_arg(),
            (w.cols / QK) as u32,
            w.layout == Layout::Q8_0,
        )
    };
    out
}

/// Repetition penalty on `logits` (one row, in place) for the distinct token ids `ids`.
pub fn penalize(logits: &CubeTensor, ids: &[u32], penalty: f32) {
    if ids.is_empty() {
        return;
    }
    let vocab = logits.meta.shape().num_elements();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
    let handle = logits.client.create_from_slice(&bytes);
    let ids_t = CubeTensor::new_contiguous(
        logits.client.clone(),
        logits.device.clone(),
        Shape::new([ids.len()]),
        handle,
        DType::U32,
    );
    let (count, dim) = count_1d(ids.len());
    // SAFETY: ids holds n_ids entries; the kernel skips ids >= vocab.
    unsafe {
        penalty_kernel::launch_unchecked(
            &logits.client,
            count,
            dim,
            logits.clone().into_buffer_arg(),
            ids_t.into_buffer_arg(),
            ids.len() as u32,
            vocab as u32,
            penalty,
        )
    };
}

/// Starts reading a `u32` tensor `[1]` back (4 bytes) on `client` (the tensor's): everything
/// queued so far is submitted now, with the copy behind it; the future resolves once the GPU got
/// there. Work queued after this call is not waited for.
pub fn read_u32_start<'c>(
    client: &'c cubecl::client::Client,
    t: &CubeTensor,
) -> impl Future<Output = Result<u32>> + Send + 'c {
    let desc = cubecl::server::CopyDescriptor::new(
        t.handle.clone().binding(),
        t.meta.shape().clone(),
        t.meta.strides().clone(),
        size_of::<u32>(),
    );
    let read = client.read_one_tensor_async(desc);
    async move {
        let bytes = read.await.map_err(|e| Error::Device { device: "readback".into(), reason: format!("{e:?}") })?;
        bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| Error::Device { device: "readback".into(), reason: "empty token id".into() })
    }
}

/// Reads a `u32` tensor `[1]` back (4 bytes), blocking (natively).
pub fn read_u32(t: CubeTensor) -> Result<u32> {
    cubecl::future::block_on(read_u32_start(&t.client, &t))
}

/// Reads a `u32` tensor `[1]` back (4 bytes) without blocking (WebGPU).
pub async fn read_u32_async(t: CubeTensor) -> Result<u32> {
    read_u32_start(&t.client, &t).await
}

/// A contiguous copy through burn (for views such as transposes).
fn burn_cubecl_contiguous(x: CubeTensor) -> CubeTensor {
    let t = Tensor::<2>::from_primitive::<Cube>(x);
    // An elementwise op writes a fresh, contiguous buffer.
    t.add_scalar(0.0).try_into_primitive::<Cube>().unwrap_or_else(|_| unreachable!("stays on wgpu"))
}

/// Whether a burn device is burn's wgpu runtime.
pub fn is_wgpu(device: &burn::tensor::Device) -> bool {
    matches!(device.as_dispatch(), DispatchDevice::Cube(CubeDevice::Wgpu(_)))
}
