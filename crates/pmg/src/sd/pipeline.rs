//! Text to image with a Stable Diffusion checkpoint in diffusers' folder layout, as diffusers'
//! `StableDiffusionPipeline` runs it: CLIP's tokenizer and text encoder, the UNet driven by one of
//! the samplers of [`crate::diffusion::schedulers`] with classifier-free guidance, and the VAE (or
//! TAESD) decoder. Every file is read by its path in the folder ([`FILES`]), so a directory
//! (natively) and files fetched one by one (the browser) load the same way.

use burn::tensor::{Device, Tensor, TensorData};

use super::clip_text::{ClipTextConfig, ClipTextModel};
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
use crate::tensor_io::Weights;
use crate::tokenizer::clip::{ClipTokenizer, MAX_LENGTH};

/// The files of a diffusers SD folder this pipeline reads. The tokenizer is `tokenizer.json`
/// (transformers 5) or else `vocab.json` + `merges.txt` (older checkpoints);
/// `tokenizer_config.json` is optional (it names the padding token).
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

/// The files of an autoencoder folder (`vae/` of a checkpoint, or TAESD's own folder).
pub const VAE_FILES: &[&str] = &["config.json", "diffusion_pytorch_model.safetensors"];

/// The decoder: the checkpoint's `AutoencoderKL`, or `AutoencoderTiny` (TAESD) in its place.
pub enum Vae {
    Kl(AutoencoderKl),
    Tiny(AutoencoderTiny),
}

impl Vae {
    /// From an autoencoder folder's `config.json` (its `_class_name` picks the kind) and weights.
    pub fn from_files(config: &[u8], weights: &[u8], device: &Device) -> Result<Self> {
        let text = std::str::from_utf8(config).map_err(|e| Error::InvalidArgument(format!("vae config.json: {e}")))?;
        let class: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("vae config.json: {e}")))?;
        let file = "diffusion_pytorch_model.safetensors";
        let w = Weights::from_bytes(file, weights)?;
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
}

fn utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| Error::InvalidArgument(format!("{file}: {e}")))
}

/// The padding token a `tokenizer_config.json` names (a string, or `{ "content": ... }`).
fn pad_token(config: &str) -> Result<Option<String>> {
    let v: serde_json::Value =
        serde_json::from_str(config).map_err(|e| Error::Tokenizer(format!("tokenizer_config.json: {e}")))?;
    Ok(match v.get("pad_token") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(o) => o.get("content").and_then(|c| c.as_str()).map(str::to_owned),
        None => None,
    })
}

impl StableDiffusion {
    /// From a folder's files, each read by its path in [`FILES`] (`read` answers `Ok(None)` for
    /// a file the folder lacks); `vae` replaces the checkpoint's autoencoder (TAESD's folder files,
    /// [`VAE_FILES`]).
    pub fn from_files(
        read: &mut dyn FnMut(&str) -> Result<Option<Vec<u8>>>,
        vae: Option<(&[u8], &[u8])>,
        device: &PmgDevice,
    ) -> Result<Self> {
        let pad_config = read(TOKENIZER_CONFIG)?;
        let tokenizer_json = read(TOKENIZER_JSON)?;
        let mut need =
            |path: &str| read(path)?.ok_or_else(|| Error::InvalidArgument(format!("the model folder has no `{path}`")));
        let scheduler = SchedulerConfig::from_json(utf8("scheduler_config.json", &need(SCHEDULER)?)?)?;
        let tokenizer = match tokenizer_json {
            Some(j) => ClipTokenizer::from_tokenizer_json(utf8("tokenizer.json", &j)?)?,
            None => ClipTokenizer::from_vocab_merges(
                utf8("vocab.json", &need(VOCAB)?)?,
                utf8("merges.txt", &need(MERGES)?)?,
            )?,
        };
        let pad = match pad_config {
            Some(b) => pad_token(utf8("tokenizer_config.json", &b)?)?,
            None => None,
        };
        let pad = match pad {
            Some(t) => tokenizer
                .token_id(&t)
                .ok_or_else(|| Error::Tokenizer(format!("the padding token {t:?} is not in the vocabulary")))?,
            None => tokenizer.eos,
        };
        let dev = &device.device;
        let text_config = ClipTextConfig::from_json(utf8("text_encoder/config.json", &need(TEXT_CONFIG)?)?)?;
        let w = Weights::from_bytes(TEXT_WEIGHTS, &need(TEXT_WEIGHTS)?)?;
        let text_encoder = ClipTextModel::from_weights(text_config, &w, TEXT_WEIGHTS, dev)?;
        drop(w);
        let unet_config = UNetConfig::from_json(utf8("unet/config.json", &need(UNET_CONFIG)?)?)?;
        let w = Weights::from_bytes(UNET_WEIGHTS, &need(UNET_WEIGHTS)?)?;
        let unet = UNet::from_weights(unet_config, &w, UNET_WEIGHTS, dev)?;
        drop(w);
        if unet.config.context_width() != text_encoder.config.tower.hidden_size {
            return Err(Error::InvalidArgument(format!(
                "the UNet attends to {}-wide text states, the text encoder makes {}",
                unet.config.context_width(),
                text_encoder.config.tower.hidden_size
            )));
        }
        let vae = match vae {
            Some((config, weights)) => Vae::from_files(config, weights, dev)?,
            None => Vae::from_files(&need(VAE_CONFIG)?, &need(VAE_WEIGHTS)?, dev)?,
        };
        Ok(StableDiffusion { tokenizer, pad, text_encoder, unet, vae, scheduler, device: device.clone() })
    }

    /// From a folder on disk (`vae_dir`: TAESD or another autoencoder folder in place of `vae/`).
    #[cfg(not(target_family = "wasm"))]
    pub fn from_dir(dir: &std::path::Path, vae_dir: Option<&std::path::Path>, device: &PmgDevice) -> Result<Self> {
        let read_at = |p: std::path::PathBuf| -> Result<Option<Vec<u8>>> {
            match std::fs::read(&p) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Io { path: p.display().to_string(), source }),
            }
        };
        let vae = match vae_dir {
            Some(d) => {
                let get = |f: &str| {
                    read_at(d.join(f))?.ok_or_else(|| Error::InvalidArgument(format!("{} has no {f}", d.display())))
                };
                Some((get(VAE_FILES[0])?, get(VAE_FILES[1])?))
            }
            None => None,
        };
        let vae = vae.as_ref().map(|(c, w)| (c.as_slice(), w.as_slice()));
        Self::from_files(&mut |f| read_at(dir.join(f)), vae, device)
    }

    /// The text states the UNet attends to: CLIP's last hidden states of the prompt padded to the
    /// encoder's context (77 rows), as diffusers' `encode_prompt` makes them.
    pub fn encode(&self, text: &str) -> Result<Conditioning> {
        let len = MAX_LENGTH.min(self.text_encoder.config.max_position_embeddings);
        let ids = self.tokenizer.encode_padded(text, len, self.pad)?;
        let states = self.text_encoder.forward(&[ids])?.last;
        let width = self.text_encoder.config.tower.hidden_size;
        Ok(Conditioning { rows: crate::device::read_f32(states)?, len, width })
    }

    /// Latent sides for an image of `height` x `width` pixels.
    fn latent_side(&self, px: usize) -> Result<usize> {
        let f = self.vae.downscale() << self.unet.config.downsamplings();
        if px == 0 || !px.is_multiple_of(f) || px > 4096 {
            return Err(Error::InvalidArgument(format!("image side {px}: a multiple of {f} up to 4096")));
        }
        Ok(px / self.vae.downscale())
    }

    /// One image per (conditioning, seed), `height` x `width` pixels, as a `[b, 4, h, w]` RGBA
    /// batch in [-1, 1] (opaque) on the device, the emoji generator's image layout. Guidance
    /// follows diffusers: above 1 it mixes in the empty prompt's prediction; at or below 1 the
    /// prompt's prediction alone (SD-Turbo samples with 0). The seeds draw the initial latents and
    /// an ancestral sampler's noise from `pmg::rng`.
    pub async fn denoise<H: Host<Step>>(
        &self,
        conds: &[Conditioning],
        seeds: &[u64],
        opts: &SampleOptions,
        [height, width]: [usize; 2],
        host: &mut H,
    ) -> Result<Tensor<4>> {
        opts.validate()?;
        let (lh, lw) = (self.latent_side(height)?, self.latent_side(width)?);
        let d = self.unet.config.context_width();
        let len = conds.first().map_or(0, |c| c.len);
        if conds.is_empty() || conds.len() != seeds.len() || conds.iter().any(|c| c.width != d || c.len != len) {
            return Err(Error::InvalidArgument(format!(
                "{} conditionings of equal length and width {d} for {} seeds",
                conds.len(),
                seeds.len()
            )));
        }
        let plan = Plan::new(opts.sampler, &self.scheduler, opts.steps)?;
        let dev = &self.device.device;
        let (b, c) = (seeds.len(), self.unet.config.in_channels);
        let per = c * lh * lw;
        let mut rngs: Vec<SeededRng> = seeds.iter().map(|&s| SeededRng::new(s)).collect();
        let normals = |rngs: &mut [SeededRng]| {
            let v: Vec<f32> = rngs.iter_mut().flat_map(|r| r.normals(per)).collect();
            Tensor::<4>::from_data(TensorData::new(v, [b, c, lh, lw]), dev)
        };
        let mut x = normals(&mut rngs).mul_scalar(plan.init_noise_sigma as f32);
        let guided = opts.guidance > 1.0;
        let mut rows: Vec<f32> = conds.iter().flat_map(|c| c.rows.iter().copied()).collect();
        let mut batch = b;
        if guided {
            let empty = self.encode("")?;
            if empty.len != len {
                return Err(Error::InvalidArgument(format!("guidance needs {} conditioning rows", empty.len)));
            }
            rows.extend((0..b).flat_map(|_| empty.rows.iter().copied()));
            batch = 2 * b;
        }
        let ctx = Tensor::<3>::from_data(TensorData::new(rows, [batch, len, d]), dev);
        let mut prev = None;
        for (i, &t) in plan.timesteps.iter().enumerate() {
            let input = x.clone().mul_scalar(plan.input_scale(i) as f32);
            let input = if guided { Tensor::cat(vec![input.clone(), input], 0) } else { input };
            let out = self.unet.forward(input, &vec![t; batch], &ctx)?;
            let out = if guided {
                let (cond, uncond) = (out.clone().narrow(0, 0, b), out.narrow(0, b, b));
                uncond.clone().add(cond.sub(uncond).mul_scalar(opts.guidance))
            } else {
                out
            };
            let noise = plan.noisy(i).then(|| normals(&mut rngs));
            let (next, denoised) = plan.update(i).apply_tensor(x, out, prev.take(), noise);
            x = next;
            prev = Some(denoised);
            if !host.blocking() {
                crate::device::read_f32_async(x.clone().slice([0..1, 0..1, 0..1, 0..1])).await?;
            }
            if !host.progress(Step { done: i + 1, total: plan.timesteps.len() }).await {
                return Err(Error::Cancelled);
            }
        }
        let rgb = self.vae.decode(x)?;
        let [_, ch, h, w] = rgb.dims();
        if ch != 3 {
            return Err(Error::InvalidArgument(format!("the autoencoder decodes {ch} channels, not RGB")));
        }
        Ok(Tensor::cat(vec![rgb, Tensor::ones([b, 1, h, w], dev)], 1))
    }

    /// [`Self::denoise`] natively, as PNG-ready images; `on_step(i, n)` returning `false` cancels.
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
        let x = crate::host::block_on(self.denoise(&conds, seeds, opts, size, &mut host))?;
        let [h, w] = size;
        Ok(crate::device::read_f32(x)?.chunks_exact(4 * h * w).map(|c| Image::from_model(c, w, h)).collect())
    }
}
