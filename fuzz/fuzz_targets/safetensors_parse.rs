//! Any byte string as a safetensors file: parsing the header and decoding every tensor it declares
//! never panics and never allocates more than twice the input (f16 values decode to f32; the view
//! checks every shape and offset against the file before any value is read).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmg::tensor_io::{SafetensorsView, TensorSource};

fuzz_target!(|data: &[u8]| {
    if let Ok(view) = SafetensorsView::parse("fuzz", &data) {
        let names: Vec<String> = view.names().map(str::to_string).collect();
        for name in names {
            if let Ok(values) = view.values(&name) {
                assert!(values.len() * 4 <= 2 * data.len().max(4));
            }
        }
    }
});
