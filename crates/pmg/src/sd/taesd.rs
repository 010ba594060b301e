//! diffusers' `AutoencoderTiny` (TAESD, a small distilled stand-in for the SD VAE; issue 21): the
//! structure of `EncoderTiny`/`DecoderTiny` in diffusers' `models/autoencoders/vae.py` and
//! `AutoencoderTinyBlock` in `models/unets/unet_2d_blocks.py`, sizes from its `config.json`, weights
//! by diffusers' names (`encoder.layers.{i}.*`, `decoder.layers.{i}.*`, indices of an
//! `nn.Sequential` in which activations and upsamplers take an index too). `tests/vae.rs` matches
//! diffusers' outputs on a tiny random checkpoint.
//!
//! The contract is [`super::vae::AutoencoderKl`]'s, so a pipeline can swap one for the other:
//! [`AutoencoderTiny::decode`] takes the denoiser's latents (`z / scaling_factor + shift_factor`,
//! the identity for TAESD, which is trained on SD's scaled latents) and returns images in about
//! [-1, 1]; [`AutoencoderTiny::encode`] takes images in [-1, 1] and returns the denoiser's latents.
//! (`latent_magnitude`/`latent_shift` only serve diffusers' 8-bit round trip in `forward`.)

use burn::tensor::activation::{gelu, relu, silu};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::nn::{Conv2d, Loader};
use crate::error::{Error, Result};
use crate::tensor_io::TensorSource;

/// The keys of an `AutoencoderTiny` `config.json` this model reads (others ignored); a missing key
/// takes diffusers' default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AutoencoderTinyConfig {
    #[serde(default = "three")]
    pub in_channels: usize,
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default = "widths")]
    pub encoder_block_out_channels: Vec<usize>,
    #[serde(default = "widths")]
    pub decoder_block_out_channels: Vec<usize>,
    #[serde(default = "relu_name")]
    pub act_fn: String,
    #[serde(default = "nearest")]
    pub upsample_fn: String,
    #[serde(default = "four")]
    pub latent_channels: usize,
    #[serde(default = "two")]
    pub upsampling_scaling_factor: usize,
    #[serde(default = "encoder_blocks")]
    pub num_encoder_blocks: Vec<usize>,
    #[serde(default = "decoder_blocks")]
    pub num_decoder_blocks: Vec<usize>,
    #[serde(default = "one")]
    pub scaling_factor: f64,
    #[serde(default)]
    pub shift_factor: Option<f64>,
}

fn three() -> usize {
    3
}
fn four() -> usize {
    4
}
fn two() -> usize {
    2
}
fn one() -> f64 {
    1.0
}
fn widths() -> Vec<usize> {
    vec![64; 4]
}
fn encoder_blocks() -> Vec<usize> {
    vec![1, 3, 3, 3]
}
fn decoder_blocks() -> Vec<usize> {
    vec![3, 3, 3, 1]
}
fn relu_name() -> String {
    "relu".into()
}
fn nearest() -> String {
    "nearest".into()
}

/// diffusers' `get_activation` names this model accepts.
#[derive(Debug, Clone, Copy)]
enum Act {
    Relu,
    Silu,
    Gelu,
}

impl Act {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "relu" => Some(Act::Relu),
            "silu" | "swish" => Some(Act::Silu),
            "gelu" => Some(Act::Gelu),
            _ => None,
        }
    }

    fn apply(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Act::Relu => relu(x),
            Act::Silu => silu(x),
            Act::Gelu => gelu(x),
        }
    }
}

impl AutoencoderTinyConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("config.json: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        let c = self;
        let bad = |what: String| Err(Error::InvalidArgument(format!("config.json: AutoencoderTiny {what}")));
        for (side, widths, blocks) in [
            ("encoder", &c.encoder_block_out_channels, &c.num_encoder_blocks),
            ("decoder", &c.decoder_block_out_channels, &c.num_decoder_blocks),
        ] {
            // diffusers builds every layer of a stage, the stride-2 convolution included, on the
            // stage's own width, so it only runs when all stages are equally wide.
            let sane = (1..=8).contains(&widths.len())
                && blocks.len() == widths.len()
                && (1..=4096).contains(&widths[0])
                && widths.iter().all(|&w| w == widths[0])
                && blocks.iter().all(|&n| n <= 64);
            if !sane {
                return bad(format!("{side} widths {widths:?} and blocks {blocks:?} (1..=8 stages of one width)"));
            }
        }
        let sizes = [c.in_channels, c.out_channels, c.latent_channels];
        if sizes.iter().any(|s| !(1..=64).contains(s)) || !(1..=8).contains(&c.upsampling_scaling_factor) {
            return bad(format!("channels {sizes:?} (1..=64), upsampling factor {}", c.upsampling_scaling_factor));
        }
        if Act::parse(&c.act_fn).is_none() || c.upsample_fn != "nearest" {
            return bad(format!(
                "act_fn {:?} / upsample_fn {:?} (relu, silu or gelu / nearest)",
                c.act_fn, c.upsample_fn
            ));
        }
        let shift = c.shift_factor.unwrap_or(0.0);
        if !(c.scaling_factor.is_finite() && c.scaling_factor > 0.0 && shift.is_finite()) {
            return bad(format!("scaling_factor {} and shift_factor {shift}", c.scaling_factor));
        }
        Ok(())
    }

    /// How many image pixels one latent spans per side in the encoder (a stride-2 convolution per
    /// stage after the first).
    pub fn downscale(&self) -> usize {
        1 << (self.encoder_block_out_channels.len() - 1)
    }

    /// The decoder's magnification per side.
    pub fn upscale(&self) -> usize {
        self.upsampling_scaling_factor.pow(self.decoder_block_out_channels.len() as u32 - 1)
    }
}

/// `AutoencoderTinyBlock` of equal widths: three 3x3 convolutions with the activation between,
/// plus the input (an identity skip), then ReLU.
struct Block {
    convs: [Conv2d; 3],
}

impl Block {
    fn load(l: &Loader<'_>, name: &str, c: usize) -> Result<Self> {
        let conv = |i: usize| l.conv(&format!("{name}.conv.{i}"), c, c, 3, 1);
        Ok(Block { convs: [conv(0)?, conv(2)?, conv(4)?] })
    }

    fn forward(&self, x: Tensor<4>, act: Act) -> Tensor<4> {
        let [a, b, c] = &self.convs;
        let h = c.forward(act.apply(b.forward(act.apply(a.forward(x.clone())))));
        relu(h.add(x))
    }
}

/// A 3x3 convolution with padding 1 and no bias.
fn conv_no_bias(l: &Loader<'_>, name: &str, out: usize, inp: usize, stride: usize) -> Result<Conv2d> {
    let shape = [out, inp, 3, 3];
    let w = Tensor::from_data(TensorData::new(l.get(&format!("{name}.weight"), &shape)?, shape), l.device);
    Ok(Conv2d { w, b: None, stride, pad: 1 })
}

/// Nearest-neighbour upsampling by an integer factor (torch's `nn.Upsample(mode="nearest")`).
fn upsample(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b * c, h, 1, w, 1]).repeat_dim(2, f).repeat_dim(4, f).reshape([b, c, h * f, w * f])
}

/// An encoder stage: a convolution (the first with bias, the others stride 2 without), blocks.
struct EncoderStage {
    conv: Conv2d,
    blocks: Vec<Block>,
}

/// A decoder stage: blocks, an upsampling (all but the last), a convolution (bias only in the last).
struct DecoderStage {
    blocks: Vec<Block>,
    upsample: bool,
    conv: Conv2d,
}

pub struct AutoencoderTiny {
    pub config: AutoencoderTinyConfig,
    act: Act,
    // Boxed, as `AutoencoderKl`'s, so that either is cheap to move.
    parts: Box<Parts>,
}

struct Parts {
    encoder: Vec<EncoderStage>,
    encoder_out: Conv2d,
    decoder_in: Conv2d,
    decoder: Vec<DecoderStage>,
}

impl AutoencoderTiny {
    /// Decoder and encoder from `config.json` and the weights (`file` names them in errors).
    pub fn from_weights(
        config: AutoencoderTinyConfig,
        w: &dyn TensorSource,
        file: &str,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let l = &Loader::new(w, file, "", device);
        let c = &config;
        let blocks = |side: &str, first: usize, n: usize, width: usize| -> Result<Vec<Block>> {
            (0..n).map(|j| Block::load(l, &format!("{side}.layers.{}", first + j), width)).collect()
        };
        // EncoderTiny: conv (with bias), blocks; then per stage a stride-2 conv without bias and
        // blocks; a final conv to the latent channels.
        let mut i = 0;
        let mut encoder = Vec::new();
        for (s, (&width, &n)) in c.encoder_block_out_channels.iter().zip(&c.num_encoder_blocks).enumerate() {
            let name = format!("encoder.layers.{i}");
            let conv = if s == 0 {
                l.conv(&name, width, c.in_channels, 3, 1)?
            } else {
                conv_no_bias(l, &name, width, width, 2)?
            };
            encoder.push(EncoderStage { conv, blocks: blocks("encoder", i + 1, n, width)? });
            i += 1 + n;
        }
        let width = c.encoder_block_out_channels[0];
        let encoder_out = l.conv(&format!("encoder.layers.{i}"), c.latent_channels, width, 3, 1)?;
        // DecoderTiny: conv (with bias), activation; then per stage blocks, an upsampling (not after
        // the last) and a conv, without bias except the last one, to the image's channels.
        let width = c.decoder_block_out_channels[0];
        let decoder_in = l.conv("decoder.layers.0", width, c.latent_channels, 3, 1)?;
        let mut i = 2;
        let mut decoder = Vec::new();
        let stages = c.num_decoder_blocks.len();
        for (s, &n) in c.num_decoder_blocks.iter().enumerate() {
            let block_list = blocks("decoder", i, n, width)?;
            let upsample = s + 1 < stages;
            i += n + usize::from(upsample);
            let name = format!("decoder.layers.{i}");
            let conv = if upsample {
                conv_no_bias(l, &name, width, width, 1)?
            } else {
                l.conv(&name, c.out_channels, width, 3, 1)?
            };
            decoder.push(DecoderStage { blocks: block_list, upsample, conv });
            i += 1;
        }
        let act = Act::parse(&c.act_fn).unwrap_or(Act::Relu);
        Ok(AutoencoderTiny { act, parts: Box::new(Parts { encoder, encoder_out, decoder_in, decoder }), config })
    }

    /// The denoiser's latents `[b, latent_channels, h, w]` to images
    /// `[b, out_channels, h * f, w * f]` (`f` = [`AutoencoderTinyConfig::upscale`]) in about [-1, 1].
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        let c = &self.config;
        let [b, ch, h, w] = latents.dims();
        if b == 0 || h == 0 || w == 0 || ch != c.latent_channels {
            return Err(Error::InvalidArgument(format!(
                "TAESD decode: latents {:?}, want [b, {}, h, w]",
                [b, ch, h, w],
                c.latent_channels
            )));
        }
        let act = self.act;
        let z = latents.div_scalar(c.scaling_factor).add_scalar(c.shift_factor.unwrap_or(0.0));
        // DecoderTiny's soft clamp of the latents to (-3, 3).
        let mut x = act.apply(self.parts.decoder_in.forward(z.div_scalar(3.0).tanh().mul_scalar(3.0)));
        for s in &self.parts.decoder {
            for blk in &s.blocks {
                x = blk.forward(x, act);
            }
            if s.upsample {
                x = upsample(x, c.upsampling_scaling_factor);
            }
            x = s.conv.forward(x);
        }
        // TAESD works in [0, 1]; diffusers' images are in [-1, 1].
        Ok(x.mul_scalar(2.0).sub_scalar(1.0))
    }

    /// Images `[b, in_channels, H, W]` in [-1, 1] (`H`, `W` multiples of
    /// [`AutoencoderTinyConfig::downscale`]) to the denoiser's latents.
    pub fn encode(&self, images: Tensor<4>) -> Result<Tensor<4>> {
        let c = &self.config;
        let [b, ch, h, w] = images.dims();
        let f = c.downscale();
        if b == 0 || h == 0 || w == 0 || ch != c.in_channels || !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            return Err(Error::InvalidArgument(format!(
                "TAESD encode: images {:?}, want [b, {}, h, w] with h and w multiples of {f}",
                [b, ch, h, w],
                c.in_channels
            )));
        }
        let act = self.act;
        let mut x = images.add_scalar(1.0).div_scalar(2.0);
        for s in &self.parts.encoder {
            x = s.conv.forward(x);
            for blk in &s.blocks {
                x = blk.forward(x, act);
            }
        }
        let raw = self.parts.encoder_out.forward(x);
        Ok(raw.sub_scalar(c.shift_factor.unwrap_or(0.0)).mul_scalar(c.scaling_factor))
    }
}
