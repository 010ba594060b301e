//! ggml tensor types: block layouts and dequantization (the integer dot-product kernels that read
//! these blocks are `kernels::q8`).
//!
//! Block layouts follow ggml's `ggml-common.h` (block_q4_0, block_q4_1, block_q8_0, block_q4_K,
//! block_q5_K, block_q6_K) and the dequantization formulas of ggml's `dequantize_row_*`; this is an
//! independent implementation checked against the `gguf` Python package's numpy dequantizers
//! (crates/pmg/tests/golden).

use std::sync::OnceLock;

/// Tensor element types we read. Discriminants are ggml's `enum ggml_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 8,
    Q4K = 12,
    Q5K = 13,
    Q6K = 14,
    BF16 = 30,
}

pub const QK: usize = 32;
pub const QK_K: usize = 256;

impl GgmlType {
    pub fn from_u32(t: u32) -> Option<Self> {
        Some(match t {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }
    /// Elements per block.
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q4_0 | Self::Q4_1 | Self::Q8_0 => QK,
            Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
        }
    }
    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q4_0 => 2 + QK / 2,
            Self::Q4_1 => 4 + QK / 2,
            Self::Q8_0 => 2 + QK,
            Self::Q4K => 4 + 12 + QK_K / 2,
            Self::Q5K => 4 + 12 + QK_K / 8 + QK_K / 2,
            Self::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }
    /// Bytes for a row of `n` elements (`n` must be a multiple of the block size).
    pub fn row_bytes(self, n: usize) -> usize {
        n / self.block_size() * self.type_size()
    }
}

/// f16 -> f32 through a table (as ggml does): fast on every target without F16C.
pub(crate) fn f16_table() -> &'static [f32] {
    static T: OnceLock<Vec<f32>> = OnceLock::new();
    T.get_or_init(|| (0..=u16::MAX).map(|b| half::f16::from_bits(b).to_f32()).collect())
}

#[inline(always)]
pub(crate) fn f16_at(t: &[f32], b: &[u8], i: usize) -> f32 {
    t[u16::from_le_bytes([b[i], b[i + 1]]) as usize]
}

/// Dequantize one row (`out.len()` elements) of type `ty` from `src`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], out: &mut [f32]) {
    let t = f16_table();
    let bs = ty.block_size();
    let ts = ty.type_size();
    debug_assert_eq!(src.len(), out.len() / bs * ts);
    match ty {
        GgmlType::F32 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = t[u16::from_le_bytes([c[0], c[1]]) as usize];
            }
        }
        GgmlType::BF16 => {
            for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                *o = f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16);
            }
        }
        GgmlType::Q4_0 => {
            for (y, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(ts)) {
                let d = f16_at(t, b, 0);
                for j in 0..QK / 2 {
                    let q = b[2 + j];
                    y[j] = d * ((q & 0xF) as i32 - 8) as f32;
                    y[j + QK / 2] = d * ((q >> 4) as i32 - 8) as f32;
                }
            }
        }
        GgmlType::Q4_1 => {
            for (y, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(ts)) {
                let (d, m) = (f16_at(t, b, 0), f16_at(t, b, 2));
                for j in 0..QK / 2 {
                    let q = b[4 + j];
                    y[j] = d * (q & 0xF) as f32 + m;
                    y[j + QK / 2] = d * (q >> 4) as f32 + m;
                }
            }
        }
        GgmlType::Q8_0 => {
            for (y, b) in out.chunks_exact_mut(QK).zip(src.chunks_exact(ts)) {
                let d = f16_at(t, b, 0);
                for j in 0..QK {
                    y[j] = d * (b[2 + j] as i8) as f32;
                }
            }
        }
        GgmlType::Q4K => {
            for (y, b) in out.chunks_exact_mut(QK_K).zip(src.chunks_exact(ts)) {
                let (d, dmin) = (f16_at(t, b, 0), f16_at(t, b, 2));
                let scales = &b[4..16];
                let qs = &b[16..];
                for (j, chunk) in y.chunks_exact_mut(64).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, d2) = (d * sc1 as f32, d * sc2 as f32);
                    let (m1, m2) = (dmin * m1 as f32, dmin * m2 as f32);
                    let q = &qs[32 * j..32 * j + 32];
                    for l in 0..32 {
                        chunk[l] = d1 * (q[l] & 0xF) as f32 - m1;
                        chunk[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
                    }
                }
            }
        }
        GgmlType::Q5K => {
            for (y, b) in out.chunks_exact_mut(QK_K).zip(src.chunks_exact(ts)) {
                let (d, dmin) = (f16_at(t, b, 0), f16_at(t, b, 2));
                let scales = &b[4..16];
                let qh = &b[16..48];
                let qs = &b[48..];
                for (j, chunk) in y.chunks_exact_mut(64).enumerate() {
                    let (sc1, m1) = scale_min_k4(2 * j, scales);
                    let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
                    let (d1, d2) = (d * sc1 as f32, d * sc2 as f32);
                    let (m1, m2) = (dmin * m1 as f32, dmin * m2 as f32);
                    let (u1, u2) = (1u8 << (2 * j), 2u8 << (2 * j));
                    let q = &qs[32 * j..32 * j + 32];
                    for l in 0..32 {
                        let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                        let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                        chunk[l] = d1 * ((q[l] & 0xF) + h1) as f32 - m1;
                        chunk[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
                    }
                }
            }
        }
        GgmlType::Q6K => {
            for (y, b) in out.chunks_exact_mut(QK_K).zip(src.chunks_exact(ts)) {
                let d = f16_at(t, b, 208);
                for n in 0..2 {
                    let ql = &b[64 * n..64 * n + 64];
                    let qh = &b[128 + 32 * n..128 + 32 * n + 32];
                    let sc = &b[192 + 8 * n..192 + 8 * n + 8];
                    let y = &mut y[128 * n..128 * n + 128];
                    for l in 0..32 {
                        let is = l / 16;
                        let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
                        let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                        let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                        let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                        y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                        y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                        y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                        y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
                    }
                }
            }
        }
    }
}

/// The 6-bit scale and min of sub-block `j` packed in the 12 `scales` bytes of Q4_K/Q5_K.
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Quantize one row (`x.len()` a multiple of 32) to Q8_0 or Q4_0 blocks appended to `out`, as
/// ggml's reference quantizers do (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref` in
/// ggml-quants.c): one f16 scale per 32 values, `round(x / d)` with `d = amax / 127` (Q8_0), or
/// `min(15, trunc(x / d + 8.5))` with `d = -max / 8`, `max` the value of largest magnitude (Q4_0).
/// `None` for the other types.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) -> Option<()> {
    debug_assert!(x.len().is_multiple_of(QK));
    for b in x.chunks_exact(QK) {
        match ty {
            GgmlType::Q8_0 => {
                let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
                out.extend(b.iter().map(|v| (v * id).round() as i8 as u8));
            }
            GgmlType::Q4_0 => {
                let (mut amax, mut max) = (0f32, 0f32);
                for &v in b {
                    if amax < v.abs() {
                        amax = v.abs();
                        max = v;
                    }
                }
                let d = max / -8.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                out.extend_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
                let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
                out.extend((0..QK / 2).map(|j| q(b[j]) | (q(b[j + QK / 2]) << 4)));
            }
            _ => return None,
        }
    }
    Some(())
}
