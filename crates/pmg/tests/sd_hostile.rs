//! Hostile Stable Diffusion and CLIP folders: the tiny checkpoints with one file mutated (config
//! values replaced by zeros, negatives, huge numbers, wrong types or removed; safetensors headers
//! with flipped bits, boundary integers or cut short). Loading, then drawing a 1-step image or
//! scoring one, gives a typed error or a result, never a panic. `fuzz/fuzz_targets/sd_folder.rs`
//! runs the same loop under libFuzzer.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use pmg::diffusion::{SampleOptions, SamplerKind};
use pmg::sd::Precision;
use pmg::sd::clip_scorer::ClipScorer;
use pmg::sd::pipeline::{FILES, StableDiffusion};

fn golden(dir: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(dir)
}

fn read_folder(dir: &str, files: &[&str]) -> BTreeMap<String, Vec<u8>> {
    files.iter().filter_map(|f| std::fs::read(golden(dir).join(f)).ok().map(|b| (f.to_string(), b))).collect()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One JSON value somewhere in the document replaced by a hostile one, or its key removed.
fn mutate_json(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(bytes) else { return bytes.to_vec() };
    fn leaves(v: &mut serde_json::Value, out: &mut Vec<*mut serde_json::Value>) {
        out.push(v as *mut _);
        match v {
            serde_json::Value::Object(m) => m.values_mut().for_each(|c| leaves(c, out)),
            serde_json::Value::Array(a) => a.iter_mut().for_each(|c| leaves(c, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    leaves(&mut v, &mut all);
    let hostile = [
        serde_json::json!(0),
        serde_json::json!(-1),
        serde_json::json!(1u64 << 40),
        serde_json::json!(u64::MAX),
        serde_json::json!(1e300),
        serde_json::json!(0.5),
        serde_json::json!("x"),
        serde_json::json!(null),
        serde_json::json!([]),
        serde_json::json!([0, 0, 0, 0, 0, 0, 0, 0, 0]),
        serde_json::json!({}),
    ];
    let target = all[rng.below(all.len())];
    // SAFETY: `target` points into `v`, alive and not otherwise borrowed here.
    let target = unsafe { &mut *target };
    if rng.below(6) == 0 {
        if let serde_json::Value::Object(m) = target {
            let keys: Vec<String> = m.keys().cloned().collect();
            if !keys.is_empty() {
                m.remove(&keys[rng.below(keys.len())]);
            }
        }
    } else {
        *target = hostile[rng.below(hostile.len())].clone();
    }
    serde_json::to_vec(&v).unwrap()
}

/// A safetensors file with its header bytes mutated or the file cut.
fn mutate_safetensors(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let header = 8 + u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    for _ in 0..1 + rng.below(3) {
        let pos = rng.below(header.min(b.len()));
        match rng.below(4) {
            0 => b[pos] ^= 1 << rng.below(8),
            1 => {
                let v = [0u64, 1, u32::MAX as u64, u64::MAX, 1 << 31, 1 << 40][rng.below(6)].to_le_bytes();
                let n = v.len().min(b.len() - pos);
                b[pos..pos + n].copy_from_slice(&v[..n]);
            }
            2 => b[pos] = b"0123456789[],:\"{}"[rng.below(17)],
            _ => b.truncate(pos.max(1)),
        }
    }
    b
}

fn mutate(files: &BTreeMap<String, Vec<u8>>, rng: &mut Rng) -> (String, BTreeMap<String, Vec<u8>>) {
    let mut files = files.clone();
    let names: Vec<String> =
        files.keys().filter(|k| k.ends_with(".json") || k.ends_with(".safetensors")).cloned().collect();
    let name = names[rng.below(names.len())].clone();
    let b = files.get_mut(&name).unwrap();
    *b = if name.ends_with(".json") { mutate_json(b, rng) } else { mutate_safetensors(b, rng) };
    (name, files)
}

/// `rounds` mutants through `run`: each returns (no matter what) without panicking.
fn survive(
    files: BTreeMap<String, Vec<u8>>,
    rounds: usize,
    seed: u64,
    run: impl Fn(&BTreeMap<String, Vec<u8>>) -> bool,
) {
    let mut rng = Rng(seed);
    let (mut loaded, mut panics) = (0, Vec::new());
    for i in 0..rounds {
        let (name, mutant) = mutate(&files, &mut rng);
        match catch_unwind(AssertUnwindSafe(|| run(&mutant))) {
            Ok(ok) => loaded += ok as usize,
            Err(e) => {
                let msg =
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
                panics.push(format!("round {i}, {name}: {msg:?}"));
            }
        }
    }
    eprintln!("{rounds} mutants: {loaded} still ran, {} panicked", panics.len());
    assert!(panics.is_empty(), "{panics:#?}");
    // Some mutations are harmless (a flipped bit in a value), most are refused: both happen.
    assert!(loaded > 0 && loaded < rounds, "{loaded} of {rounds} ran");
}

#[test]
fn mutated_sd_folders_never_panic() {
    let files = read_folder("sd-tiny", FILES);
    let device = pmg::PmgDevice::cpu();
    let opts = SampleOptions { steps: 1, guidance: 2.0, sampler: SamplerKind::Ddim, ..SampleOptions::default() };
    survive(files, 2000, 0x5D_F01D, |files| {
        let mut read = |f: &str| Ok(files.get(f).map(|b| Box::new(b.clone()) as _));
        let Ok(sd) = StableDiffusion::from_files(&mut read, None, &device, Precision::Q8_0) else { return false };
        let side = (4 * sd.vae.downscale()) << sd.unet.config.downsamplings().min(4);
        sd.generate(&["a cat"], &[1], &opts, [side, side], &mut |_, _| true).is_ok()
    });
}

#[test]
fn mutated_clip_folders_never_panic() {
    let files = read_folder("clip-tiny", pmg::sd::clip_scorer::FILES);
    let device = pmg::PmgDevice::cpu();
    let picture = pmg::image::Image { width: 9, height: 7, rgba: vec![200; 9 * 7 * 4] };
    survive(files, 2000, 0xC11F, |files| {
        let mut read = |f: &str| Ok(files.get(f).map(|b| Box::new(b.clone()) as _));
        let Ok(clip) = ClipScorer::from_files(&mut read, &device) else { return false };
        clip.image_features(&[&picture]).is_ok() && clip.text_features(&["a cat"]).is_ok()
    });
}
