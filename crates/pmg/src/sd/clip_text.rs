//! CLIP's text encoder (transformers `CLIPTextModel`), the conditioning of the SD family (issue
//! 21): token and position embeddings, pre-LayerNorm transformer layers with causal self-attention
//! and a quick-GELU (OpenAI CLIP, SD 1.x) or GELU (OpenCLIP, SD 2.x) MLP, a final LayerNorm. Sizes
//! come from the checkpoint's `config.json`; weights from its safetensors (transformers' names, with
//! or without the `text_model.` prefix). `tests/clip_text.rs` matches transformers' hidden states.

use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::Precision;
use super::nn::{LayerNorm, Linear, Loader};
use crate::device::PmgDevice;
use crate::error::{Error, Result};
use crate::tensor_io::TensorSource;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    QuickGelu,
    Gelu,
}

/// The transformer sizes both CLIP towers share (their `config.json` keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TowerConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: Activation,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_act() -> Activation {
    Activation::QuickGelu
}

impl TowerConfig {
    pub fn validate(&self, what: &str) -> Result<()> {
        let c = self;
        let sane = c.hidden_size > 0
            && c.num_attention_heads > 0
            && c.hidden_size.is_multiple_of(c.num_attention_heads)
            && (1..=256).contains(&c.num_hidden_layers)
            && (1..=1 << 16).contains(&c.intermediate_size)
            && c.hidden_size <= 1 << 14;
        if !sane {
            return Err(Error::InvalidArgument(format!("config.json: an unusable CLIP {what} tower {c:?}")));
        }
        Ok(())
    }

    /// The tower's layers from `l` (transformers' `encoder.layers.{i}.*`).
    pub(crate) fn layers(&self, l: &Loader<'_>) -> Result<Vec<Layer>> {
        layers(l, self.num_hidden_layers, self.hidden_size, self.intermediate_size, self.layer_norm_eps)
    }
}

/// The keys of a `CLIPTextModel` `config.json` this encoder reads (others are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    #[serde(flatten)]
    pub tower: TowerConfig,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    /// The pooled output's token: 2 is transformers' legacy value, meaning the highest id in the
    /// sequence (CLIP's end token is the last of its vocabulary); else the first of this id.
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
}

fn default_eos() -> u32 {
    2
}

impl ClipTextConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("config.json: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        self.tower.validate("text")?;
        if !((1..=4096).contains(&self.max_position_embeddings) && (1..=1 << 20).contains(&self.vocab_size)) {
            return Err(Error::InvalidArgument(format!(
                "config.json: CLIP text positions {} and vocabulary {}",
                self.max_position_embeddings, self.vocab_size
            )));
        }
        Ok(())
    }
}

/// One pre-LayerNorm transformer layer of either CLIP tower.
pub(crate) struct Layer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Layer {
    /// `x: [b, len, d]`; `mask` is added to the attention scores `[b, heads, len, len]`.
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        heads: usize,
        act: Activation,
        mask: Option<&Tensor<4>>,
    ) -> Result<Tensor<3>> {
        let [b, len, d] = x.dims();
        let hd = d / heads;
        let y = self.ln1.forward(x.clone());
        let split = |t: Tensor<3>| t.reshape([b, len, heads, hd]).swap_dims(1, 2);
        let (q, k, v) =
            (split(self.q.forward(y.clone())?), split(self.k.forward(y.clone())?), split(self.v.forward(y)?));
        let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar((hd as f32).powf(-0.5));
        if let Some(m) = mask {
            scores = scores.add(m.clone());
        }
        let att = softmax(scores, 3).matmul(v);
        let x = x.add(self.out.forward(att.swap_dims(1, 2).reshape([b, len, d]))?);
        let y = self.fc1.forward(self.ln2.forward(x.clone()))?;
        let y = match act {
            Activation::QuickGelu => y.clone().mul(sigmoid(y.mul_scalar(1.702))),
            Activation::Gelu => gelu(y),
        };
        Ok(x.add(self.fc2.forward(y)?))
    }
}

/// transformers' `encoder.layers.{i}.*`.
fn layers(l: &Loader<'_>, n: usize, d: usize, ff: usize, eps: f64) -> Result<Vec<Layer>> {
    (0..n)
        .map(|i| {
            let n = |s: &str| format!("encoder.layers.{i}.{s}");
            Ok(Layer {
                ln1: l.norm(&n("layer_norm1"), d, eps)?,
                q: l.linear(&n("self_attn.q_proj"), d, d, true)?,
                k: l.linear(&n("self_attn.k_proj"), d, d, true)?,
                v: l.linear(&n("self_attn.v_proj"), d, d, true)?,
                out: l.linear(&n("self_attn.out_proj"), d, d, true)?,
                ln2: l.norm(&n("layer_norm2"), d, eps)?,
                fc1: l.linear(&n("mlp.fc1"), ff, d, true)?,
                fc2: l.linear(&n("mlp.fc2"), d, ff, true)?,
            })
        })
        .collect()
}

/// The encoder's outputs for a batch: `[b, len, hidden]` each.
pub struct TextStates {
    /// The tokens' positions of the pooled output (see [`ClipTextConfig::eos_token_id`]).
    pub pooled_at: Vec<usize>,
    /// After the final LayerNorm (what SD 1.x and 2.x condition on).
    pub last: Tensor<3>,
    /// The second-to-last layer's output, before any norm ("clip skip").
    pub penultimate: Tensor<3>,
}

/// transformers' names with or without the `text_model.` prefix.
fn text_prefix(w: &dyn TensorSource) -> &'static str {
    if w.shape("text_model.embeddings.token_embedding.weight").is_some() { "text_model." } else { "" }
}

pub struct ClipTextModel {
    pub config: ClipTextConfig,
    /// Token embeddings on the host, `[vocab, hidden]` row-major (rows are gathered per call).
    token_embedding: Vec<f32>,
    position_embedding: Tensor<2>,
    layers: Vec<Layer>,
    final_ln: LayerNorm,
    /// Bytes its weights take (f32, or quantized blocks for the quantized layers; the token
    /// embeddings stay on the host).
    pub weight_bytes: usize,
    device: Device,
}

impl ClipTextModel {
    /// From `config.json` and the weights (`file` names them in errors), transformers' names with
    /// or without the `text_model.` prefix.
    pub fn from_weights(config: ClipTextConfig, w: &dyn TensorSource, file: &str, device: &Device) -> Result<Self> {
        Self::load(config, &Loader::new(w, file, text_prefix(w), device))
    }

    /// [`Self::from_weights`] with the linear layers held at `precision`.
    pub fn with_precision(
        config: ClipTextConfig,
        w: &dyn TensorSource,
        file: &str,
        device: &PmgDevice,
        precision: Precision,
    ) -> Result<Self> {
        Self::load(config, &Loader::with_precision(w, file, text_prefix(w), device, precision))
    }

    pub(crate) fn load(config: ClipTextConfig, l: &Loader<'_>) -> Result<Self> {
        let c = &config;
        let d = c.tower.hidden_size;
        Ok(ClipTextModel {
            token_embedding: l.get("embeddings.token_embedding.weight", &[c.vocab_size, d])?,
            position_embedding: l.matrix("embeddings.position_embedding.weight", c.max_position_embeddings, d)?,
            layers: c.tower.layers(l)?,
            final_ln: l.norm("final_layer_norm", d, c.tower.layer_norm_eps)?,
            weight_bytes: l.held.get(),
            device: l.device.clone(),
            config,
        })
    }

    /// The hidden states of a batch of token sequences of one length (pad them first).
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<TextStates> {
        let c = &self.config;
        let (b, len, d) = (ids.len(), ids.first().map_or(0, Vec::len), c.tower.hidden_size);
        if b == 0 || len == 0 || len > c.max_position_embeddings || ids.iter().any(|s| s.len() != len) {
            return Err(Error::InvalidArgument(format!(
                "CLIP text input: {b} sequences, lengths {:?} (one length, 1..={})",
                ids.iter().map(Vec::len).collect::<Vec<_>>(),
                c.max_position_embeddings
            )));
        }
        let mut x = Vec::with_capacity(b * len * d);
        for &t in ids.iter().flatten() {
            let row = self.token_embedding.get(t as usize * d..(t as usize + 1) * d).ok_or_else(|| {
                Error::InvalidArgument(format!("token id {t} outside the vocabulary ({})", c.vocab_size))
            })?;
            x.extend_from_slice(row);
        }
        let pos = self.position_embedding.clone().slice(0..len).unsqueeze::<3>();
        let mut x = Tensor::<3>::from_data(TensorData::new(x, [b, len, d]), &self.device).add(pos);
        // Causal mask: position i sees 0..=i.
        let mut mask = vec![0f32; len * len];
        for i in 0..len {
            mask[i * len + i + 1..(i + 1) * len].iter_mut().for_each(|m| *m = f32::NEG_INFINITY);
        }
        let mask = Tensor::<4>::from_data(TensorData::new(mask, [1, 1, len, len]), &self.device);
        // transformers' hidden_states[-2]: the embeddings for a one-layer model.
        let mut penultimate = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            x = l.forward(x, c.tower.num_attention_heads, c.tower.hidden_act, Some(&mask))?;
            if i + 2 == self.layers.len() {
                penultimate = x.clone();
            }
        }
        let pooled_at = ids
            .iter()
            .map(|s| match c.eos_token_id {
                2 => s.iter().enumerate().fold(0, |best, (i, &t)| if t > s[best] { i } else { best }),
                eos => s.iter().position(|&t| t == eos).unwrap_or(s.len() - 1),
            })
            .collect();
        Ok(TextStates { pooled_at, last: self.final_ln.forward(x), penultimate })
    }
}
