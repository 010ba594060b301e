//! A standard CLIP (transformers `CLIPModel`: text and vision towers, their projections, the
//! learned logit scale) as PMG's image-text scorer on pretrained weights (issue 21). The vision
//! tower: patches as one matrix product (the patch convolution has stride = kernel), a class token,
//! position embeddings, a LayerNorm before and after the layers, the class token's state projected.
//! `tests/clip_model.rs` matches transformers' embeddings.

use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;

use super::clip_text::{ClipTextConfig, ClipTextModel, Layer, TowerConfig};
use super::nn::{LayerNorm, Loader};
use crate::error::{Error, Result};
use crate::tensor_io::TensorSource;

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipVisionConfig {
    #[serde(flatten)]
    pub tower: TowerConfig,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "three")]
    pub num_channels: usize,
}

fn three() -> usize {
    3
}

/// A `CLIPModel` `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClipConfig {
    pub text_config: ClipTextConfig,
    pub vision_config: ClipVisionConfig,
    pub projection_dim: usize,
}

impl ClipConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("config.json: {e}")))?;
        c.text_config.validate()?;
        let v = &c.vision_config;
        v.tower.validate("vision")?;
        let sane = v.patch_size > 0
            && v.image_size.is_multiple_of(v.patch_size)
            && (1..=4096).contains(&(v.image_size / v.patch_size))
            && (1..=4).contains(&v.num_channels)
            && (1..=1 << 14).contains(&c.projection_dim);
        if !sane {
            return Err(Error::InvalidArgument(format!("config.json: an unusable CLIP vision config {v:?}")));
        }
        Ok(c)
    }
}

pub struct ClipVisionModel {
    pub config: ClipVisionConfig,
    /// The patch convolution as `[channels * patch^2, hidden]`.
    patch: Tensor<2>,
    class: Tensor<1>,
    position: Tensor<2>,
    pre_ln: LayerNorm,
    layers: Vec<Layer>,
    post_ln: LayerNorm,
}

impl ClipVisionModel {
    fn load(config: ClipVisionConfig, l: &Loader<'_>) -> Result<Self> {
        let c = &config;
        let (d, p, ch) = (c.tower.hidden_size, c.patch_size, c.num_channels);
        let n = (c.image_size / p).pow(2);
        let conv = l.get("embeddings.patch_embedding.weight", &[d, ch, p, p])?;
        let patch = Tensor::<2>::from_data(TensorData::new(conv, [d, ch * p * p]), l.device).transpose();
        Ok(ClipVisionModel {
            patch,
            class: l.vector("embeddings.class_embedding", d)?,
            position: l.matrix("embeddings.position_embedding.weight", n + 1, d)?,
            pre_ln: l.norm("pre_layrnorm", d, c.tower.layer_norm_eps)?,
            layers: c.tower.layers(l)?,
            post_ln: l.norm("post_layernorm", d, c.tower.layer_norm_eps)?,
            config,
        })
    }

    /// The pooled state (the class token's, after the last LayerNorm) `[b, hidden]` of
    /// normalised pixels `[b, channels, image_size, image_size]`.
    pub fn forward(&self, pixels: Tensor<4>) -> Result<Tensor<2>> {
        let c = &self.config;
        let [b, ch, h, w] = pixels.dims();
        if b == 0 || ch != c.num_channels || h != c.image_size || w != c.image_size {
            return Err(Error::InvalidArgument(format!(
                "CLIP pixels [{b}, {ch}, {h}, {w}] (the model reads [b, {}, {s}, {s}])",
                c.num_channels,
                s = c.image_size
            )));
        }
        let (p, g, d) = (c.patch_size, c.image_size / c.patch_size, c.tower.hidden_size);
        // [b, ch, g, p, g, p] -> [b, g, g, ch, p, p]: each patch flattened as the convolution reads it.
        let patches = pixels.reshape([b, ch, g, p, g, p]).permute([0, 2, 4, 1, 3, 5]).reshape([b, g * g, ch * p * p]);
        let x = patches.matmul(self.patch.clone().unsqueeze());
        let class = self.class.clone().reshape([1, 1, d]).repeat_dim(0, b);
        let x = Tensor::cat(vec![class, x], 1).add(self.position.clone().unsqueeze());
        let mut x = self.pre_ln.forward(x);
        for l in &self.layers {
            x = l.forward(x, c.tower.num_attention_heads, c.tower.hidden_act, None)?;
        }
        Ok(self.post_ln.forward(x.slice([0..b, 0..1, 0..d]).reshape([b, d])))
    }
}

/// Both towers, their projections and the logit scale.
pub struct ClipModel {
    pub config: ClipConfig,
    pub text: ClipTextModel,
    pub vision: ClipVisionModel,
    text_projection: Tensor<2>,
    visual_projection: Tensor<2>,
    /// `exp(logit_scale)`: CLIP's learned temperature.
    pub logit_scale: f32,
}

impl ClipModel {
    pub fn from_weights(config: ClipConfig, w: &dyn TensorSource, file: &str, device: &Device) -> Result<Self> {
        let at = |prefix| Loader::new(w, file, prefix, device);
        let text = ClipTextModel::load(config.text_config.clone(), &at("text_model."))?;
        let vision = ClipVisionModel::load(config.vision_config.clone(), &at("vision_model."))?;
        let root = at("");
        let e = config.projection_dim;
        let scale = root.get("logit_scale", &[])?;
        Ok(ClipModel {
            text_projection: root
                .matrix("text_projection.weight", e, config.text_config.tower.hidden_size)?
                .transpose(),
            visual_projection: root
                .matrix("visual_projection.weight", e, config.vision_config.tower.hidden_size)?
                .transpose(),
            logit_scale: scale[0].exp(),
            text,
            vision,
            config,
        })
    }

    /// Projected text embeddings `[b, projection_dim]` (not normalised).
    pub fn text_embeds(&self, ids: &[Vec<u32>]) -> Result<Tensor<2>> {
        let s = self.text.forward(ids)?;
        let d = s.last.dims()[2];
        let rows: Vec<Tensor<2>> = s
            .pooled_at
            .iter()
            .enumerate()
            .map(|(i, &p)| s.last.clone().slice([i..i + 1, p..p + 1, 0..d]).reshape([1, d]))
            .collect();
        Ok(Tensor::cat(rows, 0).matmul(self.text_projection.clone()))
    }

    /// Projected image embeddings `[b, projection_dim]` (not normalised).
    pub fn image_embeds(&self, pixels: Tensor<4>) -> Result<Tensor<2>> {
        Ok(self.vision.forward(pixels)?.matmul(self.visual_projection.clone()))
    }
}
