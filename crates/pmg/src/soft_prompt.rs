//! PMG's implicit preferences (Shen et al. 2024, section 3.3; `PMG.md` step 3): `k` trainable
//! soft tokens appended after the rendered history; the LLM's final hidden states at those
//! positions go through a learned linear adapter into the generator's conditioning space.
//!
//! ```text
//! history ──render + instruction, chat template──▶ prompt ids ──LLM prefill──▶ KV cache
//! soft tokens [k, 576] ──LLM (after the history)──▶ hidden [k, 576] ──adapter──▶ k conditioning rows
//! ```
//!
//! The LLM and the generator are frozen; the tokens and the adapter are trained with the
//! generator's denoising loss on synthetic users (`pmg train soft-prompt`, `crates/pmg-train/src/soft_prompt.rs`).
//! At inference the soft tokens run through the quantized model like any prompt
//! ([`Llama::forward_embeds`](crate::llm::Llama::forward_embeds)).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Tensor, TensorData};

use crate::device::{PmgDevice, read_f32, read_f32_async};
use crate::diffusion::Conditioning;
use crate::error::{Error, Result};
use crate::history::Event;
use crate::llm::{LanguageModel, Rows};
use crate::preference::{ExtractOptions, Extractor};
use crate::tensor_io::{Weights, load_module};
use crate::tokenizer::ChatMessage;

/// What the model is asked after the history; the soft tokens follow the assistant's turn start.
pub const INSTRUCTION: &str = "Draw a sticker this user would like.";
/// Words whose embeddings start the soft tokens in training (a sensible point in token space).
pub const INIT_WORDS: [&str; 4] = [" sticker", " style", " colour", " theme"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SoftPromptConfig {
    /// Soft tokens `k` (the paper's demo uses 4).
    pub tokens: usize,
    /// The LLM's embedding width (also the generator's conditioning width).
    pub width: usize,
}

impl Default for SoftPromptConfig {
    fn default() -> Self {
        SoftPromptConfig { tokens: 4, width: 576 }
    }
}

/// The trainable part: the soft token embeddings and the adapter.
#[derive(Module, Debug)]
pub struct SoftPromptNet {
    /// `[k, width]` input embeddings.
    pub tokens: Param<Tensor<2>>,
    /// Final hidden state -> conditioning row.
    pub adapter: Linear,
}

impl SoftPromptConfig {
    /// Zero tokens and an identity adapter (the LLM's hidden states are already in the
    /// generator's conditioning space: captions condition it through the same final norm).
    pub fn init(&self, dev: &Device) -> SoftPromptNet {
        let mut adapter = LinearConfig::new(self.width, self.width).init(dev);
        let eye: Vec<f32> =
            (0..self.width * self.width).map(|i| if i / self.width == i % self.width { 1.0 } else { 0.0 }).collect();
        adapter.weight = Param::from_tensor(Tensor::from_data(TensorData::new(eye, [self.width, self.width]), dev));
        adapter.bias = Some(Param::from_tensor(Tensor::zeros([self.width], dev)));
        SoftPromptNet { tokens: Param::from_tensor(Tensor::zeros([self.tokens, self.width], dev)), adapter }
    }

    /// [`init`](Self::init) with the tokens set to the embeddings of [`INIT_WORDS`] (cycled).
    pub fn init_from_words(&self, lm: &LanguageModel, dev: &Device) -> Result<SoftPromptNet> {
        let mut net = self.init(dev);
        let mut rows = Vec::with_capacity(self.tokens * self.width);
        for i in 0..self.tokens {
            let ids = lm.tokenizer.encode(INIT_WORDS[i % INIT_WORDS.len()], false)?;
            rows.extend(read_f32(lm.model.embed(&ids[..1])?)?);
        }
        net.tokens = Param::from_tensor(Tensor::from_data(TensorData::new(rows, [self.tokens, self.width]), dev));
        Ok(net)
    }
}

impl SoftPromptNet {
    /// Conditioning rows `[.., k, width]` from the LLM's hidden states at the soft positions.
    pub fn adapt<const D: usize>(&self, hidden: Tensor<D>) -> Tensor<D> {
        self.adapter.forward(hidden)
    }
}

/// The prompt the soft tokens follow: the rendered history (within the extraction budget) and
/// [`INSTRUCTION`] as the user's turn, then the assistant's turn start.
pub fn prompt(lm: &LanguageModel, events: &[Event], opts: &ExtractOptions) -> Result<Vec<u32>> {
    let history = Extractor::new(lm)?.render(events, opts);
    lm.tokenize_chat(&[ChatMessage::new("user", &format!("{history}\n\n{INSTRUCTION}"))])
}

/// A trained soft prompt on a device.
pub struct SoftPrompt {
    pub net: SoftPromptNet,
    pub config: SoftPromptConfig,
}

impl SoftPrompt {
    /// Load the safetensors export of `pmg train soft-prompt`.
    pub fn from_bytes(bytes: &[u8], device: &PmgDevice) -> Result<Self> {
        let file = "soft prompt";
        let w = Weights::from_bytes(file, bytes)?;
        let config: SoftPromptConfig = w.config(file)?;
        if config.tokens == 0 || config.tokens > 32 || config.width == 0 {
            return Err(Error::Weights {
                file: file.into(),
                problem: format!("{} soft tokens of width {}", config.tokens, config.width),
            });
        }
        let net = load_module(config.init(&device.device), &w, file)?;
        Ok(SoftPrompt { net, config })
    }

    fn check(&self, lm: &LanguageModel) -> Result<()> {
        if lm.model.config.n_embd != self.config.width {
            return Err(Error::InvalidArgument(format!(
                "the soft prompt is {} wide, the LLM {}",
                self.config.width, lm.model.config.n_embd
            )));
        }
        Ok(())
    }

    /// The implicit conditioning rows `[k, width]` for a prompt, on the device (not read back).
    pub fn rows_tensor(&self, lm: &LanguageModel, prompt: &[u32]) -> Result<Tensor<2>> {
        self.check(lm)?;
        let k = self.config.tokens;
        let mut cache = lm.model.new_cache_with(prompt.len() + k);
        if cache.n_ctx < prompt.len() + k {
            return Err(Error::InvalidArgument(format!(
                "history prompt of {} tokens does not fit the context",
                prompt.len()
            )));
        }
        lm.model.forward_hidden(prompt, &mut cache, Rows::Last)?;
        let h = lm.model.forward_embeds(self.net.tokens.val(), &mut cache, Rows::All)?;
        Ok(self.net.adapt(h))
    }

    /// The implicit preferences of a history as `k` conditioning rows (blocking readback).
    pub fn embed(&self, lm: &LanguageModel, events: &[Event], opts: &ExtractOptions) -> Result<Conditioning> {
        let rows = read_f32(self.rows_tensor(lm, &prompt(lm, events, opts)?)?)?;
        Ok(Conditioning { len: self.config.tokens, width: self.config.width, rows })
    }

    /// [`embed`](Self::embed) without blocking readbacks (WebGPU in the browser).
    pub async fn embed_async(
        &self,
        lm: &LanguageModel,
        events: &[Event],
        opts: &ExtractOptions,
    ) -> Result<Conditioning> {
        let rows = read_f32_async(self.rows_tensor(lm, &prompt(lm, events, opts)?)?).await?;
        Ok(Conditioning { len: self.config.tokens, width: self.config.width, rows })
    }
}
