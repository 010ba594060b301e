//! Noise schedule, samplers, and the seeded noise every backend draws identically.

use burn::tensor::{Tensor, TensorData};

/// Training timesteps.
pub const TRAIN_STEPS: usize = 1000;

/// Cumulative signal fractions `alpha_bar[t]`, t = 0 (almost clean) .. T-1 (almost pure noise).
#[derive(Debug, Clone)]
pub struct NoiseSchedule {
    pub alpha_bar: Vec<f64>,
}

impl NoiseSchedule {
    /// The cosine schedule of Nichol & Dhariwal 2021 ("Improved DDPM", eq. 17, s = 0.008), with
    /// alpha_bar kept >= 1e-4 at the end so that x0 and eps stay recoverable from v.
    pub fn cosine(steps: usize) -> Self {
        let s = 0.008;
        let f = |t: f64| (((t / steps as f64) + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos().powi(2);
        let alpha_bar = (0..steps).map(|i| (f((i + 1) as f64) / f(0.0)).max(1e-4)).collect();
        NoiseSchedule { alpha_bar }
    }

    pub fn len(&self) -> usize {
        self.alpha_bar.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alpha_bar.is_empty()
    }

    /// `(sqrt(alpha_bar), sqrt(1 - alpha_bar))` at `t`.
    pub fn coefficients(&self, t: usize) -> (f32, f32) {
        let a = self.alpha_bar[t];
        (a.sqrt() as f32, (1.0 - a).sqrt() as f32)
    }
}

/// A few-step sampler over a trained schedule. The model predicts v; a scheduler turns
/// `(x_t, v)` into the sample at the next (less noisy) timestep.
pub trait Scheduler {
    /// The timesteps visited, from the noisiest.
    fn timesteps(&self, steps: usize) -> Vec<usize>;
    /// One update from timestep `t` to `prev` (`None`: the final, clean sample).
    fn step(&mut self, x: Tensor<4>, v: Tensor<4>, t: usize, prev: Option<usize>) -> Tensor<4>;
}

/// Evenly spaced timesteps that start at the last training step ("trailing" spacing, Lin et al.
/// 2024, "Common diffusion noise schedules and sample steps are flawed", table 2).
pub fn trailing_timesteps(train_steps: usize, steps: usize) -> Vec<usize> {
    let steps = steps.clamp(1, train_steps);
    (0..steps).map(|i| train_steps - 1 - (i * train_steps) / steps).collect()
}

/// Deterministic DDIM (Song et al. 2021, eq. 12 with sigma = 0) on v-prediction.
pub struct Ddim<'a> {
    pub schedule: &'a NoiseSchedule,
}

impl Scheduler for Ddim<'_> {
    fn timesteps(&self, steps: usize) -> Vec<usize> {
        trailing_timesteps(self.schedule.len(), steps)
    }

    fn step(&mut self, x: Tensor<4>, v: Tensor<4>, t: usize, prev: Option<usize>) -> Tensor<4> {
        let (a, s) = self.schedule.coefficients(t);
        let x0 = x.clone() * a - v.clone() * s;
        let eps = x * s + v * a;
        match prev {
            None => x0,
            Some(p) => {
                let (ap, sp) = self.schedule.coefficients(p);
                x0 * ap + eps * sp
            }
        }
    }
}

/// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", algorithm 2): a second-order multistep
/// update in data prediction; the first and last steps are first order (equal to DDIM).
pub struct DpmSolver2M<'a> {
    pub schedule: &'a NoiseSchedule,
    prev_x0: Option<(Tensor<4>, f64)>,
}

impl<'a> DpmSolver2M<'a> {
    pub fn new(schedule: &'a NoiseSchedule) -> Self {
        DpmSolver2M { schedule, prev_x0: None }
    }

    /// Half log-SNR.
    fn lambda(&self, t: usize) -> f64 {
        let a = self.schedule.alpha_bar[t];
        0.5 * (a / (1.0 - a)).ln()
    }
}

impl Scheduler for DpmSolver2M<'_> {
    fn timesteps(&self, steps: usize) -> Vec<usize> {
        trailing_timesteps(self.schedule.len(), steps)
    }

    fn step(&mut self, x: Tensor<4>, v: Tensor<4>, t: usize, prev: Option<usize>) -> Tensor<4> {
        let (a, s) = self.schedule.coefficients(t);
        let x0 = x.clone() * a - v * s;
        let Some(p) = prev else { return x0 };
        let (ap, sp) = self.schedule.coefficients(p);
        let (lt, lp) = (self.lambda(t), self.lambda(p));
        let h = lp - lt;
        let d = match self.prev_x0.take() {
            Some((x0_last, l_last)) => {
                let r = (lt - l_last) / h;
                x0.clone() * (1.0 + 1.0 / (2.0 * r)) as f32 - x0_last * (1.0 / (2.0 * r)) as f32
            }
            None => x0.clone(),
        };
        self.prev_x0 = Some((x0, lt));
        x * (sp / s) - d * (ap as f64 * ((-h).exp() - 1.0)) as f32
    }
}

/// Which sampler to use. The SD family runs every one as diffusers does
/// (`diffusion::schedulers`); the emoji generator has its own DDIM and DPM-Solver++ 2M on its
/// v-prediction cosine schedule and refuses the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum SamplerKind {
    #[default]
    Ddim,
    /// DPM-Solver++ 2M (Lu et al. 2022).
    #[serde(alias = "dpm", alias = "dpm-solver", alias = "dpm++2m")]
    DpmSolver2m,
    /// Euler (Karras et al. 2022, algorithm 2 without churn).
    Euler,
    /// Euler with ancestral noise.
    EulerAncestral,
    /// Latent consistency sampling (Luo et al. 2023): one to four steps on distilled models.
    Lcm,
}

crate::names_from_serde!(SamplerKind, "sampler");

/// Per-row scalars as a `[b, 1, 1, 1]` tensor for broadcasting over latents.
pub fn per_row(values: &[f32], device: &burn::tensor::Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len(), 1, 1, 1]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    #[test]
    fn schedule_and_timesteps() {
        let s = NoiseSchedule::cosine(TRAIN_STEPS);
        assert!(s.alpha_bar[0] > 0.999 && s.alpha_bar[999] <= 1e-3);
        assert!(s.alpha_bar.windows(2).all(|w| w[1] <= w[0]));
        assert_eq!(trailing_timesteps(1000, 4), vec![999, 749, 499, 249]);
        let n = SeededRng::new(7).normals(20000);
        let mean = n.iter().sum::<f32>() / n.len() as f32;
        let var = n.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n.len() as f32;
        assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "{mean} {var}");
        assert_eq!(SeededRng::new(1).normals(3), SeededRng::new(1).normals(3));
        assert_ne!(SeededRng::new(1).normals(3), SeededRng::new(2).normals(3));
    }

    /// With a perfect v (computed from a known x0), both samplers land exactly on x0.
    #[test]
    fn samplers_recover_x0_from_exact_v() {
        let dev = burn::tensor::Device::flex();
        let s = NoiseSchedule::cosine(TRAIN_STEPS);
        let x0: Vec<f32> = (0..16).map(|i| (i as f32 / 8.0) - 1.0).collect();
        let x0t = Tensor::<4>::from_data(TensorData::new(x0.clone(), [1, 1, 4, 4]), &dev);
        let noise = Tensor::<4>::from_data(TensorData::new(SeededRng::new(3).normals(16), [1, 1, 4, 4]), &dev);
        let mut ddim = Ddim { schedule: &s };
        let mut dpm = DpmSolver2M::new(&s);
        for sched in [&mut ddim as &mut dyn Scheduler, &mut dpm] {
            let ts = sched.timesteps(8);
            let (a, sg) = s.coefficients(ts[0]);
            let mut x = x0t.clone() * a + noise.clone() * sg;
            for (i, &t) in ts.iter().enumerate() {
                let (a, sg) = s.coefficients(t);
                // the true noise in x_t given x0, then v = a*eps - sg*x0
                let eps = (x.clone() - x0t.clone() * a) / sg;
                let v = eps * a - x0t.clone() * sg;
                x = sched.step(x, v, t, ts.get(i + 1).copied());
            }
            let got = x.into_data().try_into_vec::<f32>().unwrap();
            for (g, e) in got.iter().zip(&x0) {
                assert!((g - e).abs() < 1e-3, "{g} vs {e}");
            }
        }
    }
}
