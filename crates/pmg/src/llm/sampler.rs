//! Token sampling: repetition penalty, temperature, top-k, top-p, seeded randomness.
//!
//! The order (penalty -> top-k -> temperature -> top-p -> draw) follows llama.cpp's common sampler
//! chain; `temperature == 0` is greedy (argmax, first index on ties).

use crate::rng::SeededRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How to pick each token: one definition for serde (JS: camelCase), clap and TypeScript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
#[cfg_attr(feature = "clap", derive(clap::Args))]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SamplingParams {
    /// 0 is greedy (the default).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SamplingParams::default().temperature))]
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SamplingParams::default().top_k))]
    pub top_k: usize,
    /// Keep the most likely tokens up to this probability mass, in (0, 1]; 1 = off.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SamplingParams::default().top_p))]
    pub top_p: f32,
    /// 1 = off; above 1 discourages tokens seen in the last `repeatLastN`.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SamplingParams::default().repetition_penalty))]
    pub repetition_penalty: f32,
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SamplingParams::default().repeat_last_n))]
    pub repeat_last_n: usize,
    /// Seed of the sampler: the same seed and options give the same tokens.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = SamplingParams::default().seed))]
    #[cfg_attr(test, ts(type = "number"))]
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_k: 40, top_p: 0.95, repetition_penalty: 1.0, repeat_last_n: 64, seed: 0 }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self::default()
    }
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::InvalidArgument(m.into()));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be a finite number >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty must be > 0");
        }
        Ok(())
    }
}

pub struct Sampler {
    params: SamplingParams,
    rng: SeededRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self> {
        params.validate()?;
        let rng = SeededRng::new(params.seed);
        Ok(Sampler { params, rng })
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Greedy (argmax after the repetition penalty): the choice needs no random draw and no
    /// logits on the host, so a GPU can make it.
    pub fn is_greedy(&self) -> bool {
        self.params.temperature == 0.0
    }

    /// The distinct tokens the repetition penalty applies to, or `None` when it is off.
    pub fn penalized(&self, history: &[u32]) -> Option<(f32, Vec<u32>)> {
        let p = &self.params;
        (p.repetition_penalty != 1.0).then(|| (p.repetition_penalty, recent_distinct(history, p.repeat_last_n)))
    }

    /// Pick the next token from `logits` given the tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        if let Some((penalty, seen)) = self.penalized(history) {
            apply_penalty(logits, &seen, penalty);
        }
        let p = &self.params;
        if p.temperature == 0.0 {
            return argmax(logits);
        }
        let mut cand: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, l)| !l.is_nan()).map(|(i, &l)| (i as u32, l)).collect();
        if cand.is_empty() {
            return 0;
        }
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if p.top_k > 0 {
            cand.truncate(p.top_k);
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|&(_, l)| ((l - max) / p.temperature).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|q| *q /= sum);
        if p.top_p < 1.0 {
            let mut acc = 0.0;
            let mut keep = probs.len();
            for (i, q) in probs.iter().enumerate() {
                acc += q;
                if acc >= p.top_p {
                    keep = i + 1;
                    break;
                }
            }
            probs.truncate(keep);
            let s: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= s);
        }
        // The draw walks the kept tokens in id order, not probability order: two backends whose
        // logits differ in the last bits (AVX2 vs wasm SIMD128 vs GPU sums) may order two nearly
        // equal candidates differently, which would move the same `r` onto another token; in id
        // order a tiny difference only moves a boundary by as much.
        let mut kept: Vec<(u32, f32)> = cand.iter().zip(&probs).map(|(&(id, _), &q)| (id, q)).collect();
        kept.sort_unstable_by_key(|&(id, _)| id);
        let r = self.rng.unit_f32();
        let mut acc = 0.0;
        for &(id, q) in &kept {
            acc += q;
            if r < acc {
                return id;
            }
        }
        kept[kept.len() - 1].0
    }
}

/// The distinct tokens among the last `n` of `history`, sorted.
pub fn recent_distinct(history: &[u32], n: usize) -> Vec<u32> {
    let mut seen: Vec<u32> = history[history.len().saturating_sub(n)..].to_vec();
    seen.sort_unstable();
    seen.dedup();
    seen
}

/// Repetition penalty: positive logits of `seen` divided by `penalty`, the others multiplied.
pub fn apply_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    for &t in seen {
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// Index of the largest logit; the first one on ties (as llama.cpp's greedy sampler).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_first_max() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&mut [1.0, 3.0, 3.0, -1.0], &[]), 1);
    }

    #[test]
    fn seeded_sampling_is_deterministic_and_respects_top_k() {
        let params = SamplingParams { temperature: 1.0, top_k: 2, top_p: 1.0, seed: 7, ..Default::default() };
        let logits = vec![0.0, 5.0, 4.9, 4.8, -3.0];
        let draw = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone()).unwrap();
            (0..50).map(|_| s.sample(&mut logits.clone(), &[])).collect::<Vec<_>>()
        };
        let a = draw(&params);
        assert_eq!(a, draw(&params));
        assert!(a.iter().all(|&t| t == 1 || t == 2), "top-k 2 must only return the two best: {a:?}");
        assert!(a.contains(&1) && a.contains(&2));
    }

    #[test]
    fn repetition_penalty_demotes_seen_tokens() {
        let params = SamplingParams { repetition_penalty: 2.0, ..Default::default() };
        let mut s = Sampler::new(params).unwrap();
        assert_eq!(s.sample(&mut [1.0, 1.5, 0.2], &[1]), 0);
    }

    #[test]
    fn invalid_params_are_rejected() {
        assert!(Sampler::new(SamplingParams { temperature: -1.0, ..Default::default() }).is_err());
        assert!(Sampler::new(SamplingParams { top_p: 0.0, ..Default::default() }).is_err());
    }
}
