//! ggml tensor types: block layouts, dequantization, and the CPU quantized dot products.
//!
//! Block layouts follow ggml's `ggml-common.h` (block_q4_0, block_q4_1, block_q8_0, block_q4_K,
//! block_q5_K, block_q6_K) and the dequantization formulas of ggml's `dequantize_row_*`; this is an
//! independent implementation checked against the `gguf` Python package's numpy dequantizers
//! (tests/golden). The activation quantization for integer dot products (32-element blocks,
//! scale = max|x|/127, plus the block sum for Q4_1) is the scheme llama.cpp uses on CPU (Q8_0/Q8_1),
//! which keeps our logits close to llama.cpp's.

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
fn f16_table() -> &'static [f32] {
    static T: OnceLock<Vec<f32>> = OnceLock::new();
    T.get_or_init(|| (0..=u16::MAX).map(|b| half::f16::from_bits(b).to_f32()).collect())
}

#[inline(always)]
fn f16_at(t: &[f32], b: &[u8], i: usize) -> f32 {
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

/// Activations quantized to 8 bits in blocks of 32, for integer dot products with Q4/Q8 weights.
#[derive(Debug, Clone, Default)]
pub struct Q8Activations {
    pub q: Vec<i8>,
    /// Per block: scale.
    pub d: Vec<f32>,
    /// Per block: scale * sum of the quantized values (the Q4_1 min term needs it).
    pub s: Vec<f32>,
}

impl Q8Activations {
    pub fn quantize(x: &[f32]) -> Self {
        let mut a = Self::default();
        a.quantize_into(x);
        a
    }
    pub fn quantize_into(&mut self, x: &[f32]) {
        debug_assert_eq!(x.len() % QK, 0);
        let nb = x.len() / QK;
        self.q.resize(x.len(), 0);
        self.d.resize(nb, 0.0);
        self.s.resize(nb, 0.0);
        for (b, xb) in x.chunks_exact(QK).enumerate() {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let dh = half::f16::from_f32(d).to_f32();
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in self.q[b * QK..(b + 1) * QK].iter_mut().zip(xb) {
                // Round to nearest even with the 1.5 * 2^23 trick (|v * id| <= 127): no libm call.
                let r = ((v * id + 12_582_912.0) - 12_582_912.0) as i32;
                *q = r as i8;
                sum += r;
            }
            // ggml stores the activation block scale (and Q8_1's sum) as f16; so do we.
            self.d[b] = dh;
            self.s[b] = half::f16::from_f32(d * sum as f32).to_f32();
        }
    }
}

/// Whether `ty` has an integer dot-product kernel (else rows are dequantized to f32 first).
pub fn has_q8_kernel(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// Dot products of consecutive weight rows (`rows` holds `out.len()` rows of `row_bytes` bytes)
/// with the activation row whose first block is `block0`. Processing several rows per call shares
/// the activation loads and amortises the per-row setup, which dominates for short rows.
pub fn dot_rows_q8(ty: GgmlType, rows: &[u8], row_bytes: usize, a: &Q8Activations, block0: usize, out: &mut [f32]) {
    assert!(has_q8_kernel(ty) && rows.len() == row_bytes * out.len());
    assert!((block0 + row_bytes / ty.type_size()) * QK <= a.q.len(), "activations too short");
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() {
            // SAFETY: AVX2/FMA/F16C checked at run time; sizes asserted above.
            unsafe { simd_x86::dot_rows(ty, rows, row_bytes, a, block0, out) };
            return;
        }
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
        *o = dot_q8_scalar(ty, row, a, block0);
    }
}

/// One row (see [`dot_rows_q8`]).
pub fn dot_q8(ty: GgmlType, row: &[u8], a: &Q8Activations, block0: usize) -> f32 {
    let mut out = [0f32];
    dot_rows_q8(ty, row, row.len(), a, block0, &mut out);
    out[0]
}

/// Which integer dot-product kernel this CPU runs (for reports).
pub fn kernel_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        return "AVX2";
    }
    "scalar"
}

#[cfg(target_arch = "x86_64")]
fn avx2() -> bool {
    static A: OnceLock<bool> = OnceLock::new();
    *A.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c"))
}

/// Portable reference kernel; the SIMD kernels must agree with it up to float summation order.
pub fn dot_q8_scalar(ty: GgmlType, row: &[u8], a: &Q8Activations, block0: usize) -> f32 {
    let t = f16_table();
    let ts = ty.type_size();
    let mut acc = 0f32;
    for (i, b) in row.chunks_exact(ts).enumerate() {
        let bi = block0 + i;
        let q8 = &a.q[bi * QK..(bi + 1) * QK];
        match ty {
            GgmlType::Q4_0 => {
                let mut s = 0i32;
                for j in 0..QK / 2 {
                    s += ((b[2 + j] & 0xF) as i32 - 8) * q8[j] as i32 + ((b[2 + j] >> 4) as i32 - 8) * q8[j + 16] as i32;
                }
                acc += f16_at(t, b, 0) * a.d[bi] * s as f32;
            }
            GgmlType::Q4_1 => {
                let mut s = 0i32;
                for j in 0..QK / 2 {
                    s += (b[4 + j] & 0xF) as i32 * q8[j] as i32 + (b[4 + j] >> 4) as i32 * q8[j + 16] as i32;
                }
                acc += f16_at(t, b, 0) * a.d[bi] * s as f32 + f16_at(t, b, 2) * a.s[bi];
            }
            GgmlType::Q8_0 => {
                let mut s = 0i32;
                for j in 0..QK {
                    s += (b[2 + j] as i8) as i32 * q8[j] as i32;
                }
                acc += f16_at(t, b, 0) * a.d[bi] * s as f32;
            }
            _ => unreachable!("no q8 kernel for {ty:?}"),
        }
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod simd_x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// Rows processed together.
    const R: usize = 4;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Two f16 at `p` (a block's `d`, `m`) as f32.
    ///
    /// SAFETY: `p` must point to 4 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn f16x2(p: *const u8) -> __m128 {
        let bits = unsafe { (p as *const u32).read_unaligned() };
        _mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32))
    }

    /// 32 unsigned 4-bit values of a block: low nibbles are elements 0..16, high nibbles 16..32.
    ///
    /// SAFETY: `p` must point to 16 readable bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn nibbles(p: *const u8) -> __m256i {
        let raw = unsafe { _mm_loadu_si128(p as *const __m128i) };
        let both = _mm256_set_m128i(_mm_srli_epi16(raw, 4), raw);
        _mm256_and_si256(both, _mm256_set1_epi8(0xF))
    }

    /// Sum of u8 x i8 products in 32 lanes, as 8 f32 partial sums.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn mul_sum_us8(u: __m256i, s: __m256i) -> __m256 {
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)))
    }

    /// Sum of i8 x i8 products: move x's sign onto y so maddubs sees |x| as unsigned.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn mul_sum_ss8(x: __m256i, y: __m256i) -> __m256 {
        mul_sum_us8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
    }

    /// `N` rows (N <= R) starting at `w`, each `nb` blocks of type `ty` `row_bytes` apart.
    ///
    /// SAFETY: AVX2/FMA/F16C; `w` holds N rows; `a` holds `block0 + nb` blocks.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_n<const N: usize>(ty: GgmlType, w: *const u8, row_bytes: usize, nb: usize, a: &Q8Activations, block0: usize, out: &mut [f32]) {
        let ts = ty.type_size();
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_min = [0f32; R];
        unsafe {
            let qp = a.q.as_ptr().add(block0 * QK);
            for i in 0..nb {
                let y = _mm256_loadu_si256(qp.add(i * QK) as *const __m256i);
                let dy = *a.d.get_unchecked(block0 + i);
                for r in 0..N {
                    let b = w.add(r * row_bytes + i * ts);
                    match ty {
                        GgmlType::Q4_1 => {
                            let dm = f16x2(b);
                            let d = _mm_cvtss_f32(dm);
                            let m = _mm_cvtss_f32(_mm_movehdup_ps(dm));
                            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), mul_sum_us8(nibbles(b.add(4)), y), acc[r]);
                            acc_min[r] += m * *a.s.get_unchecked(block0 + i);
                        }
                        GgmlType::Q4_0 => {
                            let d = _mm_cvtss_f32(f16x2(b));
                            let x = _mm256_sub_epi8(nibbles(b.add(2)), _mm256_set1_epi8(8));
                            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), mul_sum_ss8(x, y), acc[r]);
                        }
                        GgmlType::Q8_0 => {
                            let d = _mm_cvtss_f32(f16x2(b));
                            let x = _mm256_loadu_si256(b.add(2) as *const __m256i);
                            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * dy), mul_sum_ss8(x, y), acc[r]);
                        }
                        _ => unreachable!(),
                    }
                }
            }
        }
        for r in 0..N {
            out[r] = hsum(acc[r]) + acc_min[r];
        }
    }

    /// SAFETY: AVX2/FMA/F16C; sizes as asserted by `dot_rows_q8`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_rows(ty: GgmlType, rows: &[u8], row_bytes: usize, a: &Q8Activations, block0: usize, out: &mut [f32]) {
        let nb = row_bytes / ty.type_size();
        let mut chunks = out.chunks_exact_mut(R);
        let mut w = rows.as_ptr();
        // The type is matched once per call so each loop below is specialised by the compiler.
        macro_rules! run {
            ($ty:expr) => {{
                for o in &mut chunks {
                    unsafe { rows_n::<R>($ty, w, row_bytes, nb, a, block0, o) };
                    w = unsafe { w.add(R * row_bytes) };
                }
                for o in chunks.into_remainder().chunks_exact_mut(1) {
                    unsafe { rows_n::<1>($ty, w, row_bytes, nb, a, block0, o) };
                    w = unsafe { w.add(row_bytes) };
                }
            }};
        }
        match ty {
            GgmlType::Q4_1 => run!(GgmlType::Q4_1),
            GgmlType::Q4_0 => run!(GgmlType::Q4_0),
            GgmlType::Q8_0 => run!(GgmlType::Q8_0),
            _ => unreachable!(),
        }
    }
}

/// f32 dot product (used for rows without an integer kernel, after dequantization).
#[inline]
pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise without fast-math.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}
