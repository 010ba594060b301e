//! `pmg image` (generate from a prompt) and `pmg eval image` (held-out evaluation).

use std::path::{Path, PathBuf};

use pmg::diffusion::{Generator, ImageOptions, MAX_TEXT_TOKENS, SampleOptions, encode_text};
use pmg::image::Image;
use pmg::llm::LanguageModel;
use pmg::scorer::Scorer;
use pmg::{DeviceChoice, Error, PmgDevice, Result};

/// `$PMG_MODELS_DIR`, else the workspace's `models/`; file names come from the manifest.
pub fn models_dir() -> PathBuf {
    std::env::var_os("PMG_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

pub fn load_generator(dir: &Path, device: &PmgDevice) -> Result<Generator> {
    let g = pmg::models::manifest().generator;
    Generator::from_bytes(&read(&dir.join(g.autoencoder.file))?, &read(&dir.join(g.denoiser.file))?, device)
}

pub fn load_scorer(dir: &Path, device: &PmgDevice) -> Result<Scorer> {
    Scorer::from_bytes(&read(&dir.join(pmg::models::manifest().generator.scorer.file))?, device)
}

/// The independent judge (evaluation only), always on the CPU.
pub fn load_judge(path: &Path) -> Result<pmg_train::judge::Judge> {
    pmg_train::judge::Judge::from_bytes(&path.display().to_string(), &read(path)?, &PmgDevice::cpu().device)
}

pub fn load_soft_prompt(dir: &Path, device: &PmgDevice) -> Result<pmg::soft_prompt::SoftPrompt> {
    pmg::soft_prompt::SoftPrompt::from_bytes(
        &read(&dir.join(pmg::models::manifest().generator.soft_prompt.file))?,
        device,
    )
}

/// Nearest-neighbour upscaling for viewing 64x64 output.
pub fn upscale(img: &Image, f: usize) -> Image {
    let (w, h) = (img.width * f, img.height * f);
    let mut rgba = vec![0u8; w * h * 4];
    for y in 0..h {
        for x in 0..w {
            let s = ((y / f) * img.width + x / f) * 4;
            rgba[(y * w + x) * 4..][..4].copy_from_slice(&img.rgba[s..s + 4]);
        }
    }
    Image { width: w, height: h, rgba }
}

/// One image, or a grid of up to four per row, upscaled `scale` times, written as PNG.
fn write_images(imgs: &[Image], scale: usize, path: &Path) -> Result<Image> {
    let out = if imgs.len() == 1 { imgs[0].clone() } else { Image::grid(imgs, imgs.len().min(4), 2, [255, 255, 255]) };
    let out = if scale > 1 { upscale(&out, scale) } else { out };
    write_file(path, out.encode_png())?;
    Ok(out)
}

pub struct ImageArgs {
    pub prompt: String,
    pub options: ImageOptions,
    pub out: PathBuf,
    pub device: DeviceChoice,
    pub llm: Vec<u8>,
    pub scale: usize,
}

pub fn image(a: ImageArgs) -> Result<()> {
    a.options.validate()?;
    let device = PmgDevice::new(a.device)?;
    let t0 = std::time::Instant::now();
    let lm = LanguageModel::from_gguf_bytes(&a.llm, &device, 64)?;
    let generator = load_generator(&models_dir(), &device)?;
    let cond = encode_text(&lm, &a.prompt, MAX_TEXT_TOKENS)?;
    let t1 = std::time::Instant::now();
    let near = generator.references(&cond);
    if !near.is_empty() {
        let names: Vec<String> = near.iter().map(|(n, s)| format!("{n} ({s:.2})")).collect();
        let start = if a.options.sample.strength < 1.0 {
            format!("; the run starts from the first, noised to {}", a.options.sample.strength)
        } else {
            String::new()
        };
        eprintln!("nearest training emoji{start}: {}", names.join(", "));
    }
    let n = a.options.n;
    let conds = vec![cond; n];
    let imgs = generator.generate(&conds, &a.options.seeds(), &a.options.sample, &mut |i, total| {
        eprint!("\rdenoising {i}/{total}");
        true
    })?;
    eprintln!();
    let t2 = std::time::Instant::now();
    let out = write_images(&imgs, a.scale, &a.out)?;
    eprintln!(
        "wrote {} ({}x{}, {} image{}, seed {}, {} steps, guidance {}) on {} [{}]: load {:.2} s, denoise+decode {:.2} s",
        a.out.display(),
        out.width,
        out.height,
        n,
        if n == 1 { "" } else { "s" },
        a.options.seed,
        a.options.sample.steps,
        a.options.sample.guidance,
        device.adapter,
        if device.kind == pmg::BackendKind::Wgpu { "wgpu" } else { "cpu" },
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
    Ok(())
}

pub struct SdImageArgs {
    pub prompt: String,
    pub dir: PathBuf,
    pub vae: Option<PathBuf>,
    pub size: Option<usize>,
    pub quantize: pmg::sd::Precision,
    pub options: ImageOptions,
    pub out: PathBuf,
    pub device: DeviceChoice,
    pub scale: usize,
}

/// `pmg image --generator DIR|FILE.gguf`: a Stable Diffusion checkpoint.
pub fn sd_image(a: SdImageArgs) -> Result<()> {
    a.options.validate()?;
    let device = PmgDevice::new(a.device)?;
    let t0 = std::time::Instant::now();
    let sd = pmg::sd::pipeline::StableDiffusion::from_dir(&a.dir, a.vae.as_deref(), &device, a.quantize)?;
    let t1 = std::time::Instant::now();
    let n = a.options.n;
    let prompts = vec![a.prompt.as_str(); n];
    let side = a.size.unwrap_or_else(|| sd.native_size());
    let imgs = sd.generate(&prompts, &a.options.seeds(), &a.options.sample, [side, side], &mut |i, total| {
        eprint!("\rdenoising {i}/{total}");
        true
    })?;
    eprintln!();
    let t2 = std::time::Instant::now();
    let out = write_images(&imgs, a.scale, &a.out)?;
    eprintln!(
        "wrote {} ({}x{}, {n} image(s), seed {}, {} steps, {} sampler, guidance {}) on {}: load {:.2} s, sample+decode {:.2} s",
        a.out.display(),
        out.width,
        out.height,
        a.options.seed,
        a.options.sample.steps,
        a.options.sample.sampler,
        a.options.sample.guidance,
        device.adapter,
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
    Ok(())
}

pub fn eval(a: crate::EvalRun) -> Result<()> {
    let device = PmgDevice::cpu();
    let data = pmg_train::EmojiData::load(&a.data)?;
    let bank = pmg_train::CaptionBank::load(&a.data.join(pmg_train::data::BANK_FILE), &data)?;
    let generator = load_generator(&models_dir(), &device)?;
    let scorer = load_scorer(&models_dir(), &device)?;
    let out = pmg_train::evaluate(&data, &bank, &generator, &scorer, &a.sample, a.limit)?;
    println!("{}", out.report.markdown());
    if let Some(p) = &a.json {
        write_file(p, serde_json::to_vec_pretty(&out.report).expect("json"))?;
    }
    if let Some(p) = &a.grid {
        // Rows: held-out items (distinct base emoji); columns: real, reconstruction, generated
        // with seeds 1..=3, nearest training image.
        // 16 distinct base emoji spread evenly over the held-out list (which is grouped by category).
        let mut distinct = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (k, &i) in out.items.iter().enumerate() {
            if seen.insert(data.records[i].base.clone()) {
                distinct.push((k, i));
            }
        }
        let every = (distinct.len() / 16).max(1);
        let rows: Vec<(usize, usize)> = distinct.iter().step_by(every).take(16).copied().collect();
        let conds: Vec<_> = rows.iter().flat_map(|&(_, i)| std::iter::repeat_n(bank.primary(i).clone(), 3)).collect();
        let seeds: Vec<u64> = rows.iter().flat_map(|_| [1u64, 2, 3]).collect();
        let samples = generator.generate(&conds, &seeds, &a.sample, &mut |_, _| true)?;
        let mut cells = Vec::new();
        let mut captions = Vec::new();
        for (r, &(k, i)) in rows.iter().enumerate() {
            cells.push(data.image(i));
            cells.push(out.reconstructed[k].clone());
            cells.extend(samples[3 * r..3 * r + 3].iter().cloned());
            cells.push(data.image(out.nearest[k]));
            let start = match generator.references(bank.primary(i)).first() {
                Some((name, _)) if a.sample.strength < 1.0 => format!("; generated from: {name}"),
                _ => String::new(),
            };
            captions.push(format!(
                "{}. {} (nearest training image: {}{start})",
                r + 1,
                data.records[i].captions[0],
                data.records[out.nearest[k]].captions[0]
            ));
        }
        let header = format!(
            "Columns: real held-out image | autoencoder reconstruction | generated, seeds 1, 2, 3 (strength {}: from the retrieved training emoji noised that far) | nearest training image by caption (baseline)",
            a.sample.strength
        );
        write_grid(p, &cells, 6, &header, &captions)?;
    }
    Ok(())
}

pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, bytes).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// An evaluation grid: the cells `cols` wide, upscaled 2x, as a PNG at `path`, and its column
/// header and row captions next to it as `.txt`.
pub fn write_grid(path: &Path, cells: &[Image], cols: usize, header: &str, captions: &[String]) -> Result<()> {
    write_file(path, upscale(&Image::grid(cells, cols, 4, [255, 255, 255]), 2).encode_png())?;
    let txt = path.with_extension("txt");
    write_file(&txt, format!("{header}\n{}\n", captions.join("\n")))?;
    eprintln!("wrote {} and {}", path.display(), txt.display());
    Ok(())
}

pub struct GeneratorEvalArgs {
    pub data: PathBuf,
    pub opts: SampleOptions,
    pub concepts: usize,
    pub judge: PathBuf,
    pub json: Option<PathBuf>,
    pub grid: Option<PathBuf>,
    pub grid_rows: usize,
    pub device: DeviceChoice,
    pub llm: Vec<u8>,
}

/// `pmg eval generator`: training and held-out concepts drawn from their names, by the judge.
pub fn eval_generator(a: GeneratorEvalArgs) -> Result<()> {
    let device = PmgDevice::new(a.device)?;
    let cpu = PmgDevice::cpu();
    let lm = LanguageModel::from_gguf_bytes(&a.llm, &cpu, 256)?;
    let generator = load_generator(&models_dir(), &device)?;
    let judge = load_judge(&a.judge)?;
    let out = pmg_train::concepts::evaluate(&a.data, &lm, &generator, &judge, &a.opts, a.concepts, a.grid_rows)?;
    println!("{}", out.report.markdown());
    if let Some(p) = &a.json {
        write_file(p, serde_json::to_string_pretty(&out.report).expect("json"))?;
    }
    if let Some(prefix) = &a.grid {
        for ((_, grid, caption), part) in out.grids.iter().zip(["training", "heldout"]) {
            let stem = prefix.with_file_name(format!(
                "{}-{part}",
                prefix.file_stem().and_then(|s| s.to_str()).unwrap_or("generator")
            ));
            let png = stem.with_extension("png");
            write_file(&png, upscale(grid, 2).encode_png())?;
            let txt = stem.with_extension("txt");
            write_file(&txt, caption)?;
            eprintln!("wrote {} and {}", png.display(), txt.display());
        }
    }
    Ok(())
}
