//! CLIP's text encoder against transformers' CLIPTextModel on tiny random checkpoints
//! (crates/pmg/tests/golden/clip-text/, written by scripts/golden_clip_text.py; diffusers' test sizes),
//! quick-GELU and GELU variants: last and penultimate hidden states within 1e-5.

use pmg::sd::clip_text::{ClipTextConfig, ClipTextModel};
use pmg::tensor_io::Weights;

fn dir(act: &str) -> String {
    format!("{}/tests/golden/clip-text/{act}", env!("CARGO_MANIFEST_DIR"))
}

fn load(act: &str) -> ClipTextModel {
    let d = dir(act);
    let config = ClipTextConfig::from_json(&std::fs::read_to_string(format!("{d}/config.json")).unwrap()).unwrap();
    let w =
        Weights::from_bytes("model.safetensors", &std::fs::read(format!("{d}/model.safetensors")).unwrap()).unwrap();
    ClipTextModel::from_weights(config, &w, "model.safetensors", &pmg::PmgDevice::cpu().device).unwrap()
}

fn max_diff(a: &[f32], b: &serde_json::Value) -> f32 {
    let b: Vec<f32> = b.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(a.len(), b.len());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn hidden_states_match_transformers() {
    for act in ["quick_gelu", "gelu"] {
        let m = load(act);
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{}/reference.json", dir(act))).unwrap()).unwrap();
        let ids: Vec<Vec<u32>> = serde_json::from_value(r["ids"].clone()).unwrap();
        let s = m.forward(&ids).unwrap();
        let last = max_diff(&pmg::device::read_f32(s.last).unwrap(), &r["last_hidden_state"]);
        let pen = max_diff(&pmg::device::read_f32(s.penultimate).unwrap(), &r["penultimate"]);
        assert!(last < 1e-5 && pen < 1e-5, "{act}: last {last}, penultimate {pen}");
    }
}

/// Checkpoints written by older transformers (most SD repositories) name the tensors `text_model.*`.
#[test]
fn text_model_prefix_is_read_too() {
    let d = dir("quick_gelu");
    let w = Weights::from_bytes("m", &std::fs::read(format!("{d}/model.safetensors")).unwrap()).unwrap();
    let mut prefixed = Weights::default();
    for (k, t) in &w.tensors {
        prefixed.insert(format!("text_model.{k}"), t.shape.clone(), t.data.clone());
    }
    let c = ClipTextConfig::from_json(&std::fs::read_to_string(format!("{d}/config.json")).unwrap()).unwrap();
    let m = ClipTextModel::from_weights(c, &prefixed, "m", &pmg::PmgDevice::cpu().device).unwrap();
    let a = pmg::device::read_f32(m.forward(&[vec![0, 5, 2]]).unwrap().last).unwrap();
    let b = pmg::device::read_f32(load("quick_gelu").forward(&[vec![0, 5, 2]]).unwrap().last).unwrap();
    assert_eq!(a, b);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let m = load("gelu");
    assert!(m.forward(&[]).is_err());
    assert!(m.forward(&[vec![0, 1], vec![0]]).is_err(), "ragged batch");
    assert!(m.forward(&[vec![5000]]).is_err(), "id outside the vocabulary");
    assert!(m.forward(&[vec![0; 78]]).is_err(), "longer than the positions");
    assert!(ClipTextConfig::from_json(r#"{"vocab_size": 10, "hidden_size": 30, "intermediate_size": 4, "num_attention_heads": 4, "num_hidden_layers": 1, "max_position_embeddings": 8}"#).is_err(), "heads do not divide the width");
    // A config that disagrees with the weights' shapes.
    let d = dir("gelu");
    let w = Weights::from_bytes("m", &std::fs::read(format!("{d}/model.safetensors")).unwrap()).unwrap();
    let mut c = ClipTextConfig::from_json(&std::fs::read_to_string(format!("{d}/config.json")).unwrap()).unwrap();
    c.tower.intermediate_size = 40;
    let e = ClipTextModel::from_weights(c, &w, "m", &pmg::PmgDevice::cpu().device).err().unwrap().to_string();
    assert!(e.contains("fc1"), "{e}");
}
