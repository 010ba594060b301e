//! Any byte string as a one-file GGUF SD checkpoint (stable-diffusion.cpp's layout): reading the
//! header, mapping the names, inferring the configs and decoding every tensor each part maps
//! never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pmg::sd::gguf_checkpoint::{GgufCheckpoint, Which};
use pmg::tensor_io::TensorSource;

fuzz_target!(|data: &[u8]| {
    let Ok(ck) = GgufCheckpoint::read("fuzz", Box::new(data.to_vec())) else { return };
    let _ = (ck.unet_config(), ck.text_config(), ck.vae_config());
    for (which, part) in [(Which::Unet, &ck.unet), (Which::Vae, &ck.vae), (Which::Text, &ck.text)] {
        let view = ck.view(which);
        for name in part.names() {
            let _ = view.values(name);
            let _ = view.quantized(name);
        }
    }
});
