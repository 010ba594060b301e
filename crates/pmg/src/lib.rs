//! pmg: personalized multimodal generation (PMG, Shen et al., WWW 2024) on the user's own device.
//!
//! This crate runs a quantized GGUF LLM with burn (wgpu or CPU), natively and in the browser.
//! See `ARCHITECTURE.md` for the design.

pub mod bytes;
pub mod device;
pub mod diffusion;
pub mod error;
pub mod gguf;
pub mod history;
pub mod host;
pub mod image;
pub mod kernels;
pub mod llm;
pub mod models;
#[cfg(test)]
mod options_ts;
pub mod personalize;
pub mod preference;
pub mod rng;
pub mod scorer;
pub mod sd;
pub mod soft_prompt;
pub mod tensor_io;
pub mod tokenizer;

pub use device::{BackendKind, DeviceChoice, PmgDevice};
pub use error::{Error, HistoryError, Result};
