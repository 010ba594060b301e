//! CLIP's tokenizer (issue 21): byte-level BPE with an end-of-word suffix, from a checkpoint's
//! `tokenizer/vocab.json` and `merges.txt`, built with the `tokenizers` crate the way transformers'
//! `CLIPTokenizer` builds it (transformers `models/clip/tokenization_clip.py`): NFC, whitespace runs
//! to one space, lowercase; split on CLIP's word regex; byte-level; BPE with `</w>`; the start and
//! end tokens around the text. `tests/clip_tokenizer.rs` matches transformers' output.

use std::collections::HashMap;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{NFC, Sequence as NormSequence, replace::Replace, utils::Lowercase};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use crate::error::{Error, Result};

/// CLIP's word pattern (the original `clip/simple_tokenizer.py`, as transformers writes it).
const WORDS: &str = r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";
pub const BOS: &str = "<|startoftext|>";
pub const EOS: &str = "<|endoftext|>";
/// The context the text encoders of the SD family read.
pub const MAX_LENGTH: usize = 77;

pub struct ClipTokenizer {
    hf: HfTokenizer,
    pub bos: u32,
    pub eos: u32,
}

fn tok_err(e: impl std::fmt::Display) -> Error {
    Error::Tokenizer(e.to_string())
}

impl ClipTokenizer {
    /// From the text of `vocab.json` (token -> id) and `merges.txt` (a `#version` line, then one
    /// `left right` pair per line).
    pub fn from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<Self> {
        let vocab: HashMap<String, u32> =
            serde_json::from_str(vocab_json).map_err(|e| Error::Tokenizer(format!("vocab.json: {e}")))?;
        let merges = merges_txt
            .lines()
            .enumerate()
            .filter(|(i, l)| !(l.trim().is_empty() || *i == 0 && l.starts_with("#version")))
            .map(|(i, l)| {
                l.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenizer(format!("merges.txt line {}: `{l}` is not a pair", i + 1)))
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_bpe(vocab, merges)
    }

    /// From a `tokenizer.json` (what transformers 5 saves in place of `vocab.json` + `merges.txt`):
    /// its BPE vocabulary and merges (`"a b"` strings or `["a", "b"]` pairs), read into the same
    /// CLIP normalisation and splitting as [`Self::from_vocab_merges`].
    pub fn from_tokenizer_json(json: &str) -> Result<Self> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Merge {
            Text(String),
            Pair(String, String),
        }
        #[derive(serde::Deserialize)]
        struct Model {
            #[serde(rename = "type")]
            kind: String,
            vocab: HashMap<String, u32>,
            merges: Vec<Merge>,
        }
        #[derive(serde::Deserialize)]
        struct File {
            model: Model,
        }
        let f: File = serde_json::from_str(json).map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        if f.model.kind != "BPE" {
            return Err(Error::Tokenizer(format!("tokenizer.json: a {} model, CLIP's is BPE", f.model.kind)));
        }
        let merges = f
            .model
            .merges
            .into_iter()
            .map(|m| match m {
                Merge::Pair(a, b) => Ok((a, b)),
                Merge::Text(t) => t
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::Tokenizer(format!("tokenizer.json: merge `{t}` is not a pair"))),
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_bpe(f.model.vocab, merges)
    }

    fn from_bpe(vocab: HashMap<String, u32>, merges: Vec<(String, String)>) -> Result<Self> {
        let vocab: Vocab = vocab.into_iter().collect();
        let id = |t: &str| vocab.get(t).copied().ok_or_else(|| Error::Tokenizer(format!("vocab.json has no {t}")));
        let (bos, eos) = (id(BOS)?, id(EOS)?);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".into())
            .unk_token(EOS.into())
            .build()
            .map_err(tok_err)?;
        let mut hf = HfTokenizer::new(bpe);
        hf.with_normalizer(Some(NormSequence::new(vec![
            NFC.into(),
            Replace::new(tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()), " ")
                .map_err(tok_err)?
                .into(),
            Lowercase.into(),
        ])))
        .map_err(tok_err)?;
        let words =
            Split::new(SplitPattern::Regex(WORDS.into()), SplitDelimiterBehavior::Removed, true).map_err(tok_err)?;
        hf.with_pre_tokenizer(Some(Sequence::new(vec![words.into(), ByteLevel::new(false, true, false).into()])));
        hf.add_special_tokens(vec![AddedToken::from(BOS, true), AddedToken::from(EOS, true)]).map_err(tok_err)?;
        Ok(ClipTokenizer { hf, bos, eos })
    }

    /// The id of one token of the vocabulary.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.hf.token_to_id(token)
    }

    /// `[bos, text tokens..., eos]`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let e = self.hf.encode(text, false).map_err(tok_err)?;
        let mut ids = Vec::with_capacity(e.get_ids().len() + 2);
        ids.push(self.bos);
        ids.extend_from_slice(e.get_ids());
        ids.push(self.eos);
        Ok(ids)
    }

    /// `max_len` ids as the text encoder reads them: truncated to keep the end token, then padded
    /// with `pad` (SD 1.x pads with the end token, SD 2.x with `!`).
    pub fn encode_padded(&self, text: &str, max_len: usize, pad: u32) -> Result<Vec<u32>> {
        if max_len < 2 {
            return Err(Error::InvalidArgument(format!("a CLIP context of {max_len} tokens")));
        }
        let mut ids = self.encode(text)?;
        if ids.len() > max_len {
            ids.truncate(max_len - 1);
            ids.push(self.eos);
        }
        ids.resize(max_len, pad);
        Ok(ids)
    }
}
