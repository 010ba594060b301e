//! Building blocks shared by the autoencoder, the denoiser and the scorer's image encoder.

use burn::module::Module;
use burn::nn::attention::{CrossAttention, CrossAttentionConfig};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{gelu, silu};
use burn::tensor::{Bool, Device, Tensor};

pub fn conv3(cin: usize, cout: usize, stride: usize, dev: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [3, 3])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(dev)
}

pub fn conv1(cin: usize, cout: usize, dev: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [1, 1]).init(dev)
}

pub fn group_norm(c: usize, dev: &Device) -> GroupNorm {
    GroupNormConfig::new(if c.is_multiple_of(8) { 8 } else { 1 }, c).init(dev)
}

/// `[b, c, h, w]` -> `[b, c*f*f, h/f, w/f]`: each f x f patch becomes channels (pixel unshuffle).
pub fn space_to_depth(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b * c, h / f, f, w / f, f]).permute([0, 2, 4, 1, 3]).reshape([b, c * f * f, h / f, w / f])
}

/// Inverse of [`space_to_depth`] (pixel shuffle).
pub fn depth_to_space(x: Tensor<4>, f: usize) -> Tensor<4> {
    let [b, cff, h, w] = x.dims();
    let c = cff / (f * f);
    x.reshape([b * c, f, f, h, w]).permute([0, 3, 1, 4, 2]).reshape([b, c, h * f, w * f])
}

/// Nearest-neighbour 2x upsampling.
pub fn upsample2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b * c, h, 1, w, 1]).repeat_dim(2, 2).repeat_dim(4, 2).reshape([b, c, h * 2, w * 2])
}

/// GroupNorm, SiLU, 3x3 conv, twice, with an optional per-channel time embedding added in between
/// and a 1x1 skip when the width changes.
#[derive(Module, Debug)]
pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    temb: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
}

impl ResBlock {
    pub fn new(cin: usize, cout: usize, temb: Option<usize>, dev: &Device) -> Self {
        ResBlock {
            norm1: group_norm(cin, dev),
            conv1: conv3(cin, cout, 1, dev),
            temb: temb.map(|d| LinearConfig::new(d, cout).init(dev)),
            norm2: group_norm(cout, dev),
            conv2: conv3(cout, cout, 1, dev),
            skip: (cin != cout).then(|| conv1(cin, cout, dev)),
        }
    }

    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let h = self.conv1.forward(silu(self.norm1.forward(x.clone())));
        let h = match (&self.temb, temb) {
            (Some(l), Some(t)) => {
                let [b, c, _, _] = h.dims();
                h + l.forward(silu(t.clone())).reshape([b, c, 1, 1])
            }
            _ => h,
        };
        let h = self.conv2.forward(silu(self.norm2.forward(h)));
        let x = match &self.skip {
            Some(s) => s.forward(x),
            None => x,
        };
        x + h
    }
}

/// A transformer block over the pixels of a feature map: optional self-attention, cross-attention
/// on the text conditioning, and a feed-forward layer, each pre-normed and residual.
#[derive(Module, Debug)]
pub struct AttnBlock {
    norm_in: GroupNorm,
    proj_in: Linear,
    norm_self: Option<LayerNorm>,
    self_attn: Option<CrossAttention>,
    norm_cross: LayerNorm,
    cross: CrossAttention,
    norm_ff: LayerNorm,
    ff1: Linear,
    ff2: Linear,
    proj_out: Linear,
}

fn attention(d_model: usize, d_context: usize, heads: usize, dev: &Device) -> CrossAttention {
    CrossAttentionConfig::new(d_model, d_context, heads, heads, d_model / heads).with_dropout(0.0).init(dev)
}

impl AttnBlock {
    pub fn new(c: usize, d_context: usize, heads: usize, with_self: bool, dev: &Device) -> Self {
        AttnBlock {
            norm_in: group_norm(c, dev),
            proj_in: LinearConfig::new(c, c).init(dev),
            norm_self: with_self.then(|| LayerNormConfig::new(c).init(dev)),
            self_attn: with_self.then(|| attention(c, c, heads, dev)),
            norm_cross: LayerNormConfig::new(c).init(dev),
            cross: attention(c, d_context, heads, dev),
            norm_ff: LayerNormConfig::new(c).init(dev),
            ff1: LinearConfig::new(c, 2 * c).init(dev),
            ff2: LinearConfig::new(2 * c, c).init(dev),
            proj_out: LinearConfig::new(c, c).init(dev),
        }
    }

    /// `x` `[b, c, h, w]`, `ctx` `[b, l, d_context]`, `mask` `[b, l]` (true = padding).
    pub fn forward(&self, x: Tensor<4>, ctx: &Tensor<3>, mask: &Tensor<2, Bool>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let t = self.norm_in.forward(x.clone()).reshape([b, c, h * w]).swap_dims(1, 2);
        let mut t = self.proj_in.forward(t);
        if let (Some(n), Some(a)) = (&self.norm_self, &self.self_attn) {
            let q = n.forward(t.clone());
            t = t + a.forward(q.clone(), q, None);
        }
        t = t.clone() + self.cross.forward(self.norm_cross.forward(t), ctx.clone(), Some(mask.clone()));
        t = t.clone() + self.ff2.forward(gelu(self.ff1.forward(self.norm_ff.forward(t))));
        let t = self.proj_out.forward(t).swap_dims(1, 2).reshape([b, c, h, w]);
        x + t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn pixel_shuffles_invert_and_keep_patches_together() {
        let dev = Device::flex();
        let v: Vec<f32> = (0..2 * 3 * 8 * 8).map(|i| i as f32).collect();
        let x = Tensor::<4>::from_data(TensorData::new(v.clone(), [2, 3, 8, 8]), &dev);
        let s = space_to_depth(x.clone(), 4);
        assert_eq!(s.dims(), [2, 48, 2, 2]);
        // channel (c=0, dy=1, dx=2) at patch (0, 1) is pixel (y=1, x=4+2) of channel 0.
        let got = s.clone().slice([0..1, 6..7, 0..1, 1..2]).into_data().try_into_vec::<f32>().unwrap()[0];
        assert_eq!(got, (8 + 6) as f32);
        let back = depth_to_space(s, 4).into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(back, v);
        let u = upsample2(x).into_data().try_into_vec::<f32>().unwrap();
        // output pixel (y=1, x=3) of channel 0 repeats input pixel (0, 1).
        assert_eq!(u[16 + 3], v[1]);
    }
}
