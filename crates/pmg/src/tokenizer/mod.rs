//! Tokenizer built from GGUF metadata (gpt2-style byte-level BPE) with the `tokenizers` crate,
//! plus the model's own chat template rendered with minijinja.
//!
//! The pre-tokenizer is chosen from `tokenizer.ggml.pre` the way llama.cpp's `llama-vocab.cpp`
//! maps names to split regexes; `smollm` (and the gpt2 family) is: every digit on its own, then
//! GPT-2's byte-level regex.

pub mod clip;
mod template;

pub use template::{ChatMessage, ChatTemplate, Segment};

use std::collections::HashMap;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer as HfTokenizer};

use crate::error::{Error, Result};
use crate::gguf::{Gguf, Value};

/// ggml's `llama_token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

pub struct Tokenizer {
    hf: HfTokenizer,
    /// Same tokenizer with special-token text treated as plain text (for untrusted content).
    hf_plain: HfTokenizer,
    /// Bytes each token decodes to (control tokens decode to their literal text).
    token_bytes: Vec<Vec<u8>>,
    is_control: Vec<bool>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Token ids that end generation (eos, and ChatML's `<|im_end|>` when present).
    pub stop_ids: Vec<u32>,
    pub add_bos: bool,
    special_ids: HashMap<String, u32>,
}

/// GPT-2's reversible byte <-> printable-char mapping (`bytes_to_unicode` in openai/gpt-2 encoder.py).
fn byte_decoder() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter().zip(cs).map(|(b, c)| (char::from_u32(c).expect("valid char"), b as u8)).collect()
}

fn str_array<'a>(g: &'a Gguf<'_>, key: &str) -> Result<Vec<&'a str>> {
    let arr = g.get(key).and_then(Value::as_array).ok_or_else(|| Error::metadata(key, "missing or not an array"))?;
    arr.iter().map(|v| v.as_str().ok_or_else(|| Error::metadata(key, "array element is not a string"))).collect()
}

fn opt_id(g: &Gguf<'_>, key: &str, n_vocab: usize) -> Option<u32> {
    g.get(key).and_then(Value::as_u64).filter(|&v| (v as usize) < n_vocab).map(|v| v as u32)
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Self> {
        let model = g.get("tokenizer.ggml.model").and_then(Value::as_str).unwrap_or("");
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer model `{model}` is not supported (only byte-level BPE `gpt2`)"
            )));
        }
        let pre = g.get("tokenizer.ggml.pre").and_then(Value::as_str).unwrap_or("default");
        let tokens = str_array(g, "tokenizer.ggml.tokens")?;
        let merges = str_array(g, "tokenizer.ggml.merges")?;
        let n = tokens.len();
        let types: Vec<i64> = match g.get("tokenizer.ggml.token_type").and_then(Value::as_array) {
            Some(a) => a.iter().map(|v| v.as_i64().unwrap_or(1)).collect(),
            None => vec![1; n],
        };
        if types.len() != n {
            return Err(Error::metadata(
                "tokenizer.ggml.token_type",
                format!("{} entries for {n} tokens", types.len()),
            ));
        }

        let vocab: Vocab = tokens.iter().enumerate().map(|(i, t)| (t.to_string(), i as u32)).collect();
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| Error::metadata("tokenizer.ggml.merges", format!("merge `{m}` has no space")))
            })
            .collect::<Result<_>>()?;
        let bpe =
            BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| Error::Tokenizer(e.to_string()))?;

        let byte_level = ByteLevel::new(false, true, true);
        let mut hf = HfTokenizer::new(bpe);
        match pre {
            // llama.cpp: digits split one by one, then the GPT-2 regex.
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
                let digits = Split::new(SplitPattern::Regex(r"\p{N}".into()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|e| Error::Tokenizer(e.to_string()))?;
                hf.with_pre_tokenizer(Some(Sequence::new(vec![digits.into(), byte_level.into()])));
            }
            "gpt2" | "default" | "gpt-2" => {
                hf.with_pre_tokenizer(Some(byte_level));
            }
            other => return Err(Error::Tokenizer(format!("pre-tokenizer `{other}` is not supported yet"))),
        }
        hf.with_decoder(Some(ByteLevel::default()));

        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
            .map(|(tok, _)| AddedToken::from(tok.to_string(), true))
            .collect();
        let mut hf_plain = hf.clone();
        hf.add_special_tokens(specials.clone()).map_err(|e| Error::Tokenizer(e.to_string()))?;
        // The plain tokenizer still knows the special tokens (so ids stay consistent), but encodes
        // their text as ordinary text.
        hf_plain.add_special_tokens(specials).map_err(|e| Error::Tokenizer(e.to_string()))?;
        hf_plain.set_encode_special_tokens(true);

        let dec = byte_decoder();
        let is_control: Vec<bool> = types.iter().map(|&t| t == TOKEN_TYPE_CONTROL).collect();
        let token_bytes = tokens
            .iter()
            .zip(&types)
            .map(|(t, &ty)| {
                if ty == TOKEN_TYPE_CONTROL {
                    t.as_bytes().to_vec()
                } else {
                    t.chars().map(|c| dec.get(&c).copied().unwrap_or(b'?')).collect()
                }
            })
            .collect();
        let special_ids = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, t))| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
            .map(|(i, (tok, _))| (tok.to_string(), i as u32))
            .collect::<HashMap<_, _>>();

        let bos_id = opt_id(g, "tokenizer.ggml.bos_token_id", n);
        let eos_id = opt_id(g, "tokenizer.ggml.eos_token_id", n);
        let mut stop_ids: Vec<u32> = eos_id.into_iter().collect();
        for name in ["<|im_end|>", "<|eot_id|>", "<end_of_turn>"] {
            if let Some(&id) = special_ids.get(name)
                && !stop_ids.contains(&id)
            {
                stop_ids.push(id);
            }
        }
        let add_bos = g.get("tokenizer.ggml.add_bos_token").and_then(Value::as_bool).unwrap_or(false);
        Ok(Tokenizer { hf, hf_plain, token_bytes, is_control, bos_id, eos_id, stop_ids, add_bos, special_ids })
    }

    pub fn vocab_size(&self) -> usize {
        self.token_bytes.len()
    }

    /// Encode text. With `parse_special`, special-token text such as `<|im_start|>` becomes that
    /// token; without, it is tokenized as plain characters (use this for untrusted content).
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let tok = if parse_special { &self.hf } else { &self.hf_plain };
        let enc = tok.encode_fast(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encode a rendered chat: the template's own text with special tokens recognised, message
    /// content as plain text (see [`ChatTemplate::render_segments`]).
    pub fn encode_segments(&self, segments: &[Segment]) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for s in segments {
            ids.extend(self.encode(&s.text, !s.is_content)?);
        }
        Ok(ids)
    }

    /// The raw bytes of a token (a token can end in the middle of a UTF-8 character).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map(Vec::as_slice).unwrap_or(b"")
    }

    pub fn is_control(&self, id: u32) -> bool {
        self.is_control.get(id as usize).copied().unwrap_or(false)
    }

    /// Decode ids to text (invalid UTF-8 from partial characters becomes U+FFFD).
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            if skip_special && self.is_control(id) {
                continue;
            }
            bytes.extend_from_slice(self.token_bytes(id));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.special_ids.get(text).copied()
    }
}

/// Turns a stream of token ids into text pieces, holding back bytes of an unfinished UTF-8 character.
#[derive(Default)]
pub struct TextStream {
    pending: Vec<u8>,
}

impl TextStream {
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        self.pending.extend_from_slice(tok.token_bytes(id));
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete sequence at the end waits for the next token; an invalid one is emitted lossily.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let out: Vec<u8> = self.pending.drain(..valid).collect();
        String::from_utf8_lossy(&out).into_owned()
    }

    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
