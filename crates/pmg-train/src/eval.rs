//! `pmg eval image`: the generator and scorer on the held-out emoji (never trained on).
//!
//! Every held-out record of the house style (Google PNGs) is one item, described by its first caption (its name). Systems:
//! - real held-out images and their autoencoder reconstructions (ceilings),
//! - the generator (one image per item, seed = item index),
//! - nearest training image: the training image whose caption is closest to the item's in the
//!   LLM's pooled hidden states (a retrieval baseline that cannot invent anything),
//! - mean training image.
//!
//! Metrics: retrieval with the scorer (the item's image against its own caption and 99 captions
//! of other held-out base emoji; top-1 / top-5), and the Frechet distance between the scorer's
//! image features of the system's images and of the real held-out images.

use burn::tensor::{Device, Tensor, TensorData};

use super::data::{CaptionBank, EmojiData};
use pmg::device::read_f32;
use pmg::diffusion::{Generator, SampleOptions, to_images};
use pmg::error::Result;
use pmg::image::Image;
use pmg::rng::SeededRng;
use pmg::scorer::{Scorer, dot};

#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemScore {
    pub system: String,
    pub top1: f64,
    pub top5: f64,
    /// Top-1 and top-5 with every held-out base emoji weighted equally (its skin-tone variations
    /// averaged first): 29 of the 194 held-out bases are 214 of the 379 items.
    pub top1_by_base: f64,
    pub top5_by_base: f64,
    /// Frechet distance to the real held-out images in scorer feature space (lower is better).
    pub fd: f64,
    /// Mean scorer score `s(image, own caption)`.
    pub mean_score: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageEval {
    pub items: usize,
    pub distractors: usize,
    pub options: SampleOptions,
    pub seconds_generating: f64,
    pub systems: Vec<SystemScore>,
}

impl ImageEval {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} held-out items, each against its own caption and {} others; generator: {} steps, guidance {}, {:?}\n\n",
            self.items, self.distractors, self.options.steps, self.options.guidance, self.options.sampler
        );
        s += "| system | top-1 | top-5 | top-1 / top-5 by base emoji | FD to real (lower is better) | mean s(image, caption) |\n|---|---|---|---|---|---|\n";
        for r in &self.systems {
            s += &format!(
                "| {} | {:.1}% | {:.1}% | {:.1}% / {:.1}% | {:.3} | {:.3} |\n",
                r.system,
                100.0 * r.top1,
                100.0 * r.top5,
                100.0 * r.top1_by_base,
                100.0 * r.top5_by_base,
                r.fd,
                r.mean_score
            );
        }
        s
    }
}

/// Everything `evaluate` produces: the report and the images (for grids).
pub struct EvalOutput {
    pub report: ImageEval,
    pub items: Vec<usize>,
    pub generated: Vec<Image>,
    pub reconstructed: Vec<Image>,
    pub nearest: Vec<usize>,
}

pub fn evaluate(
    data: &EmojiData,
    bank: &CaptionBank,
    generator: &Generator,
    scorer: &Scorer,
    opts: &SampleOptions,
    limit: Option<usize>,
) -> Result<EvalOutput> {
    let mut items = data.house("heldout");
    if let Some(n) = limit {
        items.truncate(n);
    }
    let train = data.house("train");
    let distractors = 99.min(items.len().saturating_sub(1));

    // Generated images, a batch at a time.
    let started = std::time::Instant::now();
    let conds: Vec<_> = items.iter().map(|&i| bank.primary(i).clone()).collect();
    let generated = super::concepts::generate(generator, &conds, opts, "generated")?;
    let seconds_generating = started.elapsed().as_secs_f64();

    // Autoencoder reconstructions.
    let reconstructed = reconstruct(generator, data, &items)?;

    // Nearest training image by pooled caption hidden states.
    let pooled = |i: usize| {
        let m = bank.primary(i).mean();
        let n = dot(&m, &m).sqrt().max(1e-6);
        m.into_iter().map(|x| x / n).collect::<Vec<f32>>()
    };
    let train_pooled: Vec<Vec<f32>> = train.iter().map(|&j| pooled(j)).collect();
    let nearest: Vec<usize> = items
        .iter()
        .map(|&i| {
            let q = pooled(i);
            let best = (0..train.len())
                .max_by(|&a, &b| dot(&q, &train_pooled[a]).total_cmp(&dot(&q, &train_pooled[b])))
                .expect("training set");
            train[best]
        })
        .collect();

    let real: Vec<Image> = items.iter().map(|&i| data.image(i)).collect();
    let nearest_img: Vec<Image> = nearest.iter().map(|&j| data.image(j)).collect();
    let mean_img = {
        let mut m = vec![0.0f32; 4 * 64 * 64];
        for &j in &train {
            m.iter_mut().zip(&data.images[j]).for_each(|(a, b)| *a += b / train.len() as f32);
        }
        Image::from_model(&m, 64, 64)
    };
    let mean_imgs = vec![mean_img; items.len()];

    // Scorer features.
    let text = scorer.text_features(&items.iter().map(|&i| bank.primary(i)).collect::<Vec<_>>())?;
    let feats = |imgs: &[Image]| -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::new();
        for c in imgs.chunks(64) {
            out.extend(scorer.image_features(&c.iter().collect::<Vec<_>>())?);
        }
        Ok(out)
    };
    let real_f = feats(&real)?;
    // Distractor captions per item: other held-out items with a different base emoji and name.
    let mut rng = SeededRng::new(99);
    let candidates: Vec<Vec<usize>> = (0..items.len())
        .map(|a| {
            let mut c = vec![a];
            let ra = &data.records[items[a]];
            let mut guard = 0;
            while c.len() < distractors + 1 && guard < 100_000 {
                guard += 1;
                let b = rng.below(items.len());
                let rb = &data.records[items[b]];
                if !c.contains(&b) && rb.base != ra.base && rb.name != ra.name {
                    c.push(b);
                }
            }
            c
        })
        .collect();
    let bases: Vec<&str> = items.iter().map(|&i| data.records[i].base.as_str()).collect();
    let score_system = |name: &str, imgs: &[Image]| -> Result<SystemScore> {
        let f = feats(imgs)?;
        let (mut top1, mut top5, mut mean) = (Vec::new(), Vec::new(), 0.0f64);
        for (a, fa) in f.iter().enumerate() {
            let own = dot(fa, &text[a]);
            let better = candidates[a][1..].iter().filter(|&&b| dot(fa, &text[b]) >= own).count();
            top1.push(better == 0);
            top5.push(better < 5);
            mean += pmg::scorer::score_from_cosine(own) as f64;
        }
        let n = f.len().max(1) as f64;
        let rate = |hits: &[bool]| hits.iter().filter(|&&h| h).count() as f64 / n;
        Ok(SystemScore {
            system: name.into(),
            top1: rate(&top1),
            top5: rate(&top5),
            top1_by_base: rate_by_group(&bases, &top1),
            top5_by_base: rate_by_group(&bases, &top5),
            fd: frechet_distance(&f, &real_f),
            mean_score: mean / n,
        })
    };
    let systems = vec![
        score_system("real held-out images (ceiling)", &real)?,
        score_system("autoencoder reconstruction (ceiling of the decoder)", &reconstructed)?,
        score_system("**pmg generator**", &generated)?,
        score_system("nearest training image by caption (baseline)", &nearest_img)?,
        score_system("mean training image (baseline)", &mean_imgs)?,
    ];
    let report = ImageEval { items: items.len(), distractors, options: *opts, seconds_generating, systems };
    Ok(EvalOutput { report, items, generated, reconstructed, nearest })
}

/// The hit rate with every group weighted equally: each group's rate, then their mean.
fn rate_by_group(groups: &[&str], hits: &[bool]) -> f64 {
    let mut by: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for (g, &h) in groups.iter().zip(hits) {
        let e = by.entry(g).or_default();
        *e = (e.0 + 1.0, e.1 + h as u8 as f64);
    }
    by.values().map(|(n, h)| h / n).sum::<f64>() / by.len().max(1) as f64
}

/// decode(encode(x)) of the records with the generator's autoencoder (CPU generator).
fn reconstruct(generator: &Generator, data: &EmojiData, items: &[usize]) -> Result<Vec<Image>> {
    let Some(encoder) = generator.encoder.as_ref() else { return Ok(items.iter().map(|&i| data.image(i)).collect()) };
    let z = super::stages::encode_all(encoder, &data.images, items, 1.0)?;
    let [c, h, w] = generator.latent_shape();
    let dev = Device::flex();
    let mut out = Vec::new();
    for zs in z.chunks(64) {
        let flat: Vec<f32> = zs.concat();
        let t = Tensor::<4>::from_data(TensorData::new(flat, [zs.len(), c, h, w]), &dev);
        out.extend(to_images(&read_f32(generator.decoder.forward(t))?, zs.len()));
    }
    Ok(out)
}

/// Frechet distance between Gaussians fitted to two feature sets (Heusel et al. 2017, eq. 6):
/// |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), with symmetric eigendecompositions.
pub fn frechet_distance(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (ma, ca) = moments(a);
    let (mb, cb) = moments(b);
    let d = ma.len();
    let mean_term: f64 = ma.iter().zip(&mb).map(|(x, y)| (x - y).powi(2)).sum();
    let sa = sym_sqrt(&ca, d);
    // M = sa * cb * sa
    let t = matmul(&sa, &cb, d);
    let m = matmul(&t, &sa, d);
    let (vals, _) = jacobi_eigen(&m, d);
    let tr_sqrt: f64 = vals.iter().map(|&v| v.max(0.0).sqrt()).sum();
    let tr = |c: &[f64]| (0..d).map(|i| c[i * d + i]).sum::<f64>();
    (mean_term + tr(&ca) + tr(&cb) - 2.0 * tr_sqrt).max(0.0)
}

fn moments(x: &[Vec<f32>]) -> (Vec<f64>, Vec<f64>) {
    let d = x[0].len();
    let n = x.len() as f64;
    let mut mean = vec![0.0; d];
    for r in x {
        mean.iter_mut().zip(r).for_each(|(m, &v)| *m += v as f64 / n);
    }
    let mut cov = vec![0.0; d * d];
    for r in x {
        for i in 0..d {
            let di = r[i] as f64 - mean[i];
            for j in 0..d {
                cov[i * d + j] += di * (r[j] as f64 - mean[j]) / (n - 1.0).max(1.0);
            }
        }
    }
    (mean, cov)
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                c[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    c
}

fn sym_sqrt(c: &[f64], d: usize) -> Vec<f64> {
    let (vals, vecs) = jacobi_eigen(c, d);
    let mut out = vec![0.0; d * d];
    for k in 0..d {
        let s = vals[k].max(0.0).sqrt();
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] += vecs[i * d + k] * s * vecs[j * d + k];
            }
        }
    }
    out
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix by cyclic Jacobi rotations.
fn jacobi_eigen(m: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = m.to_vec();
    let mut v = vec![0.0; d * d];
    (0..d).for_each(|i| v[i * d + i] = 1.0);
    for _sweep in 0..30 {
        let off: f64 = (0..d)
            .flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * d + j].powi(2))
            .sum();
        if off < 1e-18 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_by_group_weight_groups_equally() {
        // A group of six variations, all missed, and two single emoji, both hit: 2/8 by item,
        // 2/3 by group.
        let groups = ["p", "p", "p", "p", "p", "p", "a", "b"];
        let hits = [false, false, false, false, false, false, true, true];
        assert!((rate_by_group(&groups, &hits) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(rate_by_group(&[], &[]), 0.0);
    }

    #[test]
    fn frechet_distance_of_known_gaussians() {
        // Same samples: 0. Shifted by (3, 4): 25.
        let mut rng = SeededRng::new(5);
        let a: Vec<Vec<f32>> = (0..400).map(|_| rng.normals(3)).collect();
        assert!(frechet_distance(&a, &a) < 1e-6);
        let b: Vec<Vec<f32>> = a.iter().map(|r| vec![r[0] + 3.0, r[1] + 4.0, r[2]]).collect();
        assert!((frechet_distance(&a, &b) - 25.0).abs() < 1e-6);
        // Scaled by 2 in every dimension: tr(C + 4C - 2*2C) = tr(C) ~ 3.
        let c: Vec<Vec<f32>> = a.iter().map(|r| r.iter().map(|x| 2.0 * x).collect()).collect();
        let fd = frechet_distance(&a, &c);
        assert!((fd - 3.0).abs() < 0.5, "{fd}");
    }
}
