//! diffusers' `UNet2DConditionModel`, the denoiser of SD 1.x/2.x and their distillations (SD-Turbo,
//! BK-SDM, segmind's small/tiny SD), from its `config.json` and safetensors (diffusers' names):
//! a sinusoidal timestep embedding and its MLP, `conv_in`, down blocks of ResNets (with transformer
//! blocks attending to the text states in `CrossAttnDownBlock2D`) and a strided conv, an optional
//! mid block, up blocks that take the down blocks' outputs as skips, and a GroupNorm/SiLU/conv head.
//! Structure from diffusers 0.42 `models/unets/unet_2d_condition.py`, `unet_2d_blocks.py`,
//! `transformers/transformer_2d.py` and `attention.py`. `tests/unet.rs` matches diffusers' outputs.

use burn::tensor::activation::{gelu, silu};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use serde::Deserialize;

use super::Precision;
use super::nn::{Attention, Conv2d, GroupNorm, LayerNorm, Linear, Loader, ResnetBlock};
use crate::device::PmgDevice;
use crate::diffusion::nn::upsample2;
use crate::error::{Error, Result};
use crate::tensor_io::TensorSource;

/// A config value diffusers accepts as one value for every block or as one per block.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    One(T),
    Each(Vec<T>),
}

impl<T: Clone + std::fmt::Debug> PerBlock<T> {
    fn per_block(&self, key: &str, n: usize) -> Result<Vec<T>> {
        match self {
            PerBlock::One(v) => Ok(vec![v.clone(); n]),
            PerBlock::Each(v) if v.len() == n => Ok(v.clone()),
            PerBlock::Each(v) => {
                Err(Error::InvalidArgument(format!("config.json: `{key}` has {} values for {n} blocks", v.len())))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DownBlockType {
    CrossAttnDownBlock2D,
    DownBlock2D,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum UpBlockType {
    CrossAttnUpBlock2D,
    UpBlock2D,
}

/// The keys of a `UNet2DConditionModel` `config.json` this denoiser reads. Keys that select
/// features it does not implement (class or added embeddings, LCM's guidance embedding, ...) are
/// refused when set to anything but diffusers' default (see [`UNetConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<DownBlockType>,
    pub up_block_types: Vec<UpBlockType>,
    /// `UNetMidBlock2DCrossAttn` or none (BK-SDM).
    #[serde(default = "default_mid")]
    pub mid_block_type: Option<String>,
    pub layers_per_block: PerBlock<usize>,
    #[serde(default = "default_one")]
    pub transformer_layers_per_block: PerBlock<usize>,
    /// Heads per block; diffusers reads `attention_head_dim` as the head count when this is null
    /// (a naming slip it keeps for compatibility).
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock<usize>>,
    #[serde(default = "default_head_dim")]
    pub attention_head_dim: PerBlock<usize>,
    pub cross_attention_dim: PerBlock<usize>,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default)]
    pub time_embedding_dim: Option<usize>,
    #[serde(default = "default_kernel")]
    pub conv_in_kernel: usize,
    #[serde(default = "default_kernel")]
    pub conv_out_kernel: usize,
    #[serde(default = "default_one_usize")]
    pub downsample_padding: usize,
    #[serde(default)]
    pub sample_size: Option<usize>,
    /// Every other key, checked against the defaults this implementation assumes.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

fn default_mid() -> Option<String> {
    Some(MID_CROSS_ATTN.into())
}
fn default_one() -> PerBlock<usize> {
    PerBlock::One(1)
}
fn default_one_usize() -> usize {
    1
}
fn default_head_dim() -> PerBlock<usize> {
    PerBlock::One(8)
}
fn default_groups() -> usize {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_kernel() -> usize {
    3
}

const MID_CROSS_ATTN: &str = "UNetMidBlock2DCrossAttn";

/// Keys whose non-default values select features not implemented here, with diffusers' default.
const ASSUMED: &[(&str, &str)] = &[
    ("center_input_sample", "false"),
    ("only_cross_attention", "false"),
    ("dual_cross_attention", "false"),
    ("act_fn", "\"silu\""),
    ("mid_block_scale_factor", "1"),
    ("resnet_out_scale_factor", "1"),
    ("resnet_time_scale_shift", "\"default\""),
    ("resnet_skip_time_act", "false"),
    ("time_embedding_type", "\"positional\""),
    ("time_embedding_act_fn", "null"),
    ("timestep_post_act", "null"),
    ("time_cond_proj_dim", "null"),
    ("class_embed_type", "null"),
    ("num_class_embeds", "null"),
    ("addition_embed_type", "null"),
    ("encoder_hid_dim", "null"),
    ("encoder_hid_dim_type", "null"),
    ("cross_attention_norm", "null"),
    ("attention_type", "\"default\""),
    ("reverse_transformer_layers_per_block", "null"),
];

impl UNetConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("config.json: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(format!("config.json: {m}")));
        for (key, default) in ASSUMED {
            let want: serde_json::Value = serde_json::from_str(default).expect("a JSON literal");
            if let Some(v) = self.rest.get(*key) {
                let same = v == &want || (v.as_f64().is_some() && v.as_f64() == want.as_f64());
                if !same {
                    return bad(format!("`{key}` = {v} is not supported (only {default})"));
                }
            }
        }
        let n = self.block_out_channels.len();
        if !(1..=8).contains(&n) || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "{n} block widths, {} down blocks, {} up blocks",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        match self.mid_block_type.as_deref() {
            None | Some(MID_CROSS_ATTN) => {}
            Some(t) => return bad(format!("mid block `{t}` is not supported")),
        }
        let g = self.norm_num_groups;
        let sane_width = |c: usize| (1..=1 << 13).contains(&c) && g > 0 && c.is_multiple_of(g);
        if !self.block_out_channels.iter().all(|&c| sane_width(c)) {
            return bad(format!("block widths {:?} in {g} groups", self.block_out_channels));
        }
        let c0 = self.block_out_channels[0];
        if !c0.is_multiple_of(2) || !(1..=64).contains(&self.in_channels) || !(1..=64).contains(&self.out_channels) {
            return bad(format!("channels in {}, out {}, first width {c0}", self.in_channels, self.out_channels));
        }
        for k in [self.conv_in_kernel, self.conv_out_kernel] {
            if !(k % 2 == 1 && k <= 7) {
                return bad(format!("a {k}x{k} input or output convolution"));
            }
        }
        if self.downsample_padding != 1 {
            return bad(format!("downsample_padding {} (only 1)", self.downsample_padding));
        }
        let heads = self.heads()?;
        for (c, h) in self.block_out_channels.iter().zip(&heads) {
            if *h == 0 || !c.is_multiple_of(*h) {
                return bad(format!("{c} channels in {h} heads"));
            }
        }
        let sizes = [
            self.layers_per_block.per_block("layers_per_block", n)?,
            self.transformer_layers_per_block.per_block("transformer_layers_per_block", n)?,
            self.cross_attention_dim.per_block("cross_attention_dim", n)?,
        ];
        if sizes.iter().flatten().any(|&v| !(1..=1 << 13).contains(&v)) {
            return bad(format!("layer counts and cross-attention widths {sizes:?}"));
        }
        if self.time_embedding_dim.is_some_and(|d| !(1..=1 << 14).contains(&d)) {
            return bad(format!("time_embedding_dim {:?}", self.time_embedding_dim));
        }
        Ok(())
    }

    /// Attention heads per block.
    fn heads(&self) -> Result<Vec<usize>> {
        let n = self.block_out_channels.len();
        match &self.num_attention_heads {
            Some(h) => h.per_block("num_attention_heads", n),
            None => self.attention_head_dim.per_block("attention_head_dim", n),
        }
    }

    /// The width of the text states the UNet attends to (the innermost block's, as SD pipelines
    /// read it).
    pub fn context_width(&self) -> usize {
        match &self.cross_attention_dim {
            PerBlock::One(d) => *d,
            PerBlock::Each(v) => *v.last().unwrap_or(&0),
        }
    }

    /// How many times the latent is halved: its sides must be multiples of `1 << this`.
    pub fn downsamplings(&self) -> usize {
        self.block_out_channels.len() - 1
    }

    /// Bytes of the largest tensor one latent of `h` x `w` makes in a call, a bound: the GEGLU
    /// projection (8x the width per pixel) at a cross-attention level, three widths (an up
    /// block's input and skip) elsewhere; attention scores are chunked under 64 MB.
    pub fn peak_bytes_per_latent(&self, [h, w]: [usize; 2]) -> usize {
        let attention = self.down_block_types.iter().map(|t| *t == DownBlockType::CrossAttnDownBlock2D);
        let levels = self.block_out_channels.iter().zip(attention).enumerate();
        let per_pixel = levels.map(|(i, (&c, cross))| (if cross { 8 } else { 3 }) * c * (h >> i) * (w >> i));
        4 * per_pixel.max().unwrap_or(0)
    }
}

/// The text states `[b, len, width]` and, when the rows have different lengths, which are padding.
type Context<'a> = (&'a Tensor<3>, Option<&'a Tensor<2, Bool>>);

/// One `BasicTransformerBlock`: self-attention, cross-attention on the text states, GEGLU
/// feed-forward, each after a LayerNorm and added back.
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff_in: Linear,
    ff_out: Linear,
}

impl TransformerBlock {
    fn forward(&self, x: Tensor<3>, ctx: &Context) -> Result<Tensor<3>> {
        let x = x.clone().add(self.attn1.forward(self.norm1.forward(x), None, None)?);
        let x = x.clone().add(self.attn2.forward(self.norm2.forward(x), Some(ctx.0), ctx.1)?);
        // GEGLU (Shazeer 2020): the projection's first half gated by GELU of its second half.
        let h = self.ff_in.forward(self.norm3.forward(x.clone()))?;
        let half = h.dims()[2] / 2;
        let [value, gate] = [h.clone().narrow(2, 0, half), h.narrow(2, half, half)];
        Ok(x.add(self.ff_out.forward(value.mul(gelu(gate)))?))
    }
}

/// The projection into and out of a `Transformer2DModel`: a 1x1 conv (SD 1.x) or a linear layer
/// on the flattened pixels (SD 2.x, `use_linear_projection`).
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// `Transformer2DModel` over the pixels of a feature map.
struct SpatialTransformer {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

impl SpatialTransformer {
    fn forward(&self, x: Tensor<4>, ctx: &Context) -> Result<Tensor<4>> {
        let [b, c, h, w] = x.dims();
        let to_rows = |t: Tensor<4>| t.reshape([b, c, h * w]).swap_dims(1, 2);
        let to_map = |t: Tensor<3>| t.swap_dims(1, 2).reshape([b, c, h, w]);
        let y = self.norm.forward(x.clone());
        let mut t = match &self.proj_in {
            Projection::Conv(p) => to_rows(p.forward(y)),
            Projection::Linear(p) => p.forward(to_rows(y))?,
        };
        for block in &self.blocks {
            t = block.forward(t, ctx)?;
        }
        let y = match &self.proj_out {
            Projection::Conv(p) => p.forward(to_map(t)),
            Projection::Linear(p) => to_map(p.forward(t)?),
        };
        Ok(y.add(x))
    }
}

/// A ResNet and, in cross-attention blocks, the transformer after it.
struct Layer {
    resnet: ResnetBlock,
    attention: Option<SpatialTransformer>,
}

impl Layer {
    fn forward(&self, x: Tensor<4>, temb: &Tensor<2>, ctx: &Context) -> Result<Tensor<4>> {
        let x = self.resnet.forward(x, Some(temb))?;
        match &self.attention {
            Some(a) => a.forward(x, ctx),
            None => Ok(x),
        }
    }
}

struct DownBlock {
    layers: Vec<Layer>,
    downsample: Option<Conv2d>,
}

struct UpBlock {
    layers: Vec<Layer>,
    upsample: Option<Conv2d>,
}

struct MidBlock {
    first: ResnetBlock,
    rest: Vec<(SpatialTransformer, ResnetBlock)>,
}

pub struct UNet {
    pub config: UNetConfig,
    /// Bytes its weights take on the device (f32, or quantized blocks for the quantized layers).
    pub weight_bytes: usize,
    time_linear_1: Linear,
    time_linear_2: Linear,
    conv_in: Conv2d,
    down: Vec<DownBlock>,
    mid: Option<MidBlock>,
    up: Vec<UpBlock>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
    device: Device,
}

/// Reads the blocks of one UNet, the config's choices at hand.
struct Builder<'a> {
    l: Loader<'a>,
    c: &'a UNetConfig,
    temb: usize,
}

impl Builder<'_> {
    fn resnet(&self, name: &str, inp: usize, out: usize) -> Result<ResnetBlock> {
        self.l.resnet(name, inp, out, Some(self.temb), self.c.norm_num_groups, self.c.norm_eps)
    }

    fn projection(&self, name: &str, c: usize) -> Result<Projection> {
        Ok(if self.c.use_linear_projection {
            Projection::Linear(self.l.linear(name, c, c, true)?)
        } else {
            Projection::Conv(self.l.conv(name, c, c, 1, 1)?)
        })
    }

    fn transformer(&self, name: &str, c: usize, heads: usize, depth: usize, ctx: usize) -> Result<SpatialTransformer> {
        let n = |s: &str| format!("{name}.{s}");
        // diffusers' BasicTransformerBlock defaults: LayerNorm eps 1e-5, no q/k/v bias, GEGLU 4x.
        let blocks = (0..depth)
            .map(|i| {
                let b = |s: &str| format!("{name}.transformer_blocks.{i}.{s}");
                Ok(TransformerBlock {
                    norm1: self.l.norm(&b("norm1"), c, 1e-5)?,
                    attn1: self.l.attention(&b("attn1"), c, c, heads, false)?,
                    norm2: self.l.norm(&b("norm2"), c, 1e-5)?,
                    attn2: self.l.attention(&b("attn2"), c, ctx, heads, false)?,
                    norm3: self.l.norm(&b("norm3"), c, 1e-5)?,
                    ff_in: self.l.linear(&b("ff.net.0.proj"), 8 * c, c, true)?,
                    ff_out: self.l.linear(&b("ff.net.2"), c, 4 * c, true)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(SpatialTransformer {
            // Transformer2DModel's GroupNorm uses eps 1e-6 whatever the UNet's norm_eps.
            norm: self.l.group_norm(&n("norm"), self.c.norm_num_groups, c, 1e-6)?,
            proj_in: self.projection(&n("proj_in"), c)?,
            blocks,
            proj_out: self.projection(&n("proj_out"), c)?,
        })
    }
}

impl UNet {
    /// From `config.json` and the weights (`file` names them in errors).
    pub fn from_weights(config: UNetConfig, w: &dyn TensorSource, file: &str, device: &Device) -> Result<Self> {
        Self::load(config, Loader::new(w, file, "", device))
    }

    /// [`Self::from_weights`] with the linear layers held at `precision`.
    pub fn with_precision(
        config: UNetConfig,
        w: &dyn TensorSource,
        file: &str,
        device: &PmgDevice,
        precision: Precision,
    ) -> Result<Self> {
        Self::load(config, Loader::with_precision(w, file, "", device, precision))
    }

    fn load(config: UNetConfig, l: Loader<'_>) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let n = c.block_out_channels.len();
        let widths = &c.block_out_channels;
        let layers = c.layers_per_block.per_block("layers_per_block", n)?;
        let depth = c.transformer_layers_per_block.per_block("transformer_layers_per_block", n)?;
        let ctx = c.cross_attention_dim.per_block("cross_attention_dim", n)?;
        let heads = c.heads()?;
        let c0 = widths[0];
        let temb = c.time_embedding_dim.unwrap_or(4 * c0);
        let b = Builder { l, c, temb };
        let l = &b.l;

        let mut down = Vec::with_capacity(n);
        let mut out = c0;
        for (i, kind) in c.down_block_types.iter().enumerate() {
            let (inp, final_block) = (out, i + 1 == n);
            out = widths[i];
            let cross = *kind == DownBlockType::CrossAttnDownBlock2D;
            let layers = (0..layers[i])
                .map(|j| {
                    let name = format!("down_blocks.{i}");
                    Ok(Layer {
                        resnet: b.resnet(&format!("{name}.resnets.{j}"), if j == 0 { inp } else { out }, out)?,
                        attention: cross
                            .then(|| b.transformer(&format!("{name}.attentions.{j}"), out, heads[i], depth[i], ctx[i]))
                            .transpose()?,
                    })
                })
                .collect::<Result<_>>()?;
            let downsample = (!final_block)
                .then(|| l.conv(&format!("down_blocks.{i}.downsamplers.0.conv"), out, out, 3, 2))
                .transpose()?;
            down.push(DownBlock { layers, downsample });
        }

        let last = widths[n - 1];
        let mid = match c.mid_block_type {
            Some(_) => Some(MidBlock {
                first: b.resnet("mid_block.resnets.0", last, last)?,
                rest: vec![(
                    b.transformer("mid_block.attentions.0", last, heads[n - 1], depth[n - 1], ctx[n - 1])?,
                    b.resnet("mid_block.resnets.1", last, last)?,
                )],
            }),
            None => None,
        };

        let mut up = Vec::with_capacity(n);
        let mut out = widths[n - 1];
        for (i, kind) in c.up_block_types.iter().enumerate() {
            let r = n - 1 - i; // the down block this one mirrors
            let prev = out;
            out = widths[r];
            let skip_in = widths[r.saturating_sub(1)];
            let cross = *kind == UpBlockType::CrossAttnUpBlock2D;
            let count = layers[r] + 1;
            let layers = (0..count)
                .map(|j| {
                    let name = format!("up_blocks.{i}");
                    let skip = if j + 1 == count { skip_in } else { out };
                    let inp = if j == 0 { prev } else { out };
                    Ok(Layer {
                        resnet: b.resnet(&format!("{name}.resnets.{j}"), inp + skip, out)?,
                        attention: cross
                            .then(|| b.transformer(&format!("{name}.attentions.{j}"), out, heads[r], depth[r], ctx[r]))
                            .transpose()?,
                    })
                })
                .collect::<Result<_>>()?;
            let upsample =
                (i + 1 < n).then(|| l.conv(&format!("up_blocks.{i}.upsamplers.0.conv"), out, out, 3, 1)).transpose()?;
            up.push(UpBlock { layers, upsample });
        }

        Ok(UNet {
            time_linear_1: l.linear("time_embedding.linear_1", temb, c0, true)?,
            time_linear_2: l.linear("time_embedding.linear_2", temb, temb, true)?,
            conv_in: l.conv("conv_in", c0, c.in_channels, c.conv_in_kernel, 1)?,
            down,
            mid,
            up,
            norm_out: l.group_norm("conv_norm_out", c.norm_num_groups, c0, c.norm_eps)?,
            conv_out: l.conv("conv_out", c.out_channels, c0, c.conv_out_kernel, 1)?,
            weight_bytes: l.held.get(),
            device: b.l.device.clone(),
            config,
        })
    }

    /// The sinusoidal embedding of `timesteps` (diffusers' `get_timestep_embedding`: frequencies
    /// `exp(-ln(10000) i / (half - freq_shift))`, `[sin, cos]` or, flipped, `[cos, sin]`), `[b, c0]`.
    fn timestep_features(&self, timesteps: &[f64]) -> Tensor<2> {
        let c = &self.config;
        let half = c.block_out_channels[0] / 2;
        let mut rows = Vec::with_capacity(timesteps.len() * 2 * half);
        for &t in timesteps {
            // diffusers computes in float32: exponent, frequency and angle each rounded.
            let angle = |i: usize| {
                let exponent = -(10000f32.ln()) * i as f32 / (half as f32 - c.freq_shift as f32);
                t as f32 * exponent.exp()
            };
            let (sin, cos): (Vec<f32>, Vec<f32>) = (0..half).map(|i| angle(i).sin_cos()).unzip();
            let (first, second) = if c.flip_sin_to_cos { (cos, sin) } else { (sin, cos) };
            rows.extend(first);
            rows.extend(second);
        }
        Tensor::from_data(TensorData::new(rows, [timesteps.len(), 2 * half]), &self.device)
    }

    /// The model output (noise, v or sample, as the checkpoint was trained) for latents `x`
    /// `[b, in_channels, h, w]` at `timesteps` (one per latent) attending to text states `ctx`
    /// `[b, len, context width]` (`mask` `[b, len]`: true at padding rows, left out of the
    /// cross-attention). `h` and `w` must be multiples of `1 << downsamplings()`.
    pub fn forward(
        &self,
        x: Tensor<4>,
        timesteps: &[f64],
        ctx: &Tensor<3>,
        mask: Option<&Tensor<2, Bool>>,
    ) -> Result<Tensor<4>> {
        let c = &self.config;
        let [b, ch, h, w] = x.dims();
        let [cb, cl, cw] = ctx.dims();
        if mask.is_some_and(|m| m.dims() != [b, cl]) {
            return Err(Error::InvalidArgument(format!(
                "a cross-attention mask {:?} for {:?}",
                mask.map(|m| m.dims()),
                ctx.dims()
            )));
        }
        let m = 1 << c.downsamplings();
        if ch != c.in_channels
            || timesteps.len() != b
            || cb != b
            || cw != c.context_width()
            || h == 0
            || w == 0
            || !h.is_multiple_of(m)
            || !w.is_multiple_of(m)
        {
            return Err(Error::InvalidArgument(format!(
                "UNet input: latents {:?} (channels {}, sides multiples of {m}), {} timesteps, text states {:?} (width {})",
                x.dims(),
                c.in_channels,
                timesteps.len(),
                ctx.dims(),
                c.context_width()
            )));
        }
        let ctx = &(ctx, mask);
        let temb = self.timestep_features(timesteps);
        let temb = self.time_linear_2.forward(silu(self.time_linear_1.forward(temb)?))?;

        let mut x = self.conv_in.forward(x);
        let mut skips = vec![x.clone()];
        for block in &self.down {
            for layer in &block.layers {
                x = layer.forward(x, &temb, ctx)?;
                skips.push(x.clone());
            }
            if let Some(d) = &block.downsample {
                x = d.forward(x);
                skips.push(x.clone());
            }
        }
        if let Some(mid) = &self.mid {
            x = mid.first.forward(x, Some(&temb))?;
            for (attention, resnet) in &mid.rest {
                x = resnet.forward(attention.forward(x, ctx)?, Some(&temb))?;
            }
        }
        for block in &self.up {
            for layer in &block.layers {
                let skip = skips.pop().expect("one skip per up-block layer, by construction");
                x = layer.forward(Tensor::cat(vec![x, skip], 1), &temb, ctx)?;
            }
            if let Some(u) = &block.upsample {
                x = u.forward(upsample2(x));
            }
        }
        Ok(self.conv_out.forward(silu(self.norm_out.forward(x))))
    }
}
