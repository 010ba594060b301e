//! The `pmg` command line: chat with and complete from a GGUF model, inspect model files.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pmg::diffusion::SampleOptions;
use pmg::llm::{GenerateOptions, LanguageModel};
use pmg::tokenizer::ChatMessage;
use pmg::{DeviceChoice, Error, PmgDevice, Result};

mod bench_sd;
mod image;
mod personalize;
/// What an evaluation reads and writes, for every evaluation command.
mod eval_run {
    use clap::Args;
    use pmg::diffusion::SampleOptions;
    use std::path::PathBuf;

    /// What an evaluation reads and writes: the data, the sampler, how much of the set, the reports.
    #[derive(Args, Clone)]
    pub struct EvalRun {
        #[arg(long, default_value = "data/emoji")]
        pub data: PathBuf,
        #[command(flatten)]
        pub sample: SampleOptions,
        /// Only the first N items of the set.
        #[arg(long)]
        pub limit: Option<usize>,
        /// Write the figures as JSON here.
        #[arg(long)]
        pub json: Option<PathBuf>,
        /// Write the evaluation's grid PNG here.
        #[arg(long)]
        pub grid: Option<PathBuf>,
    }
}
use eval_run::EvalRun;
mod train;

#[derive(Parser)]
#[command(name = "pmg", version, about = "Personalized multimodal generation on your own device")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Chat with the model (its chat template applied). Without MESSAGE, an interactive session.
    Chat {
        message: Option<String>,
        #[arg(long)]
        system: Option<String>,
        #[command(flatten)]
        opts: GenArgs,
    },
    /// Continue a raw prompt (no template; special-token text such as <|im_start|> is recognised).
    Complete {
        prompt: String,
        #[command(flatten)]
        opts: GenArgs,
    },
    /// Measure prefill and decode speed (greedy) and peak memory; prints JSON.
    Bench {
        #[command(flatten)]
        llm: LlmArgs,
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Measure a Stable Diffusion folder: load time, the text encoder, one UNet call, one decode,
    /// the weights held and peak memory; prints JSON (scripts/bench-sd.sh runs it).
    BenchSd {
        /// A diffusers SD folder or a GGUF checkpoint (see `pmg image --generator`).
        #[arg(long)]
        generator: PathBuf,
        /// An autoencoder folder (TAESD's) decoding in place of the checkpoint's vae/.
        #[arg(long)]
        vae: Option<PathBuf>,
        /// Image side in pixels (default: the checkpoint's own).
        #[arg(long)]
        size: Option<usize>,
        /// How the UNet's and text encoder's linear layers are held (quantized on load).
        #[arg(long, value_enum, default_value_t)]
        quantize: pmg::sd::Precision,
        /// Latents per UNet call (2: one image with classifier-free guidance).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// auto | wgpu | cpu (default cpu).
        #[arg(long)]
        device: Option<DeviceChoice>,
    },
    /// Record, list, export, import or clear the private behaviour history (a JSON-lines file on this device).
    History {
        #[command(subcommand)]
        cmd: HistoryCmd,
        /// History file (default: $PMG_HISTORY, else ~/.local/share/pmg/history.jsonl).
        #[arg(long, global = true)]
        file: Option<PathBuf>,
    },
    /// Extract preference keywords from a history with the LLM.
    Preferences {
        /// A history: an export (`{"version":1,"events":[...]}` or `[...]`) or a JSON-lines file.
        #[arg(long)]
        history: PathBuf,
        #[command(flatten)]
        options: pmg::preference::ExtractOptions,
        /// Also describe this item (title) in keywords, as PMG does for the target.
        #[arg(long)]
        target: Option<String>,
        #[command(flatten)]
        llm: LlmArgs,
        /// Print JSON (keywords with weights, attributes, the rendered history).
        #[arg(long)]
        json: bool,
        /// Also print the rendered history the model reads.
        #[arg(long)]
        show_prompt: bool,
    },
    /// Evaluations (one command each; results as a markdown table).
    Eval {
        #[command(subcommand)]
        cmd: EvalCmd,
    },
    /// Generate an image from a text prompt: an emoji with the shipped generator, or with a Stable
    /// Diffusion checkpoint (--generator DIR or FILE.gguf).
    Image {
        /// What to draw, a few words ("smiling cat face"); at most 32 tokens are read (77 by SD).
        #[arg(long)]
        prompt: String,
        /// A diffusers SD folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
        /// scheduler/): SD 1.x/2.x, SD-Turbo, BK-SDM; or a one-file GGUF checkpoint as
        /// stable-diffusion.cpp converts them, with CLIP's tokenizer files in tokenizer/ beside
        /// it (Q8_0/Q4_0 linears stay quantized). Without it, the shipped emoji generator.
        #[arg(long)]
        generator: Option<PathBuf>,
        /// An autoencoder folder (TAESD's, say) decoding in place of the checkpoint's vae/.
        #[arg(long, requires = "generator")]
        vae: Option<PathBuf>,
        /// Image side in pixels with --generator (a multiple of the VAE's factor times the UNet's;
        /// default: the checkpoint's own, 512 for SD 1.x and SD-Turbo and GGUF files).
        #[arg(long, requires = "generator")]
        size: Option<usize>,
        /// How the SD UNet's and text encoder's linear layers are held (quantized on load).
        #[arg(long, value_enum, default_value_t, requires = "generator")]
        quantize: pmg::sd::Precision,
        /// More than one image (--n) writes a grid.
        #[command(flatten)]
        options: pmg::diffusion::ImageOptions,
        #[arg(long, default_value = "image.png")]
        out: PathBuf,
        /// The LLM encodes the prompt.
        #[command(flatten)]
        llm: LlmArgs,
        /// Nearest-neighbour upscale factor of the written PNG.
        #[arg(long, default_value_t = 1)]
        scale: usize,
    },
    /// PMG end to end: preferences from a history, personalized candidates for a target, the
    /// alpha-weighted choice (writes the chosen PNG and a .json with every candidate's scores).
    Personalize {
        #[command(flatten)]
        args: personalize::PersonalizeArgs,
        /// A history: an export or a JSON-lines file (default: the `pmg history` file).
        #[arg(long)]
        history: Option<PathBuf>,
        #[command(flatten)]
        llm: LlmArgs,
    },
    /// Thumbs up or down on a candidate of `pmg personalize` (stored in the history; it moves your alpha).
    Feedback {
        /// The .json written next to the personalized PNG.
        result: PathBuf,
        /// Which candidate (default: the chosen one).
        #[arg(long)]
        candidate: Option<usize>,
        #[arg(long, conflicts_with = "down", required_unless_present = "down")]
        up: bool,
        #[arg(long)]
        down: bool,
        /// History file (default: $PMG_HISTORY, else ~/.local/share/pmg/history.jsonl).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Train the image generator and the scorer on the emoji dataset (the recipe: embed,
    /// autoencoder, diffusion, scorer; see models/EMOJI-MODELS.md).
    Train {
        #[command(subcommand)]
        cmd: train::TrainCmd,
    },
    /// Print a GGUF file's metadata and tensor table.
    Info {
        #[arg(long)]
        model: Option<PathBuf>,
        /// Also list every tensor.
        #[arg(long)]
        tensors: bool,
    },
}

/// The independent judge's weights (evaluation only).
const JUDGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../eval/judge/judge.safetensors");

#[derive(Subcommand)]
enum EvalCmd {
    /// What the independent judge (eval/judge/, evaluation only) sees in each image: its top-5
    /// base emoji (code points, name, probability), with the judge's own accuracy on a style it
    /// never trained on.
    Judge {
        /// PNG files (64x64, or a multiple such as `pmg image --scale 4`).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long, default_value = JUDGE)]
        judge: PathBuf,
        #[arg(long, default_value_t = 5)]
        top: usize,
        #[arg(long)]
        json: bool,
    },
    /// The generator and scorer on the held-out emoji: retrieval top-1/top-5 and Frechet distance,
    /// against baselines (needs data/emoji and `pmg train embed`).
    ///
    /// `--grid` writes a sample grid (and a .txt with its captions); `--limit` counts held-out items.
    Image {
        #[command(flatten)]
        run: EvalRun,
    },
    /// Does the generator draw the catalog? By the judge: 300 sampled training concepts from their
    /// names and every held-out concept, at strength 1 and the default, beside real images and
    /// the nearest training image (needs data/emoji).
    Generator {
        #[arg(long, default_value = "data/emoji")]
        data: PathBuf,
        #[command(flatten)]
        sample: SampleOptions,
        /// Training concepts to sample (a fixed seeded sample).
        #[arg(long, default_value_t = pmg_train::concepts::TRAIN_CONCEPTS)]
        concepts: usize,
        #[arg(long, default_value = JUDGE)]
        judge: PathBuf,
        #[arg(long)]
        json: Option<PathBuf>,
        /// Grid PNGs: PATH's stem + `-training.png` and `-heldout.png` (with a .txt of the judge's reading).
        #[arg(long)]
        grid: Option<PathBuf>,
        /// Concepts per grid.
        #[arg(long, default_value_t = 40)]
        grid_rows: usize,
        #[command(flatten)]
        llm: LlmArgs,
    },
    /// PMG against the target-only baseline on synthetic users built from held-out emoji
    /// (accuracy and preference scores, distance to the history; needs data/emoji).
    ///
    /// `--grid` shows the history, the target and each system's choice for one user per taste;
    /// `--limit` counts users.
    Personalize {
        #[command(flatten)]
        run: EvalRun,
        /// Seeds per preference weight.
        #[arg(long, default_value_t = 2)]
        seeds: usize,
        #[arg(long, default_value_t = 0.5)]
        alpha: f32,
        /// Leave out the implicit-embedding systems (they need models/emoji-soft-prompt.safetensors).
        #[arg(long)]
        no_embeddings: bool,
        /// The independent judge (evaluation only): adds the target's judge rank.
        #[arg(long, default_value = JUDGE)]
        judge: PathBuf,
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Keyword quality on the synthetic histories with known themes (eval/preferences/histories.json).
    Preferences {
        #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../eval/preferences/histories.json"))]
        set: PathBuf,
        #[arg(long, default_value_t = 8)]
        n: usize,
        #[command(flatten)]
        llm: LlmArgs,
        /// Write every history's keywords and scores as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Only this prompt mode (direct | per-attribute); default both.
        #[arg(long)]
        mode: Option<pmg::preference::PromptMode>,
    },
}

#[derive(Subcommand)]
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
enum HistoryCmd {
    /// Record one event: either --json '{"type":"view",...}' or the flags below.
    Add(AddArgs),
    /// Print the events, oldest first (--json for JSON lines).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Write the history as {"version":1,"events":[...]} to stdout or --out.
    Export {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add the events of an export file; invalid events are reported and skipped.
    Import { path: PathBuf },
    /// Delete the whole history.
    Clear,
    /// Keep at most --max-events events and none older than --max-age-days.
    Retain {
        #[arg(long, default_value_t = 5000)]
        max_events: usize,
        #[arg(long)]
        max_age_days: Option<f64>,
    },
}

#[derive(Args)]
struct AddArgs {
    /// The whole event as JSON (then the other flags are ignored).
    #[arg(long)]
    json: Option<String>,
    /// view | click | purchase | rating | review | search | message
    #[arg(long = "type", default_value = "view")]
    kind: String,
    #[arg(long)]
    title: Option<String>,
    /// Item id (default: the title).
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    category: Option<String>,
    #[arg(long = "tag")]
    tags: Vec<String>,
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    image: Option<String>,
    /// Rating value (scale 5 unless --scale).
    #[arg(long)]
    value: Option<f32>,
    #[arg(long)]
    scale: Option<f32>,
    /// Review or message text.
    #[arg(long)]
    text: Option<String>,
    #[arg(long)]
    query: Option<String>,
    /// user | other (messages).
    #[arg(long, default_value = "user")]
    role: String,
    #[arg(long)]
    speaker: Option<String>,
    /// Milliseconds since 1970 (default: now).
    #[arg(long)]
    at: Option<i64>,
}

impl AddArgs {
    fn event(&self) -> Result<pmg::history::Event> {
        use pmg::history::{Event, EventKind, Item, Role};
        if let Some(j) = &self.json {
            return Ok(pmg::history::parse_event(j, 0)?);
        }
        let item = || -> Result<Item> {
            let title = self
                .title
                .clone()
                .ok_or_else(|| Error::InvalidArgument(format!("--title is required for a {} event", self.kind)))?;
            Ok(Item {
                id: self.id.clone().unwrap_or_else(|| title.clone()),
                title,
                category: self.category.clone(),
                tags: self.tags.clone(),
                description: self.description.clone(),
                image: self.image.clone(),
            })
        };
        let need = |v: &Option<String>, flag: &str| {
            v.clone().ok_or_else(|| Error::InvalidArgument(format!("{flag} is required for a {} event", self.kind)))
        };
        let kind = match self.kind.as_str() {
            "view" => EventKind::View { item: item()?, dwell_ms: None },
            "click" => EventKind::Click { item: item()?, dwell_ms: None },
            "purchase" => EventKind::Purchase { item: item()?, quantity: None },
            "rating" => EventKind::Rating {
                item: item()?,
                value: self.value.ok_or_else(|| Error::InvalidArgument("--value is required for a rating".into()))?,
                scale: self.scale,
            },
            "review" => EventKind::Review { item: item()?, text: need(&self.text, "--text")? },
            "search" => EventKind::Search { query: need(&self.query, "--query")? },
            "message" => EventKind::Message {
                role: match self.role.as_str() {
                    "user" => Role::User,
                    "other" => Role::Other,
                    r => return Err(Error::InvalidArgument(format!("--role must be user or other, not {r:?}"))),
                },
                text: need(&self.text, "--text")?,
                speaker: self.speaker.clone(),
            },
            k => {
                return Err(Error::InvalidArgument(format!(
                    "unknown event type {k:?} (view, click, purchase, rating, review, search, message)"
                )));
            }
        };
        let e = Event::new(self.at.unwrap_or_else(pmg::history::store::now_ms), kind);
        e.validate(0)?;
        Ok(e)
    }
}

fn history_file(file: Option<PathBuf>) -> PathBuf {
    file.or_else(|| std::env::var_os("PMG_HISTORY").map(PathBuf::from)).unwrap_or_else(|| {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
        data.unwrap_or_else(|| PathBuf::from(".")).join("pmg/history.jsonl")
    })
}

/// A history from a file: an export (JSON object or array) or JSON lines.
fn read_history(path: &PathBuf) -> Result<Vec<pmg::history::Event>> {
    use pmg::history::store::{HistoryStore, JsonlStore};
    let text =
        std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    // An export is one JSON document: an array, or an object with `events` (also on one line).
    let is_export = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => v.is_array() || v.get("events").is_some(),
        Err(_) => text.trim().is_empty(),
    };
    if is_export {
        let (events, report) = pmg::history::parse_export(&text)?;
        for e in &report.rejected {
            eprintln!("pmg: skipped {e}");
        }
        return Ok(events);
    }
    JsonlStore::open(path).list()
}

fn eval_preferences(
    set_path: &PathBuf,
    n: usize,
    model: &Option<PathBuf>,
    device: DeviceChoice,
    json: Option<PathBuf>,
    only: Option<pmg::preference::PromptMode>,
) -> Result<()> {
    use pmg::host::block_on;
    use pmg::preference::eval::{EvalSet, run_baseline, run_llm, summarize};
    use pmg::preference::{Extractor, Feed, PromptMode};
    let text = std::fs::read_to_string(set_path)
        .map_err(|source| Error::Io { path: set_path.display().to_string(), source })?;
    let set = EvalSet::parse(&text)?;
    let bytes = read_model(model)?;
    let lm = LanguageModel::from_gguf_bytes(&bytes, &PmgDevice::new(device)?, 2048)?;
    let model_name = model
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| pmg::models::manifest().default_llm_entry().file.clone());
    let ex = Extractor::new(&lm)?;
    let mut feed = Feed::blocking(lm.new_session());
    let mut all = serde_json::Map::new();
    let mut summaries = Vec::new();
    let t = std::time::Instant::now();
    let base = run_baseline(&set, n);
    summaries.push(summarize("frequency baseline (no LLM)", &base, t.elapsed().as_secs_f32()));
    all.insert("baseline".into(), serde_json::to_value(&base).expect("serializes"));
    for (mode, name) in [(PromptMode::Direct, "direct"), (PromptMode::PerAttribute, "per-attribute")] {
        if only.is_some_and(|m| m != mode) {
            continue;
        }
        let t = std::time::Instant::now();
        let scores = block_on(run_llm(&ex, &mut feed, &set, mode, n))?;
        summaries.push(summarize(&format!("{model_name}, {name} prompt"), &scores, t.elapsed().as_secs_f32()));
        all.insert(name.into(), serde_json::to_value(&scores).expect("serializes"));
        eprintln!("{name}: done in {:.0} s", t.elapsed().as_secs_f32());
    }
    let domains: Vec<String> = summaries[0].by_domain.keys().cloned().collect();
    println!(
        "{} histories, {} themes, {n} keywords each; device {}",
        set.histories.len(),
        set.themes.len(),
        lm.model.device.adapter
    );
    println!();
    println!(
        "| system | keyword precision | history hit (any keyword) | first keyword hits | {} | seconds |",
        domains.iter().map(|d| format!("precision {d}")).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---|---|---|{}---|", "---|".repeat(domains.len()));
    for s in &summaries {
        let per: Vec<String> = domains
            .iter()
            .map(|d| s.by_domain.get(d).map(|(c, p)| format!("{:.0}% (n={c})", p * 100.0)).unwrap_or_default())
            .collect();
        println!(
            "| {} | {:.0}% | {:.0}% | {:.0}% | {} | {:.0} |",
            s.system,
            s.precision * 100.0,
            s.any_hit * 100.0,
            s.top1_hit * 100.0,
            per.join(" | "),
            s.seconds
        );
    }
    if let Some(p) = json {
        std::fs::write(&p, serde_json::to_string_pretty(&all).expect("serializes"))
            .map_err(|source| Error::Io { path: p.display().to_string(), source })?;
    }
    Ok(())
}

fn history_cmd(cmd: HistoryCmd, file: Option<PathBuf>) -> Result<()> {
    use pmg::history::store::{HistoryStore, JsonlStore, now_ms};
    let path = history_file(file);
    let mut store = JsonlStore::open(&path);
    match cmd {
        HistoryCmd::Add(a) => {
            store.record(a.event()?)?;
            eprintln!("recorded in {}", path.display());
        }
        HistoryCmd::List { json } => {
            for e in store.list()? {
                if json {
                    println!("{}", serde_json::to_string(&e).expect("serializes"));
                } else {
                    let what = match (&e.kind, e.item()) {
                        (_, Some(item)) => item.title.clone(),
                        (pmg::history::EventKind::Search { query }, _) => query.clone(),
                        (pmg::history::EventKind::Message { text, .. }, _) => text.clone(),
                        _ => String::new(),
                    };
                    println!("{:>14}  {:<8}  {}", e.at, e.kind_name(), pmg::history::render::clean(&what, 100));
                }
            }
        }
        HistoryCmd::Export { out } => {
            let json = pmg::history::to_export(&store.list()?);
            match out {
                Some(p) => std::fs::write(&p, json + "\n")
                    .map_err(|source| Error::Io { path: p.display().to_string(), source })?,
                None => println!("{json}"),
            }
        }
        HistoryCmd::Import { path: from } => {
            let text = std::fs::read_to_string(&from)
                .map_err(|source| Error::Io { path: from.display().to_string(), source })?;
            let (events, report) = pmg::history::parse_export(&text)?;
            let report = store.import(events, report)?;
            for e in &report.rejected {
                eprintln!("pmg: skipped {e}");
            }
            eprintln!(
                "imported {} events into {} ({} skipped)",
                report.accepted,
                path.display(),
                report.rejected.len()
            );
        }
        HistoryCmd::Clear => {
            store.clear()?;
            eprintln!("cleared {}", path.display());
        }
        HistoryCmd::Retain { max_events, max_age_days } => {
            let policy =
                pmg::history::Retention { max_events, max_age_ms: max_age_days.map(|d| (d * 86_400_000.0) as i64) };
            let dropped = store.retain(policy, now_ms())?;
            eprintln!("dropped {dropped} events");
        }
    }
    Ok(())
}

/// The LLM and the device it runs on: one argument group for every command that loads it.
#[derive(Args, Clone)]
struct LlmArgs {
    /// GGUF file; defaults to the manifest's default model under models/.
    #[arg(long)]
    model: Option<PathBuf>,
    /// auto | wgpu | cpu. Default: auto, except for `bench` and `eval`, which measure on the CPU
    /// unless told otherwise (their figures compare across machines).
    #[arg(long)]
    device: Option<DeviceChoice>,
}

impl LlmArgs {
    fn device_or(&self, default: DeviceChoice) -> DeviceChoice {
        self.device.unwrap_or(default)
    }
}

#[derive(Args, Clone)]
struct GenArgs {
    #[command(flatten)]
    llm: LlmArgs,
    #[command(flatten)]
    generate: GenerateOptions,
    /// Context length in tokens (KV cache size).
    #[arg(long, default_value_t = 2048)]
    ctx: usize,
    /// Print the generated token ids and text as one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

fn default_model() -> PathBuf {
    image::models_dir().join(&pmg::models::manifest().default_llm_entry().file)
}

fn read_model(path: &Option<PathBuf>) -> Result<Vec<u8>> {
    let is_default = path.is_none();
    let path = path.clone().unwrap_or_else(default_model);
    std::fs::read(&path).map_err(|source| {
        let missing = source.kind() == std::io::ErrorKind::NotFound;
        let hint = if is_default && missing { " (run scripts/fetch-models.sh to get the default model)" } else { "" };
        Error::Io { path: format!("{}{hint}", path.display()), source }
    })
}

fn load(opts: &GenArgs) -> Result<LanguageModel> {
    let bytes = read_model(&opts.llm.model)?;
    let device = PmgDevice::new(opts.llm.device_or(DeviceChoice::Auto))?;
    log::info!("device: {}", device.adapter);
    LanguageModel::from_gguf_bytes(&bytes, &device, opts.ctx)
}

/// Generate after `prompt`, streaming text to stdout (or printing JSON at the end). Returns the text.
fn run(lm: &LanguageModel, session: &mut pmg::llm::Session<'_>, prompt: &[u32], opts: &GenArgs) -> Result<String> {
    let mut stream = session.generate(prompt, opts.generate.clone())?;
    let mut ids = Vec::new();
    let out = std::io::stdout();
    for tok in &mut stream {
        let tok = tok?;
        ids.push(tok.id);
        if !opts.json {
            let mut o = out.lock();
            let _ = o.write_all(tok.text.as_bytes());
            let _ = o.flush();
        }
    }
    let text = stream.text().to_string();
    let finish = stream.finish_reason();
    if opts.json {
        let v = serde_json::json!({
            "prompt_tokens": prompt,
            "tokens": ids,
            "text": text,
            "finish_reason": finish,
            "device": lm.model.device.adapter,
        });
        println!("{v}");
    } else {
        println!();
    }
    Ok(text)
}

fn eval_judge(images: &[PathBuf], judge: &Path, top: usize, json: bool) -> Result<()> {
    let j = image::load_judge(judge)?;
    let read = |p: &Path| std::fs::read(p).map_err(|source| Error::Io { path: p.display().to_string(), source });
    let decoded = images
        .iter()
        .map(|p| {
            pmg::image::Image::decode_png(&read(p)?)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    let guesses = j.top(&decoded, top)?;
    let i = &j.info;
    if json {
        let rows: Vec<_> = images
            .iter()
            .zip(&guesses)
            .map(|(p, g)| serde_json::json!({ "image": p.display().to_string(), "top": g }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "judge": i, "images": rows })).expect("json"));
        return Ok(());
    }
    println!(
        "judge {} (evaluation only; on {}, a style it never trained on: {:.1}% top-1, {:.1}% top-5)",
        i.version,
        i.unseen_style,
        100.0 * i.unseen_top1,
        100.0 * i.unseen_top5
    );
    for (p, g) in images.iter().zip(&guesses) {
        println!("{}", p.display());
        for (k, x) in g.iter().enumerate() {
            println!("  {}. {:<24} {:<40} {:.3}", k + 1, x.code, x.name, x.probability);
        }
    }
    Ok(())
}

fn main_inner(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Complete { prompt, opts } => {
            let lm = load(&opts)?;
            let ids = lm.tokenize_prompt(&prompt)?;
            let mut s = lm.new_session();
            run(&lm, &mut s, &ids, &opts)?;
        }
        Cmd::Chat { message, system, opts } => {
            let lm = load(&opts)?;
            let mut messages: Vec<ChatMessage> = system.iter().map(|s| ChatMessage::new("system", s)).collect();
            let mut session = lm.new_session();
            let turn =
                |messages: &mut Vec<ChatMessage>, user: String, session: &mut pmg::llm::Session<'_>| -> Result<()> {
                    messages.push(ChatMessage::new("user", &user));
                    // Re-render the whole conversation; the session keeps the shared prefix cached.
                    let ids = lm.tokenize_chat(messages)?;
                    let cached = session.tokens();
                    let new = if ids.starts_with(cached) && ids.len() > cached.len() {
                        ids[cached.len()..].to_vec()
                    } else {
                        session.reset();
                        ids
                    };
                    let reply = run(&lm, session, &new, &opts)?;
                    messages.push(ChatMessage::new("assistant", &reply));
                    Ok(())
                };
            match message {
                Some(m) => turn(&mut messages, m, &mut session)?,
                None => {
                    eprintln!("pmg chat: type a message, Ctrl-D to quit");
                    let stdin = std::io::stdin();
                    loop {
                        eprint!("> ");
                        let mut line = String::new();
                        if stdin
                            .lock()
                            .read_line(&mut line)
                            .map_err(|source| Error::Io { path: "stdin".into(), source })?
                            == 0
                        {
                            break;
                        }
                        if line.trim().is_empty() {
                            continue;
                        }
                        turn(&mut messages, line.trim_end().to_string(), &mut session)?;
                    }
                }
            }
        }
        Cmd::History { cmd, file } => history_cmd(cmd, file)?,
        Cmd::Train { cmd } => train::run(cmd, read_model)?,
        Cmd::Image { prompt, generator: Some(dir), vae, size, quantize, options, out, llm, scale } => {
            image::sd_image(image::SdImageArgs {
                prompt,
                dir,
                vae,
                size,
                quantize,
                options,
                out,
                device: llm.device_or(DeviceChoice::Auto),
                scale,
            })?
        }
        Cmd::Image { prompt, generator: None, options, out, llm, scale, .. } => image::image(image::ImageArgs {
            prompt,
            options,
            out,
            device: llm.device_or(DeviceChoice::Auto),
            llm: read_model(&llm.model)?,
            scale,
        })?,
        Cmd::Eval { cmd: EvalCmd::Image { run } } => image::eval(run)?,
        Cmd::Personalize { args, history, llm } => {
            let path = history.unwrap_or_else(|| history_file(None));
            let events = read_history(&path)?;
            personalize::personalize(args, events, llm.device_or(DeviceChoice::Auto), read_model(&llm.model)?)?
        }
        Cmd::Feedback { result, candidate, up, down: _, file } => {
            let mut store = pmg::history::store::JsonlStore::open(history_file(file));
            let chosen = match candidate {
                Some(c) => c,
                None => {
                    let text = std::fs::read_to_string(&result)
                        .map_err(|source| Error::Io { path: result.display().to_string(), source })?;
                    serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| v["chosen"].as_u64())
                        .unwrap_or(0) as usize
                }
            };
            let p = personalize::feedback(&result, chosen, up, &mut store)?;
            println!(
                "recorded {} on candidate {chosen} in {}; your alpha is now {:.2} ({} ratings)",
                if up { "thumbs up" } else { "thumbs down" },
                store.path().display(),
                p.alpha,
                p.feedback
            );
        }
        Cmd::Eval { cmd: EvalCmd::Personalize { run, seeds, alpha, no_embeddings, judge, model } } => {
            personalize::eval(personalize::EvalArgs {
                run,
                seeds,
                alpha,
                embeddings: !no_embeddings,
                judge: judge.exists().then_some(judge),
                llm: read_model(&model)?,
            })?
        }
        Cmd::Eval { cmd: EvalCmd::Generator { data, sample, concepts, judge, json, grid, grid_rows, llm } } => {
            image::eval_generator(image::GeneratorEvalArgs {
                data,
                opts: sample,
                concepts,
                judge,
                json,
                grid,
                grid_rows,
                device: llm.device_or(DeviceChoice::Cpu),
                llm: read_model(&llm.model)?,
            })?
        }
        Cmd::Eval { cmd: EvalCmd::Judge { images, judge, top, json } } => eval_judge(&images, &judge, top, json)?,
        Cmd::Eval { cmd: EvalCmd::Preferences { set, n, llm, json, mode } } => {
            eval_preferences(&set, n, &llm.model, llm.device_or(DeviceChoice::Cpu), json, mode)?
        }
        Cmd::Preferences { history, options: opts, target, llm, json, show_prompt } => {
            let events = read_history(&history)?;
            let bytes = read_model(&llm.model)?;
            let lm = LanguageModel::from_gguf_bytes(&bytes, &PmgDevice::new(llm.device_or(DeviceChoice::Auto))?, 2048)?;
            let ex = pmg::preference::Extractor::new(&lm)?;
            let mut feed = pmg::preference::Feed::blocking(lm.new_session());
            let prefs = pmg::host::block_on(ex.preferences(&mut feed, &events, &opts))?;
            let target_kw = match &target {
                Some(t) => {
                    let item = pmg::history::Item { id: t.clone(), title: t.clone(), ..Default::default() };
                    Some(pmg::host::block_on(ex.item_keywords(&mut feed, &item, 10, &opts))?)
                }
                None => None,
            };
            if json {
                let v = serde_json::json!({ "preferences": prefs, "target": target_kw });
                println!("{}", serde_json::to_string_pretty(&v).expect("serializes"));
            } else {
                if show_prompt {
                    println!("--- history as the model reads it ---\n{}\n---", prefs.rendered);
                }
                if prefs.neutral {
                    println!("(empty history: no preferences, the output stays unpersonalized)");
                }
                for k in &prefs.keywords {
                    println!("{:>5.2}  {}", k.weight, k.text);
                }
                for (attr, kws) in &prefs.attributes {
                    println!("  {attr}: {}", kws.join(", "));
                }
                if let Some(t) = target_kw {
                    println!("target: {}", t.iter().map(|k| k.text.as_str()).collect::<Vec<_>>().join(", "));
                }
            }
        }
        Cmd::Bench { llm, prompt_tokens, gen_tokens, runs } => {
            bench(&llm.model, llm.device_or(DeviceChoice::Cpu), prompt_tokens, gen_tokens, runs)?
        }
        Cmd::BenchSd { generator, vae, size, quantize, batch, runs, device } => {
            bench_sd::bench_sd(bench_sd::BenchSdArgs {
                dir: generator,
                vae,
                size,
                quantize,
                batch,
                runs,
                device: device.unwrap_or(DeviceChoice::Cpu),
            })?
        }
        Cmd::Info { model, tensors } => {
            let bytes = read_model(&model)?;
            let g = pmg::gguf::Gguf::parse(&bytes)?;
            println!(
                "GGUF v{}  {} tensors  {} metadata keys  data at {}",
                g.version,
                g.tensors.len(),
                g.keys.len(),
                g.data_offset
            );
            for k in &g.keys {
                let v = &g.metadata[k];
                let s = match v {
                    pmg::gguf::Value::Array(a) => format!("[{} items]", a.len()),
                    pmg::gguf::Value::String(s) if s.len() > 80 => {
                        format!("{:?}...", &s[..s.char_indices().nth(80).map(|c| c.0).unwrap_or(s.len())])
                    }
                    v => format!("{v:?}"),
                };
                println!("  {k} = {s}");
            }
            if tensors {
                for t in &g.tensors {
                    println!("  {:32} {:?} {:?} {} B", t.name, t.ggml_type, t.dims, t.size);
                }
            }
        }
    }
    Ok(())
}

/// A fixed English text, tokenized and cut to the requested length (repeated if needed).
const BENCH_TEXT: &str = "A small quantized language model runs on the user's own device, reads what the user did \
on a website, and describes their taste in a handful of keywords. A diffusion model then draws a sticker \
that matches both the requested occasion and that taste. Nothing about the user leaves the browser: the \
site only serves static files, and every computation happens locally, on a laptop or a phone. ";

fn bench(
    model: &Option<PathBuf>,
    device: DeviceChoice,
    prompt_tokens: usize,
    gen_tokens: usize,
    runs: usize,
) -> Result<()> {
    use std::time::Instant;
    let bytes = read_model(model)?;
    let dev = PmgDevice::new(device)?;
    let t0 = Instant::now();
    let lm = LanguageModel::from_gguf_bytes(&bytes, &dev, prompt_tokens + gen_tokens + 1)?;
    drop(bytes);
    let load_s = t0.elapsed().as_secs_f64();
    let mut ids = Vec::new();
    while ids.len() < prompt_tokens {
        ids.extend(lm.tokenizer.encode(BENCH_TEXT, false)?);
    }
    ids.truncate(prompt_tokens);
    let (mut prefill, mut decode) = (Vec::new(), Vec::new());
    // One warm-up run (shader compilation, allocator pools), then `runs` measured ones.
    for run in 0..=runs {
        let mut s = lm.new_session();
        let t = Instant::now();
        let mut logits = s.feed(&ids)?;
        let tp = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..gen_tokens {
            let next = pmg::llm::sampler::argmax(&logits);
            logits = s.feed(&[next])?;
        }
        let td = t.elapsed().as_secs_f64();
        if run > 0 {
            prefill.push(prompt_tokens as f64 / tp);
            decode.push(gen_tokens as f64 / td);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let v = serde_json::json!({
        "system": format!("pmg {} ({})", env!("CARGO_PKG_VERSION"), dev.adapter),
        "threads": pmg::host::pool::Pool::global().threads(),
        "load_s": load_s,
        "prefill_tok_s": median(&mut prefill),
        "decode_tok_s": median(&mut decode),
        "peak_rss_mb": peak_rss_mb(),
        "prompt_ids": ids,
    });
    println!("{v}");
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mb() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Mesa's Vulkan/GL drivers print warnings when `XDG_RUNTIME_DIR` is unset (as in containers and CI);
/// `--device auto` probes the GPU, so give them a private directory.
fn ensure_runtime_dir() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pmg-runtime-{}", std::process::id()));
    #[cfg(unix)]
    let made = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).is_ok()
    };
    #[cfg(not(unix))]
    let made = false;
    if made {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
}

fn main() -> ExitCode {
    ensure_runtime_dir();
    let cli = Cli::parse();
    match main_inner(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pmg: error: {e}");
            ExitCode::FAILURE
        }
    }
}
