//! Explicit preferences (PMG step 2): the LLM reads the rendered history and answers with keywords
//! in a fixed format, decoded under constraints (`decode.rs`) so the answer always parses.
//!
//! Two prompt designs from the paper: `Direct` (one prompt for N keywords) and `PerAttribute` (one
//! prompt per attribute of the domain, then an "integrate" prompt that picks N of the candidates;
//! there the decoder may only produce candidates). The history is placed in the user message and
//! tokenized as plain text, so special-token text in it stays text.

pub mod decode;
pub mod eval;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::history::render::{Domain, RenderOptions, clean, render};
use crate::history::{Event, Item};
use crate::llm::{LanguageModel, Session};
use crate::tokenizer::ChatMessage;
use decode::{Action, DecodeOptions, Decoded, KeywordDecoder, KeywordVocab};

/// One keyword and its weight (the weights of a list sum to 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Keyword {
    pub text: String,
    pub weight: f32,
}

/// What the LLM made of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Preferences {
    /// Most confident first.
    pub keywords: Vec<Keyword>,
    /// Per-attribute candidates (`PerAttribute` mode), e.g. `colour -> [pastel pink, mint]`.
    pub attributes: BTreeMap<String, Vec<String>>,
    /// True when the history held nothing to go on: no keywords, the generator stays unpersonalized.
    pub neutral: bool,
    /// The rendered history the LLM saw (for the privacy panel and debugging).
    pub rendered: String,
}

impl Preferences {
    /// The keywords as one phrase (`"cats, pastel colours, ..."`).
    pub fn phrase(&self) -> String {
        self.keywords.iter().map(|k| k.text.as_str()).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum PromptMode {
    #[default]
    Direct,
    #[serde(alias = "per-attribute")]
    PerAttribute,
}

crate::names_from_serde!(PromptMode, "prompt mode");

/// How to extract preference keywords (`pmg preferences`, `preferences()` in JS, and the `extract`
/// part of the personalize options): one definition for serde, clap and TypeScript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ExtractOptions {
    /// Keywords to extract, 1..=32.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = ExtractOptions::default().n_keywords))]
    pub n_keywords: usize,
    /// Which of PMG's history renderings: stickers | shop | movies.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = ExtractOptions::default().domain))]
    pub domain: Domain,
    /// direct | per_attribute (PMG's attribute-wise prompt).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = ExtractOptions::default().mode))]
    pub mode: PromptMode,
    #[cfg_attr(feature = "clap", arg(skip))]
    pub render: RenderOptions,
    /// Sampling temperature of the keywords; 0 is greedy (the default: the same history gives the
    /// same keywords).
    #[cfg_attr(feature = "clap", arg(long = "keyword-temperature", id = "keyword_temperature", default_value_t = ExtractOptions::default().temperature))]
    pub temperature: f32,
    /// Seed of the keywords' sampling (with a temperature above 0).
    #[cfg_attr(feature = "clap", arg(long = "keyword-seed", id = "keyword_seed", default_value_t = ExtractOptions::default().seed))]
    #[cfg_attr(test, ts(type = "number"))]
    pub seed: u64,
    /// Words per keyword, 1..=6.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = ExtractOptions::default().max_words))]
    pub max_words: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            n_keywords: 8,
            domain: Domain::Stickers,
            mode: PromptMode::Direct,
            render: RenderOptions::default(),
            temperature: 0.0,
            seed: 0,
            max_words: 3,
        }
    }
}

impl ExtractOptions {
    fn validate(&self) -> Result<()> {
        if !(1..=32).contains(&self.n_keywords) {
            return Err(Error::InvalidArgument(format!("n_keywords must be 1..=32, not {}", self.n_keywords)));
        }
        if !(1..=6).contains(&self.max_words) {
            return Err(Error::InvalidArgument(format!("max_words must be 1..=6, not {}", self.max_words)));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::InvalidArgument("temperature must be a finite number >= 0".into()));
        }
        Ok(())
    }
}

/// The attributes asked about in `PerAttribute` mode (PMG's per-domain attribute prompts).
pub fn attributes(domain: Domain) -> &'static [&'static str] {
    match domain {
        Domain::Stickers => &["theme", "subject", "colour", "style", "mood"],
        Domain::Shop => &["colour", "material", "season", "style", "pattern"],
        Domain::Movies => &["genre", "country", "style", "era", "actor", "director"],
    }
}

const SYSTEM: &str = "You are a careful assistant. You describe what a person likes with short keywords.";
const ANSWER_PREFIX: &str = "The keywords are:\n1.";

/// The LLM session a pipeline feeds tokens to, reading the logits back the way its host allows:
/// blocking (natively, and on the CPU backend anywhere) or awaited (WebGPU in a browser).
pub struct Feed<'a> {
    pub session: Session<'a>,
    blocking: bool,
}

impl<'a> Feed<'a> {
    pub fn new(session: Session<'a>, blocking: bool) -> Self {
        Feed { session, blocking }
    }
    /// Blocking readbacks (native).
    pub fn blocking(session: Session<'a>) -> Self {
        Self::new(session, true)
    }
    /// Awaited readbacks (required on WebGPU in a browser).
    pub fn awaited(session: Session<'a>) -> Self {
        Self::new(session, false)
    }
    /// Start a new context.
    pub fn reset(&mut self) {
        self.session.reset();
    }
    /// Append tokens; logits of the last one.
    pub async fn feed(&mut self, tokens: &[u32]) -> Result<Vec<f32>> {
        if self.blocking { self.session.feed(tokens) } else { self.session.feed_async(tokens).await }
    }
}

/// Preference extraction for one model: holds the per-vocabulary tables.
pub struct Extractor<'m> {
    lm: &'m LanguageModel,
    vocab: KeywordVocab,
    separators: Vec<Vec<u32>>,
}

impl<'m> Extractor<'m> {
    pub fn new(lm: &'m LanguageModel) -> Result<Self> {
        if lm.template.is_none() {
            return Err(Error::Template(
                "preference extraction needs a chat model (this GGUF has no chat template)".into(),
            ));
        }
        let separators = (2..=40).map(|k| lm.tokenizer.encode(&format!("\n{k}."), false)).collect::<Result<_>>()?;
        Ok(Extractor { lm, vocab: KeywordVocab::new(&lm.tokenizer), separators })
    }

    /// The model behind this extractor.
    pub fn model(&self) -> &'m LanguageModel {
        self.lm
    }

    /// Prompt tokens: chat template with the user text as plain content, then the answer prefix.
    fn prompt(&self, user: &str) -> Result<Vec<u32>> {
        let t = self.lm.template.as_ref().expect("checked in new");
        let msgs = [ChatMessage::new("system", SYSTEM), ChatMessage::new("user", user)];
        let mut segs = t.render_segments(&msgs, true)?;
        segs.push(crate::tokenizer::Segment { text: ANSWER_PREFIX.into(), is_content: false });
        let mut ids = Vec::new();
        if self.lm.tokenizer.add_bos {
            ids.extend(self.lm.tokenizer.bos_id);
        }
        ids.extend(self.lm.tokenizer.encode_segments(&segs)?);
        Ok(ids)
    }

    async fn decode(
        &self,
        feed: &mut Feed<'_>,
        user: &str,
        opts: DecodeOptions,
        choices: Option<&[String]>,
    ) -> Result<Vec<Decoded>> {
        let prompt = self.prompt(user)?;
        let mut dec = KeywordDecoder::new(&self.vocab, self.separators.clone(), opts);
        if let Some(c) = choices {
            let seqs = c
                .iter()
                .map(|t| Ok((self.lm.tokenizer.encode(&format!(" {t}"), false)?, t.clone())))
                .collect::<Result<Vec<_>>>()?;
            dec = dec.choose_from(seqs);
        }
        feed.reset();
        let mut logits = feed.feed(&prompt).await?;
        while let Action::Feed(tokens) = dec.step(&logits) {
            logits = feed.feed(&tokens).await?;
        }
        Ok(dec.keywords().to_vec())
    }

    fn decode_opts(&self, n: usize, opts: &ExtractOptions, salt: u64) -> DecodeOptions {
        DecodeOptions {
            n,
            max_words: opts.max_words,
            max_attempts: 2 * n + 4,
            temperature: opts.temperature,
            seed: opts.seed ^ salt,
            ..Default::default()
        }
    }

    /// The exact prompt tokens of the `Direct` preference prompt for a history (for inspection and tests).
    pub fn direct_prompt(&self, events: &[Event], opts: &ExtractOptions) -> Result<Vec<u32>> {
        self.prompt(&direct_user(&self.render(events, opts), opts))
    }

    /// The rendered history, within the budget, in the model's own token count.
    pub fn render(&self, events: &[Event], opts: &ExtractOptions) -> String {
        let count = |s: &str| self.lm.tokenizer.encode(s, false).map(|t| t.len()).unwrap_or(usize::MAX);
        render(events, opts.domain, &opts.render, &count)
    }

    /// Preference keywords from a history.
    pub async fn preferences(
        &self,
        feed: &mut Feed<'_>,
        events: &[Event],
        opts: &ExtractOptions,
    ) -> Result<Preferences> {
        opts.validate()?;
        let rendered = self.render(events, opts);
        if rendered.trim().is_empty() {
            return Ok(Preferences { neutral: true, ..Default::default() });
        }
        let noun = opts.domain.noun();
        let n = opts.n_keywords;
        let mut attributes = BTreeMap::new();
        let decoded = match opts.mode {
            PromptMode::Direct => {
                self.decode(feed, &direct_user(&rendered, opts), self.decode_opts(n, opts, 0), None).await?
            }
            PromptMode::PerAttribute => {
                let mut candidates: Vec<String> = Vec::new();
                for (i, attr) in attributes_of(opts.domain).iter().enumerate() {
                    let user = format!(
                        "Here is what a user did recently:\n\n{rendered}\n\nWhich {attr} of {noun} does this user like? Give 3 keywords. Answer in the format: The keywords are: 1. keyword 2. keyword 3. keyword"
                    );
                    let got: Vec<String> = self
                        .decode(feed, &user, self.decode_opts(3, opts, i as u64 + 1), None)
                        .await?
                        .into_iter()
                        .map(|d| d.text)
                        .collect();
                    for g in &got {
                        if !candidates.contains(g) {
                            candidates.push(g.clone());
                        }
                    }
                    attributes.insert(attr.to_string(), got);
                }
                let list = candidates.join(", ");
                let user = format!(
                    "Here is what a user did recently:\n\n{rendered}\n\nCandidate keywords: {list}.\nChoose the {n} candidate keywords that best describe what this user likes. Answer in the format: The keywords are: 1. keyword 2. keyword ..."
                );
                self.decode(feed, &user, self.decode_opts(n.min(candidates.len()).max(1), opts, 99), Some(&candidates))
                    .await?
            }
        };
        if decoded.is_empty() {
            return Err(Error::Preferences("the model produced no usable keyword".into()));
        }
        Ok(Preferences { keywords: weigh(decoded), attributes, neutral: false, rendered })
    }

    /// Keywords describing one item (PMG's "describe it in 10 keywords"), for the target of a generation.
    pub async fn item_keywords(
        &self,
        feed: &mut Feed<'_>,
        item: &Item,
        n: usize,
        opts: &ExtractOptions,
    ) -> Result<Vec<Keyword>> {
        let mut desc = clean(&item.title, 80);
        if let Some(c) = &item.category {
            desc.push_str(&format!(" ({})", clean(c, 40)));
        }
        if !item.tags.is_empty() {
            desc.push_str(&format!(
                ": {}",
                item.tags.iter().take(8).map(|t| clean(t, 24)).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(d) = &item.description {
            desc.push_str(&format!(". {}", clean(d, 200)));
        }
        let user = format!(
            "Describe this {} in {n} keywords: {desc}\nAnswer in the format: The keywords are: 1. keyword 2. keyword ...",
            opts.domain.noun().trim_end_matches('s')
        );
        let decoded = self.decode(feed, &user, self.decode_opts(n, opts, 7), None).await?;
        if decoded.is_empty() {
            return Err(Error::Preferences("the model produced no usable keyword for the item".into()));
        }
        Ok(weigh(decoded))
    }
}

fn direct_user(rendered: &str, opts: &ExtractOptions) -> String {
    let (n, noun) = (opts.n_keywords, opts.domain.noun());
    format!(
        "Here is what a user did recently:\n\n{rendered}\n\nWhat does this user like? Give {n} keywords about the themes, subjects, colours and styles of the {noun} they prefer. Do not name product types. Answer in the format: The keywords are: 1. keyword 2. keyword ..."
    )
}

fn attributes_of(domain: Domain) -> &'static [&'static str] {
    attributes(domain)
}

/// Weights from the model's confidence: softmax of the keywords' mean token log-probabilities.
fn weigh(decoded: Vec<Decoded>) -> Vec<Keyword> {
    let max = decoded.iter().map(|d| d.mean_logprob).fold(f32::NEG_INFINITY, f32::max);
    let w: Vec<f32> = decoded.iter().map(|d| (d.mean_logprob - max).exp()).collect();
    let total: f32 = w.iter().sum();
    let mut out: Vec<Keyword> =
        decoded.into_iter().zip(w).map(|(d, w)| Keyword { text: d.text, weight: w / total }).collect();
    out.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    out
}

/// Blocking convenience: preferences from a history with a fresh session.
pub fn extract(lm: &LanguageModel, events: &[Event], opts: &ExtractOptions) -> Result<Preferences> {
    let ex = Extractor::new(lm)?;
    let mut feed = Feed::blocking(lm.new_session());
    crate::host::block_on(ex.preferences(&mut feed, events, opts))
}
