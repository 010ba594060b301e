//! Text to image with a whole tiny SD checkpoint in diffusers' folder layout
//! (crates/pmg/tests/golden/sd-tiny/, written by scripts/golden_sd_pipeline.py: tokenizer.json, CLIP
//! text encoder, UNet and AutoencoderKL of diffusers' test sizes, random weights) against diffusers'
//! StableDiffusionPipeline given pmg's seeded noise: guided Euler ancestral and unguided DDIM.

mod common;

use pmg::diffusion::{SampleOptions, SamplerKind};
use pmg::sd::pipeline::StableDiffusion;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sd-tiny")
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap()).unwrap()
}

fn check(device: &pmg::PmgDevice, what: &str) {
    let sd = StableDiffusion::from_dir(&dir(), None, device).unwrap();
    let r = reference();
    let prompt = r["prompt"].as_str().unwrap();
    let size = r["size"].as_u64().unwrap() as usize;
    let ids: Vec<u32> = serde_json::from_value(r["prompt_ids"].clone()).unwrap();
    assert_eq!(sd.tokenizer.encode_padded(prompt, 77, sd.pad).unwrap(), ids, "prompt ids");
    let mut failed = Vec::new();
    for case in r["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let opts = SampleOptions {
            steps: case["steps"].as_u64().unwrap() as usize,
            guidance: case["guidance"].as_f64().unwrap() as f32,
            sampler: case["sampler"].as_str().unwrap().parse().unwrap(),
            ..SampleOptions::default()
        };
        let seed = case["seed"].as_u64().unwrap();
        let img = sd.generate(&[prompt], &[seed], &opts, [size, size], &mut |_, _| true).unwrap().remove(0);
        assert_eq!((img.width, img.height), (size, size));
        let want: Vec<f64> = serde_json::from_value(case["rgb"].clone()).unwrap();
        let n = size * size;
        let mut worst = 0f64;
        for (i, px) in img.rgba.chunks_exact(4).enumerate() {
            assert_eq!(px[3], 255, "opaque");
            for c in 0..3 {
                worst = worst.max((px[c] as f64 - want[c * n + i] * 255.0).abs());
            }
        }
        // 8-bit output: at most one level off where a value falls near a rounding boundary.
        if worst > 1.5 {
            failed.push(format!("{what} {name}: a channel {worst:.2} levels from diffusers"));
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn tiny_checkpoint_draws_what_diffusers_draws_on_the_cpu() {
    check(&pmg::PmgDevice::cpu(), "cpu");
}

#[test]
fn tiny_checkpoint_draws_what_diffusers_draws_on_wgpu() {
    let Some(dev) = common::wgpu_device() else { return };
    check(&dev, "wgpu");
}

#[test]
fn missing_files_sizes_and_samplers_are_typed_errors() {
    let device = pmg::PmgDevice::cpu();
    let e = StableDiffusion::from_dir(std::path::Path::new("/nonexistent"), None, &device).err().unwrap().to_string();
    assert!(e.contains("scheduler/scheduler_config.json"), "{e}");
    let sd = StableDiffusion::from_dir(&dir(), None, &device).unwrap();
    let opts = SampleOptions { steps: 1, sampler: SamplerKind::Euler, ..SampleOptions::default() };
    let e = sd.generate(&["x"], &[0], &opts, [30, 32], &mut |_, _| true).err().unwrap().to_string();
    assert!(e.contains("multiple of 4"), "{e}");
    assert!(sd.generate(&["x", "y"], &[0], &opts, [32, 32], &mut |_, _| true).is_err(), "seeds per prompt");
    let r = sd.generate(&["x"], &[0], &SampleOptions { steps: 3, ..opts }, [32, 32], &mut |i, _| i < 2);
    assert!(matches!(r, Err(pmg::Error::Cancelled)));
}
