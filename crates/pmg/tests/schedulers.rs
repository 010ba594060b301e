//! The SD-family samplers against diffusers 0.42 (crates/pmg/tests/golden/schedulers.json, written
//! by scripts/golden_schedulers.py): the timesteps and sigmas of every sampler, config and step count,
//! and whole runs with a fixed stand-in model and the noise diffusers was given (agreement measured at
//! 1.3e-6 relative: float32 rounding; tolerance 1e-5).

use pmg::diffusion::SamplerKind;
use pmg::diffusion::schedulers::{Plan, SchedulerConfig};

fn golden() -> serde_json::Value {
    serde_json::from_str(include_str!("golden/schedulers.json")).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1.0)
}

#[test]
fn timesteps_sigmas_and_runs_match_diffusers() {
    let g = golden();
    let cases = g["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 60);
    for c in cases {
        let name = format!("{} {} {} steps", c["config"], c["scheduler"], c["steps"]);
        let config = SchedulerConfig::from_json(&g["configs"][c["config"].as_str().unwrap()].to_string()).unwrap();
        let sampler: SamplerKind = c["scheduler"].as_str().unwrap().parse().unwrap();
        let plan = Plan::new(sampler, &config, c["steps"].as_u64().unwrap() as usize).unwrap();
        let want_t: Vec<f64> = c["timesteps"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        // Timesteps are float32 in diffusers (Euler's linspace) or whole numbers.
        assert!(
            plan.timesteps.len() == want_t.len()
                && plan.timesteps.iter().zip(&want_t).all(|(h, w)| close(*h, *w, 1e-7)),
            "{name}: timesteps {:?} vs {want_t:?}",
            plan.timesteps
        );
        match (&plan.sigmas, c["sigmas"].as_array()) {
            (Some(have), Some(want)) => {
                assert_eq!(have.len(), want.len(), "{name}: sigmas");
                for (h, w) in have.iter().zip(want) {
                    assert!(close(*h, w.as_f64().unwrap(), 1e-5), "{name}: sigmas {have:?} vs {want:?}");
                }
            }
            (None, None) => {}
            (h, w) => panic!("{name}: sigmas {h:?} vs {w:?}"),
        }
        let init_sigma = c["init_noise_sigma"].as_f64().unwrap();
        assert!(close(plan.init_noise_sigma, init_sigma, 1e-5), "{name}: init_noise_sigma {}", plan.init_noise_sigma);

        // The run: the stand-in model `0.3 * scaled input + 0.05 sin(0.01 t)`.
        let noises = c["noise"].as_array().unwrap();
        let mut x: Vec<f32> = floats(&c["initial"]).iter().map(|v| v * plan.init_noise_sigma as f32).collect();
        let mut prev: Option<Vec<f32>> = None;
        let mut used = 0;
        for (i, &t) in plan.timesteps.iter().enumerate() {
            let s = plan.input_scale(i) as f32;
            let o: Vec<f32> = x.iter().map(|v| 0.3 * (v * s) + 0.05 * (0.01 * t).sin() as f32).collect();
            let noise = plan.noisy(i).then(|| {
                used += 1;
                floats(&noises[used - 1])
            });
            let (next, d) = plan.update(i).apply(&x, &o, prev.as_deref(), noise.as_deref());
            x = next;
            prev = Some(d);
        }
        assert_eq!(used, noises.len(), "{name}: noise draws");
        let want = floats(&c["final"]);
        for (h, w) in x.iter().zip(&want) {
            assert!(close(*h as f64, *w as f64, 1e-5), "{name}: final {x:?} vs diffusers {want:?}");
        }
    }
}

/// The same plans on burn tensors (the CPU backend) give the host arrays' results, within float32
/// arithmetic on samples as large as sigma_max (14.6): 1e-4.
#[test]
fn tensor_updates_equal_host_updates() {
    use burn::tensor::{Tensor, TensorData};
    let dev = pmg::PmgDevice::cpu().device;
    let g = golden();
    for c in g["cases"].as_array().unwrap().iter().filter(|c| c["steps"] == 4) {
        let config = SchedulerConfig::from_json(&g["configs"][c["config"].as_str().unwrap()].to_string()).unwrap();
        let plan = Plan::new(c["scheduler"].as_str().unwrap().parse().unwrap(), &config, 4).unwrap();
        let t1 = |v: &[f32]| Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev);
        let init: Vec<f32> = floats(&c["initial"]).iter().map(|v| v * plan.init_noise_sigma as f32).collect();
        let (mut hx, mut tx) = (init.clone(), t1(&init));
        let (mut hp, mut tp): (Option<Vec<f32>>, Option<Tensor<1>>) = (None, None);
        let mut used = 0;
        for i in 0..plan.steps() {
            let o: Vec<f32> = hx.iter().map(|v| 0.5 * v - 0.1).collect();
            let noise = plan.noisy(i).then(|| {
                used += 1;
                floats(&c["noise"][used - 1])
            });
            let u = plan.update(i);
            let (nx, nd) = u.apply(&hx, &o, hp.as_deref(), noise.as_deref());
            let (ntx, ntd) = u.apply_tensor(tx, t1(&o), tp, noise.as_deref().map(t1));
            (hx, hp, tx, tp) = (nx, Some(nd), ntx, Some(ntd));
        }
        let dev_x = pmg::device::read_f32(tx).unwrap();
        for (h, d) in hx.iter().zip(&dev_x) {
            assert!(
                close(*d as f64, *h as f64, 1e-4),
                "{} {}: tensor {dev_x:?} vs host {hx:?}",
                c["config"],
                c["scheduler"]
            );
        }
    }
}

#[test]
fn unsupported_config_keys_are_refused() {
    let c = SchedulerConfig::from_json(r#"{"beta_schedule": "scaled_linear", "use_karras_sigmas": true}"#).unwrap();
    let e = Plan::new(SamplerKind::Euler, &c, 4).unwrap_err().to_string();
    assert!(e.contains("use_karras_sigmas"), "{e}");
    // DDIM's class default clips the sample; SD configs say clip_sample: false.
    let e = Plan::new(SamplerKind::Ddim, &SchedulerConfig::default(), 4).unwrap_err().to_string();
    assert!(e.contains("clip_sample"), "{e}");
    assert!(SchedulerConfig::from_json(r#"{"beta_schedule": "cubic"}"#).is_err());
    let c = SchedulerConfig::from_json(r#"{"clip_sample": false}"#).unwrap();
    assert!(Plan::new(SamplerKind::Ddim, &c, 0).is_err() && Plan::new(SamplerKind::Ddim, &c, 1001).is_err());
    assert!(Plan::new(SamplerKind::Lcm, &c, 51).is_err(), "LCM has 50 original steps");
}
