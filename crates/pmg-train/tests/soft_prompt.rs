//! PMG's implicit preferences: the differentiable f32 forward of the soft positions agrees with
//! the quantized model (alone and batched with another user's longer history), gradients reach
//! the soft tokens, and the shipped soft prompt turns histories into conditioning rows.

#[path = "../../pmg/tests/common/mod.rs"]
mod common;

use burn::tensor::{Device, Tensor, TensorData};
use pmg::device::read_f32;
use pmg::history::{Event, EventKind};
use pmg::llm::{LanguageModel, Rows};
use pmg::preference::ExtractOptions;
use pmg::soft_prompt::{SoftPrompt, SoftPromptConfig, prompt};
use pmg::{Error, PmgDevice};
use pmg_train::dense::{DenseLlama, HistoryKv, HostKv};

fn lm() -> LanguageModel {
    LanguageModel::from_gguf_bytes(&common::default_model_bytes(), &PmgDevice::cpu(), 512).unwrap()
}

fn search(q: &str) -> Event {
    Event::new(1_764_000_000_000, EventKind::Search { query: q.into() })
}

/// Word embeddings as stand-in soft tokens `[k, 576]`.
fn tokens(lm: &LanguageModel, words: &[&str]) -> Vec<f32> {
    words
        .iter()
        .flat_map(|w| read_f32(lm.model.embed(&lm.tokenizer.encode(w, false).unwrap()[..1]).unwrap()).unwrap())
        .collect()
}

/// The quantized model's hidden states at `x` appended after `ids`, and the history's KV as host data.
fn quantized(lm: &LanguageModel, ids: &[u32], x: &[f32]) -> (Vec<f32>, HostKv) {
    let k = x.len() / 576;
    let mut cache = lm.model.new_cache_with(ids.len() + k);
    lm.model.forward_hidden(ids, &mut cache, Rows::Last).unwrap();
    let kv = HistoryKv::host_from_cache(&cache).unwrap();
    let xt = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [k, 576]), &lm.model.device.device);
    (read_f32(lm.model.forward_embeds(xt, &mut cache, Rows::All).unwrap()).unwrap(), kv)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale
}

#[test]
fn dense_soft_forward_matches_the_quantized_model() {
    let lm = lm();
    let short = lm.tokenize_prompt("A user who buys cat stickers.").unwrap();
    let long =
        lm.tokenize_prompt("A user who clicks pink hearts, red roses and love letters every day of the week.").unwrap();
    let x = tokens(&lm, &[" sticker", " style", " colour"]);
    let (q_short, kv_short) = quantized(&lm, &short, &x);
    let (q_long, kv_long) = quantized(&lm, &long, &x);
    // Different histories give different states at the soft positions.
    assert!(max_rel(&q_short, &q_long) > 0.05);

    let dev = Device::flex();
    let dense = DenseLlama::from_llama(&lm.model, &dev).unwrap();
    let run = |users: Vec<HostKv>| {
        let b = users.len();
        let hist = HistoryKv::from_host(&users, 3, 64, &dev).unwrap();
        let xs: Vec<f32> = (0..b).flat_map(|_| x.iter().copied()).collect();
        read_f32(dense.forward(Tensor::from_data(TensorData::new(xs, [b, 3, 576]), &dev), &hist).unwrap()).unwrap()
    };
    let d_short = run(vec![kv_short.clone()]);
    // The quantized model multiplies 8-bit activations; f32 differs by that rounding only.
    let e = max_rel(&d_short, &q_short);
    assert!(e < 0.03, "dense vs quantized: max relative difference {e}");
    // Batched with a longer history (padding, per-user RoPE positions): the same rows.
    let both = run(vec![kv_long, kv_short]);
    let n = 3 * 576;
    assert!(max_rel(&both[n..], &d_short) < 1e-4, "batching changed the short user's rows");
    assert!(max_rel(&both[..n], &q_long) < 0.03);
}

#[test]
fn gradients_reach_the_soft_tokens_through_the_llm() {
    let lm = lm();
    let ids = lm.tokenize_prompt("Stickers of cats.").unwrap();
    let x = tokens(&lm, &[" sticker", " style"]);
    let (_, kv) = quantized(&lm, &ids, &x);
    let dev = Device::flex().autodiff();
    let dense = DenseLlama::from_llama(&lm.model, &dev).unwrap();
    let hist = HistoryKv::from_host(&[kv], 3, 64, &dev).unwrap();
    let xt = Tensor::<3>::from_data(TensorData::new(x, [1, 2, 576]), &dev).require_grad();
    let h = dense.forward(xt.clone(), &hist).unwrap();
    // Only the last soft token's output: the first token's row gets gradient through attention.
    let loss = h.narrow(1, 1, 1).sum();
    let grads = loss.backward();
    let g = read_f32(xt.grad(&grads).expect("a gradient")).unwrap();
    let norm = |r: &[f32]| r.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(g.iter().all(|v| v.is_finite()));
    assert!(norm(&g[..576]) > 0.0 && norm(&g[576..]) > 0.0, "both soft tokens get gradient");
}

fn model_file(name: &str) -> Vec<u8> {
    let p = format!("{}/../../models/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn the_shipped_soft_prompt_reads_the_history() {
    let lm = lm();
    let bytes = model_file("emoji-soft-prompt.safetensors");
    let sp = SoftPrompt::from_bytes(&bytes, &PmgDevice::cpu()).unwrap();
    assert_eq!(sp.config, SoftPromptConfig { tokens: 4, width: 576 });
    let opts = ExtractOptions::default();
    let cats = sp.embed(&lm, &[search("cute cats"), search("kitten stickers")], &opts).unwrap();
    let cars = sp.embed(&lm, &[search("racing cars"), search("red trucks")], &opts).unwrap();
    assert_eq!((cats.len, cats.width, cats.rows.len()), (4, 576, 4 * 576));
    assert!(cats.rows.iter().all(|v| v.is_finite()));
    assert!(max_rel(&cats.rows, &cars.rows) > 0.01, "the rows depend on the history");
    // Deterministic.
    assert_eq!(sp.embed(&lm, &[search("cute cats"), search("kitten stickers")], &opts).unwrap(), cats);
    // The prompt ends with the assistant's turn start, where the soft tokens go.
    let ids = prompt(&lm, &[search("cute cats")], &opts).unwrap();
    assert!(lm.tokenizer.decode(&ids, false).trim_end().ends_with("assistant"));

    // Truncated or corrupt files are typed errors.
    for cut in [0, 8, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            matches!(SoftPrompt::from_bytes(&bytes[..cut], &PmgDevice::cpu()), Err(Error::Weights { .. })),
            "cut at {cut}"
        );
    }
}
