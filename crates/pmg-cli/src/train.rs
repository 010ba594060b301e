//! `pmg train ...`: the generator and scorer training recipe, one stage per subcommand.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use pmg::Result;
use pmg::diffusion::{AutoencoderConfig, UNetConfig};
use pmg::scorer::ScorerConfig;
use pmg_train::{RunConfig, data::BANK_FILE, stages};

#[derive(Subcommand)]
pub enum TrainCmd {
    /// Render the fetched Iconify emoji sets (`scripts/fetch-emoji.sh`) into data/emoji/img/<set>/64/.
    Styles {
        #[arg(long, default_value = "data/emoji")]
        data: PathBuf,
    },
    /// Encode every caption of the dataset with the LLM once (data/emoji/captions.safetensors).
    Embed {
        #[arg(long, default_value = "data/emoji")]
        data: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Stage 1: the 64x64 RGBA <-> 4x16x16 autoencoder.
    Autoencoder {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, default_value = "models/emoji-autoencoder.safetensors")]
        out: PathBuf,
    },
    /// Stage 2: the latent denoiser (needs the autoencoder export and the caption embeddings,
    /// or a training pack).
    Diffusion {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, default_value = "models/emoji-autoencoder.safetensors")]
        autoencoder: PathBuf,
        /// Train from this pack (`pmg train pack`) instead of the dataset and the autoencoder.
        #[arg(long)]
        pack: Option<PathBuf>,
        /// What a batch draws uniformly: record | base (a base emoji, then one of its records)
        #[arg(long, default_value_t = stages::SampleBy::default())]
        sample_by: stages::SampleBy,
        #[arg(long, default_value = "models/emoji-denoiser.safetensors")]
        out: PathBuf,
    },
    /// The denoiser stage's inputs as one compact file (training latents in f16, caption hidden
    /// states deduplicated and in int8): for training on a machine without the dataset or the LLM.
    Pack {
        #[arg(long, default_value = "data/emoji")]
        data: PathBuf,
        #[arg(long, default_value = "models/emoji-autoencoder.safetensors")]
        autoencoder: PathBuf,
        #[arg(long, default_value = "data/emoji/train-pack.safetensors")]
        out: PathBuf,
    },
    /// Stage 3: the image-text scorer (needs the caption embeddings; the autoencoder for reconstructions).
    Scorer {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long, default_value = "models/emoji-autoencoder.safetensors")]
        autoencoder: PathBuf,
        #[arg(long, default_value = "models/emoji-scorer.safetensors")]
        out: PathBuf,
    },
    /// Stage 4: PMG's implicit-preference soft prompt (needs the LLM, the caption embeddings,
    /// the autoencoder and the denoiser; both stay frozen).
    SoftPrompt {
        #[command(flatten)]
        run: RunArgs,
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = "models/emoji-autoencoder.safetensors")]
        autoencoder: PathBuf,
        #[arg(long, default_value = "models/emoji-denoiser.safetensors")]
        denoiser: PathBuf,
        #[arg(long, default_value = "models/emoji-soft-prompt.safetensors")]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct RunArgs {
    #[arg(long, default_value = "data/emoji")]
    data: PathBuf,
    /// Run folder (checkpoints, loss.jsonl); default runs/<stage>.
    #[arg(long)]
    run: Option<PathBuf>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 25)]
    log_every: usize,
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Continue from the run folder's checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop at this step with a checkpoint (no export); continue later with --resume.
    #[arg(long)]
    until: Option<usize>,
    /// Restart the learning-rate schedule every N steps at half the previous peak (0: never).
    #[arg(long)]
    cycle: Option<usize>,
    /// cpu (the reference recipe) | wgpu | auto
    #[arg(long, default_value = "cpu")]
    device: pmg::DeviceChoice,
    /// Data-parallel CPU workers for the denoiser's steps (each part of the batch on one thread;
    /// the batch must divide by it).
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

/// The recipe's defaults per stage: (steps, batch, lr, learning-rate cycle).
pub const AUTOENCODER: (usize, usize, f64, Option<usize>) = (1000, 32, 1e-3, None);
/// Three cosine cycles of 3,000 steps: emoji-v1 shipped after the first, emoji-v2 (and v3, the
/// same tensors) after two, emoji-v4 after three.
pub const DIFFUSION: (usize, usize, f64, Option<usize>) = (9000, 32, 5e-4, Some(3000));
pub const SCORER: (usize, usize, f64, Option<usize>) = (800, 64, 5e-4, None);
pub const SOFT_PROMPT: (usize, usize, f64, Option<usize>) = (2400, 8, 2e-3, None);

impl RunArgs {
    fn config(self, stage: &str, (steps, batch, lr, cycle): (usize, usize, f64, Option<usize>)) -> RunConfig {
        let steps = self.steps.unwrap_or(steps);
        let cycle = self.cycle.or(cycle).filter(|&c| c > 0 && c < steps);
        RunConfig {
            run: self.run.unwrap_or_else(|| Path::new("runs").join(stage)),
            data: self.data,
            steps,
            batch: self.batch.unwrap_or(batch),
            lr: self.lr.unwrap_or(lr),
            warmup: (cycle.unwrap_or(steps) / 20).clamp(1, 200),
            seed: self.seed,
            log_every: self.log_every.max(1),
            checkpoint_every: self.checkpoint_every.max(1),
            resume: self.resume,
            until: self.until,
            cycle,
            device: self.device,
            workers: self.workers.max(1),
        }
    }
}

pub fn run(cmd: TrainCmd, read_model: impl Fn(&Option<PathBuf>) -> Result<Vec<u8>>) -> Result<()> {
    match cmd {
        TrainCmd::Styles { data } => {
            for &(set, naming) in pmg_train::styles::SETS {
                let r = pmg_train::styles::render_set(&data, set, naming)?;
                eprintln!(
                    "{set}: {} images rendered, {} emoji.json images not in the set, {} failed",
                    r.rendered, r.not_in_set, r.failed
                );
            }
        }
        TrainCmd::Embed { data, model } => {
            let bytes = read_model(&model)?;
            let lm = pmg::llm::LanguageModel::from_gguf_bytes(&bytes, &pmg::PmgDevice::cpu(), 64)?;
            let d = pmg_train::EmojiData::load(&data)?;
            let bank = pmg_train::CaptionBank::build(&lm, &d, &data.join(BANK_FILE))?;
            eprintln!(
                "wrote {} ({} captions, {} distinct)",
                data.join(BANK_FILE).display(),
                bank.captions.len(),
                bank.conds.len()
            );
        }
        TrainCmd::Autoencoder { run, out } => {
            stages::autoencoder(run.config("autoencoder", AUTOENCODER), AutoencoderConfig::default(), &out)?
        }
        TrainCmd::Diffusion { run, autoencoder, pack, sample_by, out } => {
            let input = match &pack {
                Some(p) => stages::DenoiserInput::Pack(p),
                None => stages::DenoiserInput::Dataset { autoencoder: &autoencoder },
            };
            stages::diffusion(run.config("diffusion", DIFFUSION), UNetConfig::default(), input, sample_by, &out)?
        }
        TrainCmd::Pack { data, autoencoder, out } => stages::denoiser_data(&data, &autoencoder)?.save_pack(&out)?,
        TrainCmd::Scorer { run, autoencoder, out } => {
            let ae = autoencoder.exists().then_some(autoencoder.as_path());
            stages::scorer(run.config("scorer", SCORER), ScorerConfig::default(), ae, &out)?
        }
        TrainCmd::SoftPrompt { run, model, autoencoder, denoiser, out } => {
            let bytes = read_model(&model)?;
            let lm = pmg::llm::LanguageModel::from_gguf_bytes(&bytes, &pmg::PmgDevice::cpu(), 1024)?;
            let cfg = run.config("soft-prompt", SOFT_PROMPT);
            pmg_train::soft_prompt::soft_prompt(
                cfg,
                pmg::soft_prompt::SoftPromptConfig::default(),
                &lm,
                &autoencoder,
                &denoiser,
                &out,
            )?
        }
    }
    Ok(())
}
