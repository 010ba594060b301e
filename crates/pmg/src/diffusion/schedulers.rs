//! The samplers of the Stable Diffusion family as diffusers runs them (issue 21): DDIM, Euler,
//! Euler ancestral, DPM-Solver++ 2M and LCM, configured by a checkpoint's `scheduler_config.json`.
//! Timesteps, sigmas and updates follow diffusers 0.42 (`schedulers/scheduling_ddim.py`,
//! `scheduling_euler_discrete.py`, `scheduling_euler_ancestral_discrete.py`,
//! `scheduling_dpmsolver_multistep.py`, `scheduling_lcm.py`); `scripts/golden_schedulers.py` records
//! diffusers' own values and whole runs, which `tests/schedulers.rs` matches.
//!
//! Every update is linear in the current sample `x`, the model output `o`, the previous step's
//! denoised estimate and the step's noise, so a [`Plan`] hands out scalar coefficients
//! ([`Update`]) and the same plan drives host arrays and device tensors alike.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use super::schedule::SamplerKind;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
    #[serde(rename = "squaredcos_cap_v2")]
    SquaredCosCapV2,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    Epsilon,
    VPrediction,
    Sample,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    Leading,
    Linspace,
    Trailing,
}

/// A diffusers `scheduler_config.json`: the keys the samplers here read. A key left out takes the
/// default of the sampler that runs (diffusers' class defaults differ, e.g. the spacing); a key
/// this implementation does not support refuses the config rather than sampling differently.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct SchedulerConfig {
    pub num_train_timesteps: usize,
    /// The noise schedule: betas from `beta_start` to `beta_end` (scaled_linear: their square
    /// roots evenly spaced, SD's choice).
    pub beta_start: f64,
    pub beta_end: f64,
    pub beta_schedule: BetaSchedule,
    /// What the UNet predicts: the noise (SD 1.x, SD-Turbo) or v (SD 2.x 768).
    pub prediction_type: Prediction,
    /// Which training timesteps the steps visit (None: the sampler's own default).
    pub timestep_spacing: Option<Spacing>,
    /// Added to "leading" timesteps (SD: 1).
    pub steps_offset: usize,
    /// DDIM and LCM: whether the step after the last sees a clean signal (None: true).
    pub set_alpha_to_one: Option<bool>,
    /// LCM: the distillation's own step count and its boundary-condition scale.
    pub original_inference_steps: usize,
    pub timestep_scaling: f64,
    // Knobs this implementation refuses when set (see `check`).
    pub clip_sample: Option<bool>,
    pub thresholding: bool,
    pub use_karras_sigmas: bool,
    pub rescale_betas_zero_snr: bool,
    pub trained_betas: Option<Vec<f64>>,
}

impl Default for SchedulerConfig {
    /// diffusers' defaults where every sampler agrees (linear betas 1e-4..0.02 over 1000 steps).
    fn default() -> Self {
        SchedulerConfig {
            num_train_timesteps: 1000,
            beta_start: 0.0001,
            beta_end: 0.02,
            beta_schedule: BetaSchedule::Linear,
            prediction_type: Prediction::Epsilon,
            timestep_spacing: None,
            steps_offset: 0,
            set_alpha_to_one: None,
            original_inference_steps: 50,
            timestep_scaling: 10.0,
            clip_sample: None,
            thresholding: false,
            use_karras_sigmas: false,
            rescale_betas_zero_snr: false,
            trained_betas: None,
        }
    }
}

impl SchedulerConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let bad = |e: String| Error::InvalidArgument(format!("scheduler_config.json: {e}"));
        let c: Self = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        // diffusers' checkpoints train on 1000 steps; the bound keeps a hostile file's tables small.
        if !(1..=100_000).contains(&c.num_train_timesteps) {
            return Err(bad(format!("num_train_timesteps {} is not in 1..=100000", c.num_train_timesteps)));
        }
        if ![c.beta_start, c.beta_end].iter().all(|b| (0.0..1.0).contains(b)) {
            return Err(bad(format!("betas {} .. {} are not in [0, 1)", c.beta_start, c.beta_end)));
        }
        Ok(c)
    }

    /// `alphas_cumprod[t]`, t = 0 .. num_train_timesteps.
    pub fn alphas_cumprod(&self) -> Vec<f64> {
        let n = self.num_train_timesteps;
        let lin = |a: f64, b: f64, i: usize| if n == 1 { a } else { a + (b - a) * i as f64 / (n - 1) as f64 };
        let betas: Vec<f64> = match self.beta_schedule {
            BetaSchedule::Linear => (0..n).map(|i| lin(self.beta_start, self.beta_end, i)).collect(),
            BetaSchedule::ScaledLinear => {
                (0..n).map(|i| lin(self.beta_start.sqrt(), self.beta_end.sqrt(), i).powi(2)).collect()
            }
            // diffusers' betas_for_alpha_bar (cosine, max_beta 0.999).
            BetaSchedule::SquaredCosCapV2 => {
                let f = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n).map(|i| (1.0 - f((i + 1) as f64 / n as f64) / f(i as f64 / n as f64)).min(0.999)).collect()
            }
        };
        let mut acc = 1.0;
        betas
            .iter()
            .map(|b| {
                acc *= 1.0 - b;
                acc
            })
            .collect()
    }

    fn check(&self, sampler: SamplerKind) -> Result<()> {
        let unsupported = |what: &str| {
            Err(Error::InvalidArgument(format!("scheduler_config.json: {what} is not supported (sampler {sampler})")))
        };
        // DDIM clips by default (diffusers' class default); SD checkpoints turn it off.
        let clip_default = sampler == SamplerKind::Ddim;
        if self.clip_sample.unwrap_or(clip_default) && matches!(sampler, SamplerKind::Ddim | SamplerKind::Lcm) {
            return unsupported("clip_sample");
        }
        if self.thresholding {
            return unsupported("thresholding");
        }
        if self.use_karras_sigmas {
            return unsupported("use_karras_sigmas");
        }
        if self.rescale_betas_zero_snr {
            return unsupported("rescale_betas_zero_snr");
        }
        if self.trained_betas.is_some() {
            return unsupported("trained_betas");
        }
        if self.num_train_timesteps < 2
            || !(self.beta_start > 0.0 && self.beta_end < 1.0 && self.beta_start <= self.beta_end)
        {
            return Err(Error::InvalidArgument(format!(
                "scheduler_config.json: betas {}..{} over {} steps",
                self.beta_start, self.beta_end, self.num_train_timesteps
            )));
        }
        Ok(())
    }
}

/// One step's update, linear in what the caller holds:
/// `denoised = denoised.0 * x + denoised.1 * o` (the model's clean estimate; keep it for the next
/// step), then `x' = x * coef.x + denoised * coef.d + previous denoised * coef.d_prev + noise * coef.noise`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    pub denoised: (f64, f64),
    pub x: f64,
    pub d: f64,
    pub d_prev: f64,
    pub noise: f64,
}

impl Update {
    /// The update on host arrays: returns `(x', denoised)`.
    pub fn apply(&self, x: &[f32], o: &[f32], d_prev: Option<&[f32]>, noise: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
        let d: Vec<f32> =
            x.iter().zip(o).map(|(&x, &o)| (self.denoised.0 * x as f64 + self.denoised.1 * o as f64) as f32).collect();
        let next = (0..x.len())
            .map(|i| {
                let mut v = self.x * x[i] as f64 + self.d * d[i] as f64;
                if let Some(p) = d_prev {
                    v += self.d_prev * p[i] as f64;
                }
                if let Some(n) = noise {
                    v += self.noise * n[i] as f64;
                }
                v as f32
            })
            .collect();
        (next, d)
    }
}

impl Update {
    /// The update on device tensors (any shape): returns `(x', denoised)`.
    pub fn apply_tensor<const D: usize>(
        &self,
        x: Tensor<D>,
        o: Tensor<D>,
        d_prev: Option<Tensor<D>>,
        noise: Option<Tensor<D>>,
    ) -> (Tensor<D>, Tensor<D>) {
        let d = x.clone().mul_scalar(self.denoised.0 as f32).add(o.mul_scalar(self.denoised.1 as f32));
        let mut next = x.mul_scalar(self.x as f32).add(d.clone().mul_scalar(self.d as f32));
        if let Some(p) = d_prev {
            next = next.add(p.mul_scalar(self.d_prev as f32));
        }
        if let Some(n) = noise {
            next = next.add(n.mul_scalar(self.noise as f32));
        }
        (next, d)
    }
}

/// A sampler set up for a number of steps (diffusers' `set_timesteps`).
#[derive(Debug, Clone)]
pub struct Plan {
    pub sampler: SamplerKind,
    pub prediction: Prediction,
    /// The timestep the model sees at each step (diffusers' `scheduler.timesteps`).
    pub timesteps: Vec<f64>,
    /// Euler, Euler ancestral and DPM-Solver++: the noise level of each step, then the final 0.
    pub sigmas: Option<Vec<f64>>,
    /// The initial noise's scale (`init_noise_sigma`).
    pub init_noise_sigma: f64,
    alphas_cumprod: Vec<f64>,
    /// `alpha_cumprod` after the last step (DDIM, LCM).
    final_alpha: f64,
    train_steps: usize,
    timestep_scaling: f64,
}

/// `n` values from `a` to `b` inclusive (numpy's `linspace`).
fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![a],
        _ => (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect(),
    }
}

/// numpy's `round` (half to even).
fn round_even(v: f64) -> f64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - v.signum() } else { r }
}

/// numpy's `interp` on the integer grid `0..ys.len()`.
fn interp(x: f64, ys: &[f64]) -> f64 {
    let x = x.clamp(0.0, (ys.len() - 1) as f64);
    let i = (x.floor() as usize).min(ys.len() - 2);
    let f = x - i as f64;
    ys[i] + (ys[i + 1] - ys[i]) * f
}

impl Plan {
    pub fn new(sampler: SamplerKind, c: &SchedulerConfig, steps: usize) -> Result<Self> {
        c.check(sampler)?;
        let t_train = c.num_train_timesteps;
        if !(1..=t_train).contains(&steps) {
            return Err(Error::InvalidArgument(format!("steps {steps} outside 1..={t_train}")));
        }
        let ac = c.alphas_cumprod();
        let sigmas_train: Vec<f64> = ac.iter().map(|a| ((1.0 - a) / a).sqrt()).collect();
        let spacing = c.timestep_spacing.unwrap_or(match sampler {
            SamplerKind::Ddim | SamplerKind::Lcm => Spacing::Leading,
            _ => Spacing::Linspace,
        });
        let final_alpha = if c.set_alpha_to_one.unwrap_or(true) { 1.0 } else { ac[0] };
        let (tf, n, off) = (t_train as f64, steps as f64, c.steps_offset as f64);
        let leading =
            |count: usize, ratio: usize| -> Vec<f64> { (0..count).rev().map(|i| (i * ratio) as f64 + off).collect() };
        let trailing = || -> Vec<f64> {
            let ratio = tf / n;
            (0..steps).map(|i| round_even(tf - i as f64 * ratio) - 1.0).collect()
        };
        let (timesteps, sigmas) = match sampler {
            SamplerKind::Ddim => {
                let ts = match spacing {
                    Spacing::Leading => leading(steps, t_train / steps),
                    Spacing::Trailing => trailing(),
                    Spacing::Linspace => linspace(0.0, tf - 1.0, steps).into_iter().rev().map(round_even).collect(),
                };
                (ts, None)
            }
            SamplerKind::Euler | SamplerKind::EulerAncestral => {
                // diffusers keeps these timesteps in float32 (the model sees them so).
                let ts: Vec<f64> = match spacing {
                    Spacing::Linspace => {
                        linspace(0.0, tf - 1.0, steps).into_iter().rev().map(|t| t as f32 as f64).collect()
                    }
                    Spacing::Leading => leading(steps, t_train / steps),
                    Spacing::Trailing => trailing(),
                };
                let mut s: Vec<f64> = ts.iter().map(|&t| interp(t, &sigmas_train)).collect();
                s.push(0.0);
                (ts, Some(s))
            }
            SamplerKind::DpmSolver2m => {
                let ts: Vec<f64> = match spacing {
                    Spacing::Linspace => {
                        let mut v: Vec<f64> = linspace(0.0, tf - 1.0, steps + 1).into_iter().map(round_even).collect();
                        v.reverse();
                        v.truncate(steps);
                        v
                    }
                    Spacing::Leading => {
                        let mut v = leading(steps + 1, t_train / (steps + 1));
                        v.truncate(steps);
                        v
                    }
                    Spacing::Trailing => trailing(),
                };
                let mut s: Vec<f64> = ts.iter().map(|&t| interp(t, &sigmas_train)).collect();
                s.push(0.0);
                (ts, Some(s))
            }
            SamplerKind::Lcm => {
                let k = t_train / c.original_inference_steps.max(1);
                let origin: Vec<usize> = (1..=c.original_inference_steps).map(|i| i * k - 1).rev().collect();
                if steps > origin.len() {
                    return Err(Error::InvalidArgument(format!(
                        "LCM runs at most original_inference_steps ({}) steps",
                        origin.len()
                    )));
                }
                let ts = (0..steps).map(|i| origin[(i * origin.len()) / steps] as f64).collect();
                (ts, None)
            }
        };
        if timesteps.iter().any(|&t| !(0.0..tf).contains(&t)) {
            return Err(Error::InvalidArgument(format!("timesteps {timesteps:?} outside the training range")));
        }
        let init_noise_sigma = match &sigmas {
            Some(s) if sampler != SamplerKind::DpmSolver2m => {
                let max = s.iter().cloned().fold(0.0, f64::max);
                if matches!(spacing, Spacing::Linspace | Spacing::Trailing) { max } else { (max * max + 1.0).sqrt() }
            }
            _ => 1.0,
        };
        Ok(Plan {
            sampler,
            prediction: c.prediction_type,
            timesteps,
            sigmas,
            init_noise_sigma,
            alphas_cumprod: ac,
            final_alpha,
            train_steps: t_train,
            timestep_scaling: c.timestep_scaling,
        })
    }

    pub fn steps(&self) -> usize {
        self.timesteps.len()
    }

    /// Whether step `i` adds noise (Euler ancestral every step, LCM all but the last).
    pub fn noisy(&self, i: usize) -> bool {
        match self.sampler {
            SamplerKind::EulerAncestral => true,
            SamplerKind::Lcm => i + 1 < self.steps(),
            _ => false,
        }
    }

    /// The factor of the sample fed to the model at step `i` (`scale_model_input`).
    pub fn input_scale(&self, i: usize) -> f64 {
        match (self.sampler, &self.sigmas) {
            (SamplerKind::Euler | SamplerKind::EulerAncestral, Some(s)) => 1.0 / (s[i] * s[i] + 1.0).sqrt(),
            _ => 1.0,
        }
    }

    fn alpha(&self, t: f64) -> f64 {
        if t < 0.0 { self.final_alpha } else { self.alphas_cumprod[t as usize] }
    }

    /// The clean estimate from `x` and the model output at `alpha_cumprod` `a`: `(coef x, coef o)`.
    fn x0(&self, a: f64) -> (f64, f64) {
        let (sa, sb) = (a.sqrt(), (1.0 - a).sqrt());
        match self.prediction {
            Prediction::Epsilon => (1.0 / sa, -sb / sa),
            Prediction::VPrediction => (sa, -sb),
            Prediction::Sample => (0.0, 1.0),
        }
    }

    /// How a clean sample `x0` is noised to step `i`'s level: `(a, s)` of `a x0 + s noise`
    /// (diffusers' `add_noise`, where img2img starts).
    pub fn add_noise(&self, i: usize) -> (f64, f64) {
        match (self.sampler, &self.sigmas) {
            (SamplerKind::Euler | SamplerKind::EulerAncestral, Some(s)) => (1.0, s[i]),
            (SamplerKind::DpmSolver2m, Some(s)) => {
                let a = 1.0 / (s[i] * s[i] + 1.0).sqrt();
                (a, s[i] * a)
            }
            _ => {
                let a = self.alpha(self.timesteps[i]);
                (a.sqrt(), (1.0 - a).sqrt())
            }
        }
    }

    /// The update of step `i`.
    pub fn update(&self, i: usize) -> Update {
        self.update_from(i, 0)
    }

    /// The update of step `i` of a run that starts at step `first` (img2img): a multistep
    /// sampler has no earlier estimate at its first step, so that step is first order.
    pub fn update_from(&self, i: usize, first: usize) -> Update {
        let t = self.timesteps[i];
        match self.sampler {
            SamplerKind::Ddim => {
                let prev_t = t - (self.train_steps / self.steps()) as f64;
                let (a, ap) = (self.alpha(t), self.alpha(prev_t));
                // x' = sqrt(ap) x0 + sqrt(1 - ap) eps, eps = (x - sqrt(a) x0) / sqrt(1 - a).
                let e = (1.0 - ap).sqrt() / (1.0 - a).sqrt();
                Update { denoised: self.x0(a), x: e, d: ap.sqrt() - e * a.sqrt(), d_prev: 0.0, noise: 0.0 }
            }
            SamplerKind::Euler | SamplerKind::EulerAncestral => {
                let s = self.sigmas.as_ref().expect("sigmas");
                let (sigma, next) = (s[i], s[i + 1]);
                // Denoised in the sigma parametrisation (x = x0 + sigma eps).
                let denoised = match self.prediction {
                    Prediction::Epsilon => (1.0, -sigma),
                    Prediction::VPrediction => (1.0 / (sigma * sigma + 1.0), -sigma / (sigma * sigma + 1.0).sqrt()),
                    Prediction::Sample => (0.0, 1.0),
                };
                let (down, up) = if self.sampler == SamplerKind::EulerAncestral {
                    let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).sqrt();
                    ((next * next - up * up).sqrt(), up)
                } else {
                    (next, 0.0)
                };
                // x' = x + (x - denoised) / sigma * (down - sigma) + up * noise.
                let r = (down - sigma) / sigma;
                Update { denoised, x: 1.0 + r, d: -r, d_prev: 0.0, noise: up }
            }
            SamplerKind::DpmSolver2m => {
                let s = self.sigmas.as_ref().expect("sigmas");
                // alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma alpha_t, lambda = ln(alpha_t / sigma_t).
                let at = |sg: f64| 1.0 / (sg * sg + 1.0).sqrt();
                let lambda = |sg: f64| -sg.ln();
                let (s0, s1) = (s[i], s[i + 1]);
                let (a0, a1) = (at(s0), at(s1));
                let denoised = match self.prediction {
                    Prediction::Epsilon => (1.0 / a0, -s0),
                    Prediction::VPrediction => (a0, -s0 * a0),
                    Prediction::Sample => (0.0, 1.0),
                };
                let h = lambda(s1) - lambda(s0);
                let em1 = (-h).exp() - 1.0;
                let ratio = (s1 * a1) / (s0 * a0);
                let last = i + 1 == self.steps();
                if i <= first || last {
                    Update { denoised, x: ratio, d: -a1 * em1, d_prev: 0.0, noise: 0.0 }
                } else {
                    let h0 = lambda(s0) - lambda(s[i - 1]);
                    let r0 = h0 / h;
                    // D0 = d, D1 = (d - d_prev) / r0; x' = ratio x - a1 em1 D0 - a1 em1 D1 / 2.
                    let half = 0.5 * a1 * em1 / r0;
                    Update { denoised, x: ratio, d: -a1 * em1 - half, d_prev: half, noise: 0.0 }
                }
            }
            SamplerKind::Lcm => {
                let prev_t = self.timesteps.get(i + 1).copied().unwrap_or(t);
                let (a, ap) = (self.alpha(t), self.alpha(prev_t));
                let sigma_data: f64 = 0.5;
                let scaled = t * self.timestep_scaling;
                let c_skip = sigma_data.powi(2) / (scaled * scaled + sigma_data.powi(2));
                let c_out = scaled / (scaled * scaled + sigma_data.powi(2)).sqrt();
                let (x0x, x0o) = self.x0(a);
                let denoised = (c_out * x0x + c_skip, c_out * x0o);
                if self.noisy(i) {
                    Update { denoised, x: 0.0, d: ap.sqrt(), d_prev: 0.0, noise: (1.0 - ap).sqrt() }
                } else {
                    Update { denoised, x: 0.0, d: 1.0, d_prev: 0.0, noise: 0.0 }
                }
            }
        }
    }
}
