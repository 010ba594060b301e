//! `pmg eval generator`: does the generator draw the catalog? Judged by the independent judge
//! (`eval/judge/`, never used for training or selection).
//!
//! - **Training concepts**: a fixed random sample of training base emoji (seeded, the same every
//!   run), each drawn from its name (the dataset's `label`) at strength 1 (pure generation, from
//!   noise) and at the default strength (the run starts from the retrieved training emoji).
//! - **Held-out concepts**: every held-out base emoji (never trained on), drawn the same two ways,
//!   beside the *nearest training image*: the training emoji the generator's own retrieval bank
//!   finds for the name (the image a default-strength run starts from), decoded.
//!
//! A concept counts as drawn when the judge ranks its base emoji first (top-1) or among its first
//! five (top-5). Real images of the same concepts (the Google style) are the ceiling.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};

use super::io_err;
use super::judge::{Judge, rank};
use pmg::device::read_f32;
use pmg::diffusion::{Conditioning, Generator, MAX_TEXT_TOKENS, SampleOptions, encode_text, to_images};
use pmg::error::{Error, Result};
use pmg::image::Image;
use pmg::llm::LanguageModel;
use pmg::rng::SeededRng;

/// The seed of the training-concept sample: fixed, so every generator is judged on the same ones.
pub const SAMPLE_SEED: u64 = 0x6a75_6467_6531; // "judge1"
pub const TRAIN_CONCEPTS: usize = 300;

/// One base emoji of the dataset (its Google-style base image, no skin tone).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Concept {
    pub base: String,
    pub label: String,
    pub image: String,
    pub split: String,
    #[serde(default)]
    pub style: String,
    #[serde(default)]
    pub unified: String,
}

/// The base emoji of `data/emoji/dataset.json` (records whose `unified` is their `base`, Google
/// style), in file order. Reads the records only: no image is decoded.
pub fn concepts(data: &Path) -> Result<Vec<Concept>> {
    #[derive(serde::Deserialize)]
    struct File {
        records: Vec<Concept>,
    }
    let path = data.join("dataset.json");
    let bytes = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
    let file: File =
        serde_json::from_slice(&bytes).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?;
    Ok(file.records.into_iter().filter(|r| r.style == "google" && r.unified == r.base).collect())
}

/// The training concepts every generator is judged on: `n` training base emoji in a seeded order.
pub fn training_sample(all: &[Concept], n: usize) -> Vec<Concept> {
    let mut train: Vec<Concept> = all.iter().filter(|c| c.split == "train").cloned().collect();
    let mut rng = SeededRng::new(SAMPLE_SEED);
    for i in (1..train.len()).rev() {
        train.swap(i, rng.below(i + 1));
    }
    train.truncate(n);
    train
}

/// How one system did on one set of concepts.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Score {
    pub system: String,
    pub concepts: usize,
    pub top1: f64,
    pub top5: f64,
    /// Mean probability the judge gives the intended concept.
    pub mean_probability: f64,
}

/// Per concept: the judge's rank of the intended concept and its first guess, per system.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub base: String,
    pub label: String,
    /// (system, rank, judge's first guess)
    pub judged: Vec<(String, usize, String)>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Section {
    pub name: String,
    pub scores: Vec<Score>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct GeneratorEval {
    pub judge: super::judge::JudgeInfo,
    pub options: SampleOptions,
    pub sections: Vec<Section>,
    pub seconds_generating: f64,
}

impl GeneratorEval {
    pub fn markdown(&self) -> String {
        let j = &self.judge;
        let mut s = format!(
            "Judge {} (evaluation only; {:.1}% top-1 / {:.1}% top-5 on {}, a style it never trained on). Sampler: {} steps, guidance {}, {:?}.\n",
            j.version,
            100.0 * j.unseen_top1,
            100.0 * j.unseen_top5,
            j.unseen_style,
            self.options.steps,
            self.options.guidance,
            self.options.sampler
        );
        for sec in &self.sections {
            s += &format!(
                "\n**{}**\n\n| system | concepts | judge top-1 | judge top-5 | mean p(concept) |\n|---|---|---|---|---|\n",
                sec.name
            );
            for r in &sec.scores {
                s += &format!(
                    "| {} | {} | {:.1}% | {:.1}% | {:.3} |\n",
                    r.system,
                    r.concepts,
                    100.0 * r.top1,
                    100.0 * r.top5,
                    r.mean_probability
                );
            }
        }
        s
    }
}

/// Images of one system for a list of concepts, judged.
struct Judged {
    system: String,
    images: Vec<Image>,
    ranks: Vec<usize>,
    first: Vec<String>,
    probability: Vec<f32>,
}

fn judge_all(judge: &Judge, system: &str, concepts: &[Concept], images: Vec<Image>) -> Result<Judged> {
    let probs = judge.probabilities(&images)?;
    let (mut ranks, mut first, mut probability) = (Vec::new(), Vec::new(), Vec::new());
    for (c, p) in concepts.iter().zip(&probs) {
        let k = judge
            .class_of(&c.base)
            .ok_or_else(|| Error::InvalidArgument(format!("the judge has no class {}", c.base)))?;
        ranks.push(rank(p, k));
        probability.push(p[k]);
        first.push(judge.guesses(p, 1)[0].name.clone());
    }
    Ok(Judged { system: system.to_string(), images, ranks, first, probability })
}

fn score(j: &Judged) -> Score {
    let n = j.ranks.len().max(1) as f64;
    Score {
        system: j.system.clone(),
        concepts: j.ranks.len(),
        top1: j.ranks.iter().filter(|&&r| r == 1).count() as f64 / n,
        top5: j.ranks.iter().filter(|&&r| r <= 5).count() as f64 / n,
        mean_probability: j.probability.iter().map(|&p| p as f64).sum::<f64>() / n,
    }
}

fn section(name: &str, concepts: &[Concept], systems: &[Judged]) -> Section {
    let rows = concepts
        .iter()
        .enumerate()
        .map(|(i, c)| Row {
            base: c.base.clone(),
            label: c.label.clone(),
            judged: systems.iter().map(|s| (s.system.clone(), s.ranks[i], s.first[i].clone())).collect(),
        })
        .collect();
    Section { name: name.to_string(), scores: systems.iter().map(score).collect(), rows }
}

/// One image per conditioning, 16 at a time, seed = index (every evaluation's convention).
pub(super) fn generate(
    generator: &Generator,
    conds: &[Conditioning],
    opts: &SampleOptions,
    what: &str,
) -> Result<Vec<Image>> {
    let mut out = Vec::with_capacity(conds.len());
    for (k, chunk) in conds.chunks(16).enumerate() {
        let seeds: Vec<u64> = (0..chunk.len()).map(|j| (k * 16 + j) as u64).collect();
        out.extend(generator.generate(chunk, &seeds, opts, &mut |_, _| true)?);
        eprintln!("{what}: {}/{}", out.len(), conds.len());
    }
    Ok(out)
}

/// The training emoji the generator's retrieval bank finds for each conditioning, decoded.
fn nearest_training(generator: &Generator, conds: &[Conditioning]) -> Result<Vec<Image>> {
    let r = generator
        .retrieval
        .as_ref()
        .ok_or_else(|| Error::InvalidArgument("the denoiser file has no retrieval bank".into()))?;
    let [c, h, w] = generator.latent_shape();
    let z: Vec<f32> = conds.iter().flat_map(|q| r.latent(r.nearest(q, 1)[0].0).to_vec()).collect();
    let z = Tensor::<4>::from_data(TensorData::new(z, [conds.len(), c, h, w]), &generator.device.device);
    let x = generator.decoder.forward(z / generator.latent_scale);
    Ok(to_images(&read_f32(x)?, conds.len()))
}

/// Real images, read from the dataset folder.
fn real(data: &Path, concepts: &[Concept]) -> Result<Vec<Image>> {
    concepts
        .iter()
        .map(|c| {
            let p = data.join(&c.image);
            Image::decode_png(&std::fs::read(&p).map_err(|e| io_err(&p, e))?)
        })
        .collect()
}

/// Everything the evaluation made: the report and one grid per section (columns = systems).
pub struct Output {
    pub report: GeneratorEval,
    pub grids: Vec<(String, Image, String)>,
}

/// Judge the generator on `train_concepts` sampled training concepts and on every held-out one.
pub fn evaluate(
    data: &Path,
    lm: &LanguageModel,
    generator: &Generator,
    judge: &Judge,
    opts: &SampleOptions,
    train_concepts: usize,
    grid_rows: usize,
) -> Result<Output> {
    let all = concepts(data)?;
    let train = training_sample(&all, train_concepts);
    let heldout: Vec<Concept> = all.iter().filter(|c| c.split == "heldout").cloned().collect();
    let mut cache: HashMap<String, Conditioning> = HashMap::new();
    let mut conds_of = |cs: &[Concept]| -> Result<Vec<Conditioning>> {
        cs.iter()
            .map(|c| {
                if !cache.contains_key(&c.label) {
                    cache.insert(c.label.clone(), encode_text(lm, &c.label, MAX_TEXT_TOKENS)?);
                }
                Ok(cache[&c.label].clone())
            })
            .collect()
    };
    let pure = SampleOptions { strength: 1.0, ..*opts };
    let started = std::time::Instant::now();
    let mut sections = Vec::new();
    let mut grids = Vec::new();
    for (name, cs, with_nearest) in [
        ("training concepts, from their names", &train, false),
        ("held-out concepts (never trained on)", &heldout, true),
    ] {
        let conds = conds_of(cs)?;
        let mut systems = vec![judge_all(judge, "real image (Google style)", cs, real(data, cs)?)?];
        if with_nearest {
            systems.push(judge_all(
                judge,
                "nearest training image (retrieval)",
                cs,
                nearest_training(generator, &conds)?,
            )?);
        }
        systems.push(judge_all(judge, "generated, strength 1", cs, generate(generator, &conds, &pure, name)?)?);
        if opts.strength < 1.0 {
            systems.push(judge_all(
                judge,
                &format!("generated, strength {} (default)", opts.strength),
                cs,
                generate(generator, &conds, opts, name)?,
            )?);
        }
        let sec = section(name, cs, &systems);
        let rows = grid_rows.min(cs.len());
        let cells: Vec<Image> =
            (0..rows).flat_map(|i| systems.iter().map(move |s| s.images[i].over([255, 255, 255]))).collect();
        let mut caption = format!(
            "{name}: columns = {}\n",
            systems.iter().map(|s| s.system.as_str()).collect::<Vec<_>>().join(" | ")
        );
        for r in sec.rows.iter().take(rows) {
            let judged: Vec<String> = r.judged.iter().map(|(_, k, first)| format!("#{k} ({first})")).collect();
            caption += &format!("{} [{}]: {}\n", r.label, r.base, judged.join(" | "));
        }
        grids.push((name.to_string(), Image::grid(&cells, systems.len(), 2, [200, 200, 200]), caption));
        sections.push(sec);
    }
    Ok(Output {
        report: GeneratorEval {
            judge: judge.info.clone(),
            options: *opts,
            sections,
            seconds_generating: started.elapsed().as_secs_f64(),
        },
        grids,
    })
}
