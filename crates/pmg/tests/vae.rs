//! diffusers' autoencoders against diffusers 0.42.1 on tiny random checkpoints (written by
//! scripts/golden_vae.py): `AutoencoderKL` (crates/pmg/tests/golden/vae-kl/, f16 weights) and
//! `AutoencoderTiny` (TAESD, crates/pmg/tests/golden/taesd/, f32 weights), decoder and encoder, on
//! a batch of two non-square inputs: within 1e-4 on the CPU, 5e-4 on wgpu (headroom for a GPU's
//! summation order). Measured max |diff|, CPU / wgpu on lavapipe: KL decode 1.4e-6 / 1.7e-6, encode
//! (scaled mean) 1.6e-7 / 2.4e-7, raw mean 8.9e-7 / 1.3e-6, logvar 1.3e-6 / 1.2e-6; TAESD decode
//! 4.8e-6 / 3.8e-6, encode 6.0e-7 / 8.9e-7.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use pmg::sd::taesd::{AutoencoderTiny, AutoencoderTinyConfig};
use pmg::sd::vae::{AutoencoderKl, AutoencoderKlConfig};
use pmg::tensor_io::Weights;
use serde_json::Value;

const FILE: &str = "diffusion_pytorch_model.safetensors";
const TOL_CPU: f32 = 1e-4;
const TOL_WGPU: f32 = 5e-4;

fn dir(name: &str) -> String {
    format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn read(name: &str, file: &str) -> String {
    std::fs::read_to_string(format!("{}/{file}", dir(name))).unwrap()
}

fn weights(name: &str) -> Weights {
    Weights::from_bytes(FILE, &std::fs::read(format!("{}/{FILE}", dir(name))).unwrap()).unwrap()
}

fn reference(name: &str) -> Value {
    serde_json::from_str(&read(name, "reference.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn input(r: &Value, key: &str, device: &Device) -> Tensor<4> {
    let shape: [usize; 4] = serde_json::from_value(r[format!("{key}_shape")].clone()).unwrap();
    Tensor::from_data(TensorData::new(floats(&r[key]), shape), device)
}

fn max_diff(t: Tensor<4>, want: &Value) -> f32 {
    let got = pmg::device::read_f32(t).unwrap();
    let want = floats(want);
    assert_eq!(got.len(), want.len());
    got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

fn kl(device: &Device) -> AutoencoderKl {
    let c = AutoencoderKlConfig::from_json(&read("vae-kl", "config.json")).unwrap();
    AutoencoderKl::from_weights(c, &weights("vae-kl"), FILE, device).unwrap()
}

fn tiny(device: &Device) -> AutoencoderTiny {
    let c = AutoencoderTinyConfig::from_json(&read("taesd", "config.json")).unwrap();
    AutoencoderTiny::from_weights(c, &weights("taesd"), FILE, device).unwrap()
}

/// Every comparison on one device: (what, max |diff|).
fn diffs(device: &Device) -> Vec<(&'static str, f32)> {
    let (r, vae) = (reference("vae-kl"), kl(device));
    let latents = input(&r, "latents", device);
    let image = input(&r, "image", device);
    let dist = vae.encode_dist(image.clone()).unwrap();
    let mut out = vec![
        ("kl decode", max_diff(vae.decode(latents.clone()).unwrap(), &r["decoded"])),
        ("kl encode", max_diff(vae.encode(image.clone()).unwrap(), &r["encoded"])),
        ("kl mean", max_diff(dist.mean, &r["mean"])),
        ("kl logvar", max_diff(dist.logvar, &r["logvar"])),
    ];
    let (r, vae) = (reference("taesd"), tiny(device));
    out.push(("taesd decode", max_diff(vae.decode(input(&r, "latents", device)).unwrap(), &r["decoded"])));
    out.push(("taesd encode", max_diff(vae.encode(input(&r, "image", device)).unwrap(), &r["encoded"])));
    out
}

#[test]
fn autoencoders_match_diffusers_on_cpu() {
    let d = diffs(&pmg::PmgDevice::cpu().device);
    eprintln!("cpu max |diff|: {d:?}");
    assert!(d.iter().all(|(_, x)| *x < TOL_CPU), "{d:?}");
}

#[test]
fn autoencoders_match_diffusers_on_wgpu() {
    let Some(dev) = common::wgpu_device() else { return };
    let d = diffs(&dev.device);
    eprintln!("wgpu max |diff|: {d:?}");
    assert!(d.iter().all(|(_, x)| *x < TOL_WGPU), "{d:?}");
}

/// SDXL-style per-channel latent statistics in the config: the pipeline's formulas
/// (`z * std / sf + mean` to decode, the inverse to encode), same weights.
#[test]
fn latent_statistics_follow_the_sdxl_pipeline() {
    let device = pmg::PmgDevice::cpu().device;
    let r = reference("vae-kl");
    let mut c = AutoencoderKlConfig::from_json(&read("vae-kl", "config.json")).unwrap();
    c.latents_mean = Some(serde_json::from_value(r["latents_mean"].clone()).unwrap());
    c.latents_std = Some(serde_json::from_value(r["latents_std"].clone()).unwrap());
    let vae = AutoencoderKl::from_weights(c, &weights("vae-kl"), FILE, &device).unwrap();
    let dec = max_diff(vae.decode(input(&r, "latents", &device)).unwrap(), &r["decoded_with_latents_stats"]);
    let enc = max_diff(vae.encode(input(&r, "image", &device)).unwrap(), &r["encoded_with_latents_stats"]);
    assert!(dec < TOL_CPU && enc < TOL_CPU, "decode {dec}, encode {enc}");
}

/// Checkpoints saved before diffusers 0.14 name the mid block's attention `query`, `key`, `value`,
/// `proj_attn`; the decoder-only load gives the same images and refuses to encode.
#[test]
fn legacy_attention_names_and_decoder_only() {
    let device = pmg::PmgDevice::cpu().device;
    let w = weights("vae-kl");
    let mut legacy = Weights::default();
    for (k, t) in &w.tensors {
        let k = k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.");
        legacy.insert(k.replace(".to_out.0.", ".proj_attn."), t.shape.clone(), t.data.clone());
    }
    assert!(legacy.tensors.contains_key("decoder.mid_block.attentions.0.proj_attn.weight"));
    let c = AutoencoderKlConfig::from_json(&read("vae-kl", "config.json")).unwrap();
    let old = AutoencoderKl::decoder_from_weights(c, &legacy, FILE, &device).unwrap();
    let r = reference("vae-kl");
    let a = pmg::device::read_f32(old.decode(input(&r, "latents", &device)).unwrap()).unwrap();
    let b = pmg::device::read_f32(kl(&device).decode(input(&r, "latents", &device)).unwrap()).unwrap();
    assert_eq!(a, b);
    assert!(old.encode(input(&r, "image", &device)).is_err());
}

#[test]
fn bad_inputs_are_typed_errors() {
    let device = pmg::PmgDevice::cpu().device;
    let zeros = |shape: [usize; 4]| Tensor::<4>::zeros(shape, &device);
    let vae = kl(&device);
    assert!(vae.decode(zeros([1, 3, 4, 4])).is_err(), "latent channels");
    assert!(vae.decode(zeros([0, 4, 4, 4])).is_err(), "empty batch");
    assert!(vae.encode(zeros([1, 4, 8, 8])).is_err(), "image channels");
    assert!(vae.encode(zeros([1, 3, 9, 8])).is_err(), "not a multiple of the downscale");
    let t = tiny(&device);
    assert!(t.decode(zeros([1, 5, 4, 4])).is_err());
    assert!(t.encode(zeros([1, 3, 6, 8])).is_err());

    let edit = |name: &str, key: &str, value: Value| {
        let mut c: Value = serde_json::from_str(&read(name, "config.json")).unwrap();
        assert!(c.get(key).is_some(), "{key}");
        c[key] = value;
        c.to_string()
    };
    let kl_err = |key: &str, value: Value| AutoencoderKlConfig::from_json(&edit("vae-kl", key, value)).is_err();
    assert!(kl_err("norm_num_groups", 7.into()), "groups do not divide the widths");
    assert!(kl_err("norm_num_groups", 0.into()));
    assert!(kl_err("latent_channels", 0.into()));
    assert!(kl_err("block_out_channels", serde_json::json!([32, 64, 128])), "three widths, two block types");
    assert!(kl_err("scaling_factor", 0.into()));
    assert!(kl_err("act_fn", "relu".into()));
    assert!(kl_err("layers_per_block", (-1).into()), "not a size");
    assert!(kl_err("layers_per_block", 1000.into()));
    assert!(kl_err("down_block_types", serde_json::json!(["AttnDownEncoderBlock2D", "DownEncoderBlock2D"])));
    assert!(kl_err("latents_mean", serde_json::json!([0, 0])), "statistics for 2 of 4 channels");
    assert!(kl_err("latents_std", serde_json::json!([1, 1, 0, 1])), "a zero deviation");
    assert!(!kl_err("shift_factor", 0.1.into()));
    assert!(
        AutoencoderKlConfig::from_json(r#"{"block_out_channels": [32, 64]}"#).is_err(),
        "one block type, two widths"
    );
    assert!(AutoencoderKlConfig::from_json("{").is_err());

    let tiny_err = |key: &str, value: Value| AutoencoderTinyConfig::from_json(&edit("taesd", key, value)).is_err();
    assert!(tiny_err("num_decoder_blocks", serde_json::json!([2, 2])), "lengths differ");
    assert!(tiny_err("encoder_block_out_channels", serde_json::json!([16, 32, 32])), "unequal widths");
    assert!(tiny_err("decoder_block_out_channels", serde_json::json!([])));
    assert!(tiny_err("upsample_fn", "bilinear".into()));
    assert!(tiny_err("act_fn", "mish".into()));
    assert!(tiny_err("upsampling_scaling_factor", 0.into()));
    assert!(tiny_err("scaling_factor", (-1.0).into()));

    // Configs that disagree with the weights' shapes.
    let mut c = AutoencoderKlConfig::from_json(&read("vae-kl", "config.json")).unwrap();
    c.block_out_channels = vec![32, 96];
    let e = AutoencoderKl::from_weights(c, &weights("vae-kl"), FILE, &device).err().unwrap().to_string();
    assert!(e.contains("down_blocks.1"), "{e}");
    let mut c = AutoencoderKlConfig::from_json(&read("vae-kl", "config.json")).unwrap();
    c.layers_per_block = 3;
    let e = AutoencoderKl::from_weights(c, &weights("vae-kl"), FILE, &device).err().unwrap().to_string();
    assert!(e.contains("resnets.2"), "{e}");
    let mut c = AutoencoderTinyConfig::from_json(&read("taesd", "config.json")).unwrap();
    c.latent_channels = 16;
    let e = AutoencoderTiny::from_weights(c, &weights("taesd"), FILE, &device).err().unwrap().to_string();
    assert!(e.contains("encoder.layers"), "{e}");
    let mut c = AutoencoderTinyConfig::from_json(&read("taesd", "config.json")).unwrap();
    c.num_decoder_blocks = vec![2, 3, 1];
    assert!(AutoencoderTiny::from_weights(c, &weights("taesd"), FILE, &device).is_err(), "a block too many");
}
