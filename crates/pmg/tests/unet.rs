//! diffusers' UNet2DConditionModel against diffusers 0.42 on tiny random checkpoints
//! (crates/pmg/tests/golden/unet/, written by scripts/golden_unet.py): SD 1.x layout (convolutional
//! projections), SD 2.x layout (linear projections, heads per block) and BK-SDM's (no mid block). One
//! call on two latents at float timesteps, on the CPU and on wgpu, and a whole 4-step sample per
//! scheduler with the noise diffusers drew. Tolerances are stated at each assertion.

mod common;

use burn::tensor::{Device, Tensor, TensorData};
use pmg::diffusion::SamplerKind;
use pmg::diffusion::schedulers::{Plan, SchedulerConfig};
use pmg::sd::unet::{UNet, UNetConfig};
use pmg::tensor_io::Weights;

fn dir(variant: &str) -> String {
    format!("{}/tests/golden/unet/{variant}", env!("CARGO_MANIFEST_DIR"))
}

fn reference(variant: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{}/reference.json", dir(variant))).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn load(variant: &str, device: &Device) -> UNet {
    let d = dir(variant);
    let config = UNetConfig::from_json(&std::fs::read_to_string(format!("{d}/config.json")).unwrap()).unwrap();
    let file = "diffusion_pytorch_model.safetensors";
    let w = Weights::from_bytes(file, &std::fs::read(format!("{d}/{file}")).unwrap()).unwrap();
    UNet::from_weights(config, &w, file, device).unwrap()
}

fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// Largest difference relative to the reference's largest magnitude.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max) / scale
}

fn one_call(variant: &str, device: &Device) -> f32 {
    let unet = load(variant, device);
    let r = reference(variant);
    let x = tensor(floats(&r["sample"]), [2, 4, 16, 16], device);
    let ctx = tensor(floats(&r["encoder_hidden_states"]), [2, 7, 32], device);
    let t: Vec<f64> = floats(&r["timesteps"]).iter().map(|&v| v as f64).collect();
    let out = pmg::device::read_f32(unet.forward(x, &t, &ctx, None).unwrap()).unwrap();
    rel_diff(&out, &floats(&r["out"]))
}

#[test]
fn one_call_matches_diffusers_on_the_cpu() {
    for variant in ["sd1", "sd2", "bk"] {
        let d = one_call(variant, &pmg::PmgDevice::cpu().device);
        eprintln!("{variant}: cpu {d:e}");
        // float32 through ~30 layers: measured 1.2e-6 to 1.4e-6.
        assert!(d < 2e-5, "{variant}: relative difference {d}");
    }
}

#[test]
fn one_call_matches_diffusers_on_wgpu() {
    let Some(dev) = common::wgpu_device() else { return };
    for variant in ["sd1", "sd2", "bk"] {
        let d = one_call(variant, &dev.device);
        eprintln!("{variant}: wgpu {d:e}");
        // Measured 1.3e-6 to 1.5e-6 on lavapipe.
        assert!(d < 2e-5, "{variant}: relative difference {d}");
    }
}

/// A whole 4-step sample with each sampler: the UNet, the scheduler's input scaling and update, and
/// where the ancestral and LCM samplers add noise, as diffusers runs them.
#[test]
fn four_step_samples_match_diffusers() {
    let device = pmg::PmgDevice::cpu().device;
    let unet = load("sd1", &device);
    let r = reference("sd1");
    let config = SchedulerConfig::from_json(&r["scheduler_config"].to_string()).unwrap();
    let ctx = tensor(floats(&r["encoder_hidden_states"])[..7 * 32].to_vec(), [1, 7, 32], &device);
    for (name, run) in r["runs"].as_object().unwrap() {
        let sampler: SamplerKind = name.parse().unwrap();
        let plan = Plan::new(sampler, &config, 4).unwrap();
        let want_t = floats(&run["timesteps"]);
        assert_eq!(plan.timesteps.iter().map(|&t| t as f32).collect::<Vec<_>>(), want_t, "{name}");
        let mut x: Vec<f32> = floats(&run["initial"]).iter().map(|v| v * plan.init_noise_sigma as f32).collect();
        let noises = run["noise"].as_array().unwrap();
        let (mut prev, mut used) = (None::<Vec<f32>>, 0);
        for (i, &t) in plan.timesteps.iter().enumerate() {
            let s = plan.input_scale(i) as f32;
            let input = tensor(x.iter().map(|v| v * s).collect(), [1, 4, 8, 8], &device);
            let o = pmg::device::read_f32(unet.forward(input, &[t], &ctx, None).unwrap()).unwrap();
            let noise = plan.noisy(i).then(|| {
                used += 1;
                floats(&noises[used - 1])
            });
            let (next, d) = plan.update(i).apply(&x, &o, prev.as_deref(), noise.as_deref());
            x = next;
            prev = Some(d);
        }
        assert_eq!(used, noises.len(), "{name}: noise draws");
        let d = rel_diff(&x, &floats(&run["final"]));
        eprintln!("{name}: {d:e}");
        // Measured 5e-7 to 8e-7.
        assert!(d < 2e-5, "{name}: relative difference {d}");
    }
}

#[test]
fn bad_configs_and_inputs_are_typed_errors() {
    let d = dir("sd2");
    let text = std::fs::read_to_string(format!("{d}/config.json")).unwrap();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        f(&mut v);
        UNetConfig::from_json(&v.to_string()).err().map(|e| e.to_string())
    };
    assert!(edit(&|v| v["time_cond_proj_dim"] = 256.into()).unwrap().contains("time_cond_proj_dim"));
    assert!(edit(&|v| v["attention_head_dim"] = serde_json::json!([2, 4, 8])).unwrap().contains("attention_head_dim"));
    assert!(edit(&|v| v["norm_num_groups"] = 5.into()).is_some(), "groups do not divide the widths");
    assert!(edit(&|v| v["down_block_types"][0] = "SimpleDownBlock2D".into()).is_some());
    assert!(edit(&|v| v["mid_block_type"] = "UNetMidBlock2DSimpleCrossAttn".into()).is_some());
    assert!(edit(&|_| {}).is_none());

    // A config that disagrees with the weights' shapes names the tensor.
    let file = "diffusion_pytorch_model.safetensors";
    let w = Weights::from_bytes(file, &std::fs::read(format!("{d}/{file}")).unwrap()).unwrap();
    let mut c = UNetConfig::from_json(&text).unwrap();
    c.cross_attention_dim = pmg::sd::unet::PerBlock::One(48);
    let device = pmg::PmgDevice::cpu().device;
    let e = UNet::from_weights(c, &w, file, &device).err().unwrap().to_string();
    assert!(e.contains("attn2.to_k"), "{e}");

    let unet = load("sd2", &device);
    let ctx = Tensor::<3>::zeros([1, 7, 32], &device);
    assert!(
        unet.forward(Tensor::zeros([1, 4, 7, 8], &device), &[1.0], &ctx, None).is_err(),
        "side not a multiple of 2"
    );
    assert!(unet.forward(Tensor::zeros([1, 3, 8, 8], &device), &[1.0], &ctx, None).is_err(), "channels");
    assert!(unet.forward(Tensor::zeros([1, 4, 8, 8], &device), &[1.0, 2.0], &ctx, None).is_err(), "timesteps");
    let wide = Tensor::<3>::zeros([1, 7, 48], &device);
    assert!(unet.forward(Tensor::zeros([1, 4, 8, 8], &device), &[1.0], &wide, None).is_err(), "context width");
}
