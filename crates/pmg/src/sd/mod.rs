//! Standard pretrained models of the Stable Diffusion family, from the files users already have
//! (issue 21, in progress): CLIP's text encoder and the whole CLIP (PMG's scorer), diffusers' UNet
//! and autoencoders; the tokenizer is `tokenizer::clip`, the samplers `diffusion::schedulers`.

pub mod clip_model;
pub mod clip_scorer;
pub mod clip_text;
pub mod folder;
pub(crate) mod nn;
pub mod pipeline;
pub mod taesd;
pub mod unet;
pub mod vae;
