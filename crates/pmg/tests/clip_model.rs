//! A standard CLIP as PMG's scorer, against transformers' CLIPModel on a tiny random checkpoint
//! (crates/pmg/tests/golden/clip-model/, scripts/golden_clip_model.py): text and image embeddings
//! and the logits within 1e-5.

use burn::tensor::{Tensor, TensorData};
use pmg::sd::clip_model::{ClipConfig, ClipModel};
use pmg::tensor_io::Weights;

fn dir() -> String {
    format!("{}/tests/golden/clip-model", env!("CARGO_MANIFEST_DIR"))
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn embeddings_and_logits_match_transformers() {
    let dev = pmg::PmgDevice::cpu().device;
    let config = ClipConfig::from_json(&std::fs::read_to_string(format!("{}/config.json", dir())).unwrap()).unwrap();
    let w = Weights::from_bytes("model.safetensors", &std::fs::read(format!("{}/model.safetensors", dir())).unwrap())
        .unwrap();
    let m = ClipModel::from_weights(config, &w, "model.safetensors", &dev).unwrap();
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}/reference.json", dir())).unwrap()).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(r["ids"].clone()).unwrap();
    let t = pmg::device::read_f32(m.text_embeds(&ids).unwrap()).unwrap();
    let pixels = Tensor::<4>::from_data(TensorData::new(floats(&r["pixels"]), [2, 3, 30, 30]), &dev);
    let i = pmg::device::read_f32(m.image_embeds(pixels).unwrap()).unwrap();
    // transformers' CLIPModel returns the embeddings normalised.
    let e = m.config.projection_dim;
    let unit = |v: &[f32]| -> Vec<f32> {
        v.chunks(e)
            .flat_map(|r| {
                let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
                r.iter().map(move |x| x / n)
            })
            .collect()
    };
    let (dt, di) = (max_diff(&unit(&t), &floats(&r["text_embeds"])), max_diff(&unit(&i), &floats(&r["image_embeds"])));
    assert!(dt < 1e-5 && di < 1e-5, "text {dt}, image {di}");
    // logits_per_image[i][j] = scale * cos(image i, text j).
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mut logits = Vec::new();
    for a in i.chunks(e) {
        for b in t.chunks(e) {
            logits.push(m.logit_scale * a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b)));
        }
    }
    let dl = max_diff(&logits, &floats(&r["logits_per_image"]));
    assert!(dl < 1e-4, "logits {dl}");
}

#[test]
fn wrong_pixels_and_configs_are_typed_errors() {
    let dev = pmg::PmgDevice::cpu().device;
    let text = std::fs::read_to_string(format!("{}/config.json", dir())).unwrap();
    let config = ClipConfig::from_json(&text).unwrap();
    let w = Weights::from_bytes("m", &std::fs::read(format!("{}/model.safetensors", dir())).unwrap()).unwrap();
    let m = ClipModel::from_weights(config.clone(), &w, "m", &dev).unwrap();
    assert!(m.image_embeds(Tensor::<4>::zeros([1, 3, 32, 32], &dev)).is_err());
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["vision_config"]["patch_size"] = 7.into();
    assert!(ClipConfig::from_json(&v.to_string()).is_err(), "patches must tile the image");
    let mut c = config;
    c.projection_dim = 8;
    let e = ClipModel::from_weights(c, &w, "m", &dev).err().unwrap().to_string();
    assert!(e.contains("projection"), "{e}");
}
