//! Generation: a [`Session`] owns a model's KV cache and turns prompts into streams of tokens.
//!
//! `Session::generate` returns a [`TokenStream`], an iterator of [`Token`]s that stops at an
//! end-of-turn token, a stop string, `max_tokens`, or cancellation. One device sync per token:
//! on wgpu a greedy choice (argmax after the repetition penalty) is made on the GPU and only the
//! 4-byte token id is read back; other sampling reads the logits row back and samples on the host
//! (as the CPU backend always does).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::model::{KvCache, Llama, Rows};
use super::sampler::{Sampler, SamplingParams, apply_penalty, argmax};
use crate::device::{BackendKind, read_f32, read_f32_async};
use crate::error::{Error, Result};
use crate::tokenizer::{ChatMessage, ChatTemplate, TextStream, Tokenizer};

/// Shared flag to stop a generation from another thread (or from JS in the browser).
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What to generate: one definition for serde (JS: camelCase, the sampling options flat beside
/// these), clap and TypeScript.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = GenerateOptions::default().max_tokens))]
    pub max_tokens: usize,
    #[serde(flatten)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub sampling: SamplingParams,
    /// Stop before any of these strings; they are not part of the output.
    #[cfg_attr(feature = "clap", arg(long))]
    pub stop: Vec<String>,
    #[serde(skip)]
    #[cfg_attr(feature = "clap", arg(skip))]
    #[cfg_attr(test, ts(skip))]
    pub cancel: Option<CancelToken>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_tokens: 256, sampling: SamplingParams::default(), stop: vec![], cancel: None }
    }
}

/// One generated token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Token {
    pub id: u32,
    /// Text this token releases: empty while a UTF-8 character is unfinished or while the tail
    /// could still become a stop string (it is released later).
    pub text: String,
    /// A control token (end of turn); its text is only held-back text being flushed.
    pub special: bool,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    EndOfTurn,
    StopString,
    MaxTokens,
    ContextFull,
    Cancelled,
}

/// A loaded model with its tokenizer and chat template: what the CLI, the pipeline and the browser use.
pub struct LanguageModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub template: Option<ChatTemplate>,
}

impl LanguageModel {
    /// Parse GGUF bytes and build everything on `device` with a context of `n_ctx` tokens.
    pub fn from_gguf_bytes(bytes: &[u8], device: &crate::device::PmgDevice, n_ctx: usize) -> Result<Self> {
        let g = crate::gguf::Gguf::parse(bytes)?;
        let tokenizer = Tokenizer::from_gguf(&g)?;
        let piece = |id: Option<u32>| id.map(|i| tokenizer.decode(&[i], false)).unwrap_or_default();
        let template = match g.get("tokenizer.chat_template") {
            Some(_) => Some(ChatTemplate::from_gguf(&g, piece(tokenizer.bos_id), piece(tokenizer.eos_id))?),
            None => None,
        };
        let model = Llama::from_gguf(&g, device, n_ctx)?;
        if tokenizer.vocab_size() != model.config.vocab_size {
            return Err(Error::metadata(
                "tokenizer.ggml.tokens",
                format!("{} tokens but the model has {}", tokenizer.vocab_size(), model.config.vocab_size),
            ));
        }
        Ok(LanguageModel { model, tokenizer, template })
    }

    /// Tokenize a raw prompt; special-token text (`<|im_start|>`) is recognised. Adds BOS when the
    /// model asks for it.
    pub fn tokenize_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        if self.tokenizer.add_bos {
            ids.extend(self.tokenizer.bos_id);
        }
        ids.extend(self.tokenizer.encode(prompt, true)?);
        Ok(ids)
    }

    /// Apply the model's chat template and tokenize. Message content is tokenized as plain text:
    /// `<|im_start|>` typed by a user stays text and cannot open a turn of its own.
    pub fn tokenize_chat(&self, messages: &[ChatMessage]) -> Result<Vec<u32>> {
        let t = self.template.as_ref().ok_or_else(|| Error::Template("this model has no chat template".into()))?;
        let segments = t.render_segments(messages, true)?;
        let mut ids = Vec::new();
        if self.tokenizer.add_bos {
            ids.extend(self.tokenizer.bos_id);
        }
        ids.extend(self.tokenizer.encode_segments(&segments)?);
        Ok(ids)
    }

    /// Compile the GPU pipelines of generation now rather than on the first request (shader
    /// compilation costs 10-200+ ms per pipeline on first use): two short prefills, a
    /// repetition-penalised greedy step, a greedy step and a step with the logits read back,
    /// on a scratch cache that is dropped afterwards. A no-op on the CPU backend. Natively;
    /// in the browser use [`warm_up_async`](Self::warm_up_async).
    pub fn warm_up(&self) -> Result<()> {
        if self.model.device.kind != BackendKind::Wgpu {
            return Ok(());
        }
        let (mut s, penalty, a, b) = self.warm_up_parts()?;
        s.choose(&a, None)?.read()?;
        let id = s.choose(&b, Some(&penalty))?.read()?;
        let id = s.choose(&[id], None)?.read()?;
        s.feed(&[id])?;
        Ok(())
    }

    /// [`warm_up`](Self::warm_up) without blocking readbacks (WebGPU in the browser: call it once
    /// after loading).
    pub async fn warm_up_async(&self) -> Result<()> {
        if self.model.device.kind != BackendKind::Wgpu {
            return Ok(());
        }
        let (mut s, penalty, a, b) = self.warm_up_parts()?;
        s.choose(&a, None)?.read_async().await?;
        let id = s.choose(&b, Some(&penalty))?.read_async().await?;
        let id = s.choose(&[id], None)?.read_async().await?;
        s.feed_async(&[id]).await?;
        Ok(())
    }

    /// A scratch session, a penalising greedy sampler, and two prompt chunks whose lengths give
    /// burn's prefill kernels both even and odd sequence lengths (their vectorisation differs).
    fn warm_up_parts(&self) -> Result<(Session<'_>, Sampler, Vec<u32>, Vec<u32>)> {
        let s = Session { lm: self, cache: self.model.new_cache_with(16), tokens: Vec::new() };
        let penalty = Sampler::new(SamplingParams { repetition_penalty: 1.1, ..SamplingParams::greedy() })?;
        let id = |i: u32| i % self.model.config.vocab_size as u32;
        Ok((s, penalty, (1..5).map(id).collect(), (5..8).map(id).collect()))
    }

    pub fn new_session(&self) -> Session<'_> {
        Session { lm: self, cache: self.model.new_cache(), tokens: Vec::new() }
    }

    /// Final-layer hidden states (after the output norm) of `tokens`, one row per requested position
    /// (all positions when `positions` is `None`). Rows are `n_embd` long.
    pub fn hidden_states(&self, tokens: &[u32], positions: Option<&[usize]>) -> Result<Vec<Vec<f32>>> {
        let h = self.hidden_tensor(tokens)?;
        self.pick_rows(tokens, read_f32(h)?, positions)
    }

    /// [`hidden_states`](Self::hidden_states) without blocking readbacks (WebGPU in the browser).
    pub async fn hidden_states_async(&self, tokens: &[u32], positions: Option<&[usize]>) -> Result<Vec<Vec<f32>>> {
        let h = self.hidden_tensor(tokens)?;
        self.pick_rows(tokens, read_f32_async(h).await?, positions)
    }

    fn hidden_tensor(&self, tokens: &[u32]) -> Result<burn::tensor::Tensor<2>> {
        if tokens.is_empty() {
            return Err(Error::InvalidArgument("hidden states of no tokens".into()));
        }
        // A cache just large enough: the default one is n_ctx long (~94 MB at 2048).
        let mut cache = self.model.new_cache_with(tokens.len());
        self.model.forward_hidden(tokens, &mut cache, Rows::All)
    }

    fn pick_rows(&self, tokens: &[u32], all: Vec<f32>, positions: Option<&[usize]>) -> Result<Vec<Vec<f32>>> {
        let d = self.model.config.n_embd;
        let pick = |p: usize| -> Result<Vec<f32>> {
            all.get(p * d..(p + 1) * d)
                .map(<[f32]>::to_vec)
                .ok_or_else(|| Error::InvalidArgument(format!("position {p} outside the {} tokens", tokens.len())))
        };
        match positions {
            Some(ps) => ps.iter().map(|&p| pick(p)).collect(),
            None => (0..tokens.len()).map(pick).collect(),
        }
    }
}

/// A conversation state: the KV cache and the tokens in it.
pub struct Session<'a> {
    pub lm: &'a LanguageModel,
    cache: KvCache,
    tokens: Vec<u32>,
}

impl<'a> Session<'a> {
    pub fn reset(&mut self) {
        self.cache.clear();
        self.tokens.clear();
    }

    /// Tokens currently in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Feed tokens and return the logits of the last one.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.lm.model.forward(tokens, &mut self.cache, Rows::Last)?;
        self.tokens.extend_from_slice(tokens);
        read_f32(logits)
    }

    /// Feed tokens and return the logits of the last one, without a blocking readback.
    pub async fn feed_async(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        let logits = self.lm.model.forward(tokens, &mut self.cache, Rows::Last)?;
        self.tokens.extend_from_slice(tokens);
        read_f32_async(logits).await
    }

    /// Feed tokens and return the greedy choice (argmax, first on ties) after the last one. On
    /// wgpu the argmax runs on the GPU and only the token id is read back.
    pub fn feed_greedy(&mut self, tokens: &[u32]) -> Result<u32> {
        self.choose(tokens, None)?.read()
    }

    /// [`feed_greedy`](Self::feed_greedy) without a blocking readback (WebGPU).
    pub async fn feed_greedy_async(&mut self, tokens: &[u32]) -> Result<u32> {
        self.choose(tokens, None)?.read_async().await
    }

    /// Feed tokens and make the greedy choice after them, with `sampler`'s repetition penalty; on
    /// wgpu both run on the GPU and nothing is read back yet.
    fn choose(&mut self, tokens: &[u32], sampler: Option<&Sampler>) -> Result<Choice> {
        let logits = self.lm.model.forward(tokens, &mut self.cache, Rows::Last)?;
        self.tokens.extend_from_slice(tokens);
        let penalty = sampler.and_then(|s| s.penalized(&self.tokens));
        #[cfg(feature = "wgpu")]
        if self.lm.model.device.kind == BackendKind::Wgpu {
            use crate::kernels::wgpu as gk;
            let logits = gk::cube(logits)?;
            if let Some((p, seen)) = penalty {
                gk::penalize(&logits, &seen, p);
            }
            return Ok(Choice::Device(gk::argmax(&logits)));
        }
        let mut logits = read_f32(logits)?;
        if let Some((p, seen)) = penalty {
            apply_penalty(&mut logits, &seen, p);
        }
        Ok(Choice::Ready(argmax(&logits)))
    }

    /// Start generating after `prompt` (a continuation of what is already in the session).
    pub fn generate(&mut self, prompt: &[u32], opts: GenerateOptions) -> Result<TokenStream<'_, 'a>> {
        let sampler = Sampler::new(opts.sampling.clone())?;
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("empty prompt".into()));
        }
        Ok(TokenStream {
            session: self,
            prompt: Some(prompt.to_vec()),
            sampler,
            opts,
            produced: 0,
            text: String::new(),
            stream: TextStream::default(),
            finish: None,
            next_input: None,
            emitted: 0,
            #[cfg(feature = "wgpu")]
            ahead: None,
        })
    }
}

/// A greedy choice, made on the host or still on the device.
#[allow(clippy::large_enum_variant)]
enum Choice {
    Ready(u32),
    #[cfg(feature = "wgpu")]
    Device(burn::backend::wgpu::CubeTensor),
}

impl Choice {
    fn read(self) -> Result<u32> {
        match self {
            Choice::Ready(id) => Ok(id),
            #[cfg(feature = "wgpu")]
            Choice::Device(t) => crate::kernels::wgpu::read_u32(t),
        }
    }

    async fn read_async(self) -> Result<u32> {
        match self {
            Choice::Ready(id) => Ok(id),
            #[cfg(feature = "wgpu")]
            Choice::Device(t) => crate::kernels::wgpu::read_u32_async(t).await,
        }
    }
}

/// Iterator over generated tokens. `finish_reason()` tells why it ended.
pub struct TokenStream<'s, 'a> {
    session: &'s mut Session<'a>,
    prompt: Option<Vec<u32>>,
    sampler: Sampler,
    opts: GenerateOptions,
    produced: usize,
    text: String,
    stream: TextStream,
    finish: Option<FinishReason>,
    next_input: Option<u32>,
    emitted: usize,
    /// Greedy on wgpu: the next step, already queued on the GPU with the last returned token as
    /// its input (taken there from the previous step's argmax), and its own argmax, not read yet.
    /// The host encodes step n+1 while the GPU runs step n.
    #[cfg(feature = "wgpu")]
    ahead: Option<burn::backend::wgpu::CubeTensor>,
}

impl Drop for TokenStream<'_, '_> {
    /// A step queued ahead whose token was not asked for is taken back out of the session.
    fn drop(&mut self) {
        self.take_back_ahead();
    }
}

impl TokenStream<'_, '_> {
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }
    /// All text generated so far (without a matched stop string).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Greedy on a GPU: choose on the device, read back the token id only.
    fn on_device(&self) -> bool {
        self.sampler.is_greedy() && self.session.lm.model.device.kind == BackendKind::Wgpu
    }

    fn step(&mut self) -> Result<Option<Token>> {
        if self.on_device() {
            let Some(choice) = self.device_begin() else { return Ok(None) };
            let id = match choice? {
                Choice::Ready(id) => Ok(id),
                #[cfg(feature = "wgpu")]
                Choice::Device(t) => {
                    // Issue the 4-byte read (submitting this step), queue the next step behind it,
                    // then wait: the host encodes step n+1 while the GPU runs step n.
                    let client = t.client.clone();
                    let read = crate::kernels::wgpu::read_u32_start(&client, &t);
                    self.run_ahead(&t)?;
                    cubecl::future::block_on(read)
                }
            };
            return self.device_end(id).map(Some);
        }
        let Some(input) = self.next_input_tokens() else { return Ok(None) };
        let logits = self.session.feed(&input)?;
        Ok(Some(self.accept(logits)))
    }

    /// The next token: the same as [`Iterator::next`], reading back without blocking (required
    /// for WebGPU in the browser, where a synchronous readback is impossible).
    pub async fn next_async(&mut self) -> Option<Result<Token>> {
        if self.on_device() {
            let id = match self.device_begin()? {
                Ok(Choice::Ready(id)) => Ok(id),
                #[cfg(feature = "wgpu")]
                Ok(Choice::Device(t)) => {
                    let client = t.client.clone();
                    let read = crate::kernels::wgpu::read_u32_start(&client, &t);
                    if let Err(e) = self.run_ahead(&t) {
                        return Some(Err(e));
                    }
                    read.await
                }
                Err(e) => return Some(Err(e)),
            };
            return Some(self.device_end(id));
        }
        let input = self.next_input_tokens()?;
        match self.session.feed_async(&input).await {
            Ok(logits) => Some(Ok(self.accept(logits))),
            Err(e) => Some(Err(e)),
        }
    }

    /// Greedy on the GPU, first half: the next choice, made on the device (or the step queued
    /// ahead). `None` when generation is over.
    fn device_begin(&mut self) -> Option<Result<Choice>> {
        #[cfg(feature = "wgpu")]
        if let Some(t) = self.ahead.take() {
            if self.opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
                self.ahead = Some(t);
                self.take_back_ahead();
                self.finish = Some(FinishReason::Cancelled);
                return None;
            }
            return Some(Ok(Choice::Device(t)));
        }
        let input = self.next_input_tokens()?;
        Some(self.session.choose(&input, Some(&self.sampler)))
    }

    /// Queue the step that feeds the token in `id` (still on the device) when the stream will
    /// want another token: plain greedy (a repetition penalty needs the token on the host), the
    /// embedding matrix on the GPU, tokens and context left.
    #[cfg(feature = "wgpu")]
    fn run_ahead(&mut self, id: &burn::backend::wgpu::CubeTensor) -> Result<()> {
        let s = &self.session;
        let wanted = self.produced + 1 < self.opts.max_tokens
            && s.cache.pos < s.cache.n_ctx
            && self.sampler.penalized(&s.tokens).is_none();
        if !wanted || !s.lm.model.embeds_on_gpu() || self.opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            return Ok(());
        }
        let logits = self.session.lm.model.step_from_device(id, &mut self.session.cache)?;
        self.ahead = Some(crate::kernels::wgpu::argmax(&crate::kernels::wgpu::cube(logits)?));
        Ok(())
    }

    /// Greedy on the GPU, second half: the token id arrived.
    fn device_end(&mut self, id: Result<u32>) -> Result<Token> {
        // A step queued ahead in this call fed the token being read.
        #[cfg(feature = "wgpu")]
        if self.ahead.is_some() {
            let id = match id {
                Ok(id) => id,
                Err(e) => {
                    // The step queued ahead fed a token nobody will know: take its position back.
                    self.ahead = None;
                    self.session.cache.pos -= 1;
                    return Err(e);
                }
            };
            // The step queued ahead fed this token already.
            self.session.tokens.push(id);
            let tok = self.accept_id(id);
            self.next_input = None;
            if self.finish.is_some() {
                self.take_back_ahead();
            }
            return Ok(tok);
        }
        Ok(self.accept_id(id?))
    }

    /// Undo a step queued ahead: its position and its input token leave the session (the KV
    /// entries it wrote are overwritten by the next token fed there).
    fn take_back_ahead(&mut self) {
        #[cfg(feature = "wgpu")]
        if self.ahead.take().is_some() {
            self.session.cache.pos -= 1;
            self.session.tokens.pop();
        }
    }

    /// What to feed next, or `None` (with `finish` set) when generation is over.
    fn next_input_tokens(&mut self) -> Option<Vec<u32>> {
        if self.finish.is_some() {
            return None;
        }
        if self.opts.cancel.as_ref().is_some_and(CancelToken::is_cancelled) {
            self.finish = Some(FinishReason::Cancelled);
            return None;
        }
        if self.produced >= self.opts.max_tokens {
            self.finish = Some(FinishReason::MaxTokens);
            return None;
        }
        let input = match (self.prompt.take(), self.next_input.take()) {
            (Some(p), _) => p,
            (None, Some(t)) => vec![t],
            (None, None) => unreachable!("a token is always pending after the prompt"),
        };
        if self.session.cache.pos + input.len() > self.session.cache.n_ctx {
            self.finish = Some(FinishReason::ContextFull);
            return None;
        }
        Some(input)
    }

    /// Sample from the logits of the last fed token and turn the choice into a [`Token`].
    fn accept(&mut self, mut logits: Vec<f32>) -> Token {
        let id = self.sampler.sample(&mut logits, &self.session.tokens);
        self.accept_id(id)
    }

    /// Turn the chosen token into a [`Token`] (stop conditions, held-back text).
    fn accept_id(&mut self, id: u32) -> Token {
        self.produced += 1;
        let tok = &self.session.lm.tokenizer;
        if tok.stop_ids.contains(&id) {
            // The end-of-turn token is yielded (marked special) carrying any held-back text.
            self.finish = Some(FinishReason::EndOfTurn);
            self.text.push_str(&self.stream.finish());
            return Token { id, text: self.flush(self.text.len()), special: true };
        }
        self.next_input = Some(id);
        self.text.push_str(&self.stream.push(tok, id));
        if let Some(cut) =
            self.opts.stop.iter().filter(|s| !s.is_empty()).filter_map(|s| self.text.find(s.as_str())).min()
        {
            self.text.truncate(cut);
            self.finish = Some(FinishReason::StopString);
            return Token { id, text: self.flush(cut), special: false };
        }
        if self.produced >= self.opts.max_tokens {
            self.text.push_str(&self.stream.finish());
            return Token { id, text: self.flush(self.text.len()), special: tok.is_control(id) };
        }
        // Hold back a tail that could still become a stop string.
        let hold = self.opts.stop.iter().map(|s| partial_suffix(&self.text, s)).max().unwrap_or(0);
        Token { id, text: self.flush(self.text.len() - hold), special: tok.is_control(id) }
    }

    /// Text from the last emitted byte up to `end`.
    fn flush(&mut self, end: usize) -> String {
        let end = end.max(self.emitted);
        let piece = self.text[self.emitted..end].to_string();
        self.emitted = end;
        piece
    }
}

/// Length of the longest proper prefix of `stop` that `text` ends with (on a char boundary).
fn partial_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len()).rev().find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k])).unwrap_or(0)
}

impl Iterator for TokenStream<'_, '_> {
    type Item = Result<Token>;
    fn next(&mut self) -> Option<Self::Item> {
        self.step().transpose()
    }
}
