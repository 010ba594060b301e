//! The GPU quantized matmul (and the CPU fallback for types without a GPU kernel) against the
//! f32 product of the dequantized weights, through the same `QLinear` op the model calls.

use burn::tensor::{Tensor, TensorData};
use pmg::gguf::Gguf;
use pmg::kernels::{QLinear, QMatrix};

mod common;

const QUANTS: &[u8] = include_bytes!("golden/quants.gguf");

#[test]
fn qlinear_on_wgpu_matches_f32_reference() {
    let Some(dev) = common::wgpu_device() else { return };
    let g = Gguf::parse(QUANTS).unwrap();
    // 3 rows: fewer than the rows one invocation handles, so the tail guards are exercised.
    for name in ["q4_0", "q4_1", "q8_0", "q4_k", "q6_k", "f16"] {
        let w = QMatrix::from_gguf(&g, &format!("w.{name}")).unwrap();
        let wf = w.dequantize();
        let (rows, cols) = (w.rows, w.cols);
        let lin = QLinear::new(w, &dev).unwrap();
        for m in [1usize, 5] {
            let x: Vec<f32> = (0..m * cols).map(|i| (i * 31 % 97) as f32 / 48.0 - 1.0).collect();
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, cols]), &dev.device);
            let y: Vec<f32> = lin.forward(xt).unwrap().into_data().try_into_vec().unwrap();
            assert_eq!(y.len(), m * rows);
            for t in 0..m {
                for r in 0..rows {
                    let xr = &x[t * cols..(t + 1) * cols];
                    let wr = &wf[r * cols..(r + 1) * cols];
                    let exact: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let scale: f64 = xr.iter().zip(wr).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                    let got = y[t * rows + r] as f64;
                    // GPU kernels keep activations in f32, and so does the CPU fallback for types
                    // without an integer kernel (K-quants, floats): only summation order differs.
                    let tol = 1e-5 * scale + 1e-5;
                    assert!((got - exact).abs() <= tol, "{name} m={m} t={t} r={r}: {got} vs {exact}");
                }
            }
        }
    }
}
