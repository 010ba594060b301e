//! The image autoencoder: 64x64 RGBA <-> 4x16x16 latent (16x fewer values).
//!
//! Both halves work at 16x16: the encoder starts with a 4x4 pixel unshuffle (64 channels), the
//! decoder ends with a 4x4 pixel shuffle and a small 3x3 refinement at full resolution, so almost
//! all compute runs on 256 positions. That keeps training within the CPU recipe's budget; emoji
//! are flat-shaded, which a 4x4-patch latent represents well.

use burn::module::Module;
use burn::nn::GroupNorm;
use burn::nn::conv::Conv2d;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

use super::nn::{ResBlock, conv3, depth_to_space, group_norm, space_to_depth};
use crate::error::{Error, Result};
use crate::tensor_io::{Weights, load_module};

/// Sizes of the autoencoder; written into the weight file's metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AutoencoderConfig {
    pub image_channels: usize,
    pub latent_channels: usize,
    pub width: usize,
    /// Pixel (un)shuffle factor: image side / latent side.
    pub factor: usize,
}

impl Default for AutoencoderConfig {
    fn default() -> Self {
        AutoencoderConfig { image_channels: 4, latent_channels: 4, width: 96, factor: 4 }
    }
}

#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    res: Vec<ResBlock>,
    norm: GroupNorm,
    conv_out: Conv2d,
    factor: usize,
}

#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    res: Vec<ResBlock>,
    norm: GroupNorm,
    conv_out: Conv2d,
    refine1: Conv2d,
    refine2: Conv2d,
    factor: usize,
}

#[derive(Module, Debug)]
pub struct Autoencoder {
    pub encoder: Encoder,
    pub decoder: Decoder,
}

impl AutoencoderConfig {
    pub fn init(&self, dev: &Device) -> Autoencoder {
        Autoencoder { encoder: self.init_encoder(dev), decoder: self.init_decoder(dev) }
    }

    /// The config and `latent_scale` of an autoencoder file (`file` names it in errors).
    pub fn from_weights(w: &Weights, file: &str) -> Result<(Self, f32)> {
        let config: Self = w.config(file)?;
        let scale = w.meta("latent_scale").and_then(|s| s.parse::<f32>().ok()).filter(|s| s.is_finite() && *s > 0.0);
        let scale = scale
            .ok_or_else(|| Error::Weights { file: file.into(), problem: "no valid `latent_scale` metadata".into() })?;
        Ok((config, scale))
    }

    /// The encoder half (`encoder.*`) of an autoencoder file.
    pub fn load_encoder(&self, w: &Weights, file: &str, dev: &Device) -> Result<Encoder> {
        load_module(self.init_encoder(dev), &w.prefixed("encoder."), file)
    }

    /// The decoder half (`decoder.*`) of an autoencoder file.
    pub fn load_decoder(&self, w: &Weights, file: &str, dev: &Device) -> Result<Decoder> {
        load_module(self.init_decoder(dev), &w.prefixed("decoder."), file)
    }

    pub fn init_encoder(&self, dev: &Device) -> Encoder {
        let (c, f) = (self.width, self.factor);
        Encoder {
            conv_in: conv3(self.image_channels * f * f, c, 1, dev),
            res: (0..2).map(|_| ResBlock::new(c, c, None, dev)).collect(),
            norm: group_norm(c, dev),
            conv_out: conv3(c, self.latent_channels, 1, dev),
            factor: f,
        }
    }

    pub fn init_decoder(&self, dev: &Device) -> Decoder {
        let (c, f) = (self.width, self.factor);
        Decoder {
            conv_in: conv3(self.latent_channels, c, 1, dev),
            res: (0..3).map(|_| ResBlock::new(c, c, None, dev)).collect(),
            norm: group_norm(c, dev),
            conv_out: conv3(c, self.image_channels * f * f, 1, dev),
            refine1: conv3(self.image_channels, 16, 1, dev),
            refine2: conv3(16, self.image_channels, 1, dev),
            factor: f,
        }
    }
}

impl Encoder {
    /// `[b, 4, 64, 64]` in [-1, 1] -> `[b, latent_channels, 16, 16]` (unscaled).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(space_to_depth(x, self.factor));
        for r in &self.res {
            h = r.forward(h, None);
        }
        self.conv_out.forward(silu(self.norm.forward(h)))
    }
}

impl Decoder {
    /// `[b, latent_channels, 16, 16]` (unscaled) -> `[b, 4, 64, 64]`, roughly in [-1, 1].
    pub fn forward(&self, z: Tensor<4>) -> Tensor<4> {
        let mut h = self.conv_in.forward(z);
        for r in &self.res {
            h = r.forward(h, None);
        }
        let y = depth_to_space(self.conv_out.forward(silu(self.norm.forward(h))), self.factor);
        y.clone() + self.refine2.forward(silu(self.refine1.forward(y)))
    }
}
