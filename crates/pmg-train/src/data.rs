//! The emoji dataset (`scripts/fetch-emoji.sh` builds `data/emoji/dataset.json`) and the caption
//! bank: every caption's LLM hidden states, computed once (`pmg train embed`) and reused by every
//! stage and by the evaluation.

use std::path::{Path, PathBuf};

use pmg::diffusion::{Conditioning, TRAIN_TEXT_TOKENS, encode_text};
use pmg::error::{Error, Result};
use pmg::image::Image;
use pmg::llm::LanguageModel;
use pmg::tensor_io::{Dtype, Weights};

use super::io_err;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Record {
    pub id: String,
    pub base: String,
    pub image: String,
    pub category: String,
    #[serde(default)]
    pub subcategory: String,
    pub name: String,
    pub label: String,
    pub captions: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    pub split: String,
    #[serde(default)]
    pub style: String,
    /// Images under a share-alike licence (CC-BY-SA): for evaluation only, never trained on.
    #[serde(default)]
    pub share_alike: bool,
}

#[derive(serde::Deserialize)]
struct DatasetFile {
    records: Vec<Record>,
}

/// The style the product draws in and the evaluations compare against: emoji-datasource's Google
/// PNGs (Noto Emoji). The retrieval bank shows it.
pub const HOUSE_STYLE: &str = "google";

/// The records (in file order) and their images in model space; share-alike records are left out
/// (no shipped model trains on them).
pub struct EmojiData {
    pub dir: PathBuf,
    pub records: Vec<Record>,
    /// `[4 * 64 * 64]` per record, premultiplied, in [-1, 1].
    pub images: Vec<Vec<f32>>,
}

impl EmojiData {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("dataset.json");
        let bytes = std::fs::read(&path).map_err(|e| {
            Error::InvalidArgument(format!("{}: {e} (run scripts/fetch-emoji.sh first)", path.display()))
        })?;
        let mut file: DatasetFile =
            serde_json::from_slice(&bytes).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
        file.records.retain(|r| !r.share_alike);
        let mut images = Vec::with_capacity(file.records.len());
        for r in &file.records {
            let p = dir.join(&r.image);
            let img = Image::decode_png(&std::fs::read(&p).map_err(|e| io_err(&p, e))?)?;
            if img.width != 64 || img.height != 64 {
                return Err(Error::Image(format!("{}: {}x{}, expected 64x64", p.display(), img.width, img.height)));
            }
            images.push(img.to_model());
        }
        Ok(EmojiData { dir: dir.to_path_buf(), records: file.records, images })
    }

    /// Indices of records in `split` ("train" or "heldout").
    pub fn split(&self, split: &str) -> Vec<usize> {
        (0..self.records.len()).filter(|&i| self.records[i].split == split).collect()
    }

    /// Indices of records in `split` drawn in the house style.
    pub fn house(&self, split: &str) -> Vec<usize> {
        (0..self.records.len())
            .filter(|&i| self.records[i].split == split && self.records[i].style == HOUSE_STYLE)
            .collect()
    }

    pub fn image(&self, i: usize) -> Image {
        Image::from_model(&self.images[i], 64, 64)
    }
}

/// The house-style picture of one emoji and its name, by code point (`1f382`, `U+1F382`,
/// `2764-fe0f`; case and FE0F do not matter), read from the fetched dataset without decoding the
/// rest: a catalog item's own image for `pmg personalize --target-image`.
pub fn house_picture(dir: &Path, code: &str) -> Result<(Image, String)> {
    let norm = |c: &str| {
        c.trim()
            .to_lowercase()
            .split(['-', ' ', '_'])
            .map(|p| p.trim_start_matches("u+"))
            .filter(|p| *p != "fe0f" && !p.is_empty())
            .collect::<Vec<_>>()
            .join("-")
    };
    let want = norm(code);
    if want.is_empty() || !want.split('-').all(|p| u32::from_str_radix(p, 16).is_ok()) {
        return Err(Error::InvalidArgument(format!("{code:?} is neither a PNG file nor a code point such as 1f382")));
    }
    let path = dir.join("dataset.json");
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e} (run scripts/fetch-emoji.sh first)", path.display())))?;
    let file: DatasetFile =
        serde_json::from_slice(&bytes).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    let r = file.records.iter().find(|r| r.style == HOUSE_STYLE && norm(&r.id) == want).ok_or_else(|| {
        Error::InvalidArgument(format!("no {HOUSE_STYLE} emoji with code point {code} in {}", path.display()))
    })?;
    let p = dir.join(&r.image);
    Ok((Image::decode_png(&std::fs::read(&p).map_err(|e| io_err(&p, e))?)?, r.label.clone()))
}

/// Hidden states of every caption. Captions are numbered in record order (`by_record[r]` is
/// record `r`'s range, `captions[c]` caption `c`); the styles of one emoji share their captions,
/// so each distinct caption's states are held once (`conds`) and caption `c` reads
/// `conds[distinct[c]]` ([`cond`](Self::cond)).
pub struct CaptionBank {
    pub width: usize,
    pub captions: Vec<String>,
    pub distinct: Vec<usize>,
    pub conds: Vec<Conditioning>,
    pub by_record: Vec<std::ops::Range<usize>>,
}

pub const BANK_FILE: &str = "captions.safetensors";

impl CaptionBank {
    /// Encode every caption of every record with the LLM (`TRAIN_TEXT_TOKENS` tokens at most).
    /// The styles of one emoji share their captions: each distinct caption is encoded once.
    pub fn build(lm: &LanguageModel, data: &EmojiData, out: &Path) -> Result<Self> {
        let width = lm.model.config.n_embd;
        let distinct: std::collections::HashSet<&String> = data.records.iter().flat_map(|r| &r.captions).collect();
        let total = distinct.len();
        let started = std::time::Instant::now();
        let mut index: std::collections::HashMap<&String, usize> = std::collections::HashMap::new();
        let (mut captions, mut distinct, mut conds, mut by_record) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in &data.records {
            let start = captions.len();
            for c in &r.captions {
                if !index.contains_key(c) {
                    index.insert(c, conds.len());
                    conds.push(encode_text(lm, c, TRAIN_TEXT_TOKENS)?);
                    if conds.len() % 1000 == 0 {
                        let per = started.elapsed().as_secs_f64() / conds.len() as f64;
                        eprintln!(
                            "embedded {}/{total} captions ({:.1} ms each, {:.0} s left)",
                            conds.len(),
                            per * 1e3,
                            per * (total - conds.len()) as f64
                        );
                    }
                }
                distinct.push(index[c]);
                captions.push(c.clone());
            }
            by_record.push(start..captions.len());
        }
        let bank = CaptionBank { width, captions, distinct, conds, by_record };
        bank.save(out)?;
        Ok(bank)
    }

    fn save(&self, path: &Path) -> Result<()> {
        let l = TRAIN_TEXT_TOKENS;
        let mut hidden = vec![0.0f32; self.conds.len() * l * self.width];
        for (i, c) in self.conds.iter().enumerate() {
            hidden[i * l * self.width..][..c.rows.len()].copy_from_slice(&c.rows);
        }
        let mut w = Weights::default();
        w.insert("hidden", vec![self.conds.len(), l, self.width], hidden);
        w.insert("len", vec![self.conds.len()], self.conds.iter().map(|c| c.len as f32).collect());
        w.metadata.insert("captions".into(), serde_json::to_string(&self.captions).expect("json"));
        let ranges: Vec<[usize; 2]> = self.by_record.iter().map(|r| [r.start, r.end]).collect();
        w.metadata.insert("by_record".into(), serde_json::to_string(&ranges).expect("json"));
        w.metadata.insert("distinct".into(), serde_json::to_string(&self.distinct).expect("json"));
        w.metadata.insert("prefix".into(), pmg::diffusion::TEXT_PREFIX.into());
        std::fs::write(path, w.to_bytes(Dtype::F16)).map_err(|e| io_err(path, e))
    }

    /// Load a bank and check it was built from `data`'s captions.
    pub fn load(path: &Path, data: &EmojiData) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e} (run `pmg train embed` first)", path.display())))?;
        let file = path.display().to_string();
        let w = Weights::from_bytes(&file, &bytes)?;
        let bad = |p: &str| Error::Weights { file: file.clone(), problem: p.to_string() };
        let captions: Vec<String> = serde_json::from_str(w.meta("captions").ok_or_else(|| bad("no captions"))?)
            .map_err(|e| bad(&e.to_string()))?;
        let ranges: Vec<[usize; 2]> = serde_json::from_str(w.meta("by_record").ok_or_else(|| bad("no by_record"))?)
            .map_err(|e| bad(&e.to_string()))?;
        let distinct: Vec<usize> = serde_json::from_str(
            w.meta("distinct").ok_or_else(|| bad("no distinct (an older bank): rerun `pmg train embed`"))?,
        )
        .map_err(|e| bad(&e.to_string()))?;
        let expected: Vec<&String> = data.records.iter().flat_map(|r| &r.captions).collect();
        if ranges.len() != data.records.len() || captions.iter().collect::<Vec<_>>() != expected {
            return Err(bad("built from another dataset.json: rerun `pmg train embed`"));
        }
        let hidden = w.get(&file, "hidden")?;
        let lens = w.get(&file, "len")?;
        let [n, l, width] = hidden.shape[..] else { return Err(bad("hidden is not 3-d")) };
        if distinct.len() != captions.len() || distinct.iter().any(|&d| d >= n) {
            return Err(bad("caption index out of range"));
        }
        let conds = (0..n)
            .map(|i| {
                let len = (lens.data[i] as usize).clamp(1, l);
                Conditioning { rows: hidden.data[i * l * width..][..len * width].to_vec(), len, width }
            })
            .collect();
        Ok(CaptionBank { width, captions, distinct, conds, by_record: ranges.into_iter().map(|[a, b]| a..b).collect() })
    }

    /// Caption `c`'s hidden states.
    pub fn cond(&self, c: usize) -> &Conditioning {
        &self.conds[self.distinct[c]]
    }

    /// The record's first caption (its name).
    pub fn primary(&self, record: usize) -> &Conditioning {
        self.cond(self.by_record[record].start)
    }
}
