//! A differentiable f32 copy of the llama for a few appended positions (soft-prompt training). The
//! quantized [`Llama`] has no autodiff (its projections are our own kernels), so training PMG's
//! implicit-preference tokens runs the same layers ([`Layer::forward`]) with every projection
//! dequantized to an f32 matrix on the training device, weights held as constants (no gradients of
//! their own), gradients flowing only to the input embeddings.
//!
//! The history before the soft tokens does not depend on them (causal attention), so its keys and
//! values come from a quantized prefill ([`KvCache::layer`]) and only the `k` soft positions run
//! here: a batch of users, each with their own history length, in one pass.

use burn::tensor::{Device, Tensor, TensorData};

use pmg::device::read_f32;
use pmg::error::{Error, Result};
use pmg::kernels::QLinear;
use pmg::llm::config::LlamaConfig;
use pmg::llm::model::{KvCache, Layer, Llama, Project, rms_norm, rope_rows};

/// A projection as a dense f32 `W^T` (`[in, out]`), a constant of the graph.
struct Dense(Tensor<2>);

impl Project for Dense {
    fn project(&self, x: Tensor<2>) -> Result<Tensor<2>> {
        Ok(x.matmul(self.0.clone()))
    }
}

/// The decoder blocks of a [`Llama`] as f32 tensors on `device` (~4 bytes per parameter: 425 MB
/// for SmolLM2-135M without its embedding matrix).
pub struct DenseLlama {
    pub config: LlamaConfig,
    blocks: Vec<Layer<Dense>>,
    output_norm: Tensor<1>,
    /// RoPE tables on the host, `[n_ctx, head_dim / 2]` row-major.
    cos: Vec<f32>,
    sin: Vec<f32>,
    device: Device,
}

/// One history's keys and values on the host: its length and, per layer, `(k, v)` each
/// `[n_head_kv, len, head_dim]` row-major.
pub type HostKv = (usize, Vec<(Vec<f32>, Vec<f32>)>);

/// The history's keys and values for a batch of users: per layer `[b, n_head_kv, t, head_dim]`
/// (padded to the longest history `t`), and each user's real length.
pub struct HistoryKv {
    pub layers: Vec<(Tensor<4>, Tensor<4>)>,
    pub lens: Vec<usize>,
}

impl HistoryKv {
    /// Host data `[b][layer] -> (k, v)` each `[n_head_kv, len_b, head_dim]`, padded into tensors.
    pub fn from_host(users: &[HostKv], n_head_kv: usize, head_dim: usize, device: &Device) -> Result<Self> {
        let b = users.len();
        let n_layer = users.first().map(|u| u.1.len()).ok_or_else(|| Error::InvalidArgument("no users".into()))?;
        let t = users.iter().map(|u| u.0).max().unwrap_or(0).max(1);
        let mut layers = Vec::with_capacity(n_layer);
        for l in 0..n_layer {
            let mut k = vec![0f32; b * n_head_kv * t * head_dim];
            let mut v = k.clone();
            for (i, (len, kv)) in users.iter().enumerate() {
                let (uk, uv) = &kv[l];
                if uk.len() != n_head_kv * len * head_dim || uv.len() != uk.len() {
                    return Err(Error::InvalidArgument(format!(
                        "history keys of user {i}, layer {l}: {} values for length {len}",
                        uk.len()
                    )));
                }
                for h in 0..n_head_kv {
                    let dst = ((i * n_head_kv + h) * t) * head_dim;
                    let src = h * len * head_dim;
                    k[dst..dst + len * head_dim].copy_from_slice(&uk[src..src + len * head_dim]);
                    v[dst..dst + len * head_dim].copy_from_slice(&uv[src..src + len * head_dim]);
                }
            }
            let shape = [b, n_head_kv, t, head_dim];
            layers.push((
                Tensor::from_data(TensorData::new(k, shape), device),
                Tensor::from_data(TensorData::new(v, shape), device),
            ));
        }
        Ok(HistoryKv { layers, lens: users.iter().map(|u| u.0).collect() })
    }

    /// One cache's filled positions as host data for [`from_host`](Self::from_host).
    pub fn host_from_cache(cache: &KvCache) -> Result<HostKv> {
        let layers = (0..cache.n_layer())
            .map(|l| {
                let (k, v) = cache.layer(l);
                Ok((read_f32(k)?, read_f32(v)?))
            })
            .collect::<Result<_>>()?;
        Ok((cache.pos, layers))
    }
}

fn host<const D: usize>(t: &Tensor<D>) -> Result<Vec<f32>> {
    read_f32(t.clone())
}

/// A quantized projection as a dense `W^T`: `[cols, rows]`.
fn transposed(l: &QLinear, device: &Device) -> Dense {
    let (rows, cols) = (l.weight.rows, l.weight.cols);
    let w = l.weight.dequantize();
    let mut out = vec![0f32; cols * rows];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    Dense(Tensor::from_data(TensorData::new(out, [cols, rows]), device))
}

impl DenseLlama {
    pub fn from_llama(m: &Llama, device: &Device) -> Result<Self> {
        let vec1 = |t: &Tensor<1>| -> Result<Tensor<1>> {
            let v = host(t)?;
            let n = v.len();
            Ok(Tensor::from_data(TensorData::new(v, [n]), device))
        };
        let blocks = m
            .blocks
            .iter()
            .map(|b| {
                Ok(Layer {
                    attn_norm: vec1(&b.attn_norm)?,
                    attn_q: transposed(&b.attn_q, device),
                    attn_k: transposed(&b.attn_k, device),
                    attn_v: transposed(&b.attn_v, device),
                    attn_output: transposed(&b.attn_output, device),
                    ffn_norm: vec1(&b.ffn_norm)?,
                    ffn_gate: transposed(&b.ffn_gate, device),
                    ffn_up: transposed(&b.ffn_up, device),
                    ffn_down: transposed(&b.ffn_down, device),
                })
            })
            .collect::<Result<_>>()?;
        Ok(DenseLlama {
            config: m.config.clone(),
            blocks,
            output_norm: vec1(&m.output_norm)?,
            cos: host(&m.rope_cos)?,
            sin: host(&m.rope_sin)?,
            device: device.clone(),
        })
    }

    fn rms_norm<const D: usize>(&self, x: Tensor<D>, w: &Tensor<1>) -> Tensor<D> {
        rms_norm(x, w, self.config.rms_eps)
    }

    /// Final hidden states (after the output norm) `[b, k, n_embd]` of the input embeddings
    /// `x: [b, k, n_embd]` appended after each user's history.
    pub fn forward(&self, x: Tensor<3>, hist: &HistoryKv) -> Result<Tensor<3>> {
        let c = &self.config;
        let [b, k, d] = x.dims();
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_head_kv);
        let group = nh / nkv;
        let t = hist.layers.first().map(|l| l.0.dims()[2]).unwrap_or(0);
        let n_ctx = self.cos.len() / (hd / 2);
        if d != c.n_embd
            || hist.lens.len() != b
            || hist.layers.len() != self.blocks.len()
            || hist.lens.iter().any(|&l| l + k > n_ctx)
        {
            return Err(Error::InvalidArgument(format!(
                "soft forward: input [{b}, {k}, {d}], {} histories over {} layers",
                hist.lens.len(),
                hist.layers.len()
            )));
        }
        // RoPE angles per (user, row), broadcast over heads: [b, k, 1, hd/2, 1].
        let half = hd / 2;
        let (mut cs, mut sn) = (Vec::with_capacity(b * k * half), Vec::with_capacity(b * k * half));
        for &len in &hist.lens {
            for i in 0..k {
                cs.extend_from_slice(&self.cos[(len + i) * half..][..half]);
                sn.extend_from_slice(&self.sin[(len + i) * half..][..half]);
            }
        }
        let cos = Tensor::<5>::from_data(TensorData::new(cs, [b, k, 1, half, 1]), &self.device);
        let sin = Tensor::<5>::from_data(TensorData::new(sn, [b, k, 1, half, 1]), &self.device);
        // Attention bias [b, 1, group*k, t+k]: history padding and later soft rows are masked.
        let mut bias = vec![0f32; b * group * k * (t + k)];
        for (u, &len) in hist.lens.iter().enumerate() {
            for g in 0..group {
                for i in 0..k {
                    let row = &mut bias[((u * group + g) * k + i) * (t + k)..][..t + k];
                    row[len..t].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
                    row[t + i + 1..].iter_mut().for_each(|v| *v = f32::NEG_INFINITY);
                }
            }
        }
        let bias = Tensor::<4>::from_data(TensorData::new(bias, [b, 1, group * k, t + k]), &self.device);
        // Row `i` of user `u` sits at position `lens[u] + i`.
        let rope = |x: Tensor<4>| rope_rows(x, &cos, &sin);
        let mut x = x.reshape([b * k, d]);
        for (blk, (hk, hv)) in self.blocks.iter().zip(&hist.layers) {
            // The history's keys and values, then the soft rows' own: [b, nkv, t + k, hd].
            let kv = |kn: Tensor<4>, vn: Tensor<4>| {
                let keys = Tensor::cat(vec![hk.clone(), kn.permute([0, 2, 1, 3])], 2);
                (keys, Tensor::cat(vec![hv.clone(), vn.permute([0, 2, 1, 3])], 2))
            };
            x = blk.forward(x, c, [b, k], rope, kv, Some(&bias))?;
        }
        Ok(self.rms_norm(x, &self.output_norm).reshape([b, k, d]))
    }
}
