//! The judge in burn against PyTorch: `eval/judge/golden.json` holds the logits the exported
//! network gives in PyTorch (`eval/judge/train.py --golden`) for images both sides build from
//! an integer formula. Bad judge files are typed errors.

use pmg::image::Image;
use pmg_train::judge::Judge;

const SIZE: usize = 64;

fn judge() -> Judge {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../eval/judge/judge.safetensors");
    Judge::from_bytes(path, &std::fs::read(path).unwrap(), &pmg::PmgDevice::cpu().device).unwrap()
}

/// `golden_inputs()` of eval/judge/train.py.
fn golden_input(k: usize) -> Image {
    let mut rgba = vec![0u8; SIZE * SIZE * 4];
    for y in 0..SIZE {
        for x in 0..SIZE {
            for c in 0..4 {
                rgba[(y * SIZE + x) * 4 + c] = ((x * 7 + y * 13 + c * 29 + k * 31 + (x * y) % (5 + k)) % 256) as u8;
            }
        }
    }
    Image { width: SIZE, height: SIZE, rgba }
}

#[test]
fn burn_matches_pytorch() {
    let golden: serde_json::Value = serde_json::from_str(include_str!("../../../eval/judge/golden.json")).unwrap();
    let j = judge();
    let cases = golden["cases"].as_array().unwrap();
    let images: Vec<Image> = cases.iter().map(|c| golden_input(c["image"].as_u64().unwrap() as usize)).collect();
    let logits = j.logits(&images).unwrap();
    let top = j.top(&images, 5).unwrap();
    for (i, case) in cases.iter().enumerate() {
        for (k, want) in case["logits_first8"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap() as f32;
            assert!((logits[i][k] - want).abs() < 1e-3, "image {i} logit {k}: burn {} vs PyTorch {want}", logits[i][k]);
        }
        for (g, want) in top[i].iter().zip(case["top5"].as_array().unwrap()) {
            assert_eq!(g.code, want[0].as_str().unwrap(), "image {i}");
            assert!((g.probability - want[1].as_f64().unwrap() as f32).abs() < 1e-4, "image {i} {}", g.code);
        }
    }
}

#[test]
fn scaled_images_read_as_their_64px_original() {
    let j = judge();
    let small = golden_input(1);
    // Nearest-neighbour x4, as `pmg image --scale 4` writes.
    let mut rgba = vec![0u8; 256 * 256 * 4];
    for y in 0..256 {
        for x in 0..256 {
            rgba[(y * 256 + x) * 4..][..4].copy_from_slice(&small.rgba[((y / 4) * SIZE + x / 4) * 4..][..4]);
        }
    }
    let big = Image { width: 256, height: 256, rgba };
    let a = j.input(&small).unwrap();
    let b = j.input(&big).unwrap();
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    let odd = Image { width: 50, height: 50, rgba: vec![0; 50 * 50 * 4] };
    assert!(matches!(j.input(&odd), Err(pmg::Error::Image(_))));
}

#[test]
fn bad_judge_files_are_typed_errors() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../eval/judge/judge.safetensors");
    let bytes = std::fs::read(path).unwrap();
    let dev = pmg::PmgDevice::cpu().device;
    for cut in [0, 7, 100, bytes.len() / 2, bytes.len() - 1] {
        assert!(Judge::from_bytes("cut", &bytes[..cut], &dev).is_err(), "cut at {cut}");
    }
    // A valid safetensors file that is not a judge (the shipped scorer).
    let scorer = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/emoji-scorer.safetensors")).unwrap();
    assert!(matches!(Judge::from_bytes("scorer", &scorer, &dev), Err(pmg::Error::Weights { .. })));
}
