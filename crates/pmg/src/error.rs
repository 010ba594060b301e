//! One error type for the whole crate. Every fallible public function returns [`Result`].

use std::fmt;

/// Everything that can go wrong in pmg, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The GGUF bytes are truncated, lie about sizes, or use something we do not support.
    #[error("invalid GGUF file: {0}")]
    Gguf(#[from] GgufError),
    /// A required metadata key is missing or has the wrong type.
    #[error("GGUF metadata key `{key}`: {problem}")]
    Metadata { key: String, problem: String },
    /// A tensor the model needs is missing or has an unexpected shape.
    #[error("tensor `{name}`: {problem}")]
    Tensor { name: String, problem: String },
    /// The tokenizer could not be built or could not encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template failed to render.
    #[error("chat template: {0}")]
    Template(String),
    /// The requested compute device is not available.
    #[error("device `{device}` unavailable: {reason}")]
    Device { device: String, reason: String },
    /// A model file did not match the expected checksum or size.
    #[error("integrity check failed for {file}: expected {expected}, got {actual}")]
    Integrity { file: String, expected: String, actual: String },
    /// Invalid arguments from the caller (e.g. a prompt longer than the context).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Generation was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// A history event or export is malformed, too large, or of an unknown kind.
    #[error("history: {0}")]
    History(#[from] HistoryError),
    /// The LLM's answer did not have the required format, even after retries.
    #[error("preferences: {0}")]
    Preferences(String),
    /// A weight file of our own models (safetensors) is malformed or does not fit the model.
    #[error("weights `{file}`: {problem}")]
    Weights { file: String, problem: String },
    /// An image could not be decoded.
    #[error("image: {0}")]
    Image(String),
    /// I/O failure (native only).
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// What exactly is wrong with a GGUF file; offsets are byte offsets into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GgufError {
    BadMagic([u8; 4]),
    UnsupportedVersion(u32),
    Truncated { what: String, offset: u64, needed: u64, len: u64 },
    TooMany { what: String, count: u64, limit: u64 },
    BadValueType(u32),
    BadUtf8 { what: String, offset: u64 },
    UnknownTensorType { tensor: String, ggml_type: u32 },
    BadShape { tensor: String, problem: String },
    BadAlignment(u64),
    DuplicateKey(String),
    DuplicateTensor(String),
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GgufError::BadMagic(m) => write!(f, "bad magic {m:?}, expected \"GGUF\""),
            GgufError::UnsupportedVersion(v) => write!(f, "unsupported version {v} (2 and 3 are supported)"),
            GgufError::Truncated { what, offset, needed, len } => {
                write!(f, "{what} at offset {offset} needs {needed} bytes but the file has {len}")
            }
            GgufError::TooMany { what, count, limit } => write!(f, "{what}: {count} exceeds limit {limit}"),
            GgufError::BadValueType(t) => write!(f, "unknown metadata value type {t}"),
            GgufError::BadUtf8 { what, offset } => write!(f, "{what} at offset {offset} is not UTF-8"),
            GgufError::UnknownTensorType { tensor, ggml_type } => {
                write!(f, "tensor `{tensor}` has unsupported ggml type {ggml_type}")
            }
            GgufError::BadShape { tensor, problem } => write!(f, "tensor `{tensor}`: {problem}"),
            GgufError::BadAlignment(a) => write!(f, "alignment {a} is not a power of two in 1..=65536"),
            GgufError::DuplicateKey(k) => write!(f, "duplicate metadata key `{k}`"),
            GgufError::DuplicateTensor(k) => write!(f, "duplicate tensor `{k}`"),
        }
    }
}

impl std::error::Error for GgufError {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn metadata(key: &str, problem: impl Into<String>) -> Self {
        Error::Metadata { key: key.to_string(), problem: problem.into() }
    }
    pub fn tensor(name: &str, problem: impl Into<String>) -> Self {
        Error::Tensor { name: name.to_string(), problem: problem.into() }
    }
}

/// What is wrong with a history event; `index` is the event's position in its batch (or the line
/// number, from 1, in a JSON-lines file).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum HistoryError {
    #[error("event {index}: invalid JSON or unknown kind/field: {message}")]
    Json { index: usize, message: String },
    #[error("event {index}: `{field}` is {len} long, the limit is {max}")]
    TooLong { index: usize, field: String, len: usize, max: usize },
    #[error("event {index}: `{field}` {problem}")]
    BadValue { index: usize, field: String, problem: String },
    #[error("{count} events at once, the limit is {max}")]
    TooMany { count: usize, max: usize },
}

/// An option's value from its name as serde spells it (aliases included), so that the command line,
/// JSON and the browser accept the same names from one list: the enum's serde attributes.
pub fn parse_name<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|e| Error::InvalidArgument(format!("{what} {s:?}: {e}")))
}

/// An option's name as serde spells it (its `Display`, e.g. for a command line's defaults).
pub fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// `FromStr` through [`parse_name`] and `Display` through [`serde_name`]: the serde attributes are
/// the one list of names.
#[macro_export]
macro_rules! names_from_serde {
    ($t:ty, $what:literal) => {
        impl std::str::FromStr for $t {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                $crate::error::parse_name(s, $what)
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$crate::error::serde_name(self))
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use crate::DeviceChoice;
    use crate::diffusion::SamplerKind;
    use crate::preference::PromptMode;

    #[test]
    fn option_names_are_serdes_with_their_aliases() {
        assert_eq!("webgpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Wgpu);
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("dpm++2m".parse::<SamplerKind>().unwrap(), SamplerKind::DpmSolver2m);
        assert_eq!("per-attribute".parse::<PromptMode>().unwrap(), PromptMode::PerAttribute);
        assert_eq!("per_attribute".parse::<PromptMode>().unwrap(), PromptMode::PerAttribute);
        assert_eq!(SamplerKind::DpmSolver2m.to_string(), "dpm-solver2m");
        assert_eq!(PromptMode::PerAttribute.to_string(), "per_attribute");
        let e = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(e.contains("tpu") && e.contains("auto") && e.contains("wgpu") && e.contains("cpu"), "{e}");
    }
}
