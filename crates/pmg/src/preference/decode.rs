//! Constrained decoding of a numbered keyword list (`1. pastel colours\n2. cats\n...`).
//!
//! The decoder is a state machine over logits, independent of how they are computed:
//! `step(logits) -> Action::Feed(tokens) | Action::Done`, so the same code runs with a blocking
//! session natively and with an async one in the browser. Within a keyword only word tokens are
//! allowed (letters, `'`, `-`; at most `max_words` words and `max_chars` characters); anything the
//! model would end the keyword with (`,` `.` newline ...) closes it, and the decoder itself writes
//! the next number, so the answer always has the format. In `choose` mode a keyword must be one
//! of given candidates (a prefix tree over their tokens).

use crate::rng::SeededRng;

use crate::tokenizer::Tokenizer;

/// What a token may be inside a keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Other,
    /// ` word`: starts a word (leading space, then a letter).
    WordStart,
    /// `ord`: continues the current word.
    WordCont,
    /// Ends a keyword: starts with `,` `.` `;` or a newline.
    End,
}

/// Per-token classes for a vocabulary, computed once per model.
pub struct KeywordVocab {
    class: Vec<Class>,
    /// Token text (valid UTF-8 only; others are `Class::Other`).
    text: Vec<String>,
}

fn is_word_char(c: char) -> bool {
    c.is_alphabetic() || c == '\'' || c == '-'
}

impl KeywordVocab {
    pub fn new(tok: &Tokenizer) -> Self {
        let n = tok.vocab_size();
        let mut class = Vec::with_capacity(n);
        let mut text = Vec::with_capacity(n);
        for id in 0..n as u32 {
            let t = if tok.is_control(id) { None } else { std::str::from_utf8(tok.token_bytes(id)).ok() };
            let c = match t {
                None | Some("") => Class::Other,
                Some(t) => {
                    if let Some(rest) = t.strip_prefix(' ') {
                        let mut cs = rest.chars();
                        if cs.next().is_some_and(|c| c.is_alphabetic()) && cs.all(is_word_char) {
                            Class::WordStart
                        } else {
                            Class::Other
                        }
                    } else if t.chars().all(is_word_char) {
                        Class::WordCont
                    } else if t.starts_with([',', '.', ';', '\n']) {
                        Class::End
                    } else {
                        Class::Other
                    }
                }
            };
            class.push(c);
            text.push(t.unwrap_or("").to_string());
        }
        KeywordVocab { class, text }
    }
}

/// What the caller does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Feed these tokens and call `step` with the logits of the last one.
    Feed(Vec<u32>),
    /// The list is complete: read `keywords()`.
    Done,
}

/// One decoded keyword with the model's mean log-probability of its tokens (unconstrained).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub text: String,
    pub mean_logprob: f32,
}

pub struct DecodeOptions {
    pub n: usize,
    pub max_words: usize,
    pub max_chars: usize,
    /// Keywords to produce at most, counting refused ones (duplicates, stop words).
    pub max_attempts: usize,
    /// 0 = greedy.
    pub temperature: f32,
    pub seed: u64,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions { n: 8, max_words: 3, max_chars: 28, max_attempts: 16, temperature: 0.0, seed: 0 }
    }
}

/// Words that say nothing about a taste: function words, and words about the task or the medium
/// (a keyword "kitten stickers" is about kittens). A keyword is trimmed of these at both ends, and one
/// made only of them is refused. (Generic vocabulary, not a list of expected answers.)
const STOP_WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "and",
    "or",
    "of",
    "to",
    "in",
    "on",
    "for",
    "with",
    "by",
    "at",
    "from",
    "is",
    "are",
    "be",
    "it",
    "its",
    "this",
    "that",
    "these",
    "those",
    "their",
    "they",
    "his",
    "her",
    "my",
    "your",
    "our",
    "as",
    "into",
    "about",
    "than",
    "but",
    "not",
    "no",
    "so",
    "very",
    "more",
    "most",
    "some",
    "other",
    "others",
    "etc",
    "also",
    "such",
    "user",
    "users",
    "user's",
    "person",
    "people's",
    "keyword",
    "keywords",
    "like",
    "likes",
    "liked",
    "love",
    "loves",
    "loved",
    "prefer",
    "prefers",
    "preferred",
    "enjoy",
    "enjoys",
    "interest",
    "interests",
    "interested",
    "preference",
    "preferences",
    "favourite",
    "favorite",
    "item",
    "items",
    "thing",
    "things",
    "stuff",
    "sticker",
    "stickers",
    "emoji",
    "emojis",
    "movie",
    "movies",
    "film",
    "films",
    "product",
    "products",
    "review",
    "reviews",
    "rated",
    "rating",
    "genre",
    "genres",
    "theme",
    "themes",
    "style",
    "styles",
    "colour",
    "colours",
    "color",
    "colors",
    "mood",
    "moods",
    "subject",
    "subjects",
    "era",
    "decade",
    "season",
    "material",
    "pattern",
    "country",
    "actor",
    "director",
    "type",
    "types",
    "kind",
    "kinds",
];

fn is_stop(w: &str) -> bool {
    STOP_WORDS.contains(&w)
}

pub fn is_stop_phrase(s: &str) -> bool {
    s.split_whitespace().all(is_stop)
}

/// The keyword a decoded phrase stands for: lowercased, stop words trimmed from both ends; `None`
/// if nothing is left or a hyphenated word hides a stop word (`liked-the-film`).
pub fn clean_keyword(s: &str) -> Option<String> {
    let n = normalize(s);
    let words: Vec<&str> = n.split_whitespace().collect();
    let start = words.iter().position(|w| !is_stop(w))?;
    let end = words.iter().rposition(|w| !is_stop(w))? + 1;
    let kept = &words[start..end];
    if kept.iter().any(|w| w.contains('-') && w.split('-').any(|p| p.is_empty() || is_stop(p))) {
        return None;
    }
    Some(kept.join(" "))
}

/// Is `a` the same keyword as `b` or a variant of it (`grey wool coat` / `grey wool coat-style`)?
fn same_or_variant(a: &str, b: &str) -> bool {
    // Compared without hyphens and plural `s` (`kittens` is `kitten`).
    let squash = |s: &str| {
        s.replace('-', " ")
            .split_whitespace()
            .map(|w| if w.len() > 3 && w.ends_with('s') && !w.ends_with("ss") { &w[..w.len() - 1] } else { w })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (a, b) = (squash(a), squash(b));
    a == b || a.starts_with(&format!("{b} ")) || b.starts_with(&format!("{a} "))
}

/// Lowercase, single-spaced, trimmed of `-`/`'`: the form keywords are compared in.
pub fn normalize(s: &str) -> String {
    s.split_whitespace()
        .map(|w| w.trim_matches(|c| c == '-' || c == '\''))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub struct KeywordDecoder<'v> {
    vocab: &'v KeywordVocab,
    opts: DecodeOptions,
    /// Token ids of `"\n{k}."` for k = 1..: what the decoder writes between keywords.
    separators: Vec<Vec<u32>>,
    /// In choose mode: candidates as token sequences (` candidate`, plain tokens) and their text.
    choices: Option<Vec<(Vec<u32>, String)>>,
    rng: SeededRng,
    // State of the keyword being decoded.
    current: Vec<u32>,
    current_text: String,
    logprob_sum: f32,
    attempts: usize,
    out: Vec<Decoded>,
    /// Token sequences of the keywords in `out`: completing one again is not allowed.
    out_tokens: Vec<Vec<u32>>,
    done: bool,
}

impl<'v> KeywordDecoder<'v> {
    /// `separators[k]` must be the tokens of `"\n{k+2}."` (written after keyword k+1).
    pub fn new(vocab: &'v KeywordVocab, separators: Vec<Vec<u32>>, opts: DecodeOptions) -> Self {
        let rng = SeededRng::new(opts.seed);
        KeywordDecoder {
            vocab,
            opts,
            separators,
            choices: None,
            rng,
            current: Vec::new(),
            current_text: String::new(),
            logprob_sum: 0.0,
            attempts: 0,
            out: Vec::new(),
            out_tokens: Vec::new(),
            done: false,
        }
    }

    /// Restrict keywords to these candidates, each given as its plain tokens with a leading space.
    pub fn choose_from(mut self, choices: Vec<(Vec<u32>, String)>) -> Self {
        self.choices = Some(choices.into_iter().filter(|(t, _)| !t.is_empty()).collect());
        self
    }

    pub fn keywords(&self) -> &[Decoded] {
        &self.out
    }

    /// The tokens this step may produce: `None` means "judge each token by its class".
    fn choice_ids(&self) -> Option<Vec<usize>> {
        let choices = self.choices.as_ref()?;
        let pos = self.current.len();
        let taken: Vec<String> = self.out.iter().map(|d| normalize(&d.text)).collect();
        let mut ids: Vec<usize> = choices
            .iter()
            .filter(|(seq, text)| {
                seq.len() > pos && seq[..pos] == self.current[..] && !taken.contains(&normalize(text))
            })
            .map(|(seq, _)| seq[pos] as usize)
            .collect();
        if self.can_end() {
            ids.extend(self.vocab.class.iter().enumerate().filter(|(_, c)| **c == Class::End).map(|(i, _)| i));
        }
        ids.sort_unstable();
        ids.dedup();
        Some(ids)
    }

    /// Free mode: may token `id` come next?
    fn allowed(&self, id: usize, banned_starts: &[usize]) -> bool {
        let words = self.current_text.split_whitespace().count();
        let len = self.current_text.chars().count() + self.vocab.text[id].chars().count();
        let repeats = || {
            self.out_tokens.iter().any(|t| {
                t.len() == self.current.len() + 1
                    && t[..self.current.len()] == self.current[..]
                    && t[self.current.len()] as usize == id
            })
        };
        match self.vocab.class[id] {
            Class::WordStart => {
                len <= self.opts.max_chars && words < self.opts.max_words && !banned_starts.contains(&id) && !repeats()
            }
            Class::WordCont => !self.current.is_empty() && len <= self.opts.max_chars && !repeats(),
            // A keyword may not end as a repeat or a stop phrase: the model has to say something new.
            Class::End => !self.current.is_empty() && self.fresh_ending(),
            Class::Other => false,
        }
    }

    fn fresh_ending(&self) -> bool {
        clean_keyword(&self.current_text).is_some_and(|t| !self.out.iter().any(|d| same_or_variant(&d.text, &t)))
    }

    /// At a keyword's start: the first tokens of the keywords already produced. A model that wants to
    /// repeat itself then starts its next best keyword instead of being steered into a mangled
    /// variant of the same word (at the cost of two keywords never sharing a first word).
    fn banned_starts(&self) -> Vec<usize> {
        if !self.current.is_empty() {
            return Vec::new();
        }
        self.out_tokens.iter().filter_map(|t| t.first().map(|&id| id as usize)).collect()
    }

    fn can_end(&self) -> bool {
        match &self.choices {
            Some(choices) => choices.iter().any(|(seq, _)| *seq == self.current),
            None => !self.current.is_empty(),
        }
    }

    /// Pick a token among the allowed ones (greedy or seeded sampling); `None` if none is allowed.
    fn pick(&mut self, logits: &[f32]) -> Option<(usize, f32)> {
        let n = logits.len().min(self.vocab.class.len());
        let cands: Vec<(usize, f32)> = match self.choice_ids() {
            Some(ids) => ids.into_iter().filter(|&i| i < n && logits[i].is_finite()).map(|i| (i, logits[i])).collect(),
            None => {
                let banned = self.banned_starts();
                (0..n).filter(|&i| logits[i].is_finite() && self.allowed(i, &banned)).map(|i| (i, logits[i])).collect()
            }
        };
        // Greedy: the first best (lowest id on ties, as the sampler does).
        let (bi, bl) = cands
            .iter()
            .copied()
            .fold(None, |b: Option<(usize, f32)>, c| if b.is_none_or(|b| c.1 > b.1) { Some(c) } else { b })?;
        if self.opts.temperature <= 0.0 {
            return Some((bi, bl));
        }
        // Softmax over the allowed tokens at the given temperature.
        let w: Vec<f32> = cands.iter().map(|&(_, l)| ((l - bl) / self.opts.temperature).exp()).collect();
        let total: f32 = w.iter().sum();
        let mut r = self.rng.unit_f32() * total;
        for (&(i, l), &wi) in cands.iter().zip(&w) {
            r -= wi;
            if r <= 0.0 {
                return Some((i, l));
            }
        }
        cands.last().copied()
    }

    /// Advance with the logits of the last fed token.
    pub fn step(&mut self, logits: &[f32]) -> Action {
        if self.done {
            return Action::Done;
        }
        // log-softmax normaliser for the confidence of the chosen token
        let max = logits.iter().copied().filter(|l| l.is_finite()).fold(f32::NEG_INFINITY, f32::max);
        let lse = max + logits.iter().filter(|l| l.is_finite()).map(|l| (l - max).exp()).sum::<f32>().ln();
        let picked = self.pick(logits);
        let ends = match picked {
            None => true,
            Some((id, _)) => self.vocab.class[id] == Class::End,
        };
        if !ends {
            let (id, l) = picked.expect("checked");
            self.current.push(id as u32);
            self.current_text.push_str(&self.vocab.text[id]);
            self.logprob_sum += l - lse;
            return Action::Feed(vec![id as u32]);
        }
        self.finish_keyword()
    }

    fn finish_keyword(&mut self) -> Action {
        self.attempts += 1;
        let kept = if self.can_end() { clean_keyword(&self.current_text) } else { None };
        if let Some(text) = kept.filter(|t| !self.out.iter().any(|d| same_or_variant(&d.text, t))) {
            let mean_logprob = self.logprob_sum / self.current.len().max(1) as f32;
            self.out.push(Decoded { text, mean_logprob });
            self.out_tokens.push(self.current.clone());
        }
        self.current.clear();
        self.current_text.clear();
        self.logprob_sum = 0.0;
        let exhausted = self
            .choices
            .as_ref()
            .is_some_and(|c| c.iter().all(|(_, t)| self.out.iter().any(|d| normalize(&d.text) == normalize(t))));
        if self.out.len() >= self.opts.n || self.attempts >= self.opts.max_attempts || exhausted {
            self.done = true;
            return Action::Done;
        }
        // Number the next line after what the context shows so far (refused ones included).
        match self.separators.get(self.attempts - 1) {
            Some(sep) => Action::Feed(sep.clone()),
            None => {
                self.done = true;
                Action::Done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_trimmed_of_stop_words_and_hidden_ones_refused() {
        assert_eq!(clean_keyword(" pastel kitten stickers").as_deref(), Some("pastel kitten"));
        assert_eq!(clean_keyword(" the frozen lake").as_deref(), Some("frozen lake"));
        assert_eq!(clean_keyword(" piping bag and").as_deref(), Some("piping bag"));
        assert_eq!(clean_keyword(" Jack-o'-lantern").as_deref(), Some("jack-o'-lantern"));
        assert_eq!(clean_keyword(" the user liked-the-film"), None);
        assert_eq!(clean_keyword(" the user prefers"), None);
        assert_eq!(clean_keyword(" sci-fi").as_deref(), Some("sci-fi"));
        assert!(same_or_variant("grey wool overcoat", "grey wool overcoat-style"));
        assert!(same_or_variant("linen shirt", "linen shirt"));
        assert!(!same_or_variant("white linen shirt", "black linen shirt"));
        assert!(same_or_variant("kittens", "kitten"));
        assert!(!same_or_variant("glass", "glas"));
    }
}
