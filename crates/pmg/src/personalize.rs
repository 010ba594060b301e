//! PMG end to end (steps 2-5 of `PMG.md`): preferences from the history, the generator
//! conditioned on target + preference keywords, candidates over preference weights and seeds, and
//! the scorer's alpha-weighted choice
//!
//! ```text
//! history ──Extractor──▶ preference keywords (top k)
//! target, keywords, w ──condition(w)──▶ Conditioning ─┐  one batch: weights × seeds
//! seeds ─────────────────────────────────────────────┴─▶ Generator ──▶ candidates
//! candidate ──Scorer──▶ a = ln s(img, target), p = ln s(img, keywords)
//! choice = argmax (1 - alpha) a + alpha p (+ the user's learned bonus for w)
//! ```
//!
//! The preference weight `w` is applied in one of two ways ([`Weighting`]): the paper's repetition
//! of the keywords in the prompt text, or repetition of the keywords' hidden-state rows in the
//! conditioning sequence (the LLM reads the keywords once; the denoiser's cross-attention gives the
//! preference rows `w` times the softmax mass, since a key repeated `w` times is a key with `ln w`
//! added to its logit).
//!
//! Implicit preferences ([`SoftPrompt`], the paper's soft "image tokens") add `k` rows made by
//! the LLM from the history itself; like the keyword rows they are repeated `w` times. Keywords
//! and embeddings can each be switched off ([`PersonalizeOptions::keywords`],
//! [`PersonalizeOptions::embeddings`]): the four systems of the evaluation.
//!
//! A target with its own picture ([`Target::image`]: the site's catalog item) is kept: each
//! candidate starts from that picture (SDEdit) at one of [`PersonalizeOptions::image_strengths`]
//! instead of from noise or the nearest training emoji, so the strength is among the candidates and
//! the alpha-weighted choice picks it with the preference weight.
//!
//! The dynamic alpha ([`Profile`]) is a replay of the user's thumbs up/down (`EventKind::Feedback`
//! events stored with the history), so deleting the history resets it and nothing else is stored.

use std::collections::BTreeMap;
use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::device::{read_f32, read_f32_async};
use crate::diffusion::{
    Conditioning, Generator, Init, MAX_TEXT_TOKENS, SampleOptions, Step, batch_images, encode_text, encode_text_async,
};
use crate::error::{Error, Result};
use crate::history::{Event, EventKind, Feedback};
use crate::host::{Blocking, Host};
use crate::image::Image;
use crate::llm::LanguageModel;
use crate::preference::{ExtractOptions, Extractor, Feed, Preferences};
use crate::scorer::{Scorer, dot, score_from_cosine};
use crate::sd::clip_scorer::ClipScorer;
use crate::sd::pipeline::StableDiffusion;
use crate::soft_prompt::SoftPrompt;

/// How the preference weight `w` enters the conditioning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum Weighting {
    /// `"target, kw1, kw2, kw1, kw2"`: the keywords repeated `w` times in the prompt (PMG's code).
    /// The default: in both held-out evaluations (EVALUATION.md) it kept more accuracy than `Rows`
    /// for nearly the same preference gain.
    #[default]
    Text,
    /// The keywords encoded once; their hidden-state rows repeated `w` times after the target's.
    Rows,
}

crate::names_from_serde!(Weighting, "weighting");

/// How to personalize: one definition for Rust, JSON and JS (serde: camelCase, the sampling
/// options flat beside these, the extraction options under `extract`), the command line (clap) and
/// the TypeScript declarations (web/src/options.d.ts); the defaults are `Default`'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct PersonalizeOptions {
    /// 0 = only accuracy to the target counts, 1 = only the preferences. Unset: the alpha learned
    /// from the user's feedback (the profile's; `DEFAULT_ALPHA` before any).
    #[cfg_attr(feature = "clap", arg(long))]
    pub alpha: Option<f32>,
    /// Preference weights to try, each 0..=8; 0 is the unpersonalized target-only image.
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ',', default_values_t = PersonalizeOptions::default().weights))]
    pub weights: Vec<u32>,
    /// Seeds per weight (`seed`, `seed + 1`, ...), 1..=8; at most 16 candidates in all.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = PersonalizeOptions::default().seeds))]
    pub seeds: usize,
    /// First seed of the noise.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = PersonalizeOptions::default().seed))]
    #[cfg_attr(test, ts(type = "number"))]
    pub seed: u64,
    /// text: the keywords repeated w times in the prompt (the paper's way); rows: the keywords'
    /// hidden states repeated w times.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = PersonalizeOptions::default().weighting))]
    pub weighting: Weighting,
    /// Preference keywords in the conditioning (the most confident first), 1..=8.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = PersonalizeOptions::default().preference_keywords))]
    pub preference_keywords: usize,
    /// Condition on the preference keywords (they are extracted either way: the choice scores
    /// candidates against them).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = PersonalizeOptions::default().keywords, action = clap::ArgAction::Set))]
    pub keywords: bool,
    /// Condition on the implicit preferences (soft-prompt rows, PMG's soft "image tokens"; needs
    /// the soft-prompt weights).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = PersonalizeOptions::default().embeddings, action = clap::ArgAction::Set))]
    pub embeddings: bool,
    /// With a target picture: seed i of each weight starts from the picture at the i-th of these
    /// strengths (cycling), each in (0, 1]; lower keeps more of the picture. (`strength` is for
    /// targets without a picture.)
    #[cfg_attr(feature = "clap", arg(long, value_delimiter = ',', default_values_t = PersonalizeOptions::default().image_strengths))]
    pub image_strengths: Vec<f32>,
    #[serde(flatten)]
    #[cfg_attr(feature = "clap", command(flatten))]
    pub sample: SampleOptions,
    #[cfg_attr(feature = "clap", command(flatten))]
    pub extract: ExtractOptions,
}

pub const DEFAULT_ALPHA: f32 = 0.5;

impl Default for PersonalizeOptions {
    fn default() -> Self {
        PersonalizeOptions {
            alpha: None,
            weights: vec![0, 1, 2],
            seeds: 2,
            seed: 0,
            weighting: Weighting::default(),
            preference_keywords: 3,
            keywords: true,
            embeddings: false,
            image_strengths: vec![0.5, 0.7],
            sample: SampleOptions::default(),
            extract: ExtractOptions::default(),
        }
    }
}

impl PersonalizeOptions {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if let Some(a) = self.alpha
            && !(a.is_finite() && (0.0..=1.0).contains(&a))
        {
            return bad(format!("alpha must be within 0..=1, not {a}"));
        }
        if self.weights.is_empty() || self.weights.len() > 8 || self.weights.iter().any(|&w| w > 8) {
            return bad(format!("weights must be 1 to 8 values within 0..=8, not {:?}", self.weights));
        }
        if !(1..=8).contains(&self.seeds) || self.weights.len() * self.seeds > 16 {
            return bad(format!(
                "seeds must be 1..=8 and weights x seeds at most 16 ({} x {})",
                self.weights.len(),
                self.seeds
            ));
        }
        if self.image_strengths.is_empty()
            || self.image_strengths.len() > 8
            || self.image_strengths.iter().any(|s| !(*s > 0.0 && *s <= 1.0))
        {
            return bad(format!("image_strengths must be 1 to 8 values within (0, 1], not {:?}", self.image_strengths));
        }
        if !(1..=8).contains(&self.preference_keywords) {
            return bad(format!("preference_keywords must be 1..=8, not {}", self.preference_keywords));
        }
        self.sample.validate()
    }
}

/// What to personalize: the item's title, and its own picture when the site has one.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Target {
    pub title: String,
    /// The item's picture (any size; scaled to the generator's 64x64). Candidates start from it.
    pub image: Option<Image>,
}

impl Target {
    /// A target known by its title alone: candidates are generated from the text.
    pub fn text(title: impl Into<String>) -> Self {
        Target { title: title.into(), image: None }
    }
}

impl From<&str> for Target {
    fn from(title: &str) -> Self {
        Target::text(title)
    }
}

impl From<String> for Target {
    fn from(title: String) -> Self {
        Target::text(title)
    }
}

/// Where the pipeline is, for progress bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    Extract,
    Encode,
    Denoise { step: usize, steps: usize },
    Score,
}

/// One generated image and its scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    #[serde(skip)]
    pub image: Image,
    pub weight: u32,
    pub seed: u64,
    /// The share of the noise schedule the run took: below 1 it started from a picture (the
    /// target's own, or the training emoji nearest to the prompt).
    pub strength: f32,
    /// The conditioning as text (`Rows`: the target and the keywords, with `w`).
    pub prompt: String,
    /// `ln s(image, target)`.
    pub accuracy: f32,
    /// `ln s(image, preference keywords)`; equal to `accuracy` without preferences.
    pub preference: f32,
    /// The selection score under the alpha of the result.
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Personalized {
    /// Index of the chosen candidate.
    pub chosen: usize,
    pub candidates: Vec<Candidate>,
    pub preferences: Preferences,
    /// The preference keywords in the conditioning (empty when `keywords` was off).
    pub used_keywords: Vec<String>,
    /// Whether the implicit-preference rows were in the conditioning.
    pub used_embeddings: bool,
    pub target: String,
    pub alpha: f32,
}

impl Personalized {
    pub fn image(&self) -> &Image {
        &self.candidates[self.chosen].image
    }

    /// The feedback event for a thumbs up/down on candidate `i`.
    pub fn feedback(&self, i: usize, up: bool) -> Result<Feedback> {
        let c = self
            .candidates
            .get(i)
            .ok_or_else(|| Error::InvalidArgument(format!("no candidate {i} (of {})", self.candidates.len())))?;
        let n = self.candidates.len() as f32;
        Ok(Feedback {
            up,
            target: self.target.clone(),
            alpha: self.alpha,
            weight: c.weight,
            accuracy: c.accuracy,
            preference: c.preference,
            mean_accuracy: self.candidates.iter().map(|c| c.accuracy).sum::<f32>() / n,
            mean_preference: self.candidates.iter().map(|c| c.preference).sum::<f32>() / n,
        })
    }
}

/// PMG's selection score.
pub fn score(accuracy: f32, preference: f32, alpha: f32) -> f32 {
    (1.0 - alpha) * accuracy + alpha * preference
}

/// Score every candidate under `alpha` (plus the profile's bonus for its weight) and return the
/// best one's index (ties: the earlier candidate). Re-ranking needs no new images.
pub fn select(candidates: &mut [Candidate], alpha: f32, profile: &Profile) -> usize {
    let mut best = 0;
    for i in 0..candidates.len() {
        let c = &mut candidates[i];
        c.score = score(c.accuracy, c.preference, alpha) + profile.bonus(c.weight);
        if c.score > candidates[best].score {
            best = i;
        }
    }
    best
}

/// What a user's feedback taught: their alpha and a small bonus per preference weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub alpha: f32,
    /// Added to a candidate's score by its weight `w`; within ±[`MAX_BONUS`].
    pub weight_bonus: BTreeMap<u32, f32>,
    /// Feedback events read.
    pub feedback: usize,
}

/// Largest alpha step per feedback.
pub const ALPHA_STEP: f32 = 0.1;
/// The (preference - accuracy) advantage, in `ln s`, at which a step is full size.
pub const ADVANTAGE_SCALE: f32 = 0.02;
pub const BONUS_STEP: f32 = 0.004;
pub const MAX_BONUS: f32 = 0.02;
pub const ALPHA_RANGE: (f32, f32) = (0.05, 0.95);

impl Default for Profile {
    fn default() -> Self {
        Profile { alpha: DEFAULT_ALPHA, weight_bonus: BTreeMap::new(), feedback: 0 }
    }
}

impl Profile {
    /// Replay the feedback events of a history, oldest first.
    pub fn from_history(events: &[Event]) -> Self {
        let mut p = Profile::default();
        let mut fb: Vec<(i64, &Feedback)> = events
            .iter()
            .filter_map(|e| if let EventKind::Feedback(f) = &e.kind { Some((e.at, f)) } else { None })
            .collect();
        fb.sort_by_key(|(at, _)| *at);
        for (_, f) in fb {
            p.learn(f);
        }
        p
    }

    /// One online update. The rated candidate's advantage is how much more it leaned to the
    /// preferences than the average candidate: `(p - a) - mean(p - a)`. A thumbs up moves alpha
    /// towards it (more personalization if it leaned that way), a thumbs down away: the gradient
    /// of the rated candidate's log-probability under a softmax choice over
    /// `(1 - alpha) a + alpha p`, with a uniform policy for the expectation, clipped to one
    /// step of at most [`ALPHA_STEP`].
    pub fn learn(&mut self, f: &Feedback) {
        let sign = if f.up { 1.0 } else { -1.0 };
        let advantage = (f.preference - f.accuracy) - (f.mean_preference - f.mean_accuracy);
        if advantage.is_finite() {
            let step = (advantage / ADVANTAGE_SCALE).clamp(-1.0, 1.0) * ALPHA_STEP;
            self.alpha = (self.alpha + sign * step).clamp(ALPHA_RANGE.0, ALPHA_RANGE.1);
        }
        let b = self.weight_bonus.entry(f.weight).or_insert(0.0);
        *b = (*b + sign * BONUS_STEP).clamp(-MAX_BONUS, MAX_BONUS);
        self.feedback += 1;
    }

    pub fn bonus(&self, weight: u32) -> f32 {
        self.weight_bonus.get(&weight).copied().unwrap_or(0.0)
    }
}

/// The prompt of weight `w` (`Text`), or the description of the rows (`Rows`).
pub fn prompt_text(target: &str, keywords: &[String], w: u32) -> String {
    let mut parts = vec![target.to_string()];
    for _ in 0..w {
        parts.extend(keywords.iter().cloned());
    }
    parts.join(", ")
}

/// The pipeline's host as the generator's step host: steps become `Stage::Denoise`, counted over
/// all the runs of one call (`before` steps done in earlier runs, `all` in total).
struct DenoiseSteps<'h, H: Host<Stage>> {
    host: &'h mut H,
    before: usize,
    all: usize,
}

impl<H: Host<Stage>> Host<Step> for DenoiseSteps<'_, H> {
    fn blocking(&self) -> bool {
        self.host.blocking()
    }
    fn progress(&mut self, s: Step) -> impl Future<Output = bool> {
        self.host.progress(Stage::Denoise { step: self.before + s.done, steps: self.all })
    }
}

/// The image generator PMG conditions: the shipped emoji generator (conditioned by the LLM's
/// hidden states) or a Stable Diffusion checkpoint (conditioned by its CLIP text encoder).
#[derive(Clone, Copy)]
pub enum GeneratorRef<'a> {
    Emoji(&'a Generator),
    Sd(&'a StableDiffusion),
}

impl<'a> From<&'a Generator> for GeneratorRef<'a> {
    fn from(g: &'a Generator) -> Self {
        GeneratorRef::Emoji(g)
    }
}

impl<'a> From<&'a StableDiffusion> for GeneratorRef<'a> {
    fn from(g: &'a StableDiffusion) -> Self {
        GeneratorRef::Sd(g)
    }
}

/// The scorer of PMG's choice: the shipped one (on the LLM's text states; emoji generator only)
/// or a standard CLIP (any generator).
#[derive(Clone, Copy)]
pub enum ScorerRef<'a> {
    Emoji(&'a Scorer),
    Clip(&'a ClipScorer),
}

impl<'a> From<&'a Scorer> for ScorerRef<'a> {
    fn from(s: &'a Scorer) -> Self {
        ScorerRef::Emoji(s)
    }
}

impl<'a> From<&'a ClipScorer> for ScorerRef<'a> {
    fn from(s: &'a ClipScorer) -> Self {
        ScorerRef::Clip(s)
    }
}

/// The models of PMG on one device.
#[derive(Clone, Copy)]
pub struct Personalizer<'a> {
    pub lm: &'a LanguageModel,
    pub generator: GeneratorRef<'a>,
    pub scorer: ScorerRef<'a>,
    /// The implicit-preference soft prompt, when loaded (`embeddings` needs it).
    pub soft: Option<&'a SoftPrompt>,
}

async fn cancel_unless<H: Host<Stage>>(host: &mut H, stage: Stage) -> Result<()> {
    if host.progress(stage).await { Ok(()) } else { Err(Error::Cancelled) }
}

impl Personalizer<'_> {
    async fn encode<H: Host<Stage>>(&self, host: &H, text: &str) -> Result<Conditioning> {
        match (self.generator, host.blocking()) {
            (GeneratorRef::Emoji(_), true) => encode_text(self.lm, text, MAX_TEXT_TOKENS),
            (GeneratorRef::Emoji(_), false) => encode_text_async(self.lm, text, MAX_TEXT_TOKENS).await,
            (GeneratorRef::Sd(sd), true) => sd.encode(text),
            (GeneratorRef::Sd(sd), false) => sd.encode_async(text).await,
        }
    }

    /// The width of the generator's conditioning rows.
    fn conditioning_width(&self) -> usize {
        match self.generator {
            GeneratorRef::Emoji(g) => g.unet_config.d_text,
            GeneratorRef::Sd(sd) => sd.unet.config.context_width(),
        }
    }

    async fn read<H: Host<Stage>, const D: usize>(&self, host: &H, t: burn::tensor::Tensor<D>) -> Result<Vec<f32>> {
        if host.blocking() { read_f32(t) } else { read_f32_async(t).await }
    }

    /// The implicit-preference rows of a history (`None` unless `opts.embeddings`, or when the
    /// history renders to nothing).
    pub async fn implicit<H: Host<Stage>>(
        &self,
        host: &H,
        events: &[Event],
        opts: &PersonalizeOptions,
    ) -> Result<Option<Conditioning>> {
        if !opts.embeddings || events.iter().all(|e| matches!(e.kind, EventKind::Feedback(_))) {
            return Ok(None);
        }
        let soft = self.soft.ok_or_else(|| {
            Error::InvalidArgument(
                "implicit embeddings need the soft-prompt weights (load them, or turn embeddings off)".into(),
            )
        })?;
        let rows = if host.blocking() {
            soft.embed(self.lm, events, &opts.extract)?
        } else {
            soft.embed_async(self.lm, events, &opts.extract).await?
        };
        if rows.width != self.conditioning_width() {
            return Err(Error::InvalidArgument(format!(
                "the soft prompt makes {}-wide rows, the generator reads {}: train one for this generator, or turn embeddings off",
                rows.width,
                self.conditioning_width()
            )));
        }
        Ok(Some(rows))
    }

    /// The whole pipeline: preferences (keywords, and implicit rows when asked) from `events`,
    /// then [`Self::generate`].
    pub async fn run<H: Host<Stage>>(
        &self,
        host: &mut H,
        events: &[Event],
        target: &Target,
        opts: &PersonalizeOptions,
    ) -> Result<Personalized> {
        opts.validate()?;
        cancel_unless(host, Stage::Extract).await?;
        let mut feed = Feed::new(self.lm.new_session(), host.blocking());
        let prefs = Extractor::new(self.lm)?.preferences(&mut feed, events, &opts.extract).await?;
        let implicit = if prefs.neutral { None } else { self.implicit(host, events, opts).await? };
        let profile = Profile::from_history(events);
        self.generate(host, prefs, implicit.as_ref(), &profile, target, opts).await
    }

    /// Candidates for `target` from already extracted preferences (the demo shows the keywords
    /// first, and may regenerate without asking the LLM again) and implicit rows
    /// ([`Self::implicit`]; used only when `opts.embeddings`).
    pub async fn generate<H: Host<Stage>>(
        &self,
        host: &mut H,
        prefs: Preferences,
        implicit: Option<&Conditioning>,
        profile: &Profile,
        target: &Target,
        opts: &PersonalizeOptions,
    ) -> Result<Personalized> {
        opts.validate()?;
        if let (GeneratorRef::Sd(_), ScorerRef::Emoji(_)) = (self.generator, self.scorer) {
            return Err(Error::InvalidArgument(
                "the shipped scorer reads the emoji generator's text states: score an SD generator with a CLIP scorer"
                    .into(),
            ));
        }
        let picture = target.image.as_ref();
        let target = target.title.split_whitespace().collect::<Vec<_>>().join(" ");
        if target.is_empty() {
            return Err(Error::InvalidArgument("empty target".into()));
        }
        let alpha = opts.alpha.unwrap_or(profile.alpha);
        let scored: Vec<String> =
            prefs.keywords.iter().take(opts.preference_keywords).map(|k| k.text.clone()).collect();
        let keywords: Vec<String> = if opts.keywords { scored.clone() } else { Vec::new() };
        let implicit = implicit.filter(|_| opts.embeddings);
        // Without preferences every weight gives the same image: generate weight 0 only.
        let weights: Vec<u32> = if keywords.is_empty() && implicit.is_none() { vec![0] } else { opts.weights.clone() };
        cancel_unless(host, Stage::Encode).await?;
        let target_cond = self.encode(host, &target).await?;
        let pref_cond = if scored.is_empty() { None } else { Some(self.encode(host, &scored.join(", ")).await?) };
        // The keyword rows in the conditioning (the scorer reads `pref_cond` either way).
        let keyword_rows = pref_cond.as_ref().filter(|_| opts.keywords);
        let (mut conds, mut queries) = (Vec::new(), Vec::new());
        let mut meta = Vec::new();
        for &w in &weights {
            let mut cond = match (keyword_rows, opts.weighting) {
                (Some(_), Weighting::Text) if w > 0 => self.encode(host, &prompt_text(&target, &keywords, w)).await?,
                (Some(p), Weighting::Rows) => target_cond.with_rows(p, w),
                _ => target_cond.clone(),
            };
            // The retrieval start is searched by the text rows alone (Generator::start_from).
            let query = cond.clone();
            if let (Some(imp), true) = (implicit, w > 0) {
                cond = cond.with_rows(imp, w);
            }
            let mut prompt = match opts.weighting {
                _ if w == 0 || keywords.is_empty() => target.clone(),
                Weighting::Text => prompt_text(&target, &keywords, w),
                Weighting::Rows => format!("{target} + ({}) x{w}", keywords.join(", ")),
            };
            if implicit.is_some() && w > 0 {
                prompt += &format!(" + implicit x{w}");
            }
            for s in 0..opts.seeds {
                let strength = match picture {
                    Some(_) => opts.image_strengths[s % opts.image_strengths.len()],
                    None => opts.sample.strength,
                };
                conds.push(cond.clone());
                queries.push(query.clone());
                meta.push((w, opts.seed + s as u64, prompt.clone(), strength));
            }
        }
        // One run per strength (a run's timesteps depend on it), in order of first use; the
        // candidates follow the runs' order.
        let mut strengths: Vec<f32> = Vec::new();
        for m in &meta {
            if !strengths.contains(&m.3) {
                strengths.push(m.3);
            }
        }
        let runs: Vec<(SampleOptions, Vec<usize>)> = strengths
            .iter()
            .map(|&strength| {
                let idx = (0..meta.len()).filter(|&i| meta[i].3 == strength).collect();
                (SampleOptions { strength, ..opts.sample }, idx)
            })
            .collect();
        let from_picture = match self.generator {
            GeneratorRef::Emoji(g) => picture.is_some() || g.retrieval.is_some(),
            GeneratorRef::Sd(_) => picture.is_some(),
        };
        let run_steps: Vec<usize> = runs
            .iter()
            .map(|(o, _)| match self.generator {
                GeneratorRef::Emoji(g) => g.run_steps(o, from_picture),
                GeneratorRef::Sd(sd) => sd.run_steps(o, from_picture),
            })
            .collect::<Result<_>>()?;
        let all = run_steps.iter().sum();
        let mut steps = DenoiseSteps { host, before: 0, all };
        let mut outputs = Vec::new();
        for ((o, idx), n) in runs.iter().zip(&run_steps) {
            let pick = |v: &[Conditioning]| idx.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
            let (c, q) = (pick(&conds), pick(&queries));
            let seeds: Vec<u64> = idx.iter().map(|&i| meta[i].1).collect();
            let pictures: Vec<&Image> = picture.into_iter().cycle().take(idx.len()).collect();
            outputs.push(match self.generator {
                GeneratorRef::Emoji(g) => {
                    let init = if picture.is_some() { Init::Images(&pictures) } else { Init::Nearest(&q) };
                    g.denoise_from(&c, init, &seeds, o, &mut steps).await?
                }
                GeneratorRef::Sd(sd) => {
                    let side = sd.native_size();
                    let pictures = picture.is_some().then_some(&pictures[..]);
                    sd.denoise_from(&c, pictures, &seeds, o, [side, side], &mut steps).await?
                }
            });
            steps.before += n;
        }
        let meta: Vec<_> = runs.iter().flat_map(|(_, idx)| idx.iter().map(|&i| meta[i].clone())).collect();
        let x = if outputs.len() == 1 { outputs.remove(0) } else { burn::tensor::Tensor::cat(outputs, 0) };
        cancel_unless(host, Stage::Score).await?;
        let [_, _, h, w] = x.dims();
        let (img_feats, images, text_feats, d) = match self.scorer {
            ScorerRef::Emoji(sc) => {
                let img_feats = sc.image_features_tensor(x.clone());
                let pixels = self.read(host, x).await?;
                let img_feats = self.read(host, img_feats).await?;
                let texts: Vec<&Conditioning> = std::iter::once(&target_cond).chain(pref_cond.as_ref()).collect();
                let text_feats = self.read(host, sc.text_features_tensor(&texts)?).await?;
                (img_feats, batch_images(&pixels, [h, w]), text_feats, sc.config.d_embed)
            }
            ScorerRef::Clip(sc) => {
                let pixels = self.read(host, x).await?;
                let images = batch_images(&pixels, [h, w]);
                let refs: Vec<&Image> = images.iter().collect();
                let img_feats = self.read(host, sc.image_features(&refs)?).await?;
                let preference = scored.join(", ");
                let texts: Vec<&str> = std::iter::once(target.as_str())
                    .chain((!scored.is_empty()).then_some(preference.as_str()))
                    .collect();
                let text_feats = self.read(host, sc.text_features(&texts)?).await?;
                (img_feats, images, text_feats, sc.model.config.projection_dim)
            }
        };
        let (t_feat, p_feat) = (&text_feats[..d], text_feats.get(d..2 * d));
        let mut candidates: Vec<Candidate> = images
            .into_iter()
            .zip(meta)
            .zip(img_feats.chunks_exact(d))
            .map(|((image, (weight, seed, prompt, strength)), f)| {
                let accuracy = score_from_cosine(dot(f, t_feat)).ln();
                let preference = p_feat.map_or(accuracy, |p| score_from_cosine(dot(f, p)).ln());
                Candidate { image, weight, seed, strength, prompt, accuracy, preference, score: 0.0 }
            })
            .collect();
        let chosen = select(&mut candidates, alpha, profile);
        Ok(Personalized {
            chosen,
            candidates,
            preferences: prefs,
            used_keywords: keywords,
            used_embeddings: implicit.is_some(),
            target,
            alpha,
        })
    }
}

/// Blocking convenience for native callers: the whole pipeline with a fresh session.
pub fn personalize(
    p: &Personalizer,
    events: &[Event],
    target: impl Into<Target>,
    opts: &PersonalizeOptions,
    on_progress: impl FnMut(Stage) -> bool,
) -> Result<Personalized> {
    crate::host::block_on(p.run(&mut Blocking(on_progress), events, &target.into(), opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(weight: u32, accuracy: f32, preference: f32) -> Candidate {
        Candidate {
            image: Image { width: 1, height: 1, rgba: vec![0; 4] },
            weight,
            seed: 0,
            strength: 1.0,
            prompt: String::new(),
            accuracy,
            preference,
            score: 0.0,
        }
    }

    #[test]
    fn alpha_trades_accuracy_for_preference() {
        let mut c = vec![cand(0, -0.10, -0.50), cand(1, -0.20, -0.30), cand(2, -0.40, -0.20)];
        let p = Profile::default();
        assert_eq!(select(&mut c, 0.0, &p), 0);
        assert_eq!(select(&mut c, 0.5, &p), 1);
        assert_eq!(select(&mut c, 1.0, &p), 2);
        assert!((c[2].score - -0.20).abs() < 1e-6);
    }

    fn fb(up: bool, c: &Candidate, all: &[Candidate]) -> Feedback {
        let r = Personalized {
            chosen: 0,
            candidates: all.to_vec(),
            preferences: Preferences::default(),
            used_keywords: vec![],
            used_embeddings: false,
            target: "cake".into(),
            alpha: 0.5,
        };
        let i = all.iter().position(|x| x == c).unwrap();
        r.feedback(i, up).unwrap()
    }

    #[test]
    fn feedback_moves_alpha_towards_what_the_user_liked() {
        let all = vec![cand(0, -0.10, -0.50), cand(2, -0.40, -0.20)];
        let mut p = Profile::default();
        // Liking the personal one (leaning to preferences) raises alpha.
        p.learn(&fb(true, &all[1], &all));
        assert!((p.alpha - 0.6).abs() < 1e-6, "{}", p.alpha);
        // Disliking it lowers alpha again; liking the plain one lowers it further.
        p.learn(&fb(false, &all[1], &all));
        p.learn(&fb(true, &all[0], &all));
        assert!((p.alpha - 0.4).abs() < 1e-6, "{}", p.alpha);
        assert!(p.bonus(0) > 0.0 && p.bonus(2) == 0.0);
        // Alpha stays within its range, however much feedback.
        for _ in 0..50 {
            p.learn(&fb(true, &all[0], &all));
        }
        assert_eq!(p.alpha, ALPHA_RANGE.0);
        assert_eq!(p.bonus(0), MAX_BONUS);
    }

    #[test]
    fn profile_replays_feedback_stored_in_the_history() {
        let all = vec![cand(0, -0.10, -0.50), cand(2, -0.40, -0.20)];
        let e = |at, f: Feedback| Event::new(at, EventKind::Feedback(f));
        let events = vec![
            e(2, fb(true, &all[1], &all)),
            Event::new(1, EventKind::Search { query: "cats".into() }),
            e(3, fb(true, &all[1], &all)),
        ];
        let p = Profile::from_history(&events);
        assert_eq!(p.feedback, 2);
        assert!((p.alpha - 0.7).abs() < 1e-6);
        // The event's JSON form round-trips and validates.
        let json = serde_json::to_string(&events[0]).unwrap();
        assert!(json.contains(r#""type":"feedback""#) && json.contains(r#""meanAccuracy""#), "{json}");
        let back = crate::history::parse_event(&json, 0).unwrap();
        assert_eq!(back, events[0]);
        let bad = json.replace(r#""alpha":0.5"#, r#""alpha":1.5"#);
        assert!(crate::history::parse_event(&bad, 0).is_err());
    }

    #[test]
    fn options_are_checked() {
        let ok = PersonalizeOptions::default();
        assert!(ok.validate().is_ok());
        for bad in [
            PersonalizeOptions { alpha: Some(1.5), ..ok.clone() },
            PersonalizeOptions { alpha: Some(f32::NAN), ..ok.clone() },
            PersonalizeOptions { weights: vec![], ..ok.clone() },
            PersonalizeOptions { weights: vec![9], ..ok.clone() },
            PersonalizeOptions { seeds: 0, ..ok.clone() },
            PersonalizeOptions { weights: vec![0, 1, 2, 3], seeds: 5, ..ok.clone() },
        ] {
            assert!(matches!(bad.validate(), Err(Error::InvalidArgument(_))), "{bad:?}");
        }
        assert_eq!(prompt_text("cake", &["cats".into(), "pink".into()], 2), "cake, cats, pink, cats, pink");
    }
}
