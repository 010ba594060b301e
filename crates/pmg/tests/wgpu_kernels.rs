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

/// The decode step's argmax and repetition penalty on the GPU give exactly the host's answers
/// (first index on ties, the same float ops).
#[test]
fn argmax_and_penalty_on_wgpu_match_the_host() {
    use pmg::kernels::wgpu as gk;
    use pmg::llm::sampler::{apply_penalty, argmax, recent_distinct};
    let Some(dev) = common::wgpu_device() else { return };
    let upload =
        |x: &[f32]| gk::cube(Tensor::<1>::from_data(TensorData::new(x.to_vec(), [x.len()]), &dev.device)).unwrap();
    let mut cases: Vec<Vec<f32>> = Vec::new();
    for n in [1usize, 2, 7, 255, 256, 257, 1000, 49152] {
        // Few distinct values: many ties, the maximum repeated at several places.
        cases.push((0..n).map(|i| ((i * 7919 + n) % 13) as f32 * 0.5 - 3.0).collect());
        // Distinct values, the maximum at the end.
        cases.push((0..n).map(|i| i as f32 * 1e-3 - 20.0).collect());
    }
    cases.push(vec![f32::NEG_INFINITY; 300]);
    cases.push((0..300).map(|i| if i == 0 { f32::NEG_INFINITY } else { -1.0 }).collect());
    for x in &mut cases {
        let t = upload(x);
        assert_eq!(gk::read_u32(gk::argmax(&t)).unwrap(), argmax(x), "argmax of {} values", x.len());
        let history: Vec<u32> = (0..80u32).map(|i| i * 37 % x.len() as u32).collect();
        let seen = recent_distinct(&history, 64);
        gk::penalize(&t, &seen, 1.3);
        apply_penalty(x, &seen, 1.3);
        let back: Vec<f32> = gk::tensor::<1>(t.clone()).into_data().try_into_vec().unwrap();
        assert_eq!(
            back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "penalised logits"
        );
        assert_eq!(gk::read_u32(gk::argmax(&t)).unwrap(), argmax(x), "argmax after the penalty");
    }
}

/// One-token steps through the fused decode kernels agree with burn's ops (the prefill path) on
/// the same device: same greedy tokens, logits within float rounding.
#[test]
fn fused_gpu_decode_matches_burn_ops() {
    use pmg::llm::{LanguageModel, Rows};
    let Some(dev) = common::wgpu_device() else { return };
    let mut lm = LanguageModel::from_gguf_bytes(&common::default_model_bytes(), &dev, 64).unwrap();
    assert!(lm.model.gpu_decode(), "the default model's weights all have GPU kernels");
    let prompt = lm.tokenize_prompt("The capital of France is").unwrap();
    let run = |lm: &LanguageModel| {
        let mut cache = lm.model.new_cache();
        let mut input = prompt.clone();
        let mut steps = Vec::new();
        for _ in 0..8 {
            let l: Vec<f32> =
                lm.model.forward(&input, &mut cache, Rows::Last).unwrap().into_data().try_into_vec().unwrap();
            input = vec![pmg::llm::sampler::argmax(&l)];
            steps.push(l);
        }
        steps
    };
    let fused = run(&lm);
    lm.model.set_gpu_decode(false);
    let burn = run(&lm);
    let mut worst = 0f32;
    for (step, (a, b)) in fused.iter().zip(&burn).enumerate() {
        assert_eq!(pmg::llm::sampler::argmax(a), pmg::llm::sampler::argmax(b), "step {step}");
        worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(worst, f32::max);
    }
    eprintln!("fused vs burn decode: worst logit difference {worst}");
    assert!(worst < 1e-3, "fused decode logits differ from burn's by {worst}");
}

/// The embedding gather for a token id that lives on the device (run-ahead decoding) equals the
/// host's dequantization of that row.
#[test]
fn embedding_gather_on_wgpu_matches_host_dequantization() {
    use pmg::kernels::wgpu as gk;
    let Some(dev) = common::wgpu_device() else { return };
    let g = Gguf::parse(QUANTS).unwrap();
    for name in ["q4_0", "q4_1", "q8_0"] {
        let w = QMatrix::from_gguf(&g, &format!("w.{name}")).unwrap();
        let gpu = gk::GpuQMatrix::upload(&w, &dev).unwrap().unwrap();
        for row in 0..w.rows {
            // The kernel reads the id as a u32: the argmax result type.
            let id = gk::argmax(
                &gk::cube(Tensor::<1>::from_data(
                    TensorData::new(
                        (0..w.rows).map(|r| if r == row { 1.0 } else { 0.0 }).collect::<Vec<f32>>(),
                        [w.rows],
                    ),
                    &dev.device,
                ))
                .unwrap(),
            );
            let got: Vec<f32> = gk::tensor::<2>(gk::embed(&gpu, &id)).into_data().try_into_vec().unwrap();
            let mut want = vec![0f32; w.cols];
            w.dequantize_row(row, &mut want);
            for (j, (a, b)) in got.iter().zip(&want).enumerate() {
                // d * q + m may be fused on the GPU: one rounding apart at most.
                assert!((a - b).abs() <= 1e-6 * b.abs().max(1e-3), "{name} row {row} col {j}: {a} vs {b}");
            }
        }
    }
}
