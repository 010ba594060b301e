//! Standard pretrained models of the Stable Diffusion family, from the files users already have
//! (issue 21): CLIP's text encoder and the whole CLIP (PMG's scorer), diffusers' UNet and
//! autoencoders, from diffusers/transformers folders or one-file GGUF checkpoints
//! ([`gguf_checkpoint`]); the tokenizer is `tokenizer::clip`, the samplers `diffusion::schedulers`.

pub mod clip_model;
pub mod clip_scorer;
pub mod clip_text;
pub mod folder;
pub mod gguf_checkpoint;
pub(crate) mod nn;
pub mod pipeline;
pub mod taesd;
pub mod unet;
pub mod vae;

use crate::gguf::GgmlType;

/// How the UNet's and the text encoder's linear layers are held on the device: f32, or quantized
/// on load to a GGUF block format (one f16 scale per 32 weights: Q8_0 ~8.5 bits a weight, Q4_0
/// ~4.5) and multiplied by pmg's kernels. Convolutions, norms and embeddings stay f32, and so
/// do linear layers whose input width is not a multiple of 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Precision {
    #[default]
    F32,
    #[cfg_attr(feature = "clap", value(name = "q8_0"))]
    Q8_0,
    #[cfg_attr(feature = "clap", value(name = "q4_0"))]
    Q4_0,
}

impl Precision {
    pub(crate) fn ggml_type(self) -> Option<GgmlType> {
        match self {
            Precision::F32 => None,
            Precision::Q8_0 => Some(GgmlType::Q8_0),
            Precision::Q4_0 => Some(GgmlType::Q4_0),
        }
    }
}
