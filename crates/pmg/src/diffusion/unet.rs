//! The denoiser: a two-level UNet on the 16x16 latent with cross-attention on the LLM's caption
//! hidden states at every level and self-attention at 8x8. It predicts v (Salimans & Ho 2022,
//! "Progressive distillation", section 4), which stays well-conditioned at both ends of the
//! cosine schedule and suits few-step DDIM.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::nn::{AttnBlock, ResBlock, conv3, group_norm, upsample2};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UNetConfig {
    pub latent_channels: usize,
    /// Widths at 16x16 and 8x8.
    pub channels: [usize; 2],
    /// Width of the LLM hidden states (576 for SmolLM2-135M).
    pub d_text: usize,
    /// Width the text is projected to before cross-attention.
    pub d_context: usize,
    pub heads: usize,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig { latent_channels: 4, channels: [64, 128], d_text: 576, d_context: 256, heads: 4 }
    }
}

#[derive(Module, Debug)]
pub struct UNet {
    text_norm: LayerNorm,
    text_proj: Linear,
    time1: Linear,
    time2: Linear,
    conv_in: Conv2d,
    down0: ResBlock,
    down0_attn: AttnBlock,
    down: Conv2d,
    down1: ResBlock,
    down1_attn: AttnBlock,
    mid1: ResBlock,
    mid_attn: AttnBlock,
    mid2: ResBlock,
    up1: ResBlock,
    up1_attn: AttnBlock,
    up: Conv2d,
    up0: ResBlock,
    up0_attn: AttnBlock,
    out_norm: GroupNorm,
    conv_out: Conv2d,
    time_dim: usize,
}

/// Sinusoidal embedding of (fractional) timesteps, `[n, dim]` row-major (DDPM's, cos then sin).
pub fn timestep_embedding(t: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let mut out = Vec::with_capacity(t.len() * dim);
    for &ti in t {
        let f = |i: usize| (-(10000f32.ln()) * i as f32 / half as f32).exp() * ti;
        out.extend((0..half).map(|i| f(i).cos()));
        out.extend((0..half).map(|i| f(i).sin()));
    }
    out
}

impl UNetConfig {
    pub fn init(&self, dev: &Device) -> UNet {
        let [c0, c1] = self.channels;
        let t = 4 * c0;
        let (dc, h) = (self.d_context, self.heads);
        UNet {
            text_norm: LayerNormConfig::new(self.d_text).init(dev),
            text_proj: LinearConfig::new(self.d_text, dc).init(dev),
            time1: LinearConfig::new(c0, t).init(dev),
            time2: LinearConfig::new(t, t).init(dev),
            conv_in: conv3(self.latent_channels, c0, 1, dev),
            down0: ResBlock::new(c0, c0, Some(t), dev),
            down0_attn: AttnBlock::new(c0, dc, h, false, dev),
            down: conv3(c0, c0, 2, dev),
            down1: ResBlock::new(c0, c1, Some(t), dev),
            down1_attn: AttnBlock::new(c1, dc, h, true, dev),
            mid1: ResBlock::new(c1, c1, Some(t), dev),
            mid_attn: AttnBlock::new(c1, dc, h, true, dev),
            mid2: ResBlock::new(c1, c1, Some(t), dev),
            up1: ResBlock::new(2 * c1, c1, Some(t), dev),
            up1_attn: AttnBlock::new(c1, dc, h, true, dev),
            up: conv3(c1, c1, 1, dev),
            up0: ResBlock::new(c1 + c0, c0, Some(t), dev),
            up0_attn: AttnBlock::new(c0, dc, h, false, dev),
            out_norm: group_norm(c0, dev),
            conv_out: conv3(c0, self.latent_channels, 1, dev),
            time_dim: c0,
        }
    }
}

impl UNet {
    /// Predict v for noisy latents `x` `[b, c, 16, 16]` at timesteps `t` (one per row, 0..1000),
    /// given text hidden states `text` `[b, l, d_text]` with `mask` `[b, l]` (true = padding).
    pub fn forward(&self, x: Tensor<4>, t: &[f32], text: Tensor<3>, mask: Tensor<2, Bool>) -> Tensor<4> {
        let dev = x.device();
        let b = x.dims()[0];
        let temb =
            Tensor::<2>::from_data(TensorData::new(timestep_embedding(t, self.time_dim), [b, self.time_dim]), &dev);
        let temb = self.time2.forward(silu(self.time1.forward(temb)));
        let ctx = self.text_proj.forward(self.text_norm.forward(text));
        let temb = Some(&temb);

        let h0 = self.conv_in.forward(x);
        let h0 = self.down0_attn.forward(self.down0.forward(h0, temb), &ctx, &mask);
        let h1 = self.down.forward(h0.clone());
        let h1 = self.down1_attn.forward(self.down1.forward(h1, temb), &ctx, &mask);
        let m = self.mid1.forward(h1.clone(), temb);
        let m = self.mid2.forward(self.mid_attn.forward(m, &ctx, &mask), temb);
        let u1 = self.up1_attn.forward(self.up1.forward(Tensor::cat(vec![m, h1], 1), temb), &ctx, &mask);
        let u0 = self.up.forward(upsample2(u1));
        let u0 = self.up0_attn.forward(self.up0.forward(Tensor::cat(vec![u0, h0], 1), temb), &ctx, &mask);
        self.conv_out.forward(silu(self.out_norm.forward(u0)))
    }
}
