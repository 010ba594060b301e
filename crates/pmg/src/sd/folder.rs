//! Reading a checkpoint folder (diffusers' or transformers' layout) file by file: from a directory
//! natively, from files fetched one by one in the browser. Shared by the SD pipeline and the CLIP
//! scorer.

use serde_json::Value;

use crate::bytes::{ByteSource, read_all};
use crate::error::{Error, Result};
use crate::tokenizer::clip::ClipTokenizer;

/// Answers a file by its path in the folder, `Ok(None)` for a file the folder lacks. Weights
/// files are read from it a tensor at a time (see [`ByteSource`]), configs whole.
pub type ReadFile<'a> = dyn FnMut(&str) -> Result<Option<Box<dyn ByteSource>>> + 'a;

/// A small file's bytes, if the folder has it.
pub(crate) fn read_bytes(read: &mut ReadFile<'_>, path: &str) -> Result<Option<Vec<u8>>> {
    Ok(read(path)?.map(|f| read_all(f.as_ref())))
}

/// A file the folder must have, left where it is (weights).
pub(crate) fn open(read: &mut ReadFile<'_>, what: &str, path: &str) -> Result<Box<dyn ByteSource>> {
    read(path)?.ok_or_else(|| Error::InvalidArgument(format!("the {what} folder has no `{path}`")))
}

pub(crate) fn utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| Error::InvalidArgument(format!("{file}: {e}")))
}

/// A file the folder must have (`what` names the folder in the error).
pub(crate) fn need(read: &mut ReadFile<'_>, what: &str, path: &str) -> Result<Vec<u8>> {
    Ok(read_all(open(read, what, path)?.as_ref()))
}

/// A directory's files (native).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn read_dir_file(dir: &std::path::Path, path: &str) -> Result<Option<Box<dyn ByteSource>>> {
    let p = dir.join(path);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(Box::new(b))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { path: p.display().to_string(), source }),
    }
}

/// The padding token a `tokenizer_config.json` names (a string, or `{ "content": ... }`).
fn pad_token(file: &str, config: &str) -> Result<Option<String>> {
    let v: Value = serde_json::from_str(config).map_err(|e| Error::Tokenizer(format!("{file}: {e}")))?;
    Ok(match v.get("pad_token") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        None => None,
    })
}

/// CLIP's tokenizer under `dir` (`"tokenizer/"` in diffusers' layout, `""` in transformers'):
/// `tokenizer.json` (transformers 5) or else `vocab.json` + `merges.txt`, and the id prompts are
/// padded with (`tokenizer_config.json`'s `pad_token`, else the end token; SD 2.x pads with `!`).
pub(crate) fn clip_tokenizer(read: &mut ReadFile<'_>, what: &str, dir: &str) -> Result<(ClipTokenizer, u32)> {
    let path = |f: &str| format!("{dir}{f}");
    let tokenizer = match read_bytes(read, &path("tokenizer.json"))? {
        Some(j) => ClipTokenizer::from_tokenizer_json(utf8(&path("tokenizer.json"), &j)?)?,
        None => ClipTokenizer::from_vocab_merges(
            utf8(&path("vocab.json"), &need(read, what, &path("vocab.json"))?)?,
            utf8(&path("merges.txt"), &need(read, what, &path("merges.txt"))?)?,
        )?,
    };
    let config = path("tokenizer_config.json");
    let pad = match read_bytes(read, &config)? {
        Some(b) => pad_token(&config, utf8(&config, &b)?)?,
        None => None,
    };
    let pad = match pad {
        Some(t) => tokenizer
            .token_id(&t)
            .ok_or_else(|| Error::Tokenizer(format!("the padding token {t:?} is not in the vocabulary")))?,
        None => tokenizer.eos,
    };
    Ok((tokenizer, pad))
}
