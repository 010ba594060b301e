//! The llama-family decoder in burn: RMSNorm, RoPE (adjacent pairs, llama.cpp's "normal" mode),
//! grouped-query attention with a KV cache, SwiGLU feed-forward. One implementation for every
//! backend and quantization: weights stay in their GGUF block format and every projection goes
//! through [`QLinear::forward`], which runs our own kernel for the device.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Tensor, TensorData};

use super::config::LlamaConfig;
use crate::device::PmgDevice;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf};
use crate::kernels::{QLinear, QMatrix};

/// A projection `x W^T` of rows `x: [n, in]`: a quantized GGUF matrix here, a dense f32 one in
/// the differentiable copy that trains soft prompts (pmg-train's `dense.rs`).
pub trait Project {
    fn project(&self, x: Tensor<2>) -> Result<Tensor<2>>;
}

impl Project for QLinear {
    fn project(&self, x: Tensor<2>) -> Result<Tensor<2>> {
        self.forward(x)
    }
}

/// One decoder layer's weights; `P` is how its projections are held.
pub struct Layer<P> {
    pub attn_norm: Tensor<1>,
    pub attn_q: P,
    pub attn_k: P,
    pub attn_v: P,
    pub attn_output: P,
    pub ffn_norm: Tensor<1>,
    pub ffn_gate: P,
    pub ffn_up: P,
    pub ffn_down: P,
}

/// A layer of the quantized model.
pub type Block = Layer<QLinear>;

impl<P: Project> Layer<P> {
    /// The layer on `x: [b * m, n_embd]` (`b` sequences of `m` new rows each): RMSNorm, grouped-query
    /// attention, residual; RMSNorm, SwiGLU, residual. The caller owns positions and memory: `rope`
    /// rotates `[b, m, heads, head_dim]` at the rows' positions; `kv` takes the new keys and values
    /// `[b, m, n_head_kv, head_dim]` and returns all that the rows attend to, `[b, n_head_kv, t,
    /// head_dim]`; `bias` (added to the scores `[b, n_head_kv, group * m, t]`) masks.
    pub fn forward(
        &self,
        x: Tensor<2>,
        c: &LlamaConfig,
        [b, m]: [usize; 2],
        rope: impl Fn(Tensor<4>) -> Tensor<4>,
        kv: impl FnOnce(Tensor<4>, Tensor<4>) -> (Tensor<4>, Tensor<4>),
        bias: Option<&Tensor<4>>,
    ) -> Result<Tensor<2>> {
        let (hd, nh, nkv) = (c.head_dim, c.n_head, c.n_head_kv);
        let group = nh / nkv;
        let h = rms_norm(x.clone(), &self.attn_norm, c.rms_eps);
        let q = rope(self.attn_q.project(h.clone())?.reshape([b, m, nh, hd]));
        let k = rope(self.attn_k.project(h.clone())?.reshape([b, m, nkv, hd]));
        let v = self.attn_v.project(h)?.reshape([b, m, nkv, hd]);
        let (keys, values) = kv(k, v);
        // Query head h uses kv head h / group: [b, m, nkv, group, hd] -> [b, nkv, group * m, hd].
        let q = q.reshape([b, m, nkv, group, hd]).permute([0, 2, 3, 1, 4]).reshape([b, nkv, group * m, hd]);
        let mut scores = q.matmul(keys.swap_dims(2, 3)).mul_scalar(1.0 / (hd as f32).sqrt());
        if let Some(bias) = bias {
            scores = scores.add(bias.clone());
        }
        let att = softmax(scores, 3).matmul(values);
        let att = att.reshape([b, nkv, group, m, hd]).permute([0, 3, 1, 2, 4]).reshape([b * m, nh * hd]);
        let x = x.add(self.attn_output.project(att)?);
        let h = rms_norm(x.clone(), &self.ffn_norm, c.rms_eps);
        let f = silu(self.ffn_gate.project(h.clone())?).mul(self.ffn_up.project(h)?);
        Ok(x.add(self.ffn_down.project(f)?))
    }
}

#[cfg(feature = "wgpu")]
impl Block {
    /// Every projection has a GPU kernel, and q/k/v and gate/up can share a launch.
    fn gpu_fusable(&self) -> bool {
        let (Some(q), Some(k), Some(v), Some(o), Some(g), Some(u), Some(d)) = (
            self.attn_q.gpu(),
            self.attn_k.gpu(),
            self.attn_v.gpu(),
            self.attn_output.gpu(),
            self.ffn_gate.gpu(),
            self.ffn_up.gpu(),
            self.ffn_down.gpu(),
        ) else {
            return false;
        };
        let _ = (o, d);
        q.fuses_with(k) && q.fuses_with(v) && g.fuses_with(u) && g.rows() == u.rows()
    }
}

pub struct Llama {
    pub config: LlamaConfig,
    pub device: PmgDevice,
    pub token_embd: QMatrix,
    pub blocks: Vec<Block>,
    pub output_norm: Tensor<1>,
    output: QLinear,
    /// RoPE tables `[n_ctx, head_dim / 2]`.
    pub rope_cos: Tensor<2>,
    pub rope_sin: Tensor<2>,
    /// Bytes of weights held (quantized), for reports.
    pub weight_bytes: usize,
    /// One-token steps run our fused GPU kernels (wgpu, every projection with a GPU kernel).
    gpu_decode: bool,
    /// The LM head is the embedding matrix (no `output.weight`): its GPU copy also serves
    /// embedding lookups of token ids that live on the device.
    tied: bool,
}

/// Keys and values of past positions, per layer `[n_head_kv, n_ctx, head_dim]`.
pub struct KvCache {
    k: Vec<Tensor<3>>,
    v: Vec<Tensor<3>>,
    pub pos: usize,
    pub n_ctx: usize,
}

impl KvCache {
    pub fn clear(&mut self) {
        self.pos = 0;
    }

    /// Keys (after RoPE) and values of layer `l` for the positions filled so far:
    /// `[n_head_kv, pos, head_dim]` each.
    pub fn layer(&self, l: usize) -> (Tensor<3>, Tensor<3>) {
        let [h, _, d] = self.k[l].dims();
        (self.k[l].clone().slice([0..h, 0..self.pos, 0..d]), self.v[l].clone().slice([0..h, 0..self.pos, 0..d]))
    }

    pub fn n_layer(&self) -> usize {
        self.k.len()
    }
}

#[cfg(feature = "wgpu")]
fn gpu(l: &QLinear) -> Result<&crate::kernels::wgpu::GpuQMatrix> {
    l.gpu().ok_or_else(|| Error::Device { device: "wgpu".into(), reason: "a projection has no GPU kernel".into() })
}

/// Which rows of the final hidden states a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    Last,
    All,
}

fn vector(g: &Gguf<'_>, name: &str, len: usize, dev: &PmgDevice) -> Result<Tensor<1>> {
    let m = QMatrix::from_gguf(g, name)?;
    if m.rows * m.cols != len || m.ty != GgmlType::F32 && m.ty != GgmlType::F16 && m.ty != GgmlType::BF16 {
        return Err(Error::tensor(name, format!("expected {len} floats, got {}x{} {:?}", m.rows, m.cols, m.ty)));
    }
    Ok(Tensor::from_data(TensorData::new(m.dequantize(), [len]), &dev.device))
}

fn linear(g: &Gguf<'_>, name: &str, rows: usize, cols: usize, dev: &PmgDevice) -> Result<QLinear> {
    let m = QMatrix::from_gguf(g, name)?;
    if m.rows != rows || m.cols != cols {
        return Err(Error::tensor(name, format!("expected [{rows}, {cols}], got [{}, {}]", m.rows, m.cols)));
    }
    QLinear::new(m, dev)
}

impl Llama {
    /// Build the model from a parsed GGUF on `device`. Every size comes from the file's metadata.
    pub fn from_gguf(g: &Gguf<'_>, device: &PmgDevice, n_ctx: usize) -> Result<Self> {
        let config = LlamaConfig::from_gguf(g)?;
        let c = &config;
        let n_ctx = n_ctx.clamp(1, c.n_ctx_train);
        let (d, hd) = (c.n_embd, c.head_dim);
        let token_embd = QMatrix::from_gguf(g, "token_embd.weight")?;
        if token_embd.cols != d || token_embd.rows != c.vocab_size {
            return Err(Error::tensor(
                "token_embd.weight",
                format!("expected [{}, {d}], got [{}, {}]", c.vocab_size, token_embd.rows, token_embd.cols),
            ));
        }
        let mut blocks = Vec::with_capacity(c.n_layer);
        for i in 0..c.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            blocks.push(Block {
                attn_norm: vector(g, &n("attn_norm"), d, device)?,
                attn_q: linear(g, &n("attn_q"), c.n_head * hd, d, device)?,
                attn_k: linear(g, &n("attn_k"), c.n_head_kv * hd, d, device)?,
                attn_v: linear(g, &n("attn_v"), c.n_head_kv * hd, d, device)?,
                attn_output: linear(g, &n("attn_output"), d, c.n_head * hd, device)?,
                ffn_norm: vector(g, &n("ffn_norm"), d, device)?,
                ffn_gate: linear(g, &n("ffn_gate"), c.n_ff, d, device)?,
                ffn_up: linear(g, &n("ffn_up"), c.n_ff, d, device)?,
                ffn_down: linear(g, &n("ffn_down"), d, c.n_ff, device)?,
            });
        }
        let output_norm = vector(g, "output_norm.weight", d, device)?;
        // Tied embeddings: without `output.weight` the LM head is the embedding matrix.
        let tied = g.tensor("output.weight").is_none();
        let output = match g.tensor("output.weight") {
            Some(_) => linear(g, "output.weight", c.vocab_size, d, device)?,
            None => QLinear::new(token_embd.clone(), device)?,
        };
        let (rope_cos, rope_sin) = rope_tables(c, n_ctx, device);
        let weight_bytes = g.tensors.iter().map(|t| t.size as usize).sum();
        let mut model = Llama {
            config,
            device: device.clone(),
            token_embd,
            blocks,
            output_norm,
            output,
            rope_cos,
            rope_sin,
            weight_bytes,
            gpu_decode: false,
            tied,
        };
        model.set_gpu_decode(true);
        Ok(model)
    }

    pub fn new_cache(&self) -> KvCache {
        self.new_cache_with(self.rope_cos.dims()[0])
    }

    /// A cache for `n_ctx` positions (at most the model's context).
    pub fn new_cache_with(&self, n_ctx: usize) -> KvCache {
        let c = &self.config;
        let n_ctx = n_ctx.clamp(1, self.rope_cos.dims()[0]);
        let z = || Tensor::<3>::zeros([c.n_head_kv, n_ctx, c.head_dim], &self.device.device);
        KvCache { k: (0..c.n_layer).map(|_| z()).collect(), v: (0..c.n_layer).map(|_| z()).collect(), pos: 0, n_ctx }
    }

    /// Whether one-token steps run the fused GPU decode kernels.
    pub fn gpu_decode(&self) -> bool {
        self.gpu_decode
    }

    /// Whether a step can take its token from the device (the previous step's argmax) instead of
    /// the host: fused GPU decode with the embedding matrix on the GPU (tied LM head).
    pub fn embeds_on_gpu(&self) -> bool {
        self.gpu_decode && self.tied
    }

    /// Turn the fused GPU decode off (one-token steps then run burn's ops, as prefill does) or
    /// back on where the model supports it; for comparisons and tests.
    pub fn set_gpu_decode(&mut self, on: bool) {
        #[cfg(feature = "wgpu")]
        {
            let c = &self.config;
            let hd = c.head_dim;
            self.gpu_decode = on
                && c.rope_dim == hd
                && hd.is_multiple_of(8)
                && c.n_head.is_multiple_of(c.n_head_kv)
                && self.output.gpu().is_some()
                && self.blocks.iter().all(Block::gpu_fusable);
        }
        #[cfg(not(feature = "wgpu"))]
        let _ = on;
    }

    /// Input embeddings `[m, n_embd]` of token ids.
    pub fn embed(&self, tokens: &[u32]) -> Result<Tensor<2>> {
        let d = self.config.n_embd;
        let mut x = vec![0f32; tokens.len() * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            if t as usize >= self.token_embd.rows {
                return Err(Error::InvalidArgument(format!(
                    "token id {t} outside the vocabulary ({})",
                    self.token_embd.rows
                )));
            }
            self.token_embd.dequantize_row(t as usize, row);
        }
        Ok(Tensor::from_data(TensorData::new(x, [tokens.len(), d]), &self.device.device))
    }

    fn rms_norm(&self, x: Tensor<2>, w: &Tensor<1>) -> Tensor<2> {
        rms_norm(x, w, self.config.rms_eps)
    }

    /// Run `tokens` (at positions `cache.pos..`) through the model and return final hidden states
    /// (after the output norm) for the requested rows: `[1 or m, n_embd]`.
    pub fn forward_hidden(&self, tokens: &[u32], cache: &mut KvCache, rows: Rows) -> Result<Tensor<2>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("no tokens to run".into()));
        }
        Self::check_room(cache, tokens.len())?;
        #[cfg(feature = "wgpu")]
        if tokens.len() == 1 && self.gpu_decode {
            return self.decode_gpu(tokens, cache);
        }
        self.forward_embeds(self.embed(tokens)?, cache, rows)
    }

    fn check_room(cache: &KvCache, m: usize) -> Result<()> {
        if cache.pos + m > cache.n_ctx {
            return Err(Error::InvalidArgument(format!(
                "context full: {} + {m} tokens exceed the {} context",
                cache.pos, cache.n_ctx
            )));
        }
        Ok(())
    }

    /// [`forward_hidden`](Self::forward_hidden) from input embeddings `x: [m, n_embd]` instead of
    /// token ids: soft prompts (PMG's implicit-preference tokens) enter the model here. Runs burn's
    /// ops (with the quantized projections) for any `m`.
    pub fn forward_embeds(&self, mut x: Tensor<2>, cache: &mut KvCache, rows: Rows) -> Result<Tensor<2>> {
        let c = &self.config;
        let [m, d] = x.dims();
        if m == 0 || d != c.n_embd {
            return Err(Error::InvalidArgument(format!(
                "input embeddings of shape [{m}, {d}] (the model reads [m > 0, {}])",
                c.n_embd
            )));
        }
        Self::check_room(cache, m)?;
        let pos = cache.pos;
        let (hd, nkv) = (c.head_dim, c.n_head_kv);
        let group = c.n_head / nkv;
        let t = pos + m;
        // Causal mask for the new rows (query i sits at position pos + i), as an additive bias.
        let mask = (m > 1).then(|| {
            let mut bias = vec![0f32; group * m * t];
            for g in 0..group {
                for i in 0..m {
                    for j in pos + i + 1..t {
                        bias[(g * m + i) * t + j] = f32::NEG_INFINITY;
                    }
                }
            }
            Tensor::<4>::from_data(TensorData::new(bias, [1, 1, group * m, t]), &self.device.device)
        });
        let cos = self.rope_cos.clone().slice(pos..t).reshape([1, m, 1, hd / 2, 1]);
        let sin = self.rope_sin.clone().slice(pos..t).reshape([1, m, 1, hd / 2, 1]);
        let rope = |x: Tensor<4>| rope_rows(x, &cos, &sin);
        for (l, blk) in self.blocks.iter().enumerate() {
            // New keys and values go into the cache at positions pos..t; the rows attend to 0..t.
            let kv = |k: Tensor<4>, v: Tensor<4>| {
                let empty = || Tensor::empty([0, 0, 0], &self.device.device);
                let kc = std::mem::replace(&mut cache.k[l], empty());
                let vc = std::mem::replace(&mut cache.v[l], empty());
                cache.k[l] = kc.slice_assign([0..nkv, pos..t, 0..hd], k.reshape([m, nkv, hd]).swap_dims(0, 1));
                cache.v[l] = vc.slice_assign([0..nkv, pos..t, 0..hd], v.reshape([m, nkv, hd]).swap_dims(0, 1));
                let keys = cache.k[l].clone().slice([0..nkv, 0..t, 0..hd]).unsqueeze::<4>();
                (keys, cache.v[l].clone().slice([0..nkv, 0..t, 0..hd]).unsqueeze::<4>())
            };
            x = blk.forward(x, c, [1, m], rope, kv, mask.as_ref())?;
        }
        cache.pos = t;
        let x = match rows {
            Rows::Last => x.slice(m - 1..m),
            Rows::All => x,
        };
        Ok(self.rms_norm(x, &self.output_norm))
    }

    /// One token through the model with our fused GPU kernels. Per layer: RMSNorm, q/k/v in one
    /// launch, RoPE with the KV-cache store, attention scores, softmax-weighted values, output
    /// projection with the residual add, RMSNorm, SiLU(gate) * up in one launch, down projection
    /// with the residual add: 9 launches per layer, no readback, no host work but the embedding
    /// row. Returns `[1, n_embd]` after the output norm.
    #[cfg(feature = "wgpu")]
    fn decode_gpu(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor<2>> {
        let x = crate::kernels::wgpu::cube(self.embed(tokens)?)?;
        self.decode_gpu_x(x, cache)
    }

    /// Logits `[1, vocab]` of one step whose token is the `u32` in `id` on the device (the
    /// previous step's argmax), so the host can queue the step before it knows the token.
    /// Requires [`embeds_on_gpu`](Self::embeds_on_gpu); advances the cache by one position.
    #[cfg(feature = "wgpu")]
    pub(crate) fn step_from_device(
        &self,
        id: &burn::backend::wgpu::CubeTensor,
        cache: &mut KvCache,
    ) -> Result<Tensor<2>> {
        if !self.embeds_on_gpu() {
            return Err(Error::Device {
                device: "wgpu".into(),
                reason: "the embedding matrix is not on the GPU".into(),
            });
        }
        if cache.pos + 1 > cache.n_ctx {
            return Err(Error::InvalidArgument(format!(
                "context full: {} + 1 tokens exceed the {} context",
                cache.pos, cache.n_ctx
            )));
        }
        let x = crate::kernels::wgpu::embed(gpu(&self.output)?, id);
        let h = self.decode_gpu_x(x, cache)?;
        self.logits(h)
    }

    /// The fused step on the embedding row `x: [1, n_embd]` (updated in place as the residual).
    #[cfg(feature = "wgpu")]
    fn decode_gpu_x(&self, x: burn::backend::wgpu::CubeTensor, cache: &mut KvCache) -> Result<Tensor<2>> {
        use crate::kernels::wgpu as gk;
        let c = &self.config;
        let pos = cache.pos;
        let a = gk::AttnDims { n_head: c.n_head, n_head_kv: c.n_head_kv, head_dim: c.head_dim, n_ctx: cache.n_ctx };
        let eps = c.rms_eps;
        let cos = gk::cube(self.rope_cos.clone())?;
        let sin = gk::cube(self.rope_sin.clone())?;
        for (l, b) in self.blocks.iter().enumerate() {
            let h = gk::rms_norm(&x, &gk::cube(b.attn_norm.clone())?, eps);
            let qkv = gk::matvec3([gpu(&b.attn_q)?, gpu(&b.attn_k)?, gpu(&b.attn_v)?], &h);
            let kc = gk::cube_shared(cache.k[l].clone())?;
            let vc = gk::cube_shared(cache.v[l].clone())?;
            let q = gk::rope_store_kv(&qkv, &cos, &sin, &kc, &vc, pos, a);
            let att = gk::attention(&q, &kc, &vc, pos + 1, a);
            gk::matvec_add(gpu(&b.attn_output)?, &att, &x);
            let h = gk::rms_norm(&x, &gk::cube(b.ffn_norm.clone())?, eps);
            let f = gk::gate_up(gpu(&b.ffn_gate)?, gpu(&b.ffn_up)?, &h);
            gk::matvec_add(gpu(&b.ffn_down)?, &f, &x);
        }
        cache.pos = pos + 1;
        Ok(gk::tensor(gk::rms_norm(&x, &gk::cube(self.output_norm.clone())?, eps)))
    }

    /// Logits `[rows, vocab]` for the tokens' hidden states.
    pub fn logits(&self, hidden: Tensor<2>) -> Result<Tensor<2>> {
        self.output.forward(hidden)
    }

    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache, rows: Rows) -> Result<Tensor<2>> {
        let h = self.forward_hidden(tokens, cache, rows)?;
        self.logits(h)
    }
}

/// llama's RMSNorm over the last dimension: `x / sqrt(mean(x^2) + eps) * w`.
pub fn rms_norm<const D: usize>(x: Tensor<D>, w: &Tensor<1>, eps: f32) -> Tensor<D> {
    let ms = x.clone().square().mean_dim(D - 1);
    x.mul(ms.add_scalar(eps).sqrt().recip()).mul(w.clone().unsqueeze::<D>())
}

/// RoPE's rotation of the pairs on the last axis of `x` (size 2: llama.cpp's "normal" mode, adjacent
/// elements) by the angles whose `cos` and `sin` broadcast against the other axes.
pub fn rotate_pairs<const D: usize>(x: Tensor<D>, cos: Tensor<D>, sin: Tensor<D>) -> Tensor<D> {
    let x0 = x.clone().narrow(D - 1, 0, 1);
    let x1 = x.narrow(D - 1, 1, 1);
    let r0 = x0.clone().mul(cos.clone()).sub(x1.clone().mul(sin.clone()));
    let r1 = x0.mul(sin).add(x1.mul(cos));
    Tensor::cat(vec![r0, r1], D - 1)
}

/// RoPE on `x: [b, m, heads, head_dim]` by the angles of each row, `cos`/`sin`: `[b or 1, m, 1,
/// head_dim / 2, 1]`.
pub fn rope_rows(x: Tensor<4>, cos: &Tensor<5>, sin: &Tensor<5>) -> Tensor<4> {
    let [b, m, h, hd] = x.dims();
    rotate_pairs(x.reshape([b, m, h, hd / 2, 2]), cos.clone(), sin.clone()).reshape([b, m, h, hd])
}

/// `cos/sin(pos * theta^(-2i/d))`, as llama.cpp's rope in "normal" mode.
fn rope_tables(c: &LlamaConfig, n_ctx: usize, dev: &PmgDevice) -> (Tensor<2>, Tensor<2>) {
    let half = c.rope_dim / 2;
    let mut cos = vec![0f32; n_ctx * half];
    let mut sin = vec![0f32; n_ctx * half];
    for p in 0..n_ctx {
        for i in 0..half {
            let freq = (c.rope_theta as f64).powf(-2.0 * i as f64 / c.rope_dim as f64);
            let a = p as f64 * freq;
            cos[p * half + i] = a.cos() as f32;
            sin[p * half + i] = a.sin() as f32;
        }
    }
    (
        Tensor::from_data(TensorData::new(cos, [n_ctx, half]), &dev.device),
        Tensor::from_data(TensorData::new(sin, [n_ctx, half]), &dev.device),
    )
}
