//! The image-text scorer: a small CNN image encoder trained contrastively (CLIP's symmetric
//! InfoNCE, Radford et al. 2021, figure 3) against the frozen LLM's pooled caption hidden states
//! through a learned text head. It is domain specific (emoji-like 64x64 pictures) and is what PMG's
//! accuracy and preference scores read.

use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, silu};
use burn::tensor::{Device, Tensor, TensorData};

use crate::device::{PmgDevice, read_f32};
use crate::diffusion::nn::{ResBlock, conv3, group_norm, space_to_depth};
use crate::diffusion::{Conditioning, images_tensor};
use crate::error::{Error, Result};
use crate::image::Image;
use crate::tensor_io::{Weights, load_module};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ScorerConfig {
    pub widths: [usize; 3],
    pub d_text: usize,
    pub d_embed: usize,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        ScorerConfig { widths: [64, 128, 192], d_text: 576, d_embed: 256 }
    }
}

#[derive(Module, Debug)]
pub struct ImageEncoder {
    conv_in: Conv2d,
    res0: ResBlock,
    down1: Conv2d,
    res1: ResBlock,
    down2: Conv2d,
    res2: ResBlock,
    norm: GroupNorm,
    proj: Linear,
}

#[derive(Module, Debug)]
pub struct TextHead {
    norm: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

#[derive(Module, Debug)]
pub struct ScorerNet {
    pub image: ImageEncoder,
    pub text: TextHead,
    /// log of the softmax temperature's inverse (CLIP's `logit_scale`).
    pub logit_scale: Param<Tensor<1>>,
}

impl ScorerConfig {
    pub fn init(&self, dev: &Device) -> ScorerNet {
        let [c0, c1, c2] = self.widths;
        ScorerNet {
            image: ImageEncoder {
                conv_in: conv3(4 * 16, c0, 1, dev),
                res0: ResBlock::new(c0, c0, None, dev),
                down1: conv3(c0, c1, 2, dev),
                res1: ResBlock::new(c1, c1, None, dev),
                down2: conv3(c1, c2, 2, dev),
                res2: ResBlock::new(c2, c2, None, dev),
                norm: group_norm(c2, dev),
                proj: LinearConfig::new(c2, self.d_embed).init(dev),
            },
            text: TextHead {
                norm: LayerNormConfig::new(self.d_text).init(dev),
                fc1: LinearConfig::new(self.d_text, 2 * self.d_embed).init(dev),
                fc2: LinearConfig::new(2 * self.d_embed, self.d_embed).init(dev),
            },
            logit_scale: Param::from_tensor(Tensor::from_data(TensorData::new(vec![(1.0f32 / 0.07).ln()], [1]), dev)),
        }
    }
}

fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let n = x.clone().powf_scalar(2.0).sum_dim(1).add_scalar(1e-8).sqrt();
    x / n
}

impl ImageEncoder {
    /// `[b, 4, 64, 64]` -> unit-length `[b, d_embed]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let h = self.conv_in.forward(space_to_depth(x, 4));
        let h = self.res0.forward(h, None);
        let h = self.res1.forward(self.down1.forward(h), None);
        let h = self.res2.forward(self.down2.forward(h), None);
        let h = silu(self.norm.forward(h));
        let [b, c, _, _] = h.dims();
        let pooled = h.mean_dim(3).mean_dim(2).reshape([b, c]);
        l2_normalize(self.proj.forward(pooled))
    }
}

impl TextHead {
    /// Pooled LLM hidden states `[b, d_text]` -> unit-length `[b, d_embed]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        l2_normalize(self.fc2.forward(gelu(self.fc1.forward(self.norm.forward(x)))))
    }
}

/// A loaded scorer.
pub struct Scorer {
    pub net: ScorerNet,
    pub config: ScorerConfig,
    pub device: PmgDevice,
}

/// Cosine similarity mapped to (0, 1]: `s = (1 + cos) / 2`, so PMG's `log s` is always defined.
pub fn score_from_cosine(cos: f32) -> f32 {
    ((1.0 + cos) * 0.5).max(1e-6)
}

impl Scorer {
    pub fn from_bytes(bytes: &[u8], device: &PmgDevice) -> Result<Self> {
        let file = "scorer";
        let w = Weights::from_bytes(file, bytes)?;
        let config: ScorerConfig = w.config(file)?;
        let net = load_module(config.init(&device.device), &w, file)?;
        Ok(Scorer { net, config, device: device.clone() })
    }

    /// Unit-length image features, one row per image.
    pub fn image_features(&self, images: &[&Image]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = images_tensor(images, &self.device.device);
        Ok(rows(read_f32(self.net.image.forward(x))?, self.config.d_embed))
    }

    /// Image features of model-space images `[b, 4, 64, 64]` already on the device.
    pub fn image_features_tensor(&self, x: Tensor<4>) -> Tensor<2> {
        self.net.image.forward(x)
    }

    /// Unit-length text features of pooled conditionings.
    pub fn text_features(&self, texts: &[&Conditioning]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        Ok(rows(read_f32(self.text_features_tensor(texts)?)?, self.config.d_embed))
    }

    /// [`text_features`](Self::text_features) left on the device `[b, d_embed]`.
    pub fn text_features_tensor(&self, texts: &[&Conditioning]) -> Result<Tensor<2>> {
        if texts.is_empty() {
            return Err(Error::InvalidArgument("no text to score".into()));
        }
        if let Some(t) = texts.iter().find(|t| t.width != self.config.d_text) {
            return Err(Error::InvalidArgument(format!(
                "text of width {} (the scorer reads {})",
                t.width, self.config.d_text
            )));
        }
        let pooled: Vec<f32> = texts.iter().flat_map(|t| t.mean()).collect();
        let x = Tensor::<2>::from_data(TensorData::new(pooled, [texts.len(), self.config.d_text]), &self.device.device);
        Ok(self.net.text.forward(x))
    }

    /// `s(image, text)` in (0, 1].
    pub fn score(&self, image: &Image, text: &Conditioning) -> Result<f32> {
        let i = self.image_features(&[image])?;
        let t = self.text_features(&[text])?;
        Ok(score_from_cosine(dot(&i[0], &t[0])))
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn rows(v: Vec<f32>, d: usize) -> Vec<Vec<f32>> {
    v.chunks_exact(d).map(<[f32]>::to_vec).collect()
}
