//! Layers of the SD family read from a checkpoint's tensors by their diffusers/transformers names,
//! each shape checked against the config: linear, LayerNorm, GroupNorm, 2-d convolution, diffusers'
//! `Attention` and `ResnetBlock2D`. Shared by CLIP, the UNet and the autoencoders.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::Precision;
use crate::device::PmgDevice;
use crate::error::{Error, Result};
use crate::gguf::quant::{QK, quantize_row};
use crate::kernels::{QLinear, QMatrix};
use crate::tensor_io::TensorSource;

/// `x W^T (+ b)`: `W^T` held as `[in, out]` f32, or `W` `[out, in]` in a GGUF block format
/// multiplied by our kernels ([`QLinear`]; activations quantized to 8 bits on the CPU).
pub(crate) enum Linear {
    Dense { wt: Tensor<2>, b: Option<Tensor<1>> },
    Quantized { w: QLinear, b: Option<Tensor<1>> },
}

impl Linear {
    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        let (y, b) = match self {
            Linear::Dense { wt, b } => (x.matmul(wt.clone().unsqueeze()), b),
            Linear::Quantized { w, b } => {
                let mut dims = x.dims();
                let rows = dims[..D - 1].iter().product();
                let y = w.forward(x.reshape([rows, dims[D - 1]]))?;
                dims[D - 1] = w.weight.rows;
                (y.reshape(dims), b)
            }
        };
        Ok(match b {
            Some(b) => y.add(b.clone().unsqueeze()),
            None => y,
        })
    }
}

/// LayerNorm over the last dimension.
pub(crate) struct LayerNorm {
    w: Tensor<1>,
    b: Tensor<1>,
    eps: f64,
}

impl LayerNorm {
    pub(crate) fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mean = x.clone().mean_dim(D - 1);
        let xc = x.sub(mean);
        let var = xc.clone().square().mean_dim(D - 1);
        xc.div(var.add_scalar(self.eps).sqrt()).mul(self.w.clone().unsqueeze()).add(self.b.clone().unsqueeze())
    }
}

/// GroupNorm over `[b, c, h, w]` (torch's: biased variance per group, affine per channel).
pub(crate) struct GroupNorm {
    groups: usize,
    w: Tensor<1>,
    b: Tensor<1>,
    eps: f64,
}

impl GroupNorm {
    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let g = x.reshape([b, self.groups, (c / self.groups) * h * w]);
        let mean = g.clone().mean_dim(2);
        let gc = g.sub(mean);
        let var = gc.clone().square().mean_dim(2);
        let y = gc.div(var.add_scalar(self.eps).sqrt()).reshape([b, c, h, w]);
        let per_channel = |t: &Tensor<1>| t.clone().reshape([1, c, 1, 1]);
        y.mul(per_channel(&self.w)).add(per_channel(&self.b))
    }
}

/// A 2-d convolution with torch's weight layout `[out, in, k, k]`, square kernel, equal padding.
pub(crate) struct Conv2d {
    pub(crate) w: Tensor<4>,
    pub(crate) b: Option<Tensor<1>>,
    pub(crate) stride: usize,
    pub(crate) pad: usize,
}

impl Conv2d {
    pub(crate) fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(x, self.w.clone(), self.b.clone(), ConvOptions::new([self.stride; 2], [self.pad; 2], [1, 1], 1))
    }
}

/// Query rows per attention chunk are chosen so that one chunk's scores stay under this many
/// values (64 MB in f32): a 64x64 latent's self-attention would otherwise need a 4096 x 4096 score
/// matrix per head, over WebGPU's usual 128 MB binding limit at SD's head counts.
const SCORES_MAX: usize = 1 << 24;

/// Multi-head scaled dot-product attention, `q` `[b, n, heads*hd]` on `k`, `v` `[b, m, heads*hd]`;
/// keys where `mask` `[b, m]` is true (padding) get no weight.
pub(crate) fn attend(
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    heads: usize,
    mask: Option<&Tensor<2, Bool>>,
) -> Tensor<3> {
    let [b, n, d] = q.dims();
    let m = k.dims()[1];
    let hd = d / heads;
    let split = |t: Tensor<3>, len: usize| t.reshape([b, len, heads, hd]).swap_dims(1, 2);
    let (k, v) = (split(k, m).swap_dims(2, 3), split(v, m));
    let bias = mask.map(|mask| {
        Tensor::<2>::zeros([b, m], &q.device()).mask_fill(mask.clone(), f32::NEG_INFINITY).reshape([b, 1, 1, m])
    });
    let q = split(q.mul_scalar((hd as f32).powf(-0.5)), n);
    let rows = (SCORES_MAX / (b * heads * m).max(1)).clamp(1, n);
    let chunks: Vec<Tensor<4>> = (0..n)
        .step_by(rows)
        .map(|s| {
            let qs = q.clone().slice([0..b, 0..heads, s..(s + rows).min(n)]);
            let scores = qs.matmul(k.clone());
            let scores = match &bias {
                Some(bias) => scores.add(bias.clone()),
                None => scores,
            };
            softmax(scores, 3).matmul(v.clone())
        })
        .collect();
    Tensor::cat(chunks, 2).swap_dims(1, 2).reshape([b, n, d])
}

/// diffusers' `Attention`: `to_q`, `to_k`, `to_v` (bias optional), `to_out.0` (with bias).
pub(crate) struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    /// `x` `[b, n, dim]` attends to `ctx` `[b, m, ctx_dim]` (itself when `None`), padding keys
    /// (`mask` `[b, m]` true) left out.
    pub(crate) fn forward(
        &self,
        x: Tensor<3>,
        ctx: Option<&Tensor<3>>,
        mask: Option<&Tensor<2, Bool>>,
    ) -> Result<Tensor<3>> {
        let ctx = ctx.cloned().unwrap_or_else(|| x.clone());
        let (q, k, v) = (self.q.forward(x)?, self.k.forward(ctx.clone())?, self.v.forward(ctx)?);
        self.out.forward(attend(q, k, v, self.heads, mask))
    }
}

/// diffusers' `ResnetBlock2D` (default options): GroupNorm, SiLU, 3x3 conv, the time embedding's
/// projection added per channel, GroupNorm, SiLU, 3x3 conv; a 1x1 shortcut when widths differ.
pub(crate) struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    pub(crate) fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Result<Tensor<4>> {
        let mut h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        if let (Some(p), Some(t)) = (&self.time_emb_proj, temb) {
            let [b, c, _, _] = h.dims();
            h = h.add(p.forward(silu(t.clone()))?.reshape([b, c, 1, 1]));
        }
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        Ok(match &self.shortcut {
            Some(s) => s.forward(x).add(h),
            None => x.add(h),
        })
    }
}

/// Reads a model's tensors, checking each shape.
pub(crate) struct Loader<'a> {
    pub w: &'a dyn TensorSource,
    pub file: &'a str,
    pub prefix: &'a str,
    pub device: &'a Device,
    /// Linear layers whose input width is a multiple of 32 are quantized to this on load.
    pub precision: Precision,
    /// Where quantized linear layers run; without it they are expanded to f32.
    pub pmg: Option<&'a PmgDevice>,
    /// Bytes of the weights read so far as they are held (f32, or the quantized blocks).
    pub held: std::cell::Cell<usize>,
}

impl<'a> Loader<'a> {
    /// Every layer in f32.
    pub(crate) fn new(w: &'a dyn TensorSource, file: &'a str, prefix: &'a str, device: &'a Device) -> Self {
        Loader { w, file, prefix, device, precision: Precision::F32, pmg: None, held: 0.into() }
    }

    /// Linear layers held as `precision` says, or as the file holds them when it holds them
    /// quantized (a GGUF checkpoint's Q8_0/Q4_0 blocks are kept, not requantized).
    pub(crate) fn with_precision(
        w: &'a dyn TensorSource,
        file: &'a str,
        prefix: &'a str,
        device: &'a PmgDevice,
        precision: Precision,
    ) -> Self {
        Loader { w, file, prefix, device: &device.device, precision, pmg: Some(device), held: 0.into() }
    }

    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let Some(found) = self.w.shape(&full) else {
            return Err(Error::Weights { file: self.file.into(), problem: format!("missing tensor `{full}`") });
        };
        if found != shape {
            return Err(Error::Weights {
                file: self.file.into(),
                problem: format!("`{full}` is {found:?}, the config says {shape:?}"),
            });
        }
        self.held.set(self.held.get() + 4 * shape.iter().product::<usize>());
        self.w.values(&full)
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.w.shape(&format!("{}{name}", self.prefix)).is_some()
    }

    pub(crate) fn vector(&self, name: &str, len: usize) -> Result<Tensor<1>> {
        Ok(Tensor::from_data(TensorData::new(self.get(name, &[len])?, [len]), self.device))
    }

    pub(crate) fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor<2>> {
        Ok(Tensor::from_data(TensorData::new(self.get(name, &[rows, cols])?, [rows, cols]), self.device))
    }

    /// A linear layer `name.weight` `[out, inp]` (+ `name.bias`): kept in the file's block
    /// format when it has one, else quantized when the loader says so and `inp` is a multiple
    /// of the 32-value block, else f32.
    pub(crate) fn linear(&self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let b = if bias { Some(self.vector(&format!("{name}.bias"), out)?) } else { None };
        let weight = format!("{name}.weight");
        let full = format!("{}{weight}", self.prefix);
        if let (Some(dev), true) = (self.pmg, self.w.shape(&full) == Some(&[out, inp][..]))
            && let Some(q) = self.w.quantized(&full)
        {
            let q = q?;
            self.held.set(self.held.get() + q.data.len());
            return Ok(Linear::Quantized { w: QLinear::new(q, dev)?, b });
        }
        match (self.precision.ggml_type(), self.pmg) {
            (Some(ty), Some(dev)) if inp.is_multiple_of(QK) => {
                let values = self.get(&weight, &[out, inp])?;
                let mut data = Vec::with_capacity(out * ty.row_bytes(inp));
                for row in values.chunks_exact(inp) {
                    quantize_row(ty, row, &mut data);
                }
                self.held.set(self.held.get() - 4 * values.len() + data.len());
                let w = QLinear::new(QMatrix { ty, rows: out, cols: inp, data: data.into() }, dev)?;
                Ok(Linear::Quantized { w, b })
            }
            _ => Ok(Linear::Dense { wt: self.matrix(&weight, out, inp)?.transpose(), b }),
        }
    }

    pub(crate) fn norm(&self, name: &str, d: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            w: self.vector(&format!("{name}.weight"), d)?,
            b: self.vector(&format!("{name}.bias"), d)?,
            eps,
        })
    }

    pub(crate) fn group_norm(&self, name: &str, groups: usize, c: usize, eps: f64) -> Result<GroupNorm> {
        if groups == 0 || !c.is_multiple_of(groups) {
            return Err(Error::InvalidArgument(format!("`{name}`: {c} channels in {groups} groups")));
        }
        Ok(GroupNorm {
            groups,
            w: self.vector(&format!("{name}.weight"), c)?,
            b: self.vector(&format!("{name}.bias"), c)?,
            eps,
        })
    }

    /// A `k` x `k` convolution `name.weight` `[out, inp, k, k]` + `name.bias`, padding `k / 2`.
    pub(crate) fn conv(&self, name: &str, out: usize, inp: usize, k: usize, stride: usize) -> Result<Conv2d> {
        let shape = [out, inp, k, k];
        let w = Tensor::from_data(TensorData::new(self.get(&format!("{name}.weight"), &shape)?, shape), self.device);
        Ok(Conv2d { w, b: Some(self.vector(&format!("{name}.bias"), out)?), stride, pad: k / 2 })
    }

    /// diffusers' `Attention` at `name` of width `dim` on a context of width `ctx_dim`.
    pub(crate) fn attention(
        &self,
        name: &str,
        dim: usize,
        ctx_dim: usize,
        heads: usize,
        bias: bool,
    ) -> Result<Attention> {
        Ok(Attention {
            q: self.linear(&format!("{name}.to_q"), dim, dim, bias)?,
            k: self.linear(&format!("{name}.to_k"), dim, ctx_dim, bias)?,
            v: self.linear(&format!("{name}.to_v"), dim, ctx_dim, bias)?,
            out: self.linear(&format!("{name}.to_out.0"), dim, dim, true)?,
            heads,
        })
    }

    /// diffusers' `ResnetBlock2D` at `name`, `inp` -> `out` channels, with a time embedding of
    /// width `temb` when given.
    pub(crate) fn resnet(
        &self,
        name: &str,
        inp: usize,
        out: usize,
        temb: Option<usize>,
        groups: usize,
        eps: f64,
    ) -> Result<ResnetBlock> {
        let n = |s: &str| format!("{name}.{s}");
        Ok(ResnetBlock {
            norm1: self.group_norm(&n("norm1"), groups, inp, eps)?,
            conv1: self.conv(&n("conv1"), out, inp, 3, 1)?,
            time_emb_proj: temb.map(|t| self.linear(&n("time_emb_proj"), out, t, true)).transpose()?,
            norm2: self.group_norm(&n("norm2"), groups, out, eps)?,
            conv2: self.conv(&n("conv2"), out, out, 3, 1)?,
            shortcut: (inp != out).then(|| self.conv(&n("conv_shortcut"), out, inp, 1, 1)).transpose()?,
        })
    }
}
