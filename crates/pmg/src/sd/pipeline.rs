//! Text to image with a Stable Diffusion checkpoint in diffusers' folder layout, as diffusers'
//! `StableDiffusionPipeline` runs it: CLIP's tokenizer and text encoder, the UNet driven by one of
//! the samplers of [`crate::diffusion::schedulers`] with classifier-free guidance, and the VAE (or
//! TAESD) decoder. Every file is read by its path in the folder ([`FILES`]), so a directory
//! (natively) and files fetched one by one (the browser) load the same way.

use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::Precision;
use super::clip_text::{ClipTextConfig, ClipTextModel};
#[cfg(not(target_family = "wasm"))]
use super::folder::read_dir_file;
use super::folder::{ReadFile, clip_tokenizer, need, open, read_bytes, utf8};
use super::gguf_checkpoint::{Family, GgufCheckpoint, Which};
use super::taesd::{AutoencoderTiny, AutoencoderTinyConfig};
use super::vae::{AutoencoderKl, AutoencoderKlConfig};
use crate::device::PmgDevice;
use crate::diffusion::schedulers::{Plan, SchedulerConfig};
use crate::diffusion::{Conditioning, SampleOptions, Step};
use crate::error::{Error, Result};
use crate::host::{Blocking, Host};
use crate::image::Image;
use crate::rng::SeededRng;
use crate::sd::unet::{UNet, UNetConfig};
use crate::tensor_io::SafetensorsView;
use crate::tokenizer::clip::{ClipTokenizer, MAX_LENGTH};

/// The files of a diffusers SD folder this pipeline reads (the tokenizer's: see
/// `sd::folder::clip_tokenizer`).
pub const FILES: &[&str] = &[
    SCHEDULER,
    VOCAB,
    MERGES,
    TOKENIZER_CONFIG,
    TOKENIZER_JSON,
    TEXT_CONFIG,
    TEXT_WEIGHTS,
    UNET_CONFIG,
    UNET_WEIGHTS,
    VAE_CONFIG,
    VAE_WEIGHTS,
];
const SCHEDULER: &str = "scheduler/scheduler_config.json";
const VOCAB: &str = "tokenizer/vocab.json";
const MERGES: &str = "tokenizer/merges.txt";
const TOKENIZER_CONFIG: &str = "tokenizer/tokenizer_config.json";
const TOKENIZER_JSON: &str = "tokenizer/tokenizer.json";
const TEXT_CONFIG: &str = "text_encoder/config.json";
const TEXT_WEIGHTS: &str = "text_encoder/model.safetensors";
const UNET_CONFIG: &str = "unet/config.json";
const UNET_WEIGHTS: &str = "unet/diffusion_pytorch_model.safetensors";
const VAE_CONFIG: &str = "vae/config.json";
const VAE_WEIGHTS: &str = "vae/diffusion_pytorch_model.safetensors";

/// The files read beside a GGUF checkpoint ([`StableDiffusion::from_gguf`]): CLIP's tokenizer,
/// and the scheduler's config when there is one.
pub const GGUF_FILES: &[&str] = &[SCHEDULER, VOCAB, MERGES, TOKENIZER_CONFIG, TOKENIZER_JSON];

/// The schedule every SD 1.x/2.x checkpoint was trained with (their `scheduler_config.json`).
fn sd_schedule(v_prediction: bool) -> String {
    let prediction = if v_prediction { "v_prediction" } else { "epsilon" };
    serde_json::json!({
        "_class_name": "DDIMScheduler",
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
        "set_alpha_to_one": false,
        "clip_sample": false,
        "prediction_type": prediction,
        "timestep_spacing": "leading",
    })
    .to_string()
}

/// The files of an autoencoder folder (`vae/` of a checkpoint, or TAESD's own folder).
pub const VAE_FILES: [&str; 2] = ["config.json", "diffusion_pytorch_model.safetensors"];

/// The decoder: the checkpoint's `AutoencoderKL`, or `AutoencoderTiny` (TAESD) in its place.
pub enum Vae {
    Kl(AutoencoderKl),
    Tiny(AutoencoderTiny),
}

impl Vae {
    /// From an autoencoder folder's files under `dir` ([`VAE_FILES`]): `config.json` (its
    /// `_class_name` picks the kind) and the weights (`what` names the folder in errors).
    pub fn from_folder(read: &mut ReadFile<'_>, what: &str, dir: &str, device: &Device) -> Result<Self> {
        let [config, weights] = VAE_FILES.map(|f| format!("{dir}{f}"));
        let config = need(read, what, &config)?;
        let weights = open(read, what, &weights)?;
        let text = std::str::from_utf8(&config).map_err(|e| Error::InvalidArgument(format!("vae config.json: {e}")))?;
        let class: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("vae config.json: {e}")))?;
        let file = VAE_FILES[1];
        let w = SafetensorsView::parse(file, weights.as_ref())?;
        match class.get("_class_name").and_then(|c| c.as_str()) {
            Some("AutoencoderTiny") => {
                Ok(Vae::Tiny(AutoencoderTiny::from_weights(AutoencoderTinyConfig::from_json(text)?, &w, file, device)?))
            }
            Some("AutoencoderKL") | None => {
                Ok(Vae::Kl(AutoencoderKl::from_weights(AutoencoderKlConfig::from_json(text)?, &w, file, device)?))
            }
            Some(other) => Err(Error::InvalidArgument(format!("vae config.json: a {other} is not supported"))),
        }
    }

    /// The denoiser's latents to images in about [-1, 1].
    pub fn decode(&self, latents: Tensor<4>) -> Result<Tensor<4>> {
        match self {
            Vae::Kl(v) => v.decode(latents),
            Vae::Tiny(v) => v.decode(latents),
        }
    }

    /// Images in [-1, 1] to the denoiser's latents.
    pub fn encode(&self, images: Tensor<4>) -> Result<Tensor<4>> {
        match self {
            Vae::Kl(v) => v.encode(images),
            Vae::Tiny(v) => v.encode(images),
        }
    }

    /// Bytes of the largest tensor decoding (or encoding) one image of `h` x `w` pixels makes:
    /// the feature maps of each stage, and the upsampled ones before their convolution.
    pub fn peak_bytes(&self, [h, w]: [usize; 2], encode: bool) -> usize {
        let px = h * w;
        4 * match self {
            Vae::Kl(v) => {
                let widths = &v.config.block_out_channels;
                let n = widths.len();
                (0..n)
                    .map(|i| {
                        // Encoder stage i runs at 1/2^i of the pixels' side, decoder stage i at
                        // 1/2^(n-1-i) and upsamples to twice that before its last convolution.
                        let (c, prev) = if encode {
                            (widths[i], widths[i.saturating_sub(1)])
                        } else {
                            (widths[n - 1 - i], widths[(n - i).min(n - 1)])
                        };
                        let side = if encode { i } else { n - 1 - i };
                        let up = if !encode && i + 1 < n { 4 } else { 1 };
                        c.max(prev) * (px >> (2 * side)) * up
                    })
                    .max()
                    .unwrap_or(0)
            }
            Vae::Tiny(v) => {
                let c =
                    if encode { &v.config.encoder_block_out_channels } else { &v.config.decoder_block_out_channels };
                c.iter().max().copied().unwrap_or(0) * px
            }
        }
    }

    /// Pixels per latent side.
    pub fn downscale(&self) -> usize {
        match self {
            Vae::Kl(v) => v.config.downscale(),
            Vae::Tiny(v) => v.config.downscale(),
        }
    }
}

pub struct StableDiffusion {
    pub tokenizer: ClipTokenizer,
    /// The id the prompts are padded with (the checkpoint's `pad_token`; SD 2.x pads with `!`).
    pub pad: u32,
    pub text_encoder: ClipTextModel,
    pub unet: UNet,
    pub vae: Vae,
    pub scheduler: SchedulerConfig,
    pub device: PmgDevice,
    /// The image side drawn when none is asked for ([`Self::set_size`]).
    size: Option<usize>,
}

impl StableDiffusion {
    /// From a folder's files, each read by its path in [`FILES`] (`read` answers `Ok(None)` for
    /// a file the folder lacks); `vae` reads an autoencoder folder ([`VAE_FILES`], TAESD's) that
    /// replaces the checkpoint's `vae/`. The UNet's and the text encoder's linear layers are held at
    /// `precision`. Weights are read and decoded a tensor at a time, never held whole.
    pub fn from_files(
        read: &mut ReadFile<'_>,
        vae: Option<&mut ReadFile<'_>>,
        device: &PmgDevice,
        precision: Precision,
    ) -> Result<Self> {
        let (tokenizer, pad) = clip_tokenizer(read, "model", "tokenizer/")?;
        let json = |read: &mut ReadFile<'_>, path: &str| -> Result<String> {
            Ok(utf8(path, &need(read, "model", path)?)?.to_owned())
        };
        let scheduler = SchedulerConfig::from_json(&json(read, SCHEDULER)?)?;
        let text_config = ClipTextConfig::from_json(&json(read, TEXT_CONFIG)?)?;
        let file = open(read, "model", TEXT_WEIGHTS)?;
        let w = SafetensorsView::parse(TEXT_WEIGHTS, file.as_ref())?;
        let text_encoder = ClipTextModel::with_precision(text_config, &w, TEXT_WEIGHTS, device, precision)?;
        let unet_config = UNetConfig::from_json(&json(read, UNET_CONFIG)?)?;
        let file = open(read, "model", UNET_WEIGHTS)?;
        let w = SafetensorsView::parse(UNET_WEIGHTS, file.as_ref())?;
        let unet = UNet::with_precision(unet_config, &w, UNET_WEIGHTS, device, precision)?;
        let vae = match vae {
            Some(read) => Vae::from_folder(read, "vae", "", &device.device)?,
            None => Vae::from_folder(read, "model", "vae/", &device.device)?,
        };
        Self::assemble(tokenizer, pad, text_encoder, unet, vae, scheduler, device)
    }

    /// The parts, checked to fit together.
    fn assemble(
        tokenizer: ClipTokenizer,
        pad: u32,
        text_encoder: ClipTextModel,
        unet: UNet,
        vae: Vae,
        scheduler: SchedulerConfig,
        device: &PmgDevice,
    ) -> Result<Self> {
        if unet.config.context_width() != text_encoder.config.tower.hidden_size {
            return Err(Error::InvalidArgument(format!(
                "the UNet attends to {}-wide text states, the text encoder makes {}",
                unet.config.context_width(),
                text_encoder.config.tower.hidden_size
            )));
        }
        let device = device.clone();
        Ok(StableDiffusion { tokenizer, pad, text_encoder, unet, vae, scheduler, device, size: None })
    }

    /// From a one-file GGUF checkpoint as stable-diffusion.cpp converts them
    /// ([`GgufCheckpoint`]), read as `read(gguf)`, with CLIP's tokenizer files under `tokenizer/`
    /// beside it (any CLIP's: SD 1.x and 2.x share OpenAI's vocabulary) and optionally
    /// `scheduler/scheduler_config.json` (else SD's training schedule; v-prediction where the
    /// file marks it). The padding token follows the family (SD 2.x: `!`; SD 1.x: the end token).
    /// Linear weights the file holds in Q8_0/Q4_0/Q4_1 stay so; f16/f32 ones follow `precision`.
    pub fn from_gguf(
        read: &mut ReadFile<'_>,
        gguf: &str,
        vae: Option<&mut ReadFile<'_>>,
        device: &PmgDevice,
        precision: Precision,
    ) -> Result<Self> {
        let ck = GgufCheckpoint::read(gguf, open(read, "model", gguf)?)?;
        let (tokenizer, _) = clip_tokenizer(read, "model", "tokenizer/")?;
        let pad = match ck.family {
            Family::Sd1 => tokenizer.eos,
            Family::Sd2 => tokenizer
                .token_id("!")
                .ok_or_else(|| Error::Tokenizer("SD 2.x pads with `!`, which the vocabulary lacks".into()))?,
        };
        let scheduler = match read_bytes(read, SCHEDULER)? {
            Some(b) => SchedulerConfig::from_json(utf8(SCHEDULER, &b)?)?,
            None => SchedulerConfig::from_json(&sd_schedule(ck.v_prediction))?,
        };
        let text_config = ClipTextConfig::from_json(&ck.text_config()?)?;
        let text_encoder = ClipTextModel::with_precision(text_config, &ck.view(Which::Text), gguf, device, precision)?;
        let unet_config = UNetConfig::from_json(&ck.unet_config()?)?;
        let unet = UNet::with_precision(unet_config, &ck.view(Which::Unet), gguf, device, precision)?;
        let vae = match (vae, ck.vae_config()?) {
            (Some(read), _) => Vae::from_folder(read, "vae", "", &device.device)?,
            (None, Some(config)) => Vae::Kl(AutoencoderKl::from_weights(
                AutoencoderKlConfig::from_json(&config)?,
                &ck.view(Which::Vae),
                gguf,
                &device.device,
            )?),
            (None, None) => {
                return Err(Error::InvalidArgument(format!(
                    "{gguf} has no autoencoder (first_stage_model.*): give one (TAESD's folder, say)"
                )));
            }
        };
        Self::assemble(tokenizer, pad, text_encoder, unet, vae, scheduler, device)
    }

    /// From a folder on disk, or a GGUF file (see [`Self::from_gguf`]); `vae_dir`: TAESD or
    /// another autoencoder folder in place of the checkpoint's.
    #[cfg(not(target_family = "wasm"))]
    pub fn from_dir(
        dir: &std::path::Path,
        vae_dir: Option<&std::path::Path>,
        device: &PmgDevice,
        precision: Precision,
    ) -> Result<Self> {
        let mut vae = vae_dir.map(|d| move |f: &str| read_dir_file(d, f));
        let vae = vae.as_mut().map(|r| r as &mut ReadFile<'_>);
        if dir.is_file() {
            let (parent, name) = match (dir.parent(), dir.file_name().and_then(|n| n.to_str())) {
                (Some(p), Some(n)) => (p, n),
                _ => return Err(Error::InvalidArgument(format!("{}: not a GGUF file's path", dir.display()))),
            };
            return Self::from_gguf(&mut |f| read_dir_file(parent, f), name, vae, device, precision);
        }
        Self::from_files(&mut |f| read_dir_file(dir, f), vae, device, precision)
    }

    /// The text states the UNet attends to: CLIP's last hidden states of the prompt padded to the
    /// encoder's context (77 rows), as diffusers' `encode_prompt` makes them.
    pub fn encode(&self, text: &str) -> Result<Conditioning> {
        let (states, len, width) = self.states(text)?;
        Ok(Conditioning { rows: crate::device::read_f32(states)?, len, width })
    }

    /// [`Self::encode`] without a blocking readback (the browser).
    pub async fn encode_async(&self, text: &str) -> Result<Conditioning> {
        let (states, len, width) = self.states(text)?;
        Ok(Conditioning { rows: crate::device::read_f32_async(states).await?, len, width })
    }

    fn states(&self, text: &str) -> Result<(Tensor<3>, usize, usize)> {
        let len = MAX_LENGTH.min(self.text_encoder.config.max_position_embeddings);
        let ids = self.tokenizer.encode_padded(text, len, self.pad)?;
        Ok((self.text_encoder.forward(&[ids])?.last, len, self.text_encoder.config.tower.hidden_size))
    }

    /// Latent sides for an image of `height` x `width` pixels.
    fn latent_side(&self, px: usize) -> Result<usize> {
        let f = self.vae.downscale() << self.unet.config.downsamplings();
        if px == 0 || !px.is_multiple_of(f) || px > 4096 {
            return Err(Error::InvalidArgument(format!("image side {px}: a multiple of {f} up to 4096")));
        }
        Ok(px / self.vae.downscale())
    }

    /// The image side drawn when none is asked for: [`Self::set_size`]'s, else the checkpoint's
    /// own, the UNet's `sample_size` latents decoded (512 for SD 1.x and SD-Turbo), or 512 when
    /// nothing says (GGUF checkpoints carry no config: SD 2.x's 768 px models need a size).
    pub fn native_size(&self) -> usize {
        self.size.unwrap_or_else(|| self.unet.config.sample_size.map_or(512, |s| s * self.vae.downscale()))
    }

    /// Draw `px`-wide square images when no size is asked for (checked against the models).
    pub fn set_size(&mut self, px: usize) -> Result<()> {
        self.latent_side(px)?;
        self.size = Some(px);
        Ok(())
    }

    /// The sampling plan for `opts` and the step a run starts at: 0 from noise, later from a
    /// picture (img2img as diffusers runs it: `strength` of the steps, the last ones).
    fn plan(&self, opts: &SampleOptions, from_picture: bool) -> Result<(Plan, usize)> {
        let plan = Plan::new(opts.sampler, &self.scheduler, opts.steps)?;
        let first = if from_picture && opts.strength < 1.0 {
            let n = plan.steps();
            let run = ((n as f32 * opts.strength) as usize).min(n);
            if run == 0 {
                return Err(Error::InvalidArgument(format!(
                    "strength {} of {n} steps runs no step: raise the strength or the steps",
                    opts.strength
                )));
            }
            n - run
        } else {
            0
        };
        Ok((plan, first))
    }

    /// Denoiser steps a run takes.
    pub fn run_steps(&self, opts: &SampleOptions, from_picture: bool) -> Result<usize> {
        let (plan, first) = self.plan(opts, from_picture)?;
        Ok(plan.steps() - first)
    }

    /// The latents of pictures (any size, composited over white, scaled to `side` pixels).
    fn encode_pictures(&self, pictures: &[&Image], side: usize) -> Result<Tensor<4>> {
        crate::diffusion::check_pictures(pictures)?;
        let rgb: Vec<f32> = pictures
            .iter()
            .flat_map(|p| {
                let mut m = p.over([255, 255, 255]).to_model_resized(side);
                m.truncate(3 * side * side);
                m
            })
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(rgb, [pictures.len(), 3, side, side]), &self.device.device);
        let z = (0..pictures.len()).map(|i| self.vae.encode(x.clone().narrow(0, i, 1))).collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(z, 0))
    }

    /// The UNet on `x` `[n, ..]` at timestep `t`, `per_call` latents at a time.
    fn unet_calls(
        &self,
        x: Tensor<4>,
        t: f64,
        ctx: &Tensor<3>,
        mask: Option<&Tensor<2, Bool>>,
        per_call: usize,
    ) -> Result<Tensor<4>> {
        let n = x.dims()[0];
        if n <= per_call {
            return self.unet.forward(x, &vec![t; n], ctx, mask);
        }
        let outs = (0..n)
            .step_by(per_call)
            .map(|s| {
                let k = per_call.min(n - s);
                let mask = mask.map(|m| m.clone().narrow(0, s, k));
                self.unet.forward(x.clone().narrow(0, s, k), &vec![t; k], &ctx.clone().narrow(0, s, k), mask.as_ref())
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(outs, 0))
    }

    /// One image per (conditioning, seed), `height` x `width` pixels, as a `[b, 4, h, w]` RGBA
    /// batch in [-1, 1] (opaque) on the device, the emoji generator's image layout. Guidance
    /// follows diffusers: above 1 it mixes in the empty prompt's prediction; at or below 1 the
    /// prompt's prediction alone (SD-Turbo samples with 0). The seeds draw the initial latents and
    /// an ancestral sampler's noise from `pmg::rng`. Conditionings of different lengths are
    /// padded, the padding left out of the cross-attention. `pictures` (one per run, with
    /// `opts.strength < 1`) start each run from that picture noised to the strength (img2img).
    pub async fn denoise_from<H: Host<Step>>(
        &self,
        conds: &[Conditioning],
        pictures: Option<&[&Image]>,
        seeds: &[u64],
        opts: &SampleOptions,
        [height, width]: [usize; 2],
        host: &mut H,
    ) -> Result<Tensor<4>> {
        opts.validate()?;
        let (lh, lw) = (self.latent_side(height)?, self.latent_side(width)?);
        let d = self.unet.config.context_width();
        if conds.is_empty() || conds.len() != seeds.len() || conds.iter().any(|c| c.width != d || c.len == 0) {
            return Err(Error::InvalidArgument(format!(
                "{} conditionings of width {d} for {} seeds",
                conds.len(),
                seeds.len()
            )));
        }
        if pictures.is_some_and(|p| p.len() != seeds.len()) {
            return Err(Error::InvalidArgument(format!(
                "{} start pictures for {} runs",
                pictures.map_or(0, <[_]>::len),
                seeds.len()
            )));
        }
        // What the device's largest buffer allows, checked before any work: the UNet runs on as
        // many latents per call as fit; the autoencoder on one image at a time.
        let gpu = &self.device;
        let per_latent = self.unet.config.peak_bytes_per_latent([lh, lw]);
        gpu.check_tensor_bytes(per_latent, &format!("the UNet on a {height}x{width} latent"))?;
        let per_call = gpu.max_tensor_bytes.map_or(usize::MAX, |m| (m as usize / per_latent.max(1)).max(1));
        let what = |verb| format!("{verb} a {height}x{width} image with this autoencoder (TAESD's needs less)");
        gpu.check_tensor_bytes(self.vae.peak_bytes([height, width], false), &what("decoding"))?;
        if pictures.is_some() {
            gpu.check_tensor_bytes(self.vae.peak_bytes([height, width], true), &what("encoding"))?;
        }
        let start = match pictures {
            Some(p) if height == width => Some(self.encode_pictures(p, height)?),
            Some(_) => return Err(Error::InvalidArgument("img2img draws square images".into())),
            None => None,
        };
        let (plan, first) = self.plan(opts, start.is_some())?;
        let dev = &self.device.device;
        let (b, c) = (seeds.len(), self.unet.config.in_channels);
        let per = c * lh * lw;
        let mut rngs: Vec<SeededRng> = seeds.iter().map(|&s| SeededRng::new(s)).collect();
        let normals = |rngs: &mut [SeededRng]| {
            let v: Vec<f32> = rngs.iter_mut().flat_map(|r| r.normals(per)).collect();
            Tensor::<4>::from_data(TensorData::new(v, [b, c, lh, lw]), dev)
        };
        let noise = normals(&mut rngs);
        let mut x = match start {
            Some(z) => {
                let (a, s) = plan.add_noise(first);
                z.mul_scalar(a as f32).add(noise.mul_scalar(s as f32))
            }
            None => noise.mul_scalar(plan.init_noise_sigma as f32),
        };
        let guided = opts.guidance > 1.0;
        let empty = match (guided, host.blocking()) {
            (false, _) => None,
            (true, true) => Some(self.encode("")?),
            (true, false) => Some(self.encode_async("").await?),
        };
        let all: Vec<&Conditioning> =
            conds.iter().chain(empty.iter().cycle().take(if guided { b } else { 0 })).collect();
        let (ctx, mask) = crate::diffusion::context_batch(&all, dev);
        let mask = all.iter().any(|c| c.len != all[0].len).then_some(mask);
        let mut prev = None;
        for i in first..plan.steps() {
            let input = x.clone().mul_scalar(plan.input_scale(i) as f32);
            let input = if guided { Tensor::cat(vec![input.clone(), input], 0) } else { input };
            let out = self.unet_calls(input, plan.timesteps[i], &ctx, mask.as_ref(), per_call)?;
            let out = if guided {
                let (cond, uncond) = (out.clone().narrow(0, 0, b), out.narrow(0, b, b));
                uncond.clone().add(cond.sub(uncond).mul_scalar(opts.guidance))
            } else {
                out
            };
            let noise = plan.noisy(i).then(|| normals(&mut rngs));
            let (next, denoised) = plan.update_from(i, first).apply_tensor(x, out, prev.take(), noise);
            x = next;
            prev = Some(denoised);
            if !host.blocking() {
                crate::device::read_f32_async(x.clone().slice([0..1, 0..1, 0..1, 0..1])).await?;
            }
            if !host.progress(Step { done: i + 1 - first, total: plan.steps() - first }).await {
                return Err(Error::Cancelled);
            }
        }
        let rgb = (0..b).map(|i| self.vae.decode(x.clone().narrow(0, i, 1))).collect::<Result<Vec<_>>>()?;
        let rgb = Tensor::cat(rgb, 0);
        let [_, ch, h, w] = rgb.dims();
        if ch != 3 {
            return Err(Error::InvalidArgument(format!("the autoencoder decodes {ch} channels, not RGB")));
        }
        Ok(Tensor::cat(vec![rgb, Tensor::ones([b, 1, h, w], dev)], 1))
    }

    /// [`Self::denoise_from`] natively, as PNG-ready images; `on_step(i, n)` returning `false` cancels.
    pub fn generate(
        &self,
        prompts: &[&str],
        seeds: &[u64],
        opts: &SampleOptions,
        size: [usize; 2],
        on_step: &mut dyn FnMut(usize, usize) -> bool,
    ) -> Result<Vec<Image>> {
        let conds = prompts.iter().map(|p| self.encode(p)).collect::<Result<Vec<_>>>()?;
        let mut host = Blocking(|s: Step| on_step(s.done, s.total));
        let x = crate::host::block_on(self.denoise_from(&conds, None, seeds, opts, size, &mut host))?;
        Ok(crate::diffusion::batch_images(&crate::device::read_f32(x)?, size))
    }
}
