//! Quality of preference extraction on the checked-in synthetic histories
//! (`eval/preferences/histories.json`): how many keywords name the history's known theme.
//!
//! A keyword hits a theme when one of its words, lowercased and without a plural `s`, equals a word
//! of the theme's vocabulary. The vocabulary is only used here, to score; extraction never sees it.
//! A frequency baseline (the most common words of the rendered history, no LLM) puts the numbers
//! in context.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ExtractOptions, Extractor, Feed, PromptMode};
use crate::error::{Error, Result};
use crate::history::render::Domain;
use crate::history::{Event, EventKind};

#[derive(Debug, Deserialize)]
pub struct EvalSet {
    pub themes: BTreeMap<String, Theme>,
    pub histories: Vec<EvalHistory>,
}

#[derive(Debug, Deserialize)]
pub struct Theme {
    #[serde(default)]
    pub description: String,
    pub vocabulary: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct EvalHistory {
    pub id: String,
    pub theme: String,
    pub domain: Domain,
    pub events: Vec<Event>,
}

impl EvalSet {
    pub fn parse(json: &str) -> Result<Self> {
        let set: EvalSet =
            serde_json::from_str(json).map_err(|e| Error::InvalidArgument(format!("evaluation set: {e}")))?;
        for h in &set.histories {
            if !set.themes.contains_key(&h.theme) {
                return Err(Error::InvalidArgument(format!("history {} names unknown theme {}", h.id, h.theme)));
            }
            for (i, e) in h.events.iter().enumerate() {
                e.validate(i).map_err(|e| Error::InvalidArgument(format!("history {}: {e}", h.id)))?;
            }
        }
        Ok(set)
    }
}

fn stem(w: &str) -> String {
    let w = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
    if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") { w[..w.len() - 1].to_string() } else { w }
}

/// Does `keyword` share a word with the vocabulary?
pub fn hits(keyword: &str, vocabulary: &[String]) -> bool {
    let vocab: Vec<String> =
        vocabulary.iter().flat_map(|v| v.split_whitespace().map(stem).collect::<Vec<_>>()).collect();
    keyword.split_whitespace().map(stem).any(|w| !w.is_empty() && vocab.contains(&w))
}

/// Scores of one system on one history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryScore {
    pub id: String,
    pub theme: String,
    pub domain: Domain,
    pub keywords: Vec<String>,
    /// Fraction of keywords that hit the theme.
    pub precision: f32,
    /// At least one keyword hits.
    pub any_hit: bool,
    /// The first keyword hits.
    pub top1_hit: bool,
}

fn score(h: &EvalHistory, theme: &Theme, keywords: Vec<String>) -> HistoryScore {
    let hit: Vec<bool> = keywords.iter().map(|k| hits(k, &theme.vocabulary)).collect();
    let precision =
        if keywords.is_empty() { 0.0 } else { hit.iter().filter(|&&b| b).count() as f32 / keywords.len() as f32 };
    HistoryScore {
        id: h.id.clone(),
        theme: h.theme.clone(),
        domain: h.domain,
        precision,
        any_hit: hit.iter().any(|&b| b),
        top1_hit: hit.first().copied().unwrap_or(false),
        keywords,
    }
}

/// The no-LLM baseline: the `n` most frequent content words of item titles, tags, categories,
/// queries and messages (ties broken by first appearance).
pub fn frequency_baseline(events: &[Event], n: usize) -> Vec<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut add = |text: &str| {
        for w in text.split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-') {
            let w = w.to_lowercase();
            if w.len() < 3 || super::decode::is_stop_phrase(&w) || COMMON.contains(&w.as_str()) {
                continue;
            }
            match counts.iter_mut().find(|(x, _)| *x == w) {
                Some(c) => c.1 += 1,
                None => counts.push((w, 1)),
            }
        }
    };
    for e in events {
        if let Some(item) = e.item() {
            if e.rating01().is_some_and(|r| r < 0.6) {
                continue;
            }
            add(&item.title);
            item.tags.iter().for_each(|t| add(t));
            if let Some(c) = &item.category {
                add(c);
            }
        }
        match &e.kind {
            EventKind::Search { query } => add(query),
            EventKind::Message { text, .. } | EventKind::Review { text, .. } => add(text),
            _ => {}
        }
    }
    let mut order: Vec<(usize, (String, usize))> = counts.into_iter().enumerate().collect();
    order.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(&b.0)));
    order.into_iter().take(n).map(|(_, (w, _))| w).collect()
}

/// Function words the baseline skips (in addition to the extractor's stop words).
const COMMON: &[&str] = &[
    "i", "you", "my", "your", "we", "our", "me", "was", "were", "have", "has", "had", "just", "so", "but", "not",
    "all", "can", "will", "would", "what", "when", "how", "too", "really", "got", "get", "one", "two", "new", "also",
    "about", "there", "here", "them", "him", "her", "his", "she", "he", "yes", "no", "out", "up", "did", "does", "do",
    "yet", "now", "than", "then", "into", "over", "after",
];

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub system: String,
    pub histories: usize,
    pub precision: f32,
    pub any_hit: f32,
    pub top1_hit: f32,
    pub by_domain: BTreeMap<String, (usize, f32)>,
    pub seconds: f32,
}

pub fn summarize(system: &str, scores: &[HistoryScore], seconds: f32) -> Summary {
    let n = scores.len().max(1) as f32;
    let mut by_domain: BTreeMap<String, (usize, f32)> = BTreeMap::new();
    for s in scores {
        let d = by_domain.entry(format!("{:?}", s.domain).to_lowercase()).or_default();
        d.0 += 1;
        d.1 += s.precision;
    }
    for d in by_domain.values_mut() {
        d.1 /= d.0 as f32;
    }
    Summary {
        system: system.into(),
        histories: scores.len(),
        precision: scores.iter().map(|s| s.precision).sum::<f32>() / n,
        any_hit: scores.iter().filter(|s| s.any_hit).count() as f32 / n,
        top1_hit: scores.iter().filter(|s| s.top1_hit).count() as f32 / n,
        by_domain,
        seconds,
    }
}

/// Run the LLM extractor over the set.
pub async fn run_llm(
    ex: &Extractor<'_>,
    feed: &mut Feed<'_>,
    set: &EvalSet,
    mode: PromptMode,
    n: usize,
) -> Result<Vec<HistoryScore>> {
    let mut out = Vec::new();
    for h in &set.histories {
        let opts = ExtractOptions { n_keywords: n, domain: h.domain, mode, ..Default::default() };
        let prefs = ex.preferences(feed, &h.events, &opts).await?;
        out.push(score(h, &set.themes[&h.theme], prefs.keywords.into_iter().map(|k| k.text).collect()));
    }
    Ok(out)
}

pub fn run_baseline(set: &EvalSet, n: usize) -> Vec<HistoryScore> {
    set.histories.iter().map(|h| score(h, &set.themes[&h.theme], frequency_baseline(&h.events, n))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hit_matching_uses_words_and_plurals() {
        let v = vec!["cat".to_string(), "pastel pink".to_string(), "kitten".into()];
        assert!(hits("cats", &v));
        assert!(hits("soft pink", &v));
        assert!(hits("kittens", &v));
        assert!(!hits("dog", &v));
        assert!(!hits("category", &v));
        assert!(!hits("glass", &["glas".to_string()]));
    }

    #[test]
    fn baseline_counts_content_words() {
        let e = |q: &str| Event::new(0, EventKind::Search { query: q.into() });
        let got = frequency_baseline(&[e("pink cats and pink cups"), e("the cats")], 2);
        assert_eq!(got, ["pink", "cats"]);
    }
}
