//! The shipped generator and scorer: manifest integrity, hostile weight files, a recognisable
//! image for a held-out caption, determinism, and the same image on CPU and wgpu.

mod common;

use pmg::diffusion::{Conditioning, Generator, Init, MAX_TEXT_TOKENS, SampleOptions, encode_text};
use pmg::host::Blocking;
use pmg::image::Image;
use pmg::llm::LanguageModel;
use pmg::scorer::Scorer;
use pmg::{Error, PmgDevice};

fn model_file(name: &str) -> Vec<u8> {
    let p = format!("{}/../../models/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn golden() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/image.json")).unwrap(),
    )
    .unwrap()
}

fn generator(dev: &PmgDevice) -> Generator {
    Generator::from_bytes(&model_file("emoji-autoencoder.safetensors"), &model_file("emoji-denoiser.safetensors"), dev)
        .unwrap()
}

#[test]
fn manifest_lists_the_shipped_weights() {
    let g = pmg::models::manifest().generator;
    let mut total = 0;
    for f in [&g.autoencoder, &g.denoiser, &g.scorer, &g.soft_prompt] {
        let bytes = model_file(&f.file);
        assert_eq!(bytes.len() as u64, f.bytes, "{}", f.file);
        assert_eq!(pmg::models::sha256_hex(&bytes), f.sha256, "{}", f.file);
        total += bytes.len();
    }
    assert!(total <= 30 << 20, "shipped weights are {total} bytes, the budget is 30 MB");
    let gold = golden();
    for f in [&g.autoencoder, &g.denoiser] {
        assert_eq!(
            gold["weights_sha256"][&f.file],
            f.sha256.as_str(),
            "crates/pmg/tests/golden/image.json is stale: rerun scripts/golden_image.py"
        );
    }
}

#[test]
fn hostile_weight_files_are_typed_errors() {
    let dev = PmgDevice::cpu();
    let ae = model_file("emoji-autoencoder.safetensors");
    let dn = model_file("emoji-denoiser.safetensors");
    let weights_err = |r: pmg::Result<Generator>| matches!(r, Err(Error::Weights { .. }));
    for cut in [0, 7, 100, dn.len() / 2, dn.len() - 1] {
        assert!(weights_err(Generator::from_bytes(&ae, &dn[..cut], &dev)), "denoiser cut at {cut}");
    }
    // Swapped files: each lacks the other's tensors.
    assert!(weights_err(Generator::from_bytes(&dn, &ae, &dev)));
    // A header that claims a huge shape.
    let n = u64::from_le_bytes(dn[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(dn[8..8 + n].to_vec()).unwrap();
    let evil = header.replacen("\"shape\":[", "\"shape\":[99999999,", 1);
    let mut f = (evil.len() as u64).to_le_bytes().to_vec();
    f.extend_from_slice(evil.as_bytes());
    f.extend_from_slice(&dn[8 + n..]);
    assert!(weights_err(Generator::from_bytes(&ae, &f, &dev)));
    assert!(matches!(Scorer::from_bytes(&dn, &dev), Err(Error::Weights { .. })));
    // The retrieval bank: an incomplete one, or one of the wrong width, is refused; a file
    // without one (emoji-v1/v2) still loads and samples from pure noise.
    let w = pmg::tensor_io::Weights::from_bytes("denoiser", &dn).unwrap();
    for (name, change) in [("retrieval.latents", None), ("retrieval.keys", Some(vec![7usize, 3]))] {
        let mut bad = w.clone();
        let t = bad.tensors.remove(name).expect("the shipped denoiser carries its retrieval bank");
        if let Some(shape) = &change {
            bad.insert(name, shape.clone(), t.data[..shape.iter().product()].to_vec());
        }
        assert!(
            weights_err(Generator::from_bytes(&ae, &bad.to_bytes(pmg::tensor_io::Dtype::F16), &dev)),
            "{name} {change:?}"
        );
    }
    let mut plain = w.clone();
    plain.tensors.retain(|k, _| !k.starts_with("retrieval."));
    plain.metadata.remove("retrieval_names");
    let g = Generator::from_bytes(&ae, &plain.to_bytes(pmg::tensor_io::Dtype::F16), &dev).unwrap();
    assert!(g.retrieval.is_none() && g.references(&Conditioning::null(576)).is_empty());
}

/// The held-out golden caption renders an emoji-shaped picture (transparent corners, opaque middle),
/// seeds are deterministic, and the native CPU image equals the golden bytes. (How recognisable
/// held-out captions are is measured by `pmg eval image`, eval/image/RESULTS.md.)
#[test]
fn held_out_caption_on_cpu_is_emoji_shaped_and_deterministic() {
    let dev = PmgDevice::cpu();
    let lm = LanguageModel::from_gguf_bytes(&common::default_model_bytes(), &dev, 64).unwrap();
    let g = generator(&dev);
    let gold = golden();
    let prompt = gold["prompt"].as_str().unwrap();
    let opts = options(&gold);
    let cond = encode_text(&lm, prompt, MAX_TEXT_TOKENS).unwrap();
    // The references come from the training emoji only: never the held-out caption itself.
    let near = g.references(&cond);
    eprintln!("references for {prompt:?}: {near:?}");
    assert_eq!(near.len(), pmg::diffusion::REFERENCES);
    assert!(near.iter().all(|(n, _)| n != prompt) && near.windows(2).all(|p| p[0].1 >= p[1].1), "{near:?}");
    check_references(&near, &gold);
    let seed = gold["seed"].as_u64().unwrap();
    let imgs = g
        .generate(&[cond.clone(), cond.clone(), cond.clone()], &[seed, seed, seed + 1], &opts, &mut |_, _| true)
        .unwrap();
    assert_eq!((imgs[0].width, imgs[0].height), (64, 64));
    assert_eq!(imgs[0], imgs[1], "same seed, same image");
    assert_ne!(imgs[0], imgs[2], "another seed, another image");
    let want = hex(gold["rgba_hex"].as_str().unwrap());
    let d = diff(&imgs[0].rgba, &want);
    // The golden was rendered on one CPU model; another one's matrix kernels round differently and 20
    // steps carry it: an AMD EPYC (no AVX-512) measured 0.53 mean |diff| against the golden (Intel
    // Xeon). Another seed differs by tens.
    assert!(d.0 <= CPU_MEAN_ABS && d.1 >= 0.999, "native CPU image vs crates/pmg/tests/golden/image.json: {d:?}");

    // Emoji-like: transparent corners, an opaque middle.
    let alpha = |x: usize, y: usize| imgs[0].rgba[(y * 64 + x) * 4 + 3];
    assert!([(0, 0), (63, 0), (0, 63), (63, 63)].iter().all(|&(x, y)| alpha(x, y) < 32), "corners are transparent");
    assert!(alpha(32, 32) > 200, "the middle is opaque");

    // The start is searched by the retrieval query: the same conditioning started from another
    // query's neighbour is another picture, and the conditioning as its own query is the plain run.
    let from = |query: &Conditioning| {
        let x = pmg::host::block_on(g.denoise_from(
            std::slice::from_ref(&cond),
            Init::Nearest(std::slice::from_ref(query)),
            &[seed],
            &opts,
            &mut Blocking(|_| true),
        ))
        .unwrap();
        pmg::diffusion::to_images(&pmg::device::read_f32(x).unwrap(), 1).remove(0)
    };
    assert_eq!(from(&cond), imgs[0]);
    let rocket = encode_text(&lm, "rocket", MAX_TEXT_TOKENS).unwrap();
    assert_eq!(g.references(&rocket)[0].0, "rocket");
    assert!(diff(&from(&rocket).rgba, &imgs[0].rgba).0 > 5.0, "a rocket start gives another picture");
    assert!(
        pmg::host::block_on(g.denoise_from(
            std::slice::from_ref(&cond),
            Init::Nearest(&[]),
            &[seed],
            &opts,
            &mut Blocking(|_| true)
        ))
        .is_err()
    );

    // A start picture (the target's own image) stays the picture at a low strength, whatever the
    // conditioning says, and is a typed error when the count is wrong or the image is malformed.
    let rocket_img = from(&rocket);
    let start = |img: &Image, strength: f32| {
        let o = SampleOptions { strength, ..opts };
        let x = pmg::host::block_on(g.denoise_from(
            std::slice::from_ref(&cond),
            Init::Images(&[img]),
            &[seed],
            &o,
            &mut Blocking(|_| true),
        ))
        .unwrap();
        pmg::diffusion::to_images(&pmg::device::read_f32(x).unwrap(), 1).remove(0)
    };
    let kept = diff(&start(&rocket_img, 0.3).rgba, &rocket_img.rgba).0;
    let plain = diff(&imgs[0].rgba, &rocket_img.rgba).0;
    assert!(kept < 0.5 * plain, "strength 0.3 keeps the picture: {kept} vs {plain} without it");
    let big = Image { width: 128, height: 96, rgba: vec![255; 128 * 96 * 4] };
    assert_eq!(start(&big, 0.5).width, 64, "any picture size is scaled");
    let bad = Image { width: 2, height: 2, rgba: vec![0; 3] };
    for (imgs, what) in [(vec![&bad], "malformed"), (vec![&rocket_img, &rocket_img], "two pictures for one run")] {
        let r = pmg::host::block_on(g.denoise_from(
            std::slice::from_ref(&cond),
            Init::Images(&imgs),
            &[seed],
            &opts,
            &mut Blocking(|_| true),
        ));
        assert!(r.is_err(), "{what}");
    }

    // Cancelling stops between steps.
    let mut calls = 0;
    let r = g.generate(&[cond], &[seed], &opts, &mut |i, _| {
        calls += 1;
        i < 3
    });
    assert!(matches!(r, Err(Error::Cancelled)) && calls == 3);
    assert!(matches!(g.generate(&[], &[], &opts, &mut |_, _| true), Err(Error::InvalidArgument(_))));
    let euler = SampleOptions { sampler: pmg::diffusion::SamplerKind::Euler, ..opts };
    let e = g.generate(&[Conditioning::null(576)], &[1], &euler, &mut |_, _| true).err().unwrap().to_string();
    assert!(e.contains("ddim or dpm-solver2m"), "the SD family's samplers are refused: {e}");
    let bad = SampleOptions { steps: 0, ..opts };
    assert!(matches!(
        g.generate(&[Conditioning::null(576)], &[1], &bad, &mut |_, _| true),
        Err(Error::InvalidArgument(_))
    ));
}

/// The same seed on wgpu gives the golden image within the stated tolerance, and much closer to it
/// than another seed's image is.
#[test]
fn same_seed_same_image_on_wgpu() {
    let Some(dev) = common::wgpu_device() else { return };
    let lm = LanguageModel::from_gguf_bytes(&common::default_model_bytes(), &dev, 64).unwrap();
    let g = generator(&dev);
    let gold = golden();
    let opts = options(&gold);
    let cond = encode_text(&lm, gold["prompt"].as_str().unwrap(), MAX_TEXT_TOKENS).unwrap();
    let seed = gold["seed"].as_u64().unwrap();
    let imgs: Vec<Image> = g.generate(&[cond.clone(), cond], &[seed, seed + 1], &opts, &mut |_, _| true).unwrap();
    let want = hex(gold["rgba_hex"].as_str().unwrap());
    let d = diff(&imgs[0].rgba, &want);
    let other = diff(&imgs[1].rgba, &want);
    let tol = &gold["tolerance"];
    eprintln!("wgpu vs cpu golden: mean |diff| {:.3}, {:.4} within 16; another seed: {:.3}", d.0, d.1, other.0);
    assert!(d.0 <= tol["mean_abs"].as_f64().unwrap() && d.1 >= tol["within_16"].as_f64().unwrap(), "{d:?}");
    assert!(d.0 * 3.0 < other.0, "the backend difference {d:?} is not small against another seed's {other:?}");
}

/// The run starts from the golden first reference, and the similarity at each rank is the golden one
/// (2 decimals; float rounding may swap near-tied later names, not change these values).
/// Mean |difference| (0-255 bytes) allowed between a native CPU render and the golden.
const CPU_MEAN_ABS: f64 = 1.0;

fn check_references(near: &[(String, f32)], gold: &serde_json::Value) {
    let want = gold["references"].as_array().expect("golden references");
    assert_eq!(near.len(), want.len());
    assert_eq!(near[0].0, want[0]["name"].as_str().unwrap(), "the start differs from the golden one");
    for ((_, s), w) in near.iter().zip(want) {
        assert!((*s as f64 - w["similarity"].as_f64().unwrap()).abs() <= 0.011, "{near:?} vs {want:?}");
    }
}

fn options(gold: &serde_json::Value) -> SampleOptions {
    let f = |k: &str| gold[k].as_f64().unwrap_or_else(|| panic!("golden {k}"));
    SampleOptions {
        steps: f("steps") as usize,
        guidance: f("guidance") as f32,
        strength: f("strength") as f32,
        ..Default::default()
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// Mean absolute difference and the fraction of bytes within 16.
fn diff(a: &[u8], b: &[u8]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    let d: Vec<u32> = a.iter().zip(b).map(|(x, y)| x.abs_diff(*y) as u32).collect();
    (d.iter().sum::<u32>() as f64 / d.len() as f64, d.iter().filter(|&&x| x <= 16).count() as f64 / d.len() as f64)
}
