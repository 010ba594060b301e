//! The `pmg` command line: chat with and complete from a GGUF model, inspect model files.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use pmg::llm::{GenerateOptions, LanguageModel, SamplingParams};
use pmg::tokenizer::ChatMessage;
use pmg::{DeviceChoice, Error, PmgDevice, Result};

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
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value = "cpu")]
        device: DeviceChoice,
        #[arg(long, default_value_t = 128)]
        prompt_tokens: usize,
        #[arg(long, default_value_t = 128)]
        gen_tokens: usize,
        #[arg(long, default_value_t = 3)]
        runs: usize,
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

#[derive(Args, Clone)]
struct GenArgs {
    /// GGUF file; defaults to the manifest's default model under models/.
    #[arg(long)]
    model: Option<PathBuf>,
    /// auto | wgpu | cpu
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the output contains this text (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Context length in tokens (KV cache size).
    #[arg(long, default_value_t = 2048)]
    ctx: usize,
    /// Print the generated token ids and text as one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

impl GenArgs {
    fn options(&self) -> GenerateOptions {
        GenerateOptions {
            max_tokens: self.max_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                repetition_penalty: self.repetition_penalty,
                seed: self.seed,
                ..Default::default()
            },
            stop: self.stop.clone(),
            cancel: None,
        }
    }
}

fn default_model() -> PathBuf {
    let dir = std::env::var_os("PMG_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
    dir.join(pmg::models::DEFAULT_LLM_FILE)
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
    let bytes = read_model(&opts.model)?;
    let device = PmgDevice::new(opts.device)?;
    log::info!("device: {}", device.adapter);
    LanguageModel::from_gguf_bytes(&bytes, &device, opts.ctx)
}

/// Generate after `prompt`, streaming text to stdout (or printing JSON at the end). Returns the text.
fn run(lm: &LanguageModel, session: &mut pmg::llm::Session<'_>, prompt: &[u32], opts: &GenArgs) -> Result<String> {
    let mut stream = session.generate(prompt, opts.options())?;
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
            let turn = |messages: &mut Vec<ChatMessage>, user: String, session: &mut pmg::llm::Session<'_>| -> Result<()> {
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
                        if stdin.lock().read_line(&mut line).map_err(|source| Error::Io { path: "stdin".into(), source })? == 0 {
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
        Cmd::Bench { model, device, prompt_tokens, gen_tokens, runs } => bench(&model, device, prompt_tokens, gen_tokens, runs)?,
        Cmd::Info { model, tensors } => {
            let bytes = read_model(&model)?;
            let g = pmg::gguf::Gguf::parse(&bytes)?;
            println!("GGUF v{}  {} tensors  {} metadata keys  data at {}", g.version, g.tensors.len(), g.keys.len(), g.data_offset);
            for k in &g.keys {
                let v = &g.metadata[k];
                let s = match v {
                    pmg::gguf::Value::Array(a) => format!("[{} items]", a.len()),
                    pmg::gguf::Value::String(s) if s.len() > 80 => format!("{:?}...", &s[..s.char_indices().nth(80).map(|c| c.0).unwrap_or(s.len())]),
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

fn bench(model: &Option<PathBuf>, device: DeviceChoice, prompt_tokens: usize, gen_tokens: usize, runs: usize) -> Result<()> {
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
        "threads": pmg::kernels::pool::Pool::global().threads(),
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
