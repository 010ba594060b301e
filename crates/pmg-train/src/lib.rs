//! Training of the generator and the scorer on the emoji dataset (native only, burn `flex` +
//! autodiff). Each stage is a run directory with a resumable checkpoint (module and AdamW state,
//! step), a JSON-lines loss log, and at the end an f16 safetensors export for `models/`.
//!
//! Batches, noise and timesteps at step `s` come from `SeededRng(seed, s)`, so a resumed run
//! sees exactly the batches an unbroken one would.

pub mod concepts;
pub mod data;
pub mod dense;
pub mod eval;
pub mod judge;
pub mod pack;
pub mod personalize_eval;
pub mod soft_prompt;
pub mod stages;
pub mod styles;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use pmg::device::DeviceChoice;
use pmg::error::{Error, Result};
use pmg::rng::SeededRng;

pub use data::{CaptionBank, EmojiData, Record};
pub use eval::{ImageEval, evaluate};

/// Settings shared by every stage.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunConfig {
    /// Dataset folder (`data/emoji`).
    pub data: PathBuf,
    /// Run folder: checkpoints and logs.
    pub run: PathBuf,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub warmup: usize,
    pub seed: u64,
    pub log_every: usize,
    pub checkpoint_every: usize,
    /// Continue from the run folder's checkpoint when there is one.
    pub resume: bool,
    /// Stop (with a checkpoint, without the export) once this step is reached: training in chunks.
    #[serde(default)]
    pub until: Option<usize>,
    /// Restart the learning-rate schedule every `cycle` steps (SGDR), each peak half the last:
    /// a run can be lengthened later by whole cycles and resumed exactly.
    #[serde(default)]
    pub cycle: Option<usize>,
    /// Where the steps run: the CPU (the reference recipe) or wgpu on a GPU.
    #[serde(default = "cpu")]
    pub device: DeviceChoice,
    /// Data-parallel workers for the denoiser's steps on the CPU: the batch is split, each part's
    /// forward and backward run on its own one-thread pool, and the gradients are averaged (burn's
    /// CPU ops gain little from a second thread; two independent workers nearly double).
    #[serde(default = "one")]
    pub workers: usize,
}

fn one() -> usize {
    1
}

fn cpu() -> DeviceChoice {
    DeviceChoice::Cpu
}

pub fn io_err(path: &Path, e: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source: e }
}

/// The randomness of one step.
pub fn step_rng(seed: u64, stage: u64, step: usize) -> SeededRng {
    SeededRng::new(seed.wrapping_mul(0x100_0000_01B3) ^ (stage << 48) ^ step as u64)
}

/// Linear warm-up, then cosine decay to 10% of the peak; with `cycle`, the same shape restarts
/// every `cycle` steps at half the previous peak (Loshchilov & Hutter, SGDR, 2017).
pub fn learning_rate(cfg: &RunConfig, step: usize) -> f64 {
    let (peak, len, step) = match cfg.cycle {
        Some(c) if c > 0 => {
            let k = step / c;
            (cfg.lr * 0.5f64.powi(k as i32), c.min(cfg.steps.saturating_sub(k * c)).max(1), step - k * c)
        }
        _ => (cfg.lr, cfg.steps, step),
    };
    let warmup = cfg.warmup.min(len);
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let p = (step - warmup) as f64 / (len - warmup).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos()))
}

/// The training device with autodiff: burn's CPU backend (the reference recipe) or wgpu, its RNG
/// (parameter initialisation) seeded so that a run starts from the same weights every time.
pub fn train_device(cfg: &RunConfig) -> Result<Device> {
    let dev = match cfg.device {
        DeviceChoice::Cpu => Device::flex(),
        choice => {
            let d = pmg::device::PmgDevice::new(choice)?;
            eprintln!("training on {}", d.adapter);
            d.device
        }
    }
    .autodiff();
    dev.seed(cfg.seed);
    Ok(dev)
}

pub fn optimizer() -> ModuleOptimizer {
    AdamWConfig::new()
        .with_weight_decay(1e-4)
        .with_grad_clipping(Some(burn::optim::grad_clipping::GradientClippingConfig::Norm(1.0)))
        .init()
}

/// Parameters as new autodiff leaves (same values, same ids).
struct FreshLeaves;

impl burn::module::ModuleMapper for FreshLeaves {
    fn map_float<const D: usize>(&mut self, param: burn::module::Param<Tensor<D>>) -> burn::module::Param<Tensor<D>> {
        param.map(|t| if t.is_require_grad() { t.detach().require_grad() } else { t.detach() })
    }
}

/// The mean of per-part gradients, parameter by parameter.
fn average_grads<M: Module>(model: &M, mut parts: Vec<GradientsParams>) -> GradientsParams {
    struct Avg<'a> {
        parts: &'a mut [GradientsParams],
        out: GradientsParams,
    }
    impl burn::module::ModuleVisitor for Avg<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let n = self.parts.len() as f32;
            let mut sum: Option<Tensor<D>> = None;
            for g in self.parts.iter_mut() {
                if let Some(t) = g.remove::<D>(param.id) {
                    sum = Some(match sum {
                        Some(s) => s + t,
                        None => t,
                    });
                }
            }
            if let Some(s) = sum {
                self.out.register(param.id, s / n);
            }
        }
    }
    let mut v = Avg { parts: &mut parts, out: GradientsParams::new() };
    model.visit(&mut v);
    v.out
}

/// A stage's loop state: model, optimizer, step, log.
pub struct Trainer<M: Module> {
    pub model: M,
    pub optim: ModuleOptimizer,
    pub step: usize,
    pub cfg: RunConfig,
    /// One single-thread pool per data-parallel worker, built on the first parallel step.
    pools: Vec<rayon::ThreadPool>,
    log: std::fs::File,
    started: Instant,
    start_step: usize,
    window: Vec<f64>,
}

impl<M: Module + Clone> Trainer<M> {
    /// Start a run, or continue the checkpoint in `cfg.run` when `cfg.resume` is set.
    pub fn new(model: M, cfg: RunConfig) -> Result<Self> {
        std::fs::create_dir_all(&cfg.run).map_err(|e| io_err(&cfg.run, e))?;
        let (mp, op, sp) = (cfg.run.join("model.bpk"), cfg.run.join("optim.bpk"), cfg.run.join("state.json"));
        let mut optim = optimizer();
        let mut model = model;
        let mut step = 0;
        if cfg.resume && sp.exists() {
            let state: serde_json::Value = serde_json::from_slice(&std::fs::read(&sp).map_err(|e| io_err(&sp, e))?)
                .map_err(|e| Error::InvalidArgument(format!("{}: {e}", sp.display())))?;
            step = state["step"].as_u64().unwrap_or(0) as usize;
            model = model.try_load_file(&mp).map_err(|e| Error::InvalidArgument(format!("{}: {e:?}", mp.display())))?;
            optim = optim.load(&op).map_err(|e| Error::InvalidArgument(format!("{}: {e:?}", op.display())))?;
            eprintln!("resuming {} at step {step}", cfg.run.display());
        } else if !cfg.resume {
            let _ = std::fs::remove_file(cfg.run.join("loss.jsonl"));
        }
        let lp = cfg.run.join("loss.jsonl");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&lp).map_err(|e| io_err(&lp, e))?;
        std::fs::write(cfg.run.join("config.json"), serde_json::to_vec_pretty(&cfg).expect("json"))
            .map_err(|e| io_err(&cfg.run, e))?;
        Ok(Trainer {
            model,
            optim,
            step,
            start_step: step,
            cfg,
            pools: Vec::new(),
            log,
            started: Instant::now(),
            window: Vec::new(),
        })
    }

    /// This process should stop: the run is complete or `until` is reached.
    pub fn done(&self) -> bool {
        self.complete() || self.cfg.until.is_some_and(|u| self.step >= u)
    }

    /// Every step of the run is done (the export may be written).
    pub fn complete(&self) -> bool {
        self.step >= self.cfg.steps
    }

    /// Backpropagate `loss`, update, log and checkpoint.
    pub fn update(&mut self, loss: Tensor<1>) -> Result<f64> {
        let value = loss.clone().into_scalar::<f32>() as f64;
        self.check_loss(value)?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.apply(value, grads)
    }

    /// A data-parallel step: `loss_of(model, part)` for `parts` equal parts of the batch, each on
    /// its own thread and one-thread pool, gradients averaged (the mean loss of equal parts is the
    /// batch's). Each worker differentiates its own copy of the parameters (same values and ids,
    /// new autodiff leaves): burn locks a whole graph during a backward pass, and workers sharing
    /// the parameters' nodes would share one graph and run one after the other.
    pub fn update_parallel(&mut self, parts: usize, loss_of: impl Fn(&M, usize) -> Tensor<1> + Sync) -> Result<f64>
    where
        M: Sync + Send,
    {
        if parts <= 1 {
            let loss = loss_of(&self.model, 0);
            return self.update(loss);
        }
        while self.pools.len() < parts {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .map_err(|e| Error::InvalidArgument(format!("worker thread: {e}")))?;
            self.pools.push(pool);
        }
        let model = &self.model;
        let results: Vec<(f64, GradientsParams)> = std::thread::scope(|scope| {
            let handles: Vec<_> = self.pools[..parts]
                .iter()
                .enumerate()
                .map(|(k, pool)| {
                    let loss_of = &loss_of;
                    scope.spawn(move || {
                        pool.install(|| {
                            let local = model.clone().map(&mut FreshLeaves);
                            let loss = loss_of(&local, k);
                            let value = loss.clone().into_scalar::<f32>() as f64;
                            (value, GradientsParams::from_grads(loss.backward(), &local))
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("training worker")).collect()
        });
        let value = results.iter().map(|r| r.0).sum::<f64>() / parts as f64;
        self.check_loss(value)?;
        let grads = average_grads(&self.model, results.into_iter().map(|r| r.1).collect());
        self.apply(value, grads)
    }

    fn check_loss(&self, value: f64) -> Result<()> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!("loss became {value} at step {}", self.step)))
        }
    }

    /// The optimizer step with `grads`, then log and checkpoint.
    fn apply(&mut self, value: f64, grads: GradientsParams) -> Result<f64> {
        let lr = learning_rate(&self.cfg, self.step);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.step += 1;
        self.window.push(value);
        if self.step.is_multiple_of(self.cfg.log_every) || self.step == self.cfg.steps {
            let mean = self.window.iter().sum::<f64>() / self.window.len() as f64;
            self.window.clear();
            let secs = self.started.elapsed().as_secs_f64();
            let per = secs / (self.step - self.start_step) as f64;
            writeln!(self.log, "{}", serde_json::json!({"step": self.step, "loss": mean, "lr": lr, "s_per_step": per}))
                .map_err(|e| io_err(&self.cfg.run, e))?;
            eprintln!(
                "step {:>6}/{}  loss {mean:.5}  lr {lr:.2e}  {per:.2} s/step  eta {:.0} min",
                self.step,
                self.cfg.steps,
                per * (self.cfg.steps - self.step) as f64 / 60.0
            );
        }
        if self.step.is_multiple_of(self.cfg.checkpoint_every) || self.done() {
            self.checkpoint()?;
        }
        Ok(value)
    }

    pub fn checkpoint(&self) -> Result<()> {
        let run = &self.cfg.run;
        // Write next to the old files, then rename: a crash mid-write keeps the last checkpoint.
        let tmp = run.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| io_err(&tmp, e))?;
        self.model
            .clone()
            .save_file(tmp.join("model.bpk"))
            .map_err(|e| Error::InvalidArgument(format!("save model: {e:?}")))?;
        self.optim.save(tmp.join("optim.bpk")).map_err(|e| Error::InvalidArgument(format!("save optimizer: {e:?}")))?;
        std::fs::write(
            tmp.join("state.json"),
            serde_json::to_vec(&serde_json::json!({"step": self.step})).expect("json"),
        )
        .map_err(|e| io_err(&tmp, e))?;
        for f in ["model.bpk", "optim.bpk", "state.json"] {
            std::fs::rename(tmp.join(f), run.join(f)).map_err(|e| io_err(&run.join(f), e))?;
        }
        Ok(())
    }

    /// Seconds spent in this process.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(steps: usize, cycle: Option<usize>) -> RunConfig {
        RunConfig {
            data: "d".into(),
            run: "r".into(),
            steps,
            batch: 1,
            lr: 1e-3,
            warmup: 10,
            seed: 1,
            log_every: 1,
            checkpoint_every: 1,
            resume: false,
            until: None,
            cycle,
            device: DeviceChoice::Cpu,
            workers: 1,
        }
    }

    #[test]
    fn cycles_extend_a_run_without_changing_its_past() {
        let (one, two) = (cfg(100, None), cfg(250, Some(100)));
        for s in 0..100 {
            assert_eq!(learning_rate(&one, s), learning_rate(&two, s), "step {s}");
        }
        // The second cycle warms up again to half the peak, and ends at 10% of that.
        assert!((learning_rate(&two, 109) - 0.5e-3).abs() < 1e-12);
        assert!((learning_rate(&two, 199) - 0.05e-3).abs() < 1e-6);
        // A shorter last cycle still decays to its floor.
        assert!((learning_rate(&two, 249) - 0.25e-4).abs() < 1e-6);
        assert!(learning_rate(&two, 220) < learning_rate(&two, 211));
    }
}
