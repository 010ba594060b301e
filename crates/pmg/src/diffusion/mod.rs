//! The image generator: text conditioning from the LLM's hidden states, a latent denoiser, a
//! few-step sampler with classifier-free guidance, and the autoencoder's decoder.
//!
//! ```text
//! caption ──LLM hidden states──▶ Conditioning [l, 576] ─┐
//! seed ──SeededRng──▶ z_T [4,16,16] ──(UNet v-pred + CFG) × steps via Scheduler──▶ z_0 ──Decoder──▶ 64x64 RGBA
//! ```

pub mod autoencoder;
pub mod nn;
pub mod retrieval;
pub mod schedule;
pub mod schedulers;
pub mod unet;

use burn::module::Module;
use burn::tensor::{Bool, Device, Tensor, TensorData};

use crate::device::{PmgDevice, read_f32};
use crate::error::{Error, Result};
use crate::host::{Blocking, Host};
use crate::image::Image;
use crate::llm::LanguageModel;
use crate::rng::SeededRng;
use crate::tensor_io::{Weights, load_module};
pub use autoencoder::{Autoencoder, AutoencoderConfig, Decoder, Encoder};
pub use retrieval::Retrieval;
pub use schedule::{Ddim, DpmSolver2M, NoiseSchedule, SamplerKind, Scheduler, TRAIN_STEPS};
pub use unet::{UNet, UNetConfig};

/// The text the caption follows when it is run through the LLM. Hidden states of the prefix are
/// dropped: the first positions of a sequence carry the attention sink, not the caption.
pub const TEXT_PREFIX: &str = "Emoji:";
/// Caption tokens the generator was trained with; longer text is cut at inference to
/// [`MAX_TEXT_TOKENS`].
pub const TRAIN_TEXT_TOKENS: usize = 16;
pub const MAX_TEXT_TOKENS: usize = 32;
/// Training emoji listed by [`Generator::references`].
pub const REFERENCES: usize = 3;

/// A conditioning sequence: `len` rows of LLM hidden states, `width` wide.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditioning {
    pub rows: Vec<f32>,
    pub len: usize,
    pub width: usize,
}

impl Conditioning {
    /// The unconditional input of classifier-free guidance (and of caption dropout in training):
    /// one zero row.
    pub fn null(width: usize) -> Self {
        Conditioning { rows: vec![0.0; width], len: 1, width }
    }

    pub fn from_rows(rows: Vec<Vec<f32>>) -> Result<Self> {
        let width = rows.first().map(Vec::len).ok_or_else(|| Error::InvalidArgument("empty conditioning".into()))?;
        let len = rows.len();
        Ok(Conditioning { rows: rows.concat(), len, width })
    }

    /// Mean over positions: the pooled text embedding the scorer reads.
    pub fn mean(&self) -> Vec<f32> {
        let mut m = vec![0.0; self.width];
        for r in self.rows.chunks_exact(self.width) {
            m.iter_mut().zip(r).for_each(|(a, b)| *a += b);
        }
        m.iter_mut().for_each(|a| *a /= self.len.max(1) as f32);
        m
    }

    /// These rows followed by `other`'s rows `times` times (a key repeated `w` times gets `w` times
    /// the softmax mass in cross-attention).
    pub fn with_rows(&self, other: &Conditioning, times: u32) -> Self {
        let mut rows = self.rows.clone();
        for _ in 0..times {
            rows.extend_from_slice(&other.rows);
        }
        Conditioning { len: rows.len() / self.width, rows, width: self.width }
    }

    /// The first `n` rows.
    pub fn truncated(&self, n: usize) -> Self {
        let len = self.len.min(n.max(1));
        Conditioning { rows: self.rows[..len * self.width].to_vec(), len, width: self.width }
    }
}

/// Token ids of `TEXT_PREFIX + " " + text` and the number of prefix tokens.
pub fn text_tokens(lm: &LanguageModel, text: &str, max_tokens: usize) -> Result<(Vec<u32>, usize)> {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return Err(Error::InvalidArgument("empty prompt".into()));
    }
    let prefix = lm.tokenize_prompt(TEXT_PREFIX)?;
    let mut ids = lm.tokenize_prompt(&format!("{TEXT_PREFIX} {text}"))?;
    // BPE pre-tokenization splits at the space, so the prefix tokens are a prefix of the whole.
    debug_assert_eq!(&ids[..prefix.len()], &prefix[..]);
    ids.truncate(prefix.len() + max_tokens.max(1));
    Ok((ids, prefix.len()))
}

/// The conditioning of a caption: the LLM's final hidden states at the caption's tokens.
pub fn encode_text(lm: &LanguageModel, text: &str, max_tokens: usize) -> Result<Conditioning> {
    let (ids, p) = text_tokens(lm, text, max_tokens)?;
    let positions: Vec<usize> = (p..ids.len()).collect();
    Conditioning::from_rows(lm.hidden_states(&ids, Some(&positions))?)
}

/// [`encode_text`] without blocking readbacks.
pub async fn encode_text_async(lm: &LanguageModel, text: &str, max_tokens: usize) -> Result<Conditioning> {
    let (ids, p) = text_tokens(lm, text, max_tokens)?;
    let positions: Vec<usize> = (p..ids.len()).collect();
    Conditioning::from_rows(lm.hidden_states_async(&ids, Some(&positions)).await?)
}

/// A batch of conditionings padded to the longest: `[b, l, width]` and the padding mask `[b, l]`.
pub fn context_batch(conds: &[&Conditioning], device: &Device) -> (Tensor<3>, Tensor<2, Bool>) {
    let width = conds[0].width;
    let l = conds.iter().map(|c| c.len).max().unwrap_or(1);
    let mut rows = vec![0.0f32; conds.len() * l * width];
    let mut mask = vec![true; conds.len() * l];
    for (i, c) in conds.iter().enumerate() {
        rows[i * l * width..][..c.len * width].copy_from_slice(&c.rows);
        mask[i * l..][..c.len].iter_mut().for_each(|m| *m = false);
    }
    (
        Tensor::from_data(TensorData::new(rows, [conds.len(), l, width]), device),
        Tensor::from_data(TensorData::new(mask, [conds.len(), l]), device),
    )
}

/// How to sample. One definition for Rust, JSON and JS (serde), the command line (clap) and the
/// TypeScript declarations (web/src/options.d.ts); the defaults are `Default`'s.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SampleOptions {
    /// Denoising steps, 1..=50.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SampleOptions::default().steps))]
    pub steps: usize,
    /// Classifier-free guidance scale, 0..=20 (1 turns guidance off).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SampleOptions::default().guidance))]
    pub guidance: f32,
    /// ddim | dpm-solver2m (DPM-Solver++ 2M) | euler | euler-ancestral | lcm (the last three: SD models).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SampleOptions::default().sampler))]
    pub sampler: SamplerKind,
    /// Starting noise, in (0, 1]: below 1 the run starts from a picture (the target's own, or the
    /// training emoji nearest to the prompt) noised that far, and the steps cover only that share of
    /// the schedule (SDEdit, Meng et al. 2022); 1 starts from pure noise.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SampleOptions::default().strength))]
    pub strength: f32,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions { steps: 20, guidance: 3.0, sampler: SamplerKind::Ddim, strength: 0.6 }
    }
}

impl SampleOptions {
    pub fn validate(&self) -> Result<()> {
        if !(1..=50).contains(&self.steps) {
            return Err(Error::InvalidArgument(format!("steps {} outside 1..=50", self.steps)));
        }
        if !self.guidance.is_finite() || !(0.0..=20.0).contains(&self.guidance) {
            return Err(Error::InvalidArgument(format!("guidance {} outside 0..=20", self.guidance)));
        }
        if !(self.strength > 0.0 && self.strength <= 1.0) {
            return Err(Error::InvalidArgument(format!("strength {} outside (0, 1]", self.strength)));
        }
        Ok(())
    }
}

/// What `pmg image` and `generateImage` take: how many images from which seed, and how to sample.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ImageOptions {
    /// Seed of the initial noise; image `i` uses `seed + i`. The same seed gives the same image.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = ImageOptions::default().seed))]
    #[cfg_attr(test, ts(type = "number"))]
    pub seed: u64,
    /// Images to generate, 1..=16.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = ImageOptions::default().n))]
    pub n: usize,
    #[serde(flatten)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub sample: SampleOptions,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions { seed: 0, n: 1, sample: SampleOptions::default() }
    }
}

impl ImageOptions {
    pub fn validate(&self) -> Result<()> {
        if !(1..=16).contains(&self.n) {
            return Err(Error::InvalidArgument(format!("n {} outside 1..=16", self.n)));
        }
        self.sample.validate()
    }

    /// The seed of each image.
    pub fn seeds(&self) -> Vec<u64> {
        (0..self.n as u64).map(|i| self.seed.wrapping_add(i)).collect()
    }
}

/// A denoiser export (`file` names it in errors): the UNet on `dev`, its config, and the sampler's
/// retrieval bank when the file carries one (the diffusion stage writes it into every export). `ae`
/// is the autoencoder it works with: the latent channels must match, and its latent size sizes the
/// bank. Every reader of a denoiser file goes through here, so none trips over the bank's tensors.
pub fn load_denoiser(
    bytes: &[u8],
    file: &str,
    ae: &AutoencoderConfig,
    dev: &Device,
) -> Result<(UNet, UNetConfig, Option<Retrieval>)> {
    let mut w = Weights::from_bytes(file, bytes)?;
    let config: UNetConfig = w.config(file)?;
    if ae.latent_channels != config.latent_channels {
        return Err(Error::Weights {
            file: file.into(),
            problem: "latent channels differ from the autoencoder's".into(),
        });
    }
    let side = 64 / ae.factor;
    let retrieval = Retrieval::take_from(&mut w, file, config.d_text, config.latent_channels * side * side)?;
    Ok((load_module(config.init(dev), &w, file)?, config, retrieval))
}

/// Where a run with `strength < 1` starts (SDEdit); a run at strength 1 starts from noise alone.
#[derive(Clone, Copy)]
pub enum Init<'a> {
    /// The training emoji nearest to each query (the denoiser file's retrieval bank; noise alone
    /// for a file without one). PMG searches by the text rows, without the soft rows, which pull
    /// every user towards the same generic neighbour.
    Nearest(&'a [Conditioning]),
    /// Given pictures, one per run: the target item's own image (any size, scaled to 64x64).
    Images(&'a [&'a Image]),
}

/// A typed error for a malformed picture (checked whether or not a run encodes it).
pub(crate) fn check_pictures(images: &[&Image]) -> Result<()> {
    match images.iter().find(|i| i.width == 0 || i.height == 0 || i.rgba.len() != i.width * i.height * 4) {
        Some(i) => Err(Error::Image(format!("a {}x{} image with {} bytes", i.width, i.height, i.rgba.len()))),
        None => Ok(()),
    }
}

/// The generator: decoder, denoiser, schedule, on one device.
pub struct Generator {
    pub decoder: Decoder,
    /// The encoder, when the autoencoder file has it (evaluation, reconstructions).
    pub encoder: Option<Encoder>,
    pub unet: UNet,
    pub unet_config: UNetConfig,
    /// The training latents a run with `strength < 1` starts from (when the file has them).
    pub retrieval: Option<Retrieval>,
    pub ae_config: AutoencoderConfig,
    pub schedule: NoiseSchedule,
    /// Latents are multiplied by this after encoding (unit variance for the denoiser) and divided
    /// before decoding (Rombach et al. 2022, appendix G).
    pub latent_scale: f32,
    pub device: PmgDevice,
}

impl Generator {
    /// Load from the autoencoder and denoiser safetensors files.
    pub fn from_bytes(autoencoder: &[u8], unet: &[u8], device: &PmgDevice) -> Result<Self> {
        let fa = "autoencoder";
        let aw = Weights::from_bytes(fa, autoencoder)?;
        let (ae_config, latent_scale) = AutoencoderConfig::from_weights(&aw, fa)?;
        let dev = &device.device;
        let (unet_module, unet_config, retrieval) = load_denoiser(unet, "denoiser", &ae_config, dev)?;
        let decoder = ae_config.load_decoder(&aw, fa, dev)?;
        let has_encoder = aw.tensors.keys().any(|k| k.starts_with("encoder."));
        let encoder = if has_encoder { Some(ae_config.load_encoder(&aw, fa, dev)?) } else { None };
        Ok(Generator {
            decoder,
            encoder,
            unet: unet_module,
            unet_config,
            retrieval,
            ae_config,
            schedule: NoiseSchedule::cosine(TRAIN_STEPS),
            latent_scale,
            device: device.clone(),
        })
    }

    /// `[c, h, w]` of the latent.
    pub fn latent_shape(&self) -> [usize; 3] {
        let side = 64 / self.ae_config.factor;
        [self.ae_config.latent_channels, side, side]
    }

    fn noise(&self, seeds: &[u64]) -> Tensor<4> {
        let [c, h, w] = self.latent_shape();
        let data: Vec<f32> = seeds.iter().flat_map(|&s| SeededRng::new(s).normals(c * h * w)).collect();
        Tensor::from_data(TensorData::new(data, [seeds.len(), c, h, w]), &self.device.device)
    }

    /// The guided v prediction for a batch, conditional and unconditional rows in one forward.
    fn guided_v(&self, x: Tensor<4>, t: usize, ctx: &(Tensor<3>, Tensor<2, Bool>), guidance: f32) -> Tensor<4> {
        let b = x.dims()[0];
        if guidance == 1.0 {
            return self.unet.forward(x, &vec![t as f32; b], ctx.0.clone(), ctx.1.clone());
        }
        let xx = Tensor::cat(vec![x.clone(), x], 0);
        let v = self.unet.forward(xx, &vec![t as f32; 2 * b], ctx.0.clone(), ctx.1.clone());
        let vc = v.clone().narrow(0, 0, b);
        let vu = v.narrow(0, b, b);
        vu.clone() + (vc - vu) * guidance
    }

    /// The context tensors for `conds`; with guidance, followed by as many null rows.
    fn context(&self, conds: &[Conditioning], guidance: f32) -> (Tensor<3>, Tensor<2, Bool>) {
        let null = Conditioning::null(self.unet_config.d_text);
        let mut all: Vec<&Conditioning> = conds.iter().collect();
        if guidance != 1.0 {
            all.extend(std::iter::repeat_n(&null, conds.len()));
        }
        context_batch(&all, &self.device.device)
    }

    /// The training emoji nearest to a conditioning (best first, with their cosine), from the
    /// denoiser file's retrieval bank; empty for a file without one.
    pub fn references(&self, cond: &Conditioning) -> Vec<(String, f32)> {
        let Some(r) = &self.retrieval else { return Vec::new() };
        r.nearest(cond, REFERENCES).into_iter().map(|(i, s)| (r.names[i].clone(), s)).collect()
    }

    fn check(&self, conds: &[Conditioning], seeds: &[u64], opts: &SampleOptions) -> Result<()> {
        opts.validate()?;
        if conds.is_empty() || conds.len() != seeds.len() {
            return Err(Error::InvalidArgument(format!("{} conditionings for {} seeds", conds.len(), seeds.len())));
        }
        if let Some(c) = conds.iter().find(|c| c.width != self.unet_config.d_text || c.len == 0) {
            return Err(Error::InvalidArgument(format!(
                "conditioning of width {} (the denoiser reads {})",
                c.width, self.unet_config.d_text
            )));
        }
        Ok(())
    }

    fn scheduler(&self, kind: SamplerKind) -> Result<Box<dyn Scheduler + '_>> {
        match kind {
            SamplerKind::Ddim => Ok(Box::new(Ddim { schedule: &self.schedule })),
            SamplerKind::DpmSolver2m => Ok(Box::new(DpmSolver2M::new(&self.schedule))),
            other => Err(Error::InvalidArgument(format!(
                "sampler {other}: the emoji generator samples with ddim or dpm-solver2m"
            ))),
        }
    }

    /// Begin denoising one image per (conditioning, seed); drive it with [`Sampling::step`]. A run
    /// with `strength < 1` starts from the training emoji nearest to its conditioning.
    pub fn start(&self, conds: &[Conditioning], seeds: &[u64], opts: &SampleOptions) -> Result<Sampling<'_>> {
        self.start_from(conds, Init::Nearest(conds), seeds, opts)
    }

    /// [`start`](Self::start) with the start of a `strength < 1` run given ([`Init`]).
    pub fn start_from(
        &self,
        conds: &[Conditioning],
        init: Init<'_>,
        seeds: &[u64],
        opts: &SampleOptions,
    ) -> Result<Sampling<'_>> {
        self.check(conds, seeds, opts)?;
        let start = match init {
            Init::Nearest(queries) => {
                if queries.len() != conds.len()
                    || queries.iter().any(|q| q.width != self.unet_config.d_text || q.len == 0)
                {
                    return Err(Error::InvalidArgument(format!(
                        "{} retrieval queries for {} conditionings",
                        queries.len(),
                        conds.len()
                    )));
                }
                match (&self.retrieval, opts.strength < 1.0) {
                    (Some(r), true) => {
                        let [c, h, w] = self.latent_shape();
                        let z: Vec<f32> =
                            queries.iter().flat_map(|q| r.latent(r.nearest(q, 1)[0].0).to_vec()).collect();
                        Some(Tensor::<4>::from_data(TensorData::new(z, [conds.len(), c, h, w]), &self.device.device))
                    }
                    _ => None,
                }
            }
            Init::Images(images) => {
                if images.len() != conds.len() {
                    return Err(Error::InvalidArgument(format!(
                        "{} start images for {} conditionings",
                        images.len(),
                        conds.len()
                    )));
                }
                check_pictures(images)?;
                if opts.strength < 1.0 { Some(self.encode_images(images)?) } else { None }
            }
        };
        let ctx = self.context(conds, opts.guidance);
        let sched = self.scheduler(opts.sampler)?;
        let ts = self.timesteps(&*sched, opts, start.is_some());
        let mut x = self.noise(seeds);
        if let Some(z) = start {
            let (a, s) = self.schedule.coefficients(ts[0]);
            x = z * a + x * s;
        }
        Ok(Sampling { generator: self, ctx, sched, ts, done: 0, x, guidance: opts.guidance })
    }

    /// How many denoiser steps a run takes: `opts.steps`, or fewer where a run from a picture
    /// rounds two of its timesteps to the same one.
    pub fn run_steps(&self, opts: &SampleOptions, from_picture: bool) -> Result<usize> {
        Ok(self.timesteps(&*self.scheduler(opts.sampler)?, opts, from_picture).len())
    }

    fn timesteps(&self, sched: &dyn Scheduler, opts: &SampleOptions, from_picture: bool) -> Vec<usize> {
        let mut ts = sched.timesteps(opts.steps);
        if from_picture && opts.strength < 1.0 {
            // SDEdit (Meng et al. 2022): the same fraction of every trailing timestep; the run
            // starts from the picture's latent noised to the first of them.
            ts = ts.iter().map(|&t| (((t + 1) as f32 * opts.strength).round() as usize).max(1) - 1).collect();
            ts.dedup();
        }
        ts
    }

    /// Latents of images as the denoiser saw its training images (each scaled to 64x64 first).
    pub fn encode_images(&self, images: &[&Image]) -> Result<Tensor<4>> {
        let encoder = self.encoder.as_ref().ok_or_else(|| {
            Error::InvalidArgument("this autoencoder file has no encoder: it cannot start from an image".into())
        })?;
        check_pictures(images)?;
        let side = 64;
        let data: Vec<f32> = images.iter().flat_map(|i| i.to_model_resized(side)).collect();
        let x = Tensor::from_data(TensorData::new(data, [images.len(), 4, side, side]), &self.device.device);
        Ok(encoder.forward(x) * self.latent_scale)
    }

    /// The denoising loop, for every caller: one image per (conditioning, seed). After each step
    /// the host hears the [`Step`] and may cancel by answering `false`; on a non-blocking host
    /// each step is awaited first (a one-value readback), so progress reflects finished GPU work.
    /// Returns decoded images `[b, 4, 64, 64]` on the device.
    pub async fn denoise<H: Host<Step>>(
        &self,
        conds: &[Conditioning],
        seeds: &[u64],
        opts: &SampleOptions,
        host: &mut H,
    ) -> Result<Tensor<4>> {
        self.denoise_from(conds, Init::Nearest(conds), seeds, opts, host).await
    }

    /// [`denoise`](Self::denoise) with the start given ([`start_from`](Self::start_from)).
    pub async fn denoise_from<H: Host<Step>>(
        &self,
        conds: &[Conditioning],
        init: Init<'_>,
        seeds: &[u64],
        opts: &SampleOptions,
        host: &mut H,
    ) -> Result<Tensor<4>> {
        let mut s = self.start_from(conds, init, seeds, opts)?;
        while s.step() {
            if !host.blocking() {
                s.sync_async().await?;
            }
            if !host.progress(Step { done: s.done, total: s.total() }).await {
                return Err(Error::Cancelled);
            }
        }
        Ok(s.decode())
    }

    /// [`denoise`](Self::denoise) natively (blocking readbacks); `on_step(i, n)` returning `false` cancels.
    pub fn sample(
        &self,
        conds: &[Conditioning],
        seeds: &[u64],
        opts: &SampleOptions,
        on_step: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Tensor<4>> {
        crate::host::block_on(self.denoise(conds, seeds, opts, &mut Blocking(|s: Step| on_step(s.done, s.total))))
    }

    /// Generate images natively (blocking readback).
    pub fn generate(
        &self,
        conds: &[Conditioning],
        seeds: &[u64],
        opts: &SampleOptions,
        on_step: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Vec<Image>> {
        let x = self.sample(conds, seeds, opts, on_step)?;
        Ok(to_images(&read_f32(x)?, seeds.len()))
    }

    pub fn num_params(&self) -> usize {
        self.decoder.num_params() + self.unet.num_params()
    }
}

/// Progress of a denoising run: `done` of `total` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub done: usize,
    pub total: usize,
}

/// A denoising run in progress.
pub struct Sampling<'g> {
    generator: &'g Generator,
    ctx: (Tensor<3>, Tensor<2, Bool>),
    sched: Box<dyn Scheduler + 'g>,
    ts: Vec<usize>,
    done: usize,
    x: Tensor<4>,
    guidance: f32,
}

impl Sampling<'_> {
    /// Run the next denoising step (queued on the device); `false` once all are done.
    pub fn step(&mut self) -> bool {
        let Some(&t) = self.ts.get(self.done) else { return false };
        let v = self.generator.guided_v(self.x.clone(), t, &self.ctx, self.guidance);
        self.x = self.sched.step(self.x.clone(), v, t, self.ts.get(self.done + 1).copied());
        self.done += 1;
        true
    }

    pub fn done(&self) -> usize {
        self.done
    }

    pub fn total(&self) -> usize {
        self.ts.len()
    }

    /// Wait for the queued steps to finish (a one-value readback).
    pub async fn sync_async(&self) -> Result<()> {
        crate::device::read_f32_async(self.x.clone().slice([0..1, 0..1, 0..1, 0..1])).await.map(|_| ())
    }

    /// Decode the current latents: `[b, 4, 64, 64]` on the device.
    pub fn decode(self) -> Tensor<4> {
        self.generator.decoder.forward(self.x / self.generator.latent_scale)
    }
}

/// Split `[b, 4, 64, 64]` model output into images.
pub fn to_images(data: &[f32], b: usize) -> Vec<Image> {
    let per = data.len() / b.max(1);
    let side = ((per / 4) as f64).sqrt() as usize;
    batch_images(data, [side, side])
}

/// A model batch `[b, 4, h, w]`, read back, as its `b` images of `h` x `w` pixels.
pub fn batch_images(data: &[f32], [h, w]: [usize; 2]) -> Vec<Image> {
    data.chunks_exact((4 * h * w).max(1)).map(|c| Image::from_model(c, w, h)).collect()
}

/// Images as a model batch `[b, 4, h, w]`.
pub fn images_tensor(images: &[&Image], device: &Device) -> Tensor<4> {
    let (w, h) = (images[0].width, images[0].height);
    let data: Vec<f32> = images.iter().flat_map(|i| i.to_model()).collect();
    Tensor::from_data(TensorData::new(data, [images.len(), 4, h, w]), device)
}
