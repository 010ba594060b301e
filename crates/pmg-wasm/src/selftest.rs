//! `kernelSelfTest()`: the wasm SIMD128 dot-product kernels against the portable scalar kernel, in
//! the browser. Native tests cannot run wasm SIMD, so this is where that kernel is checked
//! (`web/tests/browser.mjs` calls it).
//!
//! The SIMD128 kernel does the scalar kernel's float operations in the same order (see
//! `kernels/q8.rs`), so every result must be equal bit for bit; any difference is an error.

use wasm_bindgen::prelude::*;

use pmg::gguf::GgmlType;
use pmg::gguf::quant::QK;
use pmg::kernels::q8::{self as quant, Q8Activations};

use pmg::rng::SeededRng;

/// Uniform in [-1, 1), from the project's seeded generator (a failure reproduces).
fn unit(rng: &mut SeededRng) -> f32 {
    rng.unit_f32() * 2.0 - 1.0
}

/// `rows` rows of `cols` values of type `ty`: random quant bytes, and scales that are usually
/// normal f16 but sometimes zero, subnormal or large (the f16 conversion paths).
fn random_rows(ty: GgmlType, rows: usize, cols: usize, rng: &mut SeededRng) -> Vec<u8> {
    let ts = ty.type_size();
    let mut v = vec![0u8; ty.row_bytes(cols) * rows];
    for b in v.chunks_exact_mut(ts) {
        for x in b.iter_mut() {
            *x = rng.below(256) as u8;
        }
        let scale = |rng: &mut SeededRng| -> [u8; 2] {
            let x = match rng.below(16) {
                0 => 0.0,
                1 => unit(rng) * 3e-6, // subnormal in f16
                2 => unit(rng) * 60000.0,
                _ => unit(rng) * 0.05,
            };
            half::f16::from_f32(x).to_bits().to_le_bytes()
        };
        b[..2].copy_from_slice(&scale(rng));
        if ty == GgmlType::Q4_1 {
            b[2..4].copy_from_slice(&scale(rng));
        }
    }
    v
}

/// `m` activation rows of `cols` values; some blocks all zero, some with one large outlier.
fn random_activations(m: usize, cols: usize, rng: &mut SeededRng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..m * cols).map(|_| unit(rng) * 4.0).collect();
    for b in x.chunks_exact_mut(QK) {
        match rng.below(8) {
            0 => b.fill(0.0),
            1 => b[rng.below(QK)] = 1000.0 * unit(rng),
            _ => {}
        }
    }
    x
}

/// Runs every case; `Ok((dot products compared, max abs difference))` or the first mismatch.
fn run() -> Result<(usize, f32), String> {
    let mut rng = SeededRng::new(0x5eed_1234);
    let mut compared = 0usize;
    let mut worst = 0f32;
    // Row counts cover the 4-row groups and every remainder; token counts the 4-token groups and
    // every remainder; 576 and 1536 columns are the model's.
    let shapes: &[(usize, usize, usize)] = &[
        (1, 32, 1),
        (2, 64, 2),
        (3, 96, 3),
        (4, 32, 4),
        (5, 160, 5),
        (7, 64, 6),
        (9, 576, 7),
        (13, 1536, 8),
        (8, 576, 9),
        (6, 576, 1),
    ];
    for ty in [GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q8_0] {
        for &(rows, cols, m) in shapes {
            let w = random_rows(ty, rows, cols, &mut rng);
            let a = Q8Activations::quantize(&random_activations(m, cols, &mut rng));
            let rb = ty.row_bytes(cols);
            let nb = cols / QK;
            let mut tiled = vec![0f32; rows * m];
            quant::dot_rows_q8_tokens(ty, &w, rb, &a, m, &mut tiled);
            let mut per_token = vec![0f32; rows];
            for t in 0..m {
                quant::dot_rows_q8(ty, &w, rb, &a, t * nb, &mut per_token);
                for r in 0..rows {
                    let want = quant::dot_q8_scalar(ty, &w[r * rb..(r + 1) * rb], &a, t * nb);
                    for (what, got) in [("dot_rows_q8", per_token[r]), ("dot_rows_q8_tokens", tiled[r * m + t])] {
                        compared += 1;
                        if got.to_bits() != want.to_bits() {
                            return Err(format!(
                                "{what} {ty:?} ({rows} rows x {cols} columns, {m} tokens): row {r} token {t}: {got:e} but the scalar kernel gives {want:e} (difference {:e})",
                                (got - want).abs()
                            ));
                        }
                        worst = worst.max((got - want).abs());
                    }
                }
            }
        }
    }
    Ok((compared, worst))
}

/// Compares the integer dot-product kernel this build runs (SIMD128 where enabled) with the
/// scalar reference on pseudo-random Q4_0, Q4_1 and Q8_0 blocks (1 to 13 rows, 1 to 9 tokens,
/// zero, subnormal and large scales, zero and outlier activation blocks). Returns a one-line
/// summary with the largest absolute difference (0: they are equal bit for bit); throws an
/// `Error` named `KernelSelfTestError` naming the first mismatch.
#[wasm_bindgen(js_name = kernelSelfTest)]
pub fn kernel_self_test() -> Result<String, JsValue> {
    match run() {
        Ok((n, worst)) => Ok(format!(
            "{} kernel: {n} dot products of Q4_0/Q4_1/Q8_0 equal the scalar kernel's (max abs difference {worst:e})",
            pmg::host::cpu_kernels()
        )),
        Err(msg) => {
            let err = js_sys::Error::new(&format!("{} kernel self-test failed: {msg}", pmg::host::cpu_kernels()));
            err.set_name("KernelSelfTestError");
            Err(err.into())
        }
    }
}

/// The first `n` raw draws of `SeededRng::new(seed)` as hex strings (u64 does not fit a JS
/// number): the browser test compares them with the values the native unit test pins, so the
/// seeded stream is the same on wasm32 as on 64-bit targets.
#[wasm_bindgen(js_name = seededDraws)]
pub fn seeded_draws(seed: u32, n: usize) -> Vec<String> {
    let mut rng = SeededRng::new(seed as u64);
    (0..n.min(64)).map(|_| format!("{:016x}", rng.next_u64())).collect()
}
