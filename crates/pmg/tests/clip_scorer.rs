//! PMG's scorer on a standard CLIP folder, against transformers' `CLIPModel` and its
//! `CLIPImageProcessor` (PIL backend) on a tiny random checkpoint with four test PNGs
//! (crates/pmg/tests/golden/clip-tiny/, scripts/golden_clip_scorer.py): the resized crops level for
//! level, the pixel values, the image and text embeddings and the logits, on the CPU and on wgpu.

mod common;

use std::collections::HashMap;

use pmg::PmgDevice;
use pmg::image::Image;
use pmg::sd::clip_scorer::{ClipScorer, FILES, Preprocess};

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/clip-tiny")
}

fn reference() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("reference.json")).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn images(r: &serde_json::Value) -> Vec<Image> {
    r["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| Image::decode_png(&std::fs::read(dir().join(f.as_str().unwrap())).unwrap()).unwrap())
        .collect()
}

#[test]
fn crops_and_pixels_match_transformers() {
    let r = reference();
    let p = Preprocess::from_json(&std::fs::read_to_string(dir().join("preprocessor_config.json")).unwrap()).unwrap();
    assert_eq!(p, Preprocess { shortest_edge: 30, crop: [30, 30], ..Preprocess::default() });
    let ims = images(&r);
    // The 8-bit crops, [b, 3, 30, 30] in the reference: Pillow's fixed-point resampler and alpha
    // compositing reproduced, so every level agrees.
    let want: Vec<u8> = r["crop_u8"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect();
    let n = 30 * 30;
    for (i, im) in ims.iter().enumerate() {
        let got = p.crop_rgb(im).unwrap();
        let want = &want[i * 3 * n..][..3 * n];
        let off = (0..3 * n).filter(|&j| got[(j % n) * 3 + j / n] != want[j]).count();
        assert_eq!(off, 0, "image {i}: {off} of {} levels differ", 3 * n);
    }
    let got: Vec<f32> = ims.iter().flat_map(|im| p.pixel_values(im).unwrap()).collect();
    // Measured: 0 (numpy's f64 rescale and f32 normalise reproduced).
    let d = max_diff(&got, &floats(&r["pixel_values"]));
    assert!(d <= 1e-6, "pixel values {d}");
}

#[test]
fn resampling_matches_pillow_level_for_level() {
    // Random images through CLIPImageProcessorPil at random shortest edges and crops
    // (resize-cases.json): up- and downscales, with and without transparency, crops inside and
    // beyond the resized image.
    let cases: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir().join("resize-cases.json")).unwrap()).unwrap();
    for (i, c) in cases.iter().enumerate() {
        let bytes = |v: &serde_json::Value| -> Vec<u8> {
            v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u8).collect()
        };
        let int = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
        let im = Image { width: int(&c["width"]), height: int(&c["height"]), rgba: bytes(&c["rgba"]) };
        let crop = [int(&c["crop"][0]), int(&c["crop"][1])];
        let p = Preprocess { shortest_edge: int(&c["shortest_edge"]), crop, ..Preprocess::default() };
        let (got, want) = (p.crop_rgb(&im).unwrap(), bytes(&c["crop_u8"]));
        let n = crop[0] * crop[1];
        let off = (0..3 * n).filter(|&j| got[(j % n) * 3 + j / n] != want[j]).count();
        assert_eq!(
            off, 0,
            "case {i} ({}x{} -> edge {}, crop {crop:?}): {off} levels differ",
            im.width, im.height, p.shortest_edge
        );
    }
}

/// Features and logits of the scorer on `device` against the reference.
fn check_features(device: &PmgDevice, tol: f32) {
    let r = reference();
    let s = ClipScorer::from_dir(&dir(), device).unwrap();
    let ims = images(&r);
    let refs: Vec<&Image> = ims.iter().collect();
    let px = pmg::device::read_f32(s.pixels(&refs).unwrap()).unwrap();
    let dp = max_diff(&px, &floats(&r["pixel_values"]));
    let i = pmg::device::read_f32(s.image_features(&refs).unwrap()).unwrap();
    let texts: Vec<&str> = r["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    let t = pmg::device::read_f32(s.text_features(&texts).unwrap()).unwrap();
    let di = max_diff(&i, &floats(&r["image_embeds"]));
    let dt = max_diff(&t, &floats(&r["text_embeds"]));
    let e = s.model.config.projection_dim;
    let mut logits = Vec::new();
    for a in i.chunks(e) {
        for b in t.chunks(e) {
            logits.push(s.model.logit_scale * a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>());
        }
    }
    let dl = max_diff(&logits, &floats(&r["logits_per_image"]));
    eprintln!("{}: pixels {dp:e}, image {di:e}, text {dt:e}, logits {dl:e}", device.adapter);
    assert!(dp <= 1e-6, "pixels {dp}");
    assert!(di < tol && dt < tol && dl < 10.0 * tol, "image {di}, text {dt}, logits {dl}");
    // One text alone, unpadded by a batch: the same row.
    let one = pmg::device::read_f32(s.text_features(&texts[1..2]).unwrap()).unwrap();
    assert!(max_diff(&one, &t[e..2 * e]) < tol);
}

// Measured on both backends: unit embeddings within 2.4e-7 (image 1.2e-7), logits (scale 14.3)
// within 2.4e-6; the tolerances leave room for other kernels and adapters.
#[test]
fn features_match_transformers_on_the_cpu() {
    check_features(&PmgDevice::cpu(), 1e-5);
}

#[test]
fn features_match_transformers_on_wgpu() {
    if let Some(d) = common::wgpu_device() {
        check_features(&d, 1e-4);
    }
}

/// The folder's files in memory, for edits.
fn folder() -> HashMap<String, Vec<u8>> {
    FILES.iter().filter_map(|f| std::fs::read(dir().join(f)).ok().map(|b| (f.to_string(), b))).collect()
}

fn load(files: &HashMap<String, Vec<u8>>) -> pmg::Result<ClipScorer> {
    ClipScorer::from_files(&mut |f| Ok(files.get(f).map(|b| Box::new(b.clone()) as _)), &PmgDevice::cpu())
}

#[test]
fn bad_folders_and_images_are_typed_errors() {
    let files = folder();
    let s = load(&files).unwrap();
    // Missing files.
    for f in ["config.json", "model.safetensors"] {
        let mut m = files.clone();
        m.remove(f);
        let e = load(&m).err().unwrap().to_string();
        assert!(e.contains(f), "{e}");
    }
    let mut m = files.clone();
    m.remove("tokenizer.json");
    let e = load(&m).err().unwrap().to_string();
    assert!(e.contains("vocab.json"), "{e}");
    // Without a preprocessor config: CLIP's 224 px defaults, which this 30 px model cannot read.
    let mut m = files.clone();
    m.remove("preprocessor_config.json");
    let e = load(&m).err().unwrap().to_string();
    assert!(e.contains("224x224"), "{e}");
    // A config that disagrees with the weights.
    let mut config: serde_json::Value = serde_json::from_slice(&files["config.json"]).unwrap();
    config["projection_dim"] = 8.into();
    let mut m = files.clone();
    m.insert("config.json".into(), config.to_string().into_bytes());
    let e = load(&m).err().unwrap();
    assert!(matches!(e, pmg::Error::Tensor { .. } | pmg::Error::Weights { .. }), "{e}");
    // Preprocessing it cannot follow.
    for bad in [r#"{"resample": 2}"#, r#"{"size": {"height": 30, "width": 30}}"#, r#"{"image_std": [1, 0, 1]}"#, "["] {
        assert!(Preprocess::from_json(bad).is_err(), "{bad}");
    }
    // Empty and inconsistent images, and empty batches.
    let empty = Image::default();
    assert!(matches!(s.pixels(&[&empty]), Err(pmg::Error::Image(_))));
    let short = Image { width: 4, height: 4, rgba: vec![0; 10] };
    assert!(matches!(s.image_features(&[&short]), Err(pmg::Error::Image(_))));
    assert!(s.image_features(&[]).is_err());
    assert!(s.text_features(&[]).is_err());
}

#[test]
fn resizes_follow_transformers_sizes() {
    let p = Preprocess::default();
    // get_resize_output_image_size(default_to_square=False): int(224 * long / short).
    assert_eq!(p.resized_size(480, 640), [224, 298]);
    assert_eq!(p.resized_size(640, 480), [298, 224]);
    assert_eq!(p.resized_size(100, 100), [224, 224]);
    // A crop bigger than the resized image is zero-padded (at level 0), not an error; an extreme
    // aspect ratio only resamples the crop it keeps.
    let q = Preprocess { shortest_edge: 8, crop: [12, 12], ..Preprocess::default() };
    let im = Image { width: 3, height: 2, rgba: vec![255; 24] };
    let c = q.crop_rgb(&im).unwrap();
    assert_eq!((c[0], c[(6 * 12 + 6) * 3]), (0, 255));
    let thin = Image { width: 4000, height: 1, rgba: [200, 200, 200, 255].repeat(4000) };
    assert!(p.crop_rgb(&thin).unwrap().iter().all(|&v| v == 200));
}
