//! The CPU's integer dot products of ggml weight blocks (Q4_0, Q4_1, Q8_0) with 8-bit activations:
//! AVX2 natively where the CPU has it, SIMD128 on wasm, a portable scalar kernel elsewhere. The
//! activation quantization (32-element blocks, scale = max|x|/127, plus the block sum for Q4_1) is
//! the scheme llama.cpp uses on CPU (Q8_0/Q8_1), which keeps our logits close to llama.cpp's.

use crate::gguf::quant::{GgmlType, QK, f16_at, f16_table};

/// Activations quantized to 8 bits in blocks of 32, for integer dot products with Q4/Q8 weights.
#[derive(Debug, Clone, Default)]
pub struct Q8Activations {
    pub q: Vec<i8>,
    /// Per block: scale.
    pub d: Vec<f32>,
    /// Per block: scale * sum of the quantized values (the Q4_1 min term needs it).
    pub s: Vec<f32>,
    /// wasm SIMD128 only: `q` widened to i16 and reordered per block as the kernel unpacks the
    /// weights (elements 0,2,..,14 | 1,3,..,15 | 16,18,..,30 | 17,19,..,31), so a weight block
    /// needs no byte shuffles, only shifts and masks on 16-bit lanes.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    q16: Vec<i16>,
    /// wasm SIMD128 only: per block, the sum of the quantized values (Q4_0's -8 offset).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    qsum: Vec<i32>,
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
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        self.qsum.resize(nb, 0);
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
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            {
                self.qsum[b] = sum;
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            self.q16.resize(x.len(), 0);
            for (o, q) in self.q16.chunks_exact_mut(QK).zip(self.q.chunks_exact(QK)) {
                for k in 0..8 {
                    o[k] = q[2 * k] as i16;
                    o[8 + k] = q[2 * k + 1] as i16;
                    o[16 + k] = q[16 + 2 * k] as i16;
                    o[24 + k] = q[17 + 2 * k] as i16;
                }
            }
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
        if crate::host::has_avx2() {
            // SAFETY: AVX2/FMA/F16C checked at run time; sizes asserted above.
            unsafe { simd_x86::dot_rows(ty, rows, row_bytes, a, block0, out) };
            return;
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        // SAFETY: SIMD128 is a compile-time feature of this build; sizes asserted above.
        unsafe { simd_wasm::dot_rows(ty, rows, row_bytes, a, block0, out) };
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(row_bytes)) {
        *o = dot_q8_scalar(ty, row, a, block0);
    }
}

/// Dot products of every row in `rows` with each of `m` activation rows (token `t` starts at
/// block `t * nb`, `nb = row_bytes / type_size`): `out_t[r * m + t]` (the transposed result, one
/// output row per weight row). The same values as `m` calls of [`dot_rows_q8`]; on wasm SIMD128
/// each weight block is unpacked once for 4 tokens (prefill).
pub fn dot_rows_q8_tokens(ty: GgmlType, rows: &[u8], row_bytes: usize, a: &Q8Activations, m: usize, out_t: &mut [f32]) {
    assert!(has_q8_kernel(ty) && m > 0 && rows.len() * m == row_bytes * out_t.len());
    let nb = row_bytes / ty.type_size();
    assert!(m * nb * QK <= a.q.len(), "activations too short");
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        // SAFETY: SIMD128 is a compile-time feature of this build; sizes asserted above.
        unsafe { simd_wasm::dot_tokens(ty, rows, row_bytes, a, m, out_t) };
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        if m == 1 {
            dot_rows_q8(ty, rows, row_bytes, a, 0, out_t);
            return;
        }
        let k = out_t.len() / m;
        let mut tmp = vec![0f32; k];
        for t in 0..m {
            dot_rows_q8(ty, rows, row_bytes, a, t * nb, &mut tmp);
            for (i, v) in tmp.iter().enumerate() {
                out_t[i * m + t] = *v;
            }
        }
    }
}

/// One row (see [`dot_rows_q8`]).
pub fn dot_q8(ty: GgmlType, row: &[u8], a: &Q8Activations, block0: usize) -> f32 {
    let mut out = [0f32];
    dot_rows_q8(ty, row, row.len(), a, block0, &mut out);
    out[0]
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
                    s +=
                        ((b[2 + j] & 0xF) as i32 - 8) * q8[j] as i32 + ((b[2 + j] >> 4) as i32 - 8) * q8[j + 16] as i32;
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
    unsafe fn rows_n<const N: usize>(
        ty: GgmlType,
        w: *const u8,
        row_bytes: usize,
        nb: usize,
        a: &Q8Activations,
        block0: usize,
        out: &mut [f32],
    ) {
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
    pub unsafe fn dot_rows(
        ty: GgmlType,
        rows: &[u8],
        row_bytes: usize,
        a: &Q8Activations,
        block0: usize,
        out: &mut [f32],
    ) {
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

/// wasm SIMD128 kernels (every browser we target has SIMD128: Chrome/Edge 91+, Firefox 89+,
/// Safari 16.4+; `.cargo/config.toml` enables it for wasm32).
///
/// Integer products and sums are exact (i16 lanes, `i32x4.dot_i16x8_s`), and the float part is the
/// scalar kernel's, lane by lane: per row and block `acc += (d_w * d_a) * (sum as f32)` (Q4_1 adds
/// `+ m * s_a` before the accumulation), with no FMA and in block order. So the results equal
/// [`dot_q8_scalar`] bit for bit (the browser self-test `kernelSelfTest` checks it); the AVX2
/// kernel, in contrast, accumulates in 8 lanes with FMA and differs in the last bits.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd_wasm {
    use super::*;
    use core::arch::wasm32::*;

    /// Rows (decode) or tokens (prefill) computed together: one f32x4 lane each.
    const R: usize = 4;

    /// f16 at `p` through the table.
    ///
    /// SAFETY: `p` must point to 2 readable bytes.
    #[inline(always)]
    unsafe fn f16(t: &[f32], p: *const u8) -> f32 {
        unsafe { *t.get_unchecked((p as *const u16).read_unaligned() as usize) }
    }

    /// f16 bit patterns in the low 16 bits of each i32 lane (higher bits ignored) as f32: exact for
    /// every finite f16, normal or subnormal (the table gives the same values); block scales are
    /// never infinite or NaN.
    #[inline(always)]
    fn f16x4(h: v128) -> v128 {
        let mag = i32x4_shl(v128_and(h, i32x4_splat(0x7fff)), 13);
        // Exponent rebias 15 -> 127 by a multiply by 2^112, which also handles subnormals.
        let v = f32x4_mul(mag, f32x4_splat(f32::from_bits((127 + 112) << 23)));
        v128_or(v, i32x4_shl(v128_and(h, i32x4_splat(0x8000)), 16))
    }

    /// The activations of block `bi` as 4 i16x8 (the order of `Q8Activations::q16`).
    ///
    /// SAFETY: `a` must hold block `bi`.
    #[inline(always)]
    unsafe fn act(a: &Q8Activations, bi: usize) -> [v128; 4] {
        unsafe {
            let p = a.q16.as_ptr().add(bi * QK) as *const v128;
            [v128_load(p), v128_load(p.add(1)), v128_load(p.add(2)), v128_load(p.add(3))]
        }
    }

    /// A weight block's 32 values as 4 i16x8 in the order of `act`. For Q4_0 these are the
    /// unsigned nibbles; the caller subtracts `8 * sum(activations)`.
    ///
    /// SAFETY: `b` must point to one block of type `ty`.
    #[inline(always)]
    unsafe fn weights(ty: GgmlType, b: *const u8) -> [v128; 4] {
        unsafe {
            match ty {
                GgmlType::Q4_0 | GgmlType::Q4_1 => {
                    // 16-bit lane k holds bytes 2k, 2k+1: nibbles of elements 2k, 2k+16 (low
                    // byte) and 2k+1, 2k+17 (high byte).
                    let raw = v128_load(b.add(if ty == GgmlType::Q4_1 { 4 } else { 2 }) as *const v128);
                    let m = i16x8_splat(0xF);
                    [
                        v128_and(raw, m),
                        v128_and(u16x8_shr(raw, 8), m),
                        v128_and(u16x8_shr(raw, 4), m),
                        u16x8_shr(raw, 12),
                    ]
                }
                GgmlType::Q8_0 => {
                    // Sign-extend the low and the high byte of each 16-bit lane.
                    let r0 = v128_load(b.add(2) as *const v128);
                    let r1 = v128_load(b.add(18) as *const v128);
                    [i16x8_shr(i16x8_shl(r0, 8), 8), i16x8_shr(r0, 8), i16x8_shr(i16x8_shl(r1, 8), 8), i16x8_shr(r1, 8)]
                }
                _ => unreachable!(),
            }
        }
    }

    /// Partial sums (i32x4) of a block's 32 integer products.
    #[inline(always)]
    fn dot(w: &[v128; 4], y: &[v128; 4]) -> v128 {
        let s01 = i32x4_add(i32x4_dot_i16x8(w[0], y[0]), i32x4_dot_i16x8(w[1], y[1]));
        let s23 = i32x4_add(i32x4_dot_i16x8(w[2], y[2]), i32x4_dot_i16x8(w[3], y[3]));
        i32x4_add(s01, s23)
    }

    /// `[sum(v[0]), sum(v[1]), sum(v[2]), sum(v[3])]` (a transpose and add).
    #[inline(always)]
    fn hsum4(v: &[v128; R]) -> v128 {
        let u0 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[0], v[1]), i32x4_shuffle::<2, 6, 3, 7>(v[0], v[1]));
        let u1 = i32x4_add(i32x4_shuffle::<0, 4, 1, 5>(v[2], v[3]), i32x4_shuffle::<2, 6, 3, 7>(v[2], v[3]));
        i32x4_add(i32x4_shuffle::<0, 1, 4, 5>(u0, u1), i32x4_shuffle::<2, 3, 6, 7>(u0, u1))
    }

    /// `v` with lane `r` (< R, a constant after inlining) loaded from the 4 bytes at `p`.
    ///
    /// SAFETY: `p` must point to 4 readable bytes (a block's start: every type here has >= 18).
    #[inline(always)]
    unsafe fn load32_lane_r(p: *const u8, v: v128, r: usize) -> v128 {
        let p = p as *const u32;
        unsafe {
            match r {
                0 => v128_load32_lane::<0>(v, p),
                1 => v128_load32_lane::<1>(v, p),
                2 => v128_load32_lane::<2>(v, p),
                _ => v128_load32_lane::<3>(v, p),
            }
        }
    }

    /// `N` (<= R) rows starting at `w`, `row_bytes` apart, against activation blocks
    /// `block0..block0 + nb`; lane r of the accumulator is row r.
    ///
    /// SAFETY: `w` holds N rows of `nb` blocks of type `ty`; `a` holds `block0 + nb` blocks.
    #[inline(always)]
    unsafe fn rows_n<const N: usize>(
        ty: GgmlType,
        w: *const u8,
        row_bytes: usize,
        nb: usize,
        a: &Q8Activations,
        block0: usize,
        out: &mut [f32],
    ) {
        let ts = ty.type_size();
        let mut acc = f32x4_splat(0.0);
        for i in 0..nb {
            let bi = block0 + i;
            unsafe {
                let y = act(a, bi);
                let mut s = [i32x4_splat(0); R];
                // Lane r: the first 4 bytes of row r's block (d, and m for Q4_1, as f16).
                let mut dm = i32x4_splat(0);
                #[allow(clippy::needless_range_loop)] // r is the row, the lane and the index
                for r in 0..N {
                    let b = w.add(r * row_bytes + i * ts);
                    s[r] = dot(&weights(ty, b), &y);
                    dm = load32_lane_r(b, dm, r);
                }
                let mut si = hsum4(&s);
                if ty == GgmlType::Q4_0 {
                    si = i32x4_sub(si, i32x4_splat(8 * *a.qsum.get_unchecked(bi)));
                }
                let dd = f32x4_mul(f16x4(dm), f32x4_splat(*a.d.get_unchecked(bi)));
                let mut v = f32x4_mul(dd, f32x4_convert_i32x4(si));
                if ty == GgmlType::Q4_1 {
                    v = f32x4_add(v, f32x4_mul(f16x4(u32x4_shr(dm, 16)), f32x4_splat(*a.s.get_unchecked(bi))));
                }
                acc = f32x4_add(acc, v);
            }
        }
        let mut lanes = [0f32; R];
        unsafe { v128_store(lanes.as_mut_ptr() as *mut v128, acc) };
        out[..N].copy_from_slice(&lanes[..N]);
    }

    /// One row at `row` against `N` (<= R) tokens `t0..t0 + N` (token k's blocks start at
    /// `k * nb`); lane k of the accumulator is token t0 + k.
    ///
    /// SAFETY: `row` holds `nb` blocks of type `ty`; `a` holds `(t0 + N) * nb` blocks.
    #[inline(always)]
    unsafe fn tokens_n<const N: usize>(
        ty: GgmlType,
        t: &[f32],
        row: *const u8,
        nb: usize,
        a: &Q8Activations,
        t0: usize,
        out: &mut [f32],
    ) {
        let ts = ty.type_size();
        let mut acc = f32x4_splat(0.0);
        for i in 0..nb {
            unsafe {
                let b = row.add(i * ts);
                let w = weights(ty, b);
                let mut s = [i32x4_splat(0); R];
                let (mut dy, mut sy, mut qs) = ([0f32; R], [0f32; R], [0i32; R]);
                for k in 0..N {
                    let bi = (t0 + k) * nb + i;
                    s[k] = dot(&w, &act(a, bi));
                    dy[k] = *a.d.get_unchecked(bi);
                    if ty == GgmlType::Q4_1 {
                        sy[k] = *a.s.get_unchecked(bi);
                    }
                    if ty == GgmlType::Q4_0 {
                        qs[k] = *a.qsum.get_unchecked(bi);
                    }
                }
                let mut si = hsum4(&s);
                if ty == GgmlType::Q4_0 {
                    si = i32x4_sub(si, i32x4_shl(i32x4(qs[0], qs[1], qs[2], qs[3]), 3));
                }
                let dd = f32x4_mul(f32x4_splat(f16(t, b)), f32x4(dy[0], dy[1], dy[2], dy[3]));
                let mut v = f32x4_mul(dd, f32x4_convert_i32x4(si));
                if ty == GgmlType::Q4_1 {
                    v = f32x4_add(v, f32x4_mul(f32x4_splat(f16(t, b.add(2))), f32x4(sy[0], sy[1], sy[2], sy[3])));
                }
                acc = f32x4_add(acc, v);
            }
        }
        let mut lanes = [0f32; R];
        unsafe { v128_store(lanes.as_mut_ptr() as *mut v128, acc) };
        out[..N].copy_from_slice(&lanes[..N]);
    }

    /// SAFETY: sizes as asserted by `dot_rows_q8`.
    pub unsafe fn dot_rows(
        ty: GgmlType,
        rows: &[u8],
        row_bytes: usize,
        a: &Q8Activations,
        block0: usize,
        out: &mut [f32],
    ) {
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
                let rest = chunks.into_remainder();
                match rest.len() {
                    0 => {}
                    1 => unsafe { rows_n::<1>($ty, w, row_bytes, nb, a, block0, rest) },
                    2 => unsafe { rows_n::<2>($ty, w, row_bytes, nb, a, block0, rest) },
                    _ => unsafe { rows_n::<3>($ty, w, row_bytes, nb, a, block0, rest) },
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

    /// SAFETY: sizes as asserted by `dot_rows_q8_tokens`.
    pub unsafe fn dot_tokens(
        ty: GgmlType,
        rows: &[u8],
        row_bytes: usize,
        a: &Q8Activations,
        m: usize,
        out_t: &mut [f32],
    ) {
        if m == 1 {
            return unsafe { dot_rows(ty, rows, row_bytes, a, 0, out_t) };
        }
        let t = f16_table();
        let nb = row_bytes / ty.type_size();
        macro_rules! run {
            ($ty:expr) => {{
                for (row, o) in rows.chunks_exact(row_bytes).zip(out_t.chunks_exact_mut(m)) {
                    let w = row.as_ptr();
                    let mut t0 = 0;
                    for o in o.chunks_mut(R) {
                        match o.len() {
                            R => unsafe { tokens_n::<R>($ty, t, w, nb, a, t0, o) },
                            1 => unsafe { tokens_n::<1>($ty, t, w, nb, a, t0, o) },
                            2 => unsafe { tokens_n::<2>($ty, t, w, nb, a, t0, o) },
                            _ => unsafe { tokens_n::<3>($ty, t, w, nb, a, t0, o) },
                        }
                        t0 += R;
                    }
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
