//! The LLM: config from metadata, the llama-family model, sampling and generation.

pub mod config;
pub mod generate;
pub mod model;
pub mod sampler;

pub use config::LlamaConfig;
pub use generate::{CancelToken, FinishReason, GenerateOptions, LanguageModel, Session, Token, TokenStream};
pub use model::{KvCache, Llama, Rows};
pub use sampler::{Sampler, SamplingParams};
