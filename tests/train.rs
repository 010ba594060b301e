//! Training runs resume exactly: stopping at a step (`until`) and resuming gives the same weights
//! as an unbroken run (module and AdamW state are checkpointed; batches are a function of the step).

use std::path::Path;

use pmg::diffusion::AutoencoderConfig;
use pmg::image::Image;
use pmg::tensor_io::Weights;
use pmg::train::{RunConfig, stages};

/// A three-image dataset in `dir` (the layout scripts/build_emoji_dataset.py writes).
fn tiny_dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut records = Vec::new();
    for k in 0..3u8 {
        let rgba: Vec<u8> = (0..64 * 64).flat_map(|i| [k * 80, (i % 64) as u8 * 4, 255 - k * 60, if i % 7 == 0 { 0 } else { 255 }]).collect();
        let name = format!("img/{k}.png");
        std::fs::write(dir.join(&name), Image { width: 64, height: 64, rgba }.encode_png()).unwrap();
        records.push(serde_json::json!({
            "id": format!("e{k}"), "base": format!("E{k}"), "image": name, "category": "Test", "name": format!("thing {k}"),
            "label": format!("thing {k}"), "captions": [format!("thing {k}")], "split": "train",
        }));
    }
    std::fs::write(dir.join("dataset.json"), serde_json::to_vec(&serde_json::json!({ "version": 1, "split": {}, "records": records })).unwrap()).unwrap();
}

fn config(dir: &Path, run: &str, until: Option<usize>, resume: bool) -> RunConfig {
    RunConfig { data: dir.to_path_buf(), run: dir.join(run), steps: 4, batch: 2, lr: 1e-3, warmup: 2, seed: 7, log_every: 1, checkpoint_every: 100, resume, until, cycle: Some(3) }
}

#[test]
fn autoencoder_run_resumes_exactly() {
    let dir = std::env::temp_dir().join(format!("pmg-train-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    tiny_dataset(&dir);
    let ae = AutoencoderConfig { width: 16, ..Default::default() };
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    stages::autoencoder(config(&dir, "run-a", None, false), ae, &a).unwrap();
    stages::autoencoder(config(&dir, "run-b", Some(2), false), ae, &b).unwrap();
    assert!(!b.exists(), "a run stopped early writes no export");
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run-b/state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 2);
    stages::autoencoder(config(&dir, "run-b", None, true), ae, &b).unwrap();
    let wa = Weights::from_bytes("a", &std::fs::read(&a).unwrap()).unwrap();
    let wb = Weights::from_bytes("b", &std::fs::read(&b).unwrap()).unwrap();
    assert_eq!(wa.tensors, wb.tensors, "resumed run differs from the unbroken one");
    let log = std::fs::read_to_string(dir.join("run-b/loss.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4, "one log line per step across both processes");
    let _ = std::fs::remove_dir_all(&dir);
}
