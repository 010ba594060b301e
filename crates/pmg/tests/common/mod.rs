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
