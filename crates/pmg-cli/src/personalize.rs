//! `pmg personalize` (PMG end to end on a history) and `pmg feedback` (thumbs up/down on one of
//! its candidates, stored with the history).

use std::path::{Path, PathBuf};

use clap::Args;
use pmg::history::{Event, EventKind};
use pmg::image::Image;
use pmg::llm::LanguageModel;
use pmg::personalize::{PersonalizeOptions, Personalized, Personalizer, Profile, Stage, Target};
use pmg::{DeviceChoice, Error, PmgDevice, Result};

use crate::image::{
    load_generator, load_judge, load_scorer, load_soft_prompt, models_dir, read, upscale, write_file, write_grid,
};

#[derive(Args)]
pub struct PersonalizeArgs {
    /// What to make ("birthday cake", "good night", a product name).
    #[arg(long)]
    pub target: String,
    /// The target's own picture: a PNG file, or an emoji code point (1f382) read from the fetched
    /// emoji data (--emoji-data). Candidates then start from it, so the target stays recognisable.
    #[arg(long)]
    pub target_image: Option<String>,
    /// The fetched emoji data (scripts/fetch-emoji.sh), for a code point in --target-image.
    #[arg(long, default_value = "data/emoji")]
    pub emoji_data: PathBuf,
    #[command(flatten)]
    pub options: PersonalizeOptions,
    /// The chosen image (PNG). The result (scores of every candidate) goes next to it as .json.
    #[arg(long, default_value = "personalized.png")]
    pub out: PathBuf,
    /// Also write every candidate as a grid (rows: weights, columns: seeds).
    #[arg(long)]
    pub grid: Option<PathBuf>,
    /// Nearest-neighbour upscale factor of the written PNGs.
    #[arg(long, default_value_t = 4)]
    pub scale: usize,
    /// A Stable Diffusion checkpoint to draw with (a diffusers folder or a GGUF file: see `pmg
    /// image --generator`) instead of the shipped emoji generator; it needs a CLIP scorer (--scorer).
    #[arg(long, requires = "scorer")]
    pub generator: Option<PathBuf>,
    /// An autoencoder folder (TAESD's, say) decoding in place of the SD checkpoint's vae/.
    #[arg(long, requires = "generator")]
    pub vae: Option<PathBuf>,
    /// How the SD UNet's and text encoder's linear layers are held (quantized on load).
    #[arg(long, value_enum, default_value_t, requires = "generator")]
    pub quantize: pmg::sd::Precision,
    /// Image side in pixels with --generator (default: the checkpoint's own, else 512).
    #[arg(long, requires = "generator")]
    pub size: Option<usize>,
    /// A transformers CLIPModel folder (config.json, model.safetensors, tokenizer,
    /// preprocessor_config.json) scoring the candidates instead of the shipped scorer.
    #[arg(long)]
    pub scorer: Option<PathBuf>,
}

pub fn result_path(out: &Path) -> PathBuf {
    out.with_extension("json")
}

pub fn personalize(a: PersonalizeArgs, events: Vec<Event>, device: DeviceChoice, llm: Vec<u8>) -> Result<()> {
    let opts = a.options;
    opts.validate()?;
    let device = PmgDevice::new(device)?;
    let t0 = std::time::Instant::now();
    let lm = LanguageModel::from_gguf_bytes(&llm, &device, 2048)?;
    let (emoji, sd) = match &a.generator {
        Some(dir) => {
            let mut sd = pmg::sd::pipeline::StableDiffusion::from_dir(dir, a.vae.as_deref(), &device, a.quantize)?;
            if let Some(px) = a.size {
                sd.set_size(px)?;
            }
            (None, Some(sd))
        }
        None => (Some(load_generator(&models_dir(), &device)?), None),
    };
    let (shipped, clip) = match &a.scorer {
        Some(dir) => (None, Some(pmg::sd::clip_scorer::ClipScorer::from_dir(dir, &device)?)),
        None => (Some(load_scorer(&models_dir(), &device)?), None),
    };
    let soft = if opts.embeddings { Some(load_soft_prompt(&models_dir(), &device)?) } else { None };
    let image = match &a.target_image {
        None => None,
        Some(arg) if Path::new(arg).is_file() => Some(Image::decode_png(&read(Path::new(arg))?)?),
        Some(code) => {
            let (img, name) = pmg_train::data::house_picture(&a.emoji_data, code)?;
            eprintln!("target picture: {name} ({code})");
            Some(img)
        }
    };
    let target = Target { title: a.target.clone(), image };
    let generator = match (&emoji, &sd) {
        (Some(g), _) => g.into(),
        (_, Some(g)) => g.into(),
        _ => unreachable!("one generator is loaded"),
    };
    let scorer = match (&shipped, &clip) {
        (Some(s), _) => s.into(),
        (_, Some(s)) => s.into(),
        _ => unreachable!("one scorer is loaded"),
    };
    let p = Personalizer { lm: &lm, generator, scorer, soft: soft.as_ref() };
    let t1 = std::time::Instant::now();
    let r = pmg::personalize::personalize(&p, &events, target, &opts, |stage| {
        match stage {
            Stage::Extract => eprintln!("reading the history ({} events)...", events.len()),
            Stage::Encode => eprintln!("encoding the conditioning..."),
            Stage::Denoise { step, steps } => eprint!("\rdenoising {step}/{steps}"),
            Stage::Score => eprintln!("\nscoring..."),
        }
        true
    })?;
    let t2 = std::time::Instant::now();
    print_result(&r, opts.alpha.is_none(), &Profile::from_history(&events));
    let scale = a.scale.max(1);
    write_png(&a.out, &upscale(r.image(), scale))?;
    let json = result_path(&a.out);
    write_file(&json, serde_json::to_vec_pretty(&r).expect("serializes"))?;
    if let Some(g) = &a.grid {
        let imgs: Vec<Image> = r.candidates.iter().map(|c| c.image.clone()).collect();
        write_png(g, &upscale(&Image::grid(&imgs, opts.seeds, 2, [255, 255, 255]), scale))?;
        eprintln!("wrote {}", g.display());
    }
    eprintln!(
        "wrote {} (candidate {}) and {}; load {:.1} s, personalize {:.1} s on {}\nrate it: pmg feedback {} --candidate {} --up   (or --down)",
        a.out.display(),
        r.chosen,
        json.display(),
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64(),
        device.adapter,
        json.display(),
        r.chosen
    );
    Ok(())
}

fn write_png(path: &Path, img: &Image) -> Result<()> {
    write_file(path, img.encode_png())
}

fn print_result(r: &Personalized, learned: bool, profile: &Profile) {
    if r.preferences.neutral {
        println!("no preferences in the history: the image is not personalized");
    } else {
        println!("preferences: {}", r.preferences.phrase());
        let implicit = if r.used_embeddings { " + the implicit rows (soft prompt)" } else { "" };
        println!(
            "in the conditioning: {}{implicit}",
            if r.used_keywords.is_empty() { "(no keywords)".to_string() } else { r.used_keywords.join(", ") }
        );
    }
    let how = if learned { format!(" (learned from {} ratings)", profile.feedback) } else { String::new() };
    println!("target: {}   alpha: {:.2}{how}", r.target, r.alpha);
    println!("  #  w  seed  strength  ln s(target)  ln s(prefs)   score");
    for (i, c) in r.candidates.iter().enumerate() {
        let mark = if i == r.chosen { "*" } else { " " };
        println!(
            "{mark}{i:>2}  {}  {:>4}  {:>8.2}  {:>12.4}  {:>11.4}  {:>7.4}",
            c.weight, c.seed, c.strength, c.accuracy, c.preference, c.score
        );
    }
}

/// Store a thumbs up/down on candidate `candidate` of a `pmg personalize` result in the history.
pub fn feedback(
    result: &Path,
    candidate: usize,
    up: bool,
    store: &mut dyn pmg::history::store::HistoryStore,
) -> Result<Profile> {
    let text =
        std::fs::read_to_string(result).map_err(|source| Error::Io { path: result.display().to_string(), source })?;
    let r: Personalized = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: not a pmg personalize result: {e}", result.display())))?;
    let f = r.feedback(candidate, up)?;
    let e = Event::new(pmg::history::store::now_ms(), EventKind::Feedback(f));
    e.validate(0)?;
    store.record(e)?;
    Ok(Profile::from_history(&store.list()?))
}

pub struct EvalArgs {
    pub run: crate::EvalRun,
    pub seeds: usize,
    pub alpha: f32,
    /// Include the implicit-embedding systems (needs the soft prompt).
    pub embeddings: bool,
    /// The independent judge (eval/judge/), when its file is there.
    pub judge: Option<PathBuf>,
    pub llm: Vec<u8>,
}

/// `pmg eval personalize`: prints the markdown table; optionally JSON and a grid.
pub fn eval(a: EvalArgs) -> Result<()> {
    let device = PmgDevice::cpu();
    let data = pmg_train::EmojiData::load(&a.run.data)?;
    let lm = LanguageModel::from_gguf_bytes(&a.llm, &device, 2048)?;
    let generator = load_generator(&models_dir(), &device)?;
    let scorer = load_scorer(&models_dir(), &device)?;
    let soft = if a.embeddings { Some(load_soft_prompt(&models_dir(), &device)?) } else { None };
    let judge = a.judge.as_deref().map(load_judge).transpose()?;
    let out = pmg_train::personalize_eval::evaluate(
        &data,
        &lm,
        &generator,
        &scorer,
        soft.as_ref(),
        judge.as_ref(),
        &a.run.sample,
        a.seeds,
        a.alpha,
        a.run.limit,
    )?;
    println!("{}", out.report.markdown());
    if let Some(p) = &a.run.json {
        write_file(p, serde_json::to_vec_pretty(&out.report).expect("json"))?;
    }
    if let Some(p) = &a.run.grid {
        // One user per taste: the 5 history images, the target's real image, each system's choice.
        let mut cells = Vec::new();
        let mut lines = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (k, u) in out.users.iter().enumerate() {
            if !seen.insert(u.taste.clone()) {
                continue;
            }
            cells.extend(u.history.iter().map(|&i| data.image(i)));
            cells.push(data.image(u.target));
            cells.extend(out.chosen[k].iter().cloned());
            let r = &out.report.per_user[k];
            lines.push(format!(
                "{}. {} -> target \"{}\"; keywords: {}",
                lines.len() + 1,
                u.taste,
                r.target,
                r.keywords.join(", ")
            ));
        }
        let cols = 6 + out.chosen.first().map_or(0, Vec::len);
        let names: Vec<String> = out.report.systems.iter().map(|s| s.system.name.clone()).collect();
        write_grid(
            p,
            &cells,
            cols,
            &format!("Columns: 5 history images | target (real) | {}", names.join(" | ")),
            &lines,
        )?;
    }
    Ok(())
}
