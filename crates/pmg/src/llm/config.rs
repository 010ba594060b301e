//! Llama-family hyper-parameters, read from GGUF metadata (never from constants in code).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaConfig {
    pub architecture: String,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub rope_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub n_ctx_train: usize,
    pub vocab_size: usize,
}

/// Architectures whose tensors and math match llama's (RMSNorm, SwiGLU, RoPE of adjacent pairs).
const LLAMA_LIKE: &[&str] = &["llama"];

fn md<'a>(g: &'a Gguf<'_>, key: &str) -> Result<&'a Value> {
    g.get(key).ok_or_else(|| Error::metadata(key, "missing"))
}

fn md_usize(g: &Gguf<'_>, key: &str) -> Result<usize> {
    let v = md(g, key)?.as_u64().ok_or_else(|| Error::metadata(key, "not an unsigned integer"))?;
    usize::try_from(v)
        .ok()
        .filter(|&v| v > 0 && v < 1 << 24)
        .ok_or_else(|| Error::metadata(key, format!("value {v} out of range")))
}

fn md_f32(g: &Gguf<'_>, key: &str) -> Result<f32> {
    md(g, key)?.as_f64().map(|v| v as f32).ok_or_else(|| Error::metadata(key, "not a number"))
}

impl LlamaConfig {
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Self> {
        let arch = md(g, "general.architecture")?
            .as_str()
            .ok_or_else(|| Error::metadata("general.architecture", "not a string"))?
            .to_string();
        if !LLAMA_LIKE.contains(&arch.as_str()) {
            return Err(Error::metadata(
                "general.architecture",
                format!("`{arch}` is not supported yet (supported: {LLAMA_LIKE:?})"),
            ));
        }
        let k = |s: &str| format!("{arch}.{s}");
        let n_embd = md_usize(g, &k("embedding_length"))?;
        let n_head = md_usize(g, &k("attention.head_count"))?;
        let n_head_kv = match g.get(&k("attention.head_count_kv")) {
            Some(_) => md_usize(g, &k("attention.head_count_kv"))?,
            None => n_head,
        };
        if n_embd % n_head != 0 || n_head % n_head_kv != 0 {
            return Err(Error::metadata(
                &k("attention.head_count"),
                format!("{n_embd} dims, {n_head} heads, {n_head_kv} kv heads do not divide"),
            ));
        }
        let head_dim = match g.get(&k("attention.key_length")) {
            Some(_) => md_usize(g, &k("attention.key_length"))?,
            None => n_embd / n_head,
        };
        let rope_dim = match g.get(&k("rope.dimension_count")) {
            Some(_) => md_usize(g, &k("rope.dimension_count"))?,
            None => head_dim,
        };
        if rope_dim != head_dim {
            return Err(Error::metadata(&k("rope.dimension_count"), "partial rotary embeddings are not supported"));
        }
        let rope_theta = match g.get(&k("rope.freq_base")) {
            Some(_) => md_f32(g, &k("rope.freq_base"))?,
            None => 10_000.0,
        };
        let vocab_size = match g.get(&k("vocab_size")) {
            Some(_) => md_usize(g, &k("vocab_size"))?,
            None => md(g, "tokenizer.ggml.tokens")?.as_array().map(|a| a.len()).unwrap_or(0),
        };
        Ok(LlamaConfig {
            n_layer: md_usize(g, &k("block_count"))?,
            n_embd,
            n_ff: md_usize(g, &k("feed_forward_length"))?,
            n_head,
            n_head_kv,
            head_dim,
            rope_dim,
            rope_theta,
            rms_eps: md_f32(g, &k("attention.layer_norm_rms_epsilon"))?,
            n_ctx_train: md_usize(g, &k("context_length"))?,
            vocab_size,
            architecture: arch,
        })
    }
}
