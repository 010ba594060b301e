//! Text to image with a whole tiny SD checkpoint in diffusers' folder layout
//! (crates/pmg/tests/golden/sd-tiny/, written by scripts/golden_sd_pipeline.py: tokenizer.json, CLIP
//! text encoder, UNet and AutoencoderKL of diffusers' test sizes, random weights) against diffusers'
//! StableDiffusionPipeline given pmg's seeded noise (guided and unguided DDIM and Euler ancestral), and
//! what its img2img pipeline draws from a picture (DDIM, Euler ancestral, DPM-Solver++ 2M).

mod common;

use pmg::diffusion::{SampleOptions, SamplerKind};
use pmg::sd::Precision;
use pmg::sd::pipeline::StableDiffusion;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sd-tiny")
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap()).unwrap()
}

/// A reference case's sampling options (`strength` 1 when it starts from noise).
fn case_options(case: &serde_json::Value) -> SampleOptions {
    SampleOptions {
        steps: case["steps"].as_u64().unwrap() as usize,
        guidance: case["guidance"].as_f64().unwrap() as f32,
        sampler: case["sampler"].as_str().unwrap().parse().unwrap(),
        strength: case.get("strength").map_or(1.0, |s| s.as_f64().unwrap() as f32),
    }
}

fn check(device: &pmg::PmgDevice, what: &str) {
    let sd = StableDiffusion::from_dir(&dir(), None, device, Precision::F32).unwrap();
    let r = reference();
    let prompt = r["prompt"].as_str().unwrap();
    let size = r["size"].as_u64().unwrap() as usize;
    let ids: Vec<u32> = serde_json::from_value(r["prompt_ids"].clone()).unwrap();
    assert_eq!(sd.tokenizer.encode_padded(prompt, 77, sd.pad).unwrap(), ids, "prompt ids");
    let mut failed = Vec::new();
    let start = pmg::image::Image::decode_png(&std::fs::read(dir().join("start.png")).unwrap()).unwrap();
    for case in r["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let opts = case_options(case);
        let seed = case["seed"].as_u64().unwrap();
        let cond = sd.encode(prompt).unwrap();
        let pictures = [&start];
        let pictures = case.get("strength").map(|_| &pictures[..]);
        let mut host = pmg::host::Blocking(|_: pmg::diffusion::Step| true);
        let x = pmg::host::block_on(sd.denoise_from(&[cond], pictures, &[seed], &opts, [size, size], &mut host));
        let img = pmg::image::Image::from_model(&pmg::device::read_f32(x.unwrap()).unwrap(), size, size);
        assert_eq!((img.width, img.height), (size, size));
        let worst = common::levels_from_hex(&img, case["rgb_hex"].as_str().unwrap());
        eprintln!("{what} {name}: at most {worst} levels from diffusers");
        // Both rounded to 8 bits: float differences of ~1e-5 flip a rounding now and then (measured:
        // at most 1 level, CPU and lavapipe).
        if worst > 1 {
            failed.push(format!("{what} {name}: a channel {worst} levels from diffusers"));
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
    let e = StableDiffusion::from_dir(std::path::Path::new("/nonexistent"), None, &device, Precision::F32)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("the model folder has no `tokenizer/vocab.json`"), "{e}");
    let sd = StableDiffusion::from_dir(&dir(), None, &device, Precision::F32).unwrap();
    let opts = SampleOptions { steps: 1, sampler: SamplerKind::Euler, ..SampleOptions::default() };
    let e = sd.generate(&["x"], &[0], &opts, [62, 64], &mut |_, _| true).err().unwrap().to_string();
    assert!(e.contains("multiple of 4"), "{e}");
    assert!(sd.generate(&["x", "y"], &[0], &opts, [64, 64], &mut |_, _| true).is_err(), "seeds per prompt");
    let r = sd.generate(&["x"], &[0], &SampleOptions { steps: 3, ..opts }, [64, 64], &mut |i, _| i < 2);
    assert!(matches!(r, Err(pmg::Error::Cancelled)));
}

/// Conditionings of different lengths in one batch (PMG's keyword rows repeated `w` times) are
/// padded, and the padding is left out of the cross-attention: each image is the one its
/// conditioning draws alone.
#[test]
fn padded_conditionings_draw_what_each_draws_alone() {
    let sd = StableDiffusion::from_dir(&dir(), None, &pmg::PmgDevice::cpu(), Precision::F32).unwrap();
    let a = sd.encode("a cat").unwrap();
    let b = a.with_rows(&sd.encode("a tiny hat").unwrap(), 2);
    assert_eq!(b.len, 3 * a.len);
    let opts = SampleOptions { steps: 2, guidance: 3.0, sampler: SamplerKind::Ddim, ..SampleOptions::default() };
    let run = |conds: &[pmg::diffusion::Conditioning], seeds: &[u64]| {
        let mut host = pmg::host::Blocking(|_: pmg::diffusion::Step| true);
        let x = pmg::host::block_on(sd.denoise_from(conds, None, seeds, &opts, [64, 64], &mut host)).unwrap();
        pmg::device::read_f32(x).unwrap()
    };
    let both = run(&[a.clone(), b.clone()], &[1, 2]);
    let (alone_a, alone_b) = (run(&[a], &[1]), run(&[b], &[2]));
    let diff = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    let n = alone_a.len();
    // Measured 0 to 1e-6 (batch size changes the summation order only).
    assert!(diff(&both[..n], &alone_a) < 1e-4 && diff(&both[n..], &alone_b) < 1e-4);
}

/// The UNet's and text encoder's linear layers quantized on load: the weights held shrink, and the
/// guided DDIM case stays near diffusers' f32 image (the quantization error, stated per format).
fn quantized(device: &pmg::PmgDevice, what: &str) {
    let r = reference();
    let case = r["cases"].as_array().unwrap().iter().find(|c| c.get("strength").is_none()).unwrap();
    let size = r["size"].as_u64().unwrap() as usize;
    let opts = case_options(case);
    let seed = case["seed"].as_u64().unwrap();
    let draw = |p: Precision| {
        let sd = StableDiffusion::from_dir(&dir(), None, device, p).unwrap();
        let img = sd.generate(&[r["prompt"].as_str().unwrap()], &[seed], &opts, [size, size], &mut |_, _| true);
        (img.unwrap().remove(0), sd.unet.weight_bytes + sd.text_encoder.weight_bytes)
    };
    let (f32_img, f32_bytes) = draw(Precision::F32);
    let mut saved = Vec::new();
    for p in [Precision::Q8_0, Precision::Q4_0] {
        let (img, bytes) = draw(p);
        let diffs: Vec<u8> = img.rgba.iter().zip(&f32_img.rgba).map(|(a, b)| a.abs_diff(*b)).collect();
        let mean = diffs.iter().map(|&d| d as f64).sum::<f64>() / diffs.len() as f64;
        let worst = diffs.iter().copied().max().unwrap();
        eprintln!(
            "{what} {p:?}: {bytes} bytes held (f32 {f32_bytes}), mean {mean:.3} levels, at most {worst} from f32"
        );
        assert!(worst > 0, "{p:?}: the quantized layers are not in use");
        // Measured on CPU and lavapipe: Q8_0 mean 0.04-0.11 levels, at most 1; Q4_0 mean 0.51, at most 4.
        let (mean_tol, worst_tol) = if p == Precision::Q8_0 { (0.3, 3) } else { (1.5, 12) };
        assert!(mean <= mean_tol && worst <= worst_tol, "{what} {p:?}: mean {mean:.3}, worst {worst} levels");
        saved.push(f32_bytes - bytes);
    }
    // The same layers shrink in both formats: 128 f32 bytes per 32 weights become 34 (Q8_0) or
    // 18 (Q4_0), so the bytes saved are 94 and 110 per block.
    let blocks = saved[0] / 94;
    assert!(blocks > 0 && saved == [94 * blocks, 110 * blocks], "saved {saved:?} bytes");
}

#[test]
fn quantized_linears_stay_near_f32_on_the_cpu() {
    quantized(&pmg::PmgDevice::cpu(), "cpu");
}

#[test]
fn quantized_linears_stay_near_f32_on_wgpu() {
    let Some(dev) = common::wgpu_device() else { return };
    quantized(&dev, "wgpu");
}

/// A device whose buffers cannot hold the UNet's batch runs it a latent at a time (the same
/// image), and one that cannot hold a single latent's or the decoder's tensors refuses before any
/// work with a typed error.
#[test]
fn a_device_buffer_limit_splits_the_unet_batch_or_refuses() {
    let mut sd = StableDiffusion::from_dir(&dir(), None, &pmg::PmgDevice::cpu(), Precision::F32).unwrap();
    let opts = SampleOptions { steps: 2, guidance: 3.0, sampler: SamplerKind::Ddim, ..SampleOptions::default() };
    let draw = |sd: &StableDiffusion| sd.generate(&["a cat", "a dog"], &[1, 2], &opts, [64, 64], &mut |_, _| true);
    let whole = draw(&sd).unwrap();
    let per_latent = sd.unet.config.peak_bytes_per_latent([16, 16]);
    let decode = sd.vae.peak_bytes([64, 64], false);
    // Room for one latent per call (four per step here: two prompts, guided).
    sd.device.max_tensor_bytes = Some(per_latent.max(decode) as u64);
    let split = draw(&sd).unwrap();
    for (a, b) in whole.iter().zip(&split) {
        assert!(a.rgba.iter().zip(&b.rgba).all(|(x, y)| x.abs_diff(*y) <= 1), "one latent per call draws the same");
    }
    sd.device.max_tensor_bytes = Some(per_latent.min(decode) as u64 - 1);
    let e = draw(&sd).err().unwrap();
    assert!(matches!(e, pmg::Error::Device { .. }) && e.to_string().contains("MiB"), "{e}");
}
