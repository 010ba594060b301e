//! A differentiable f32 copy of the llama forward pass for a few appended positions (soft-prompt
//! training). The quantized [`Llama`] has no autodiff (its projections are our own kernels), so
//! training PMG's implicit-preference tokens runs this instead: every projection dequantized to
//! an f32 matrix on the training device, weights held as constants (no gradients of their own),
//! gradients flowing only to the input embeddings.
//!
//! The history before the soft tokens does not depend on them (causal attention), so its keys and
//! values come from a quantized prefill ([`KvCache::layer`]) and only the `k` soft positions run
//! here: a batch of users, each with their own history length, in one pass.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use pmg::device::read_f32;
use pmg::error::{Error, Result};
use pmg::kernels::QLinear;
use pmg::llm::config::LlamaConfig;
use pmg::llm::model::{KvCache, Llama, rms_norm, rotate_pairs};

struct DenseBlock {
    attn_norm: Tensor<1>,
    /// `[n_embd, (n_head + 2 n_head_kv) head_dim]`: q, k and v side by side (`x W^T` as one matmul).
    qkv: Tensor<2>,
    attn_output: Tensor<2>,
    ffn_norm: Tensor<1>,
    /// `[n_embd, 2 n_ff]`: gate and up side by side.
    gate_up: Tensor<2>,
    ffn_down: Tensor<2>,
}

/// The decoder blocks of a [`Llama`] as f32 tensors on `device` (~4 bytes per parameter: 425 MB
/// for SmolLM2-135M without its embedding matrix).
pub struct DenseLlama {
    pub config: LlamaConfig,
    blocks: Vec<DenseBlock>,
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

/// `W^T` of several projections side by side: `[cols, sum of rows]`.
fn transposed(ls: &[&QLinear], device: &Device) -> Tensor<2> {
    let cols = ls[0].weight.cols;
    let rows: usize = ls.iter().map(|l| l.weight.rows).sum();
    let mut out = vec![0f32; cols * rows];
    let mut off = 0;
    for l in ls {
        let w = l.weight.dequantize();
        for r in 0..l.weight.rows {
            for c in 0..cols {
                out[c * rows + off + r] = w[r * cols + c];
            }
        }
        off += l.weight.rows;
    }
    Tensor::from_data(TensorData::new(out, [cols, rows]), device)
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
                Ok(DenseBlock {
                    attn_norm: vec1(&b.attn_norm)?,
                    qkv: transposed(&[&b.attn_q, &b.attn_k, &b.attn_v], device),
                    attn_output: transposed(&[&b.attn_output], device),
                    ffn_norm: vec1(&b.ffn_norm)?,
                    gate_up: transposed(&[&b.ffn_gate, &b.ffn_up], device),
                    ffn_down: transposed(&[&b.ffn_down], device),
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

    /// RoPE on `x: [b, k, heads, hd]`, row `i` of user `u` at position `lens[u] + i` (the angles
    /// in `cos`/`sin`, `[b, k, 1, hd/2, 1]`), as [`Llama`] does.
    fn rope(&self, x: Tensor<4>, cos: &Tensor<5>, sin: &Tensor<5>) -> Tensor<4> {
        let [b, k, h, hd] = x.dims();
        rotate_pairs(x.reshape([b, k, h, hd / 2, 2]), cos.clone(), sin.clone()).reshape([b, k, h, hd])
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
        let scale = 1.0 / (hd as f32).sqrt();
        let (qd, kd) = (nh * hd, nkv * hd);
        let mut x = x.reshape([b * k, d]);
        for (blk, (hk, hv)) in self.blocks.iter().zip(&hist.layers) {
            let h = self.rms_norm(x.clone(), &blk.attn_norm);
            let qkv = h.matmul(blk.qkv.clone());
            let q = self.rope(qkv.clone().narrow(1, 0, qd).reshape([b, k, nh, hd]), &cos, &sin);
            let kn = self.rope(qkv.clone().narrow(1, qd, kd).reshape([b, k, nkv, hd]), &cos, &sin);
            let vn = qkv.narrow(1, qd + kd, kd).reshape([b, k, nkv, hd]);
            let keys = Tensor::cat(vec![hk.clone(), kn.permute([0, 2, 1, 3])], 2);
            let values = Tensor::cat(vec![hv.clone(), vn.permute([0, 2, 1, 3])], 2);
            // Query head h uses kv head h / group: [b, k, nkv, group, hd] -> [b, nkv, group*k, hd].
            let q = q.reshape([b, k, nkv, group, hd]).permute([0, 2, 3, 1, 4]).reshape([b, nkv, group * k, hd]);
            let scores = q.matmul(keys.swap_dims(2, 3)).mul_scalar(scale).add(bias.clone());
            let att = softmax(scores, 3).matmul(values);
            let att = att.reshape([b, nkv, group, k, hd]).permute([0, 3, 1, 2, 4]).reshape([b * k, qd]);
            x = x.add(att.matmul(blk.attn_output.clone()));
            let h = self.rms_norm(x.clone(), &blk.ffn_norm);
            let gu = h.matmul(blk.gate_up.clone());
            let nf = c.n_ff;
            let f = silu(gu.clone().narrow(1, 0, nf)).mul(gu.narrow(1, nf, nf));
            x = x.add(f.matmul(blk.ffn_down.clone()));
        }
        Ok(self.rms_norm(x, &self.output_norm).reshape([b, k, d]))
    }
}
