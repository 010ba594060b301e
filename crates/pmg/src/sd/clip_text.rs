//! CLIP's text encoder (transformers `CLIPTextModel`), the conditioning of the SD family (issue
//! 21): token and position embeddings, pre-LayerNorm transformer layers with causal self-attention
//! and a quick-GELU (OpenAI CLIP, SD 1.x) or GELU (OpenCLIP, SD 2.x) MLP, a final LayerNorm. Sizes
//! come from the checkpoint's `config.json`; weights from its safetensors (transformers' names, with
//! or without the `text_model.` prefix). `tests/clip_text.rs` matches transformers' hidden states.

use burn::tensor::activation::{gelu, sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::tensor_io::Weights;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    QuickGelu,
    Gelu,
}

/// The keys of a `CLIPTextModel` `config.json` this encoder reads (others are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipTextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub max_position_embeddings: usize,
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

impl ClipTextConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("config.json: {e}")))?;
        let sane = c.hidden_size > 0
            && c.num_attention_heads > 0
            && c.hidden_size.is_multiple_of(c.num_attention_heads)
            && (1..=256).contains(&c.num_hidden_layers)
            && (1..=4096).contains(&c.max_position_embeddings)
            && c.vocab_size > 0
            && c.intermediate_size > 0
            && c.hidden_size <= 1 << 14
            && c.intermediate_size <= 1 << 16
            && c.vocab_size <= 1 << 20;
        if !sane {
            return Err(Error::InvalidArgument(format!("config.json: an unusable CLIP text config {c:?}")));
        }
        Ok(c)
    }
}

/// `x W^T + b` with `W^T` held as `[in, out]`.
struct Linear {
    wt: Tensor<2>,
    b: Tensor<1>,
}

impl Linear {
    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        x.matmul(self.wt.clone().unsqueeze()).add(self.b.clone().unsqueeze())
    }
}

struct LayerNorm {
    w: Tensor<1>,
    b: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let mean = x.clone().mean_dim(2);
        let xc = x.sub(mean);
        let var = xc.clone().square().mean_dim(2);
        xc.div(var.add_scalar(self.eps).sqrt()).mul(self.w.clone().unsqueeze()).add(self.b.clone().unsqueeze())
    }
}

struct Layer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// The encoder's outputs for a batch: `[b, len, hidden]` each.
pub struct TextStates {
    /// After the final LayerNorm (what SD 1.x and 2.x condition on).
    pub last: Tensor<3>,
    /// The second-to-last layer's output, before any norm ("clip skip").
    pub penultimate: Tensor<3>,
}

pub struct ClipTextModel {
    pub config: ClipTextConfig,
    /// Token embeddings on the host, `[vocab, hidden]` row-major (rows are gathered per call).
    token_embedding: Vec<f32>,
    position_embedding: Tensor<2>,
    layers: Vec<Layer>,
    final_ln: LayerNorm,
    device: Device,
}

impl ClipTextModel {
    /// From `config.json` and the weights (`file` names them in errors).
    pub fn from_weights(config: ClipTextConfig, w: &Weights, file: &str, device: &Device) -> Result<Self> {
        let c = &config;
        let prefix =
            if w.tensors.contains_key("text_model.embeddings.token_embedding.weight") { "text_model." } else { "" };
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = w.get(file, &format!("{prefix}{name}"))?;
            if t.shape != shape {
                return Err(Error::Weights {
                    file: file.into(),
                    problem: format!("`{prefix}{name}` is {:?}, the config says {shape:?}", t.shape),
                });
            }
            Ok(t.data.clone())
        };
        let t1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v.clone(), [v.len()]), device);
        let linear = |name: &str, out: usize, inp: usize| -> Result<Linear> {
            let wv = get(&format!("{name}.weight"), &[out, inp])?;
            let wt = Tensor::<2>::from_data(TensorData::new(wv, [out, inp]), device).transpose();
            Ok(Linear { wt, b: t1(get(&format!("{name}.bias"), &[out])?) })
        };
        let norm = |name: &str| -> Result<LayerNorm> {
            let d = c.hidden_size;
            Ok(LayerNorm {
                w: t1(get(&format!("{name}.weight"), &[d])?),
                b: t1(get(&format!("{name}.bias"), &[d])?),
                eps: c.layer_norm_eps,
            })
        };
        let (d, ff) = (c.hidden_size, c.intermediate_size);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = |s: &str| format!("encoder.layers.{i}.{s}");
                Ok(Layer {
                    ln1: norm(&l("layer_norm1"))?,
                    q: linear(&l("self_attn.q_proj"), d, d)?,
                    k: linear(&l("self_attn.k_proj"), d, d)?,
                    v: linear(&l("self_attn.v_proj"), d, d)?,
                    out: linear(&l("self_attn.out_proj"), d, d)?,
                    ln2: norm(&l("layer_norm2"))?,
                    fc1: linear(&l("mlp.fc1"), ff, d)?,
                    fc2: linear(&l("mlp.fc2"), d, ff)?,
                })
            })
            .collect::<Result<_>>()?;
        let pos = get("embeddings.position_embedding.weight", &[c.max_position_embeddings, d])?;
        Ok(ClipTextModel {
            token_embedding: get("embeddings.token_embedding.weight", &[c.vocab_size, d])?,
            position_embedding: Tensor::from_data(TensorData::new(pos, [c.max_position_embeddings, d]), device),
            layers,
            final_ln: norm("final_layer_norm")?,
            config,
            device: device.clone(),
        })
    }

    /// The hidden states of a batch of token sequences of one length (pad them first).
    pub fn forward(&self, ids: &[Vec<u32>]) -> Result<TextStates> {
        let c = &self.config;
        let (b, len, d) = (ids.len(), ids.first().map_or(0, Vec::len), c.hidden_size);
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
        let (h, hd) = (c.num_attention_heads, d / c.num_attention_heads);
        let scale = (hd as f32).powf(-0.5);
        // transformers' hidden_states[-2]: the embeddings for a one-layer model.
        let mut penultimate = x.clone();
        for (i, l) in self.layers.iter().enumerate() {
            let y = l.ln1.forward(x.clone());
            let heads = |t: Tensor<3>| t.reshape([b, len, h, hd]).swap_dims(1, 2);
            let (q, k, v) = (heads(l.q.forward(y.clone())), heads(l.k.forward(y.clone())), heads(l.v.forward(y)));
            let att = softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale).add(mask.clone()), 3).matmul(v);
            x = x.add(l.out.forward(att.swap_dims(1, 2).reshape([b, len, d])));
            let y = l.fc1.forward(l.ln2.forward(x.clone()));
            let y = match c.hidden_act {
                Activation::QuickGelu => y.clone().mul(sigmoid(y.mul_scalar(1.702))),
                Activation::Gelu => gelu(y),
            };
            x = x.add(l.fc2.forward(y));
            if i + 2 == self.layers.len() {
                penultimate = x.clone();
            }
        }
        Ok(TextStates { last: self.final_ln.forward(x), penultimate })
    }
}
