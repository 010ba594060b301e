//! Throughput of the CPU quantized matvec on the default model's weights (all layers, m = 1):
//! `cargo run --release --example kernel_bench`.
use std::time::Instant;

use pmg::gguf::Gguf;
use pmg::kernels::{QMatrix, cpu};

fn main() {
    let bytes = std::fs::read("models/SmolLM2-135M-Instruct.Q4_1.gguf").expect("run scripts/fetch-models.sh");
    let g = Gguf::parse(&bytes).unwrap();
    let mats: Vec<QMatrix> =
        g.tensors.iter().filter(|t| t.dims.len() == 2).map(|t| QMatrix::from_gguf(&g, &t.name).unwrap()).collect();
    let total: usize = mats.iter().map(|m| m.data.len()).sum();
    let xs: Vec<Vec<f32>> = mats.iter().map(|m| (0..m.cols).map(|i| (i as f32 * 0.37).sin()).collect()).collect();
    for round in 0..3 {
        let t = Instant::now();
        let n = 10;
        for _ in 0..n {
            for (m, x) in mats.iter().zip(&xs) {
                std::hint::black_box(cpu::matmul(m, x, 1));
            }
        }
        let s = t.elapsed().as_secs_f64() / n as f64;
        println!(
            "round {round}: {:.2} ms per pass over {} MB of weights ({:.1} GB/s, {} threads)",
            s * 1e3,
            total / 1_000_000,
            total as f64 / s / 1e9,
            pmg::host::pool::Pool::global().threads()
        );
    }
}
