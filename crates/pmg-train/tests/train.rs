//! Training runs resume exactly: stopping at a step (`until`) and resuming gives the same weights
//! as an unbroken run (module and AdamW state are checkpointed; batches are a function of the step).

use std::path::Path;

use pmg::diffusion::AutoencoderConfig;
use pmg::image::Image;
use pmg::tensor_io::Weights;
use pmg_train::{RunConfig, stages};

/// A three-image dataset in `dir` (the layout scripts/build_emoji_dataset.py writes).
fn tiny_dataset(dir: &Path) {
    std::fs::create_dir_all(dir.join("img")).unwrap();
    let mut records = Vec::new();
    for k in 0..3u8 {
        let rgba: Vec<u8> = (0..64 * 64)
            .flat_map(|i| [k * 80, (i % 64) as u8 * 4, 255 - k * 60, if i % 7 == 0 { 0 } else { 255 }])
            .collect();
        let name = format!("img/{k}.png");
        std::fs::write(dir.join(&name), Image { width: 64, height: 64, rgba }.encode_png()).unwrap();
        records.push(serde_json::json!({
            "id": format!("e{k}"), "base": format!("E{k}"), "image": name, "category": "Test", "name": format!("thing {k}"),
            "label": format!("thing {k}"), "captions": [format!("thing {k}")], "split": "train",
        }));
    }
    std::fs::write(
        dir.join("dataset.json"),
        serde_json::to_vec(&serde_json::json!({ "version": 1, "split": {}, "records": records })).unwrap(),
    )
    .unwrap();
}

/// burn's device RNG (parameter initialisation) is process-wide: runs in parallel tests would draw
/// from each other's seeded stream.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn config(dir: &Path, run: &str, until: Option<usize>, resume: bool) -> RunConfig {
    RunConfig {
        data: dir.to_path_buf(),
        run: dir.join(run),
        steps: 4,
        batch: 2,
        lr: 1e-3,
        warmup: 2,
        seed: 7,
        log_every: 1,
        checkpoint_every: 100,
        resume,
        until,
        cycle: Some(3),
        device: pmg::DeviceChoice::Cpu,
        workers: 1,
    }
}

/// A fresh temporary folder holding the tiny dataset.
fn dataset_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    tiny_dataset(&dir);
    dir
}

#[test]
fn autoencoder_run_resumes_exactly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dataset_dir("pmg-train-test");
    let ae = AutoencoderConfig { width: 16, ..Default::default() };
    let (a, b) = (dir.join("a.safetensors"), dir.join("b.safetensors"));
    stages::autoencoder(config(&dir, "run-a", None, false), ae, &a).unwrap();
    stages::autoencoder(config(&dir, "run-b", Some(2), false), ae, &b).unwrap();
    assert!(!b.exists(), "a run stopped early writes no export");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run-b/state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 2);
    stages::autoencoder(config(&dir, "run-b", None, true), ae, &b).unwrap();
    let wa = Weights::from_bytes("a", &std::fs::read(&a).unwrap()).unwrap();
    let wb = Weights::from_bytes("b", &std::fs::read(&b).unwrap()).unwrap();
    assert_eq!(wa.tensors, wb.tensors, "resumed run differs from the unbroken one");
    let log = std::fs::read_to_string(dir.join("run-b/loss.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4, "one log line per step across both processes");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Captions' hidden states for the tiny dataset, as `pmg train embed` lays them out (no LLM here:
/// rows of a fixed pattern; captions sharing a first token share its row, as a causal LM gives).
fn tiny_caption_bank(dir: &Path) {
    let (l, width) = (16usize, 576usize);
    let mut hidden = vec![0.0f32; 3 * l * width];
    for k in 0..3 {
        for t in 0..2 {
            for j in 0..width {
                hidden[(k * l + t) * width + j] =
                    if t == 0 { (j % 5) as f32 - 2.0 } else { ((j * (k + 3)) % 11) as f32 * 0.3 - 1.5 };
            }
        }
    }
    let mut w = Weights::default();
    w.insert("hidden", vec![3, l, width], hidden);
    w.insert("len", vec![3], vec![2.0; 3]);
    w.metadata.insert("captions".into(), serde_json::to_string(&["thing 0", "thing 1", "thing 2"]).unwrap());
    w.metadata.insert("by_record".into(), "[[0,1],[1,2],[2,3]]".into());
    w.metadata.insert("distinct".into(), "[0,1,2]".into());
    std::fs::write(dir.join("captions.safetensors"), w.to_bytes(pmg::tensor_io::Dtype::F16)).unwrap();
}

/// The denoiser trains the same from a pack as from the dataset (up to the pack's int8 rounding) and
/// with two data-parallel workers as with one (up to float rounding), and every export carries the
/// sampler's retrieval bank.
#[test]
fn denoiser_trains_from_a_pack() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = dataset_dir("pmg-pack-test");
    tiny_caption_bank(&dir);
    let ae_path = dir.join("ae.safetensors");
    stages::autoencoder(
        config(&dir, "ae", None, false),
        AutoencoderConfig { width: 16, ..Default::default() },
        &ae_path,
    )
    .unwrap();
    let data = stages::denoiser_data(&dir, &ae_path).unwrap();
    assert_eq!(data.groups.len(), 3);
    let pack = dir.join("pack.safetensors");
    data.save_pack(&pack).unwrap();

    let unet = pmg::diffusion::UNetConfig::default();
    let run = |input: stages::DenoiserInput, name: &str, workers: usize| {
        let out = dir.join(format!("{name}.safetensors"));
        let cfg = RunConfig { workers, ..config(&dir, name, None, false) };
        stages::diffusion(cfg, unet, input, stages::SampleBy::Base, &out).unwrap();
        let log = std::fs::read_to_string(dir.join(name).join("loss.jsonl")).unwrap();
        let losses: Vec<f64> = log
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64().unwrap())
            .collect();
        (Weights::from_bytes(name, &std::fs::read(&out).unwrap()).unwrap(), losses)
    };
    let (from_data, a) = run(stages::DenoiserInput::Dataset { autoencoder: &ae_path }, "from-data", 1);
    let (from_pack, b) = run(stages::DenoiserInput::Pack(&pack), "from-pack", 1);
    // Two data-parallel workers (one half of each batch each) train the same run up to rounding.
    let (parallel, c) = run(stages::DenoiserInput::Pack(&pack), "from-pack-2", 2);
    for (x, y) in b.iter().zip(&c) {
        assert!((x - y).abs() < 1e-4 * x.abs(), "one worker {b:?} vs two {c:?}");
    }
    for (name, t) in &from_pack.tensors {
        let d = t.data.iter().zip(&parallel.tensors[name].data).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max);
        assert!(d < 1e-3, "{name}: one and two workers differ by {d}");
    }
    // Workers that cannot split the batch evenly (batch 2 here) are refused, not quietly dropped.
    let odd = RunConfig { workers: 3, ..config(&dir, "odd-workers", None, false) };
    let err = stages::diffusion(
        odd,
        unet,
        stages::DenoiserInput::Pack(&pack),
        stages::SampleBy::Base,
        &dir.join("odd.safetensors"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("--workers 3"), "{err}");
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 2e-3 * x.abs(), "losses {a:?} vs {b:?}");
    }
    for w in [&from_data, &from_pack] {
        assert_eq!(w.meta("retrieval_names"), Some(r#"["thing 0","thing 1","thing 2"]"#));
        assert_eq!(w.meta("sample_by"), Some("base"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
