//! Any byte string: parsing a GGUF and dequantizing what it declares never panics and never
//! allocates more than the input (the reader checks every count against the remaining bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmg::gguf::Gguf;
use pmg::kernels::QMatrix;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = Gguf::parse(data) {
        for t in &g.tensors {
            if let Ok(m) = QMatrix::from_gguf(&g, &t.name) {
                if m.rows * m.cols <= 1 << 16 {
                    let _ = m.dequantize();
                }
            }
        }
    }
});
