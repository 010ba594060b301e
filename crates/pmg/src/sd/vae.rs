//! diffusers' `AutoencoderKL`, the SD family's VAE (issue 21): decoder and encoder with the
//! structure of diffusers' `models/autoencoders/vae.py` (`Encoder`, `Decoder`) and
//! `autoencoder_kl.py` (the 1x1 `quant_conv` / `post_quant_conv`), sizes from its `config.json`,
//! weights by diffusers' names (the pre-0.14 attention names `query`/`key`/`value`/`proj_attn` too).
//! `tests/vae.rs` matches diffusers' outputs on a tiny random checkpoint.
//!
//! The contract, the one SD pipelines follow, so that only this type knows the latent scaling:
//! [`AutoencoderKl::decode`] takes the denoiser's latents and undoes the scaling itself
//! (`z / scaling_factor + shift_factor`; SDXL-style `z * latents_std / scaling_factor + latents_mean`
//! when the config has per-channel statistics), and returns images in about [-1, 1], unclamped, as
//! diffusers does; [`AutoencoderKl::encode`] takes images in [-1, 1] and returns the posterior mean
//! in the denoiser's space (the inverse map).

use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::nn::{Conv2d, GroupNorm, Linear, Loader, ResnetBlock, attend};
use crate::diffusion::nn::upsample2;
use crate::error::{Error, Result};
use crate::tensor_io::TensorSource;

/// diffusers' eps for every GroupNorm of the VAE (`Encoder`/`Decoder` pass `resnet_eps=1e-6`).
const EPS: f64 = 1e-6;

/// The keys of an `AutoencoderKL` `config.json` this model reads (others, such as `sample_size` and
/// `force_upcast`, are ignored); a missing key takes diffusers' default, as `from_pretrained` does
/// (SD 1.x's early configs have no `scaling_factor`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AutoencoderKlConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default = "down_types")]
    pub down_block_types: Vec<String>,
    #[serde(default = "up_types")]
    pub up_block_types: Vec<String>,
    #[serde(default = "widths")]
    pub block_out_channels: Vec<usize>,
    #[serde(default = "one")]
    pub layers_per_block: usize,
    #[serde(default = "silu_name")]
    pub act_fn: String,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "thirty_two")]
    pub norm_num_groups: usize,
    #[serde(default = "sd_scaling")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// Per-channel statistics of the raw latents (SDXL pipelines' convention); when both are
    /// present they take the place of `shift_factor`, as in diffusers' SDXL pipelines.
    #[serde(default)]
    pub latents_mean: Option<Vec<f64>>,
    #[serde(default)]
    pub latents_std: Option<Vec<f64>>,
    #[serde(default = "yes")]
    pub use_quant_conv: bool,
    #[serde(default = "yes")]
    pub use_post_quant_conv: bool,
    #[serde(default = "yes")]
    pub mid_block_add_attention: bool,
}

fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn one() -> usize {
    1
}
fn thirty_two() -> usize {
    32
}
fn yes() -> bool {
    true
}
fn widths() -> Vec<usize> {
    vec![64]
}
fn down_types() -> Vec<String> {
    vec![DOWN.into()]
}
fn up_types() -> Vec<String> {
    vec![UP.into()]
}
fn silu_name() -> String {
    "silu".into()
}
fn sd_scaling() -> f64 {
    0.18215
}

const DOWN: &str = "DownEncoderBlock2D";
const UP: &str = "UpDecoderBlock2D";

impl AutoencoderKlConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("config.json: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        let c = self;
        let bad = |what: String| Err(Error::InvalidArgument(format!("config.json: AutoencoderKL {what}")));
        let n = c.block_out_channels.len();
        if !(1..=8).contains(&n) || c.down_block_types.len() != n || c.up_block_types.len() != n {
            return bad(format!(
                "has {n} block widths, {} down and {} up block types (1..=8, all equal)",
                c.down_block_types.len(),
                c.up_block_types.len()
            ));
        }
        if let Some(t) = c.down_block_types.iter().find(|t| *t != DOWN).or(c.up_block_types.iter().find(|t| *t != UP)) {
            return bad(format!("block type {t:?} (only {DOWN} and {UP})"));
        }
        if !matches!(c.act_fn.as_str(), "silu" | "swish") {
            return bad(format!("act_fn {:?} (only silu)", c.act_fn));
        }
        let g = c.norm_num_groups;
        if g == 0 || c.block_out_channels.iter().any(|&w| !(1..=4096).contains(&w) || !w.is_multiple_of(g)) {
            return bad(format!("widths {:?} in {g} norm groups", c.block_out_channels));
        }
        let sizes = [c.in_channels, c.out_channels, c.latent_channels];
        if sizes.iter().any(|s| !(1..=64).contains(s)) || !(1..=16).contains(&c.layers_per_block) {
            return bad(format!("channels {sizes:?} (1..=64), layers_per_block {} (1..=16)", c.layers_per_block));
        }
        let shift = c.shift_factor.unwrap_or(0.0);
        if !(c.scaling_factor.is_finite() && c.scaling_factor > 0.0 && shift.is_finite()) {
            return bad(format!("scaling_factor {} and shift_factor {shift}", c.scaling_factor));
        }
        let stats_ok = |v: &Option<Vec<f64>>, positive: bool| {
            v.as_ref().is_none_or(|v| {
                v.len() == c.latent_channels && v.iter().all(|x| x.is_finite() && (!positive || *x > 0.0))
            })
        };
        if !(stats_ok(&c.latents_mean, false) && stats_ok(&c.latents_std, true)) {
            return bad(format!(
                "latents_mean {:?} and latents_std {:?} for {} channels",
                c.latents_mean, c.latents_std, c.latent_channels
            ));
        }
        Ok(())
    }

    /// How many image pixels one latent spans per side: 2 per downsampling block.
    pub fn downscale(&self) -> usize {
        1 << (self.block_out_channels.len() - 1)
    }

    /// The per-channel affine map from the denoiser's latents to the decoder's: `raw = z * a + b`.
    fn latent_map(&self) -> (Vec<f32>, Vec<f32>) {
        let c = self.latent_channels;
        let sf = self.scaling_factor;
        match (&self.latents_mean, &self.latents_std) {
            (Some(m), Some(s)) => (s.iter().map(|s| (s / sf) as f32).collect(), m.iter().map(|&m| m as f32).collect()),
            _ => (vec![(1.0 / sf) as f32; c], vec![self.shift_factor.unwrap_or(0.0) as f32; c]),
        }
    }
}

/// The mid block's self-attention (diffusers' `Attention` built with `_from_deprecated_attn_block`):
/// GroupNorm, one head as wide as the channels over all positions, a residual connection.
struct AttnBlock {
    norm: GroupNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
}

impl AttnBlock {
    fn load(l: &Loader<'_>, name: &str, c: usize, groups: usize) -> Result<Self> {
        // Checkpoints saved before diffusers 0.14 (many SD 1.x VAEs) keep the old names.
        let legacy = !l.has(&format!("{name}.to_q.weight")) && l.has(&format!("{name}.query.weight"));
        let names = if legacy { ["query", "key", "value", "proj_attn"] } else { ["to_q", "to_k", "to_v", "to_out.0"] };
        let lin = |i: usize| l.linear(&format!("{name}.{}", names[i]), c, c, true);
        Ok(AttnBlock {
            norm: l.group_norm(&format!("{name}.group_norm"), groups, c, EPS)?,
            q: lin(0)?,
            k: lin(1)?,
            v: lin(2)?,
            out: lin(3)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        let [b, c, h, w] = x.dims();
        let t = self.norm.forward(x.clone()).reshape([b, c, h * w]).swap_dims(1, 2);
        let (q, k, v) = (self.q.forward(t.clone())?, self.k.forward(t.clone())?, self.v.forward(t)?);
        let y = self.out.forward(attend(q, k, v, 1, None))?;
        Ok(x.add(y.swap_dims(1, 2).reshape([b, c, h, w])))
    }
}

/// diffusers' `UNetMidBlock2D` as the VAE builds it: resnet, attention (optional), resnet.
struct MidBlock {
    first: ResnetBlock,
    attn: Option<AttnBlock>,
    second: ResnetBlock,
}

impl MidBlock {
    fn load(l: &Loader<'_>, name: &str, c: usize, groups: usize, attention: bool) -> Result<Self> {
        let res = |i: usize| l.resnet(&format!("{name}.resnets.{i}"), c, c, None, groups, EPS);
        Ok(MidBlock {
            first: res(0)?,
            attn: attention.then(|| AttnBlock::load(l, &format!("{name}.attentions.0"), c, groups)).transpose()?,
            second: res(1)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        let mut x = self.first.forward(x, None)?;
        if let Some(a) = &self.attn {
            x = a.forward(x)?;
        }
        self.second.forward(x, None)
    }
}

/// `n` resnets `inp` -> `out` (then `out` -> `out`), `name.resnets.{j}`.
fn resnets(l: &Loader<'_>, name: &str, n: usize, inp: usize, out: usize, groups: usize) -> Result<Vec<ResnetBlock>> {
    (0..n)
        .map(|j| l.resnet(&format!("{name}.resnets.{j}"), if j == 0 { inp } else { out }, out, None, groups, EPS))
        .collect()
}

/// One `DownEncoderBlock2D` / `UpDecoderBlock2D`: resnets, then the resampling convolution.
struct Stage {
    resnets: Vec<ResnetBlock>,
    resample: Option<Conv2d>,
}

/// diffusers' `Encoder` (with `double_z`): images to the posterior's mean and log-variance.
struct Encoder {
    conv_in: Conv2d,
    down: Vec<Stage>,
    mid: MidBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn load(c: &AutoencoderKlConfig, l: &Loader<'_>) -> Result<Self> {
        let (b, g, n) = (&c.block_out_channels, c.norm_num_groups, c.block_out_channels.len());
        let last = b[n - 1];
        let down = (0..n)
            .map(|i| {
                let name = format!("encoder.down_blocks.{i}");
                let inp = if i == 0 { b[0] } else { b[i - 1] };
                let resample = if i + 1 < n {
                    // `Downsample2D` with `padding=0`: zero-pads right and bottom by one itself,
                    // then a stride-2 3x3 convolution without padding.
                    let mut conv = l.conv(&format!("{name}.downsamplers.0.conv"), b[i], b[i], 3, 2)?;
                    conv.pad = 0;
                    Some(conv)
                } else {
                    None
                };
                Ok(Stage { resnets: resnets(l, &name, c.layers_per_block, inp, b[i], g)?, resample })
            })
            .collect::<Result<_>>()?;
        Ok(Encoder {
            conv_in: l.conv("encoder.conv_in", b[0], c.in_channels, 3, 1)?,
            down,
            mid: MidBlock::load(l, "encoder.mid_block", last, g, c.mid_block_add_attention)?,
            norm_out: l.group_norm("encoder.conv_norm_out", g, last, EPS)?,
            conv_out: l.conv("encoder.conv_out", 2 * c.latent_channels, last, 3, 1)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        let mut x = self.conv_in.forward(x);
        for s in &self.down {
            for r in &s.resnets {
                x = r.forward(x, None)?;
            }
            if let Some(conv) = &s.resample {
                x = conv.forward(x.pad((0, 1, 0, 1), 0.0));
            }
        }
        let x = self.mid.forward(x)?;
        Ok(self.conv_out.forward(silu(self.norm_out.forward(x))))
    }
}

/// diffusers' `Decoder` (GroupNorm variant): latents to images.
struct Decoder {
    conv_in: Conv2d,
    mid: MidBlock,
    up: Vec<Stage>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn load(c: &AutoencoderKlConfig, l: &Loader<'_>) -> Result<Self> {
        let (g, n) = (c.norm_num_groups, c.block_out_channels.len());
        let rev: Vec<usize> = c.block_out_channels.iter().rev().copied().collect();
        let up = (0..n)
            .map(|i| {
                let name = format!("decoder.up_blocks.{i}");
                let inp = if i == 0 { rev[0] } else { rev[i - 1] };
                let resample = (i + 1 < n)
                    .then(|| l.conv(&format!("{name}.upsamplers.0.conv"), rev[i], rev[i], 3, 1))
                    .transpose()?;
                // One more resnet per block than the encoder has (diffusers' `layers_per_block + 1`).
                Ok(Stage { resnets: resnets(l, &name, c.layers_per_block + 1, inp, rev[i], g)?, resample })
            })
            .collect::<Result<_>>()?;
        let first = c.block_out_channels[0];
        Ok(Decoder {
            conv_in: l.conv("decoder.conv_in", rev[0], c.latent_channels, 3, 1)?,
            mid: MidBlock::load(l, "decoder.mid_block", rev[0], g, c.mid_block_add_attention)?,
            up,
            norm_out: l.group_norm("decoder.conv_norm_out", g, first, EPS)?,
            conv_out: l.conv("decoder.conv_out", c.out_channels, first, 3, 1)?,
        })
    }

    fn forward(&self, z: Tensor<4>) -> Result<Tensor<4>> {
        let mut x = self.mid.forward(self.conv_in.forward(z))?;
        for s in &self.up {
            for r in &s.resnets {
                x = r.forward(x, None)?;
            }
            if let Some(conv) = &s.resample {
                // `Upsample2D`: nearest-neighbour 2x, then a 3x3 convolution.
                x = conv.forward(upsample2(x));
            }
        }
        Ok(self.conv_out.forward(silu(self.norm_out.forward(x))))
    }
}

/// The encoder's diagonal Gaussian posterior in the VAE's raw latent space (before any scaling):
/// `[b, latent_channels, h / downscale, w / downscale]` each. A sample is
/// `mean + exp(logvar / 2) * noise`; [`AutoencoderKl::latents_from_raw`] takes it to the denoiser.
pub struct LatentDist {
    pub mean: Tensor<4>,
    /// Clamped to [-30, 20], as diffusers' `DiagonalGaussianDistribution` does.
    pub logvar: Tensor<4>,
}

pub struct AutoencoderKl {
    pub config: AutoencoderKlConfig,
    // Boxed: burn's tensors are large handles and the blocks hold dozens inline (~60 KB), so the
    // type stays cheap to move (and to put in an enum beside `AutoencoderTiny`).
    parts: Box<Parts>,
}

struct Parts {
    /// `None` when loaded with [`AutoencoderKl::decoder_from_weights`].
    encoder: Option<Encoder>,
    quant_conv: Option<Conv2d>,
    decoder: Decoder,
    post_quant_conv: Option<Conv2d>,
    /// The per-channel map `raw = z * scale + offset`, `[1, latent_channels, 1, 1]` each.
    scale: Tensor<4>,
    offset: Tensor<4>,
}

impl AutoencoderKl {
    /// Decoder and encoder from `config.json` and the weights (`file` names them in errors).
    pub fn from_weights(
        config: AutoencoderKlConfig,
        w: &dyn TensorSource,
        file: &str,
        device: &Device,
    ) -> Result<Self> {
        Self::load(config, &Loader::new(w, file, "", device), true)
    }

    /// The decoder alone (text-to-image needs no encoder; it is about 40% of the weights).
    pub fn decoder_from_weights(
        config: AutoencoderKlConfig,
        w: &dyn TensorSource,
        file: &str,
        device: &Device,
    ) -> Result<Self> {
        Self::load(config, &Loader::new(w, file, "", device), false)
    }

    fn load(config: AutoencoderKlConfig, l: &Loader<'_>, with_encoder: bool) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let lc = c.latent_channels;
        let (scale, offset) = c.latent_map();
        let per_channel = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [1, lc, 1, 1]), l.device);
        let parts = Parts {
            encoder: with_encoder.then(|| Encoder::load(c, l)).transpose()?,
            quant_conv: (with_encoder && c.use_quant_conv)
                .then(|| l.conv("quant_conv", 2 * lc, 2 * lc, 1, 1))
                .transpose()?,
            decoder: Decoder::load(c, l)?,
            post_quant_conv: c.use_post_quant_conv.then(|| l.conv("post_quant_conv", lc, lc, 1, 1)).transpose()?,
            scale: per_channel(scale),
            offset: per_channel(offset),
        };
        Ok(AutoencoderKl { parts: Box::new(parts), config })
    }

    /// The denoiser's latents `[b, latent_channels, h, w]` to images `[b, out_channels, h * f, w * f]`
    /// (`f` = [`AutoencoderKlConfig::downscale`]) in about [-1, 1], not clamped.
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        let z = self.raw_from_latents(latents)?;
        let z = match &self.parts.post_quant_conv {
            Some(p) => p.forward(z),
            None => z,
        };
        self.parts.decoder.forward(z)
    }

    /// Images `[b, in_channels, H, W]` in [-1, 1] (`H`, `W` multiples of
    /// [`AutoencoderKlConfig::downscale`]) to the posterior's mean in the denoiser's space.
    pub fn encode(&self, images: Tensor<4>) -> Result<Tensor<4>> {
        self.latents_from_raw(self.encode_dist(images)?.mean)
    }

    /// The posterior in the raw latent space (for a sampled rather than the mean latent).
    pub fn encode_dist(&self, images: Tensor<4>) -> Result<LatentDist> {
        let Some(encoder) = &self.parts.encoder else {
            return Err(Error::InvalidArgument("VAE encode: this autoencoder was loaded without its encoder".into()));
        };
        let [b, c, h, w] = images.dims();
        let f = self.config.downscale();
        if b == 0 || h == 0 || w == 0 || c != self.config.in_channels || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            return Err(Error::InvalidArgument(format!(
                "VAE encode: images {:?}, want [b, {}, h, w] with h and w multiples of {f}",
                [b, c, h, w],
                self.config.in_channels
            )));
        }
        let moments = encoder.forward(images)?;
        let moments = match &self.parts.quant_conv {
            Some(q) => q.forward(moments),
            None => moments,
        };
        let lc = self.config.latent_channels;
        let mean = moments.clone().narrow(1, 0, lc);
        let logvar = moments.narrow(1, lc, lc).clamp(-30.0, 20.0);
        Ok(LatentDist { mean, logvar })
    }

    /// Raw latents (the encoder's) to the denoiser's: `(raw - shift) * scaling_factor`, or per channel.
    pub fn latents_from_raw(&self, raw: Tensor<4>) -> Result<Tensor<4>> {
        self.check_latents("raw latents", &raw)?;
        Ok(raw.sub(self.parts.offset.clone()).div(self.parts.scale.clone()))
    }

    /// The denoiser's latents to raw ones (the decoder's): `z / scaling_factor + shift`, or per channel.
    pub fn raw_from_latents(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        self.check_latents("latents", &latents)?;
        Ok(latents.mul(self.parts.scale.clone()).add(self.parts.offset.clone()))
    }

    fn check_latents(&self, what: &str, t: &Tensor<4>) -> Result<()> {
        let [b, c, h, w] = t.dims();
        if b == 0 || h == 0 || w == 0 || c != self.config.latent_channels {
            return Err(Error::InvalidArgument(format!(
                "VAE: {what} {:?}, want [b, {}, h, w]",
                [b, c, h, w],
                self.config.latent_channels
            )));
        }
        Ok(())
    }
}
