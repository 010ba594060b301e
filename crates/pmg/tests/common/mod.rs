//! Helpers shared by the integration tests.
#![allow(dead_code)]

use pmg::{DeviceChoice, PmgDevice};

/// The default model's bytes (fetched by scripts/fetch-models.sh, which scripts/test.sh runs).
pub fn default_model_bytes() -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}; run scripts/fetch-models.sh"))
}

/// The wgpu device, or `None` when the run explicitly opts out with `PMG_SKIP_WGPU=1`. A missing
/// adapter without that opt-out fails the test rather than passing silently.
pub fn wgpu_device() -> Option<PmgDevice> {
    if std::env::var_os("PMG_SKIP_WGPU").is_some() {
        eprintln!("PMG_SKIP_WGPU set: skipping the wgpu backend");
        return None;
    }
    Some(
        PmgDevice::new(DeviceChoice::Wgpu)
            .expect("no wgpu adapter (install mesa-vulkan-drivers, or set PMG_SKIP_WGPU=1)"),
    )
}

/// The largest channel difference (8-bit levels) of an opaque picture from diffusers' output
/// written as channel-major hex (`u8_hex` of scripts/golden_sd_pipeline.py).
pub fn levels_from_hex(img: &pmg::image::Image, rgb_hex: &str) -> u8 {
    let want: Vec<u8> =
        (0..rgb_hex.len()).step_by(2).map(|i| u8::from_str_radix(&rgb_hex[i..i + 2], 16).unwrap()).collect();
    let n = img.width * img.height;
    assert_eq!(want.len(), 3 * n, "the reference's size");
    let mut worst = 0;
    for (i, px) in img.rgba.chunks_exact(4).enumerate() {
        assert_eq!(px[3], 255, "opaque");
        for c in 0..3 {
            worst = worst.max(px[c].abs_diff(want[c * n + i]));
        }
    }
    worst
}
