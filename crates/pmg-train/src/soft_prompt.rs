//! Stage 4: PMG's implicit-preference soft prompt (`pmg train soft-prompt`).
//!
//! Synthetic users are built from the *training* emoji only, with coherent tastes of three kinds:
//! a theme (an emoji subcategory: mammals, drinks, flags...), a colour (the dominant hue of the
//! picture) and a motif (a keyword shared across subcategories: heart, cat, star...). A user's
//! history is 5 emoji of their taste as shop events plus one search; the training target is
//! another emoji of the same taste (the user's next pick). The loss is the frozen denoiser's
//! v-prediction loss on the target's latent, conditioned on the soft rows plus, half the time,
//! the target's caption (without it the rows must carry the taste on their own; with it they
//! learn to add to a caption, as at inference). The LLM and the generator stay frozen.
//!
//! Only the `k` soft positions need gradients: the history's keys and values come from one
//! quantized prefill per user (kept as f16 in memory for a pool of users), and the soft tokens run
//! through [`DenseLlama`], the f32 differentiable copy of the model.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use half::f16;

use super::data::{BANK_FILE, CaptionBank, EmojiData};
use super::personalize_eval::{User, history_events, theme_query};
use super::stages::{encode_all, facts, read_autoencoder, write_export};
use super::{RunConfig, Trainer, io_err, step_rng, train_device};
use crate::dense::{DenseLlama, HistoryKv, HostKv};
use pmg::diffusion::{Conditioning, NoiseSchedule, TRAIN_STEPS, UNet, load_denoiser};
use pmg::error::{Error, Result};
use pmg::image::Image;
use pmg::llm::{LanguageModel, Rows};
use pmg::preference::ExtractOptions;
use pmg::soft_prompt::{SoftPromptConfig, SoftPromptNet, prompt};
use pmg::tensor_io::module_weights;

/// Probability that a training target's caption is left out of the conditioning.
pub const CAPTION_DROP: f64 = 0.5;
/// Users whose history keys and values are kept in memory (each step samples from them).
pub const POOL_USERS: usize = 480;

const HUES: [&str; 6] = ["red", "yellow", "green", "cyan", "blue", "purple"];

/// The dominant hue of a picture: the name of the 60-degree sector holding at least 60% of its
/// saturated opaque pixels, when at least 25% of its opaque pixels are saturated.
pub fn dominant_hue(img: &Image) -> Option<&'static str> {
    let (mut opaque, mut counts) = (0usize, [0usize; 6]);
    for px in img.rgba.chunks_exact(4) {
        if px[3] < 128 {
            continue;
        }
        opaque += 1;
        let [r, g, b] = [px[0] as f32, px[1] as f32, px[2] as f32].map(|c| c / 255.0);
        let (max, min) = (r.max(g).max(b), r.min(g).min(b));
        if max < 0.2 || (max - min) / max < 0.4 {
            continue;
        }
        let d = max - min;
        let h = if max == r {
            ((g - b) / d).rem_euclid(6.0)
        } else if max == g {
            (b - r) / d + 2.0
        } else {
            (r - g) / d + 4.0
        };
        // Sectors centred on red (0), yellow (60), green (120), ...
        counts[(((h + 0.5) as usize) % 6).min(5)] += 1;
    }
    let sat: usize = counts.iter().sum();
    let (best, n) = counts.iter().enumerate().max_by_key(|c| *c.1)?;
    (opaque > 0 && sat * 4 >= opaque && n * 10 >= sat * 6).then_some(HUES[best])
}

/// A taste: its name, the user's search for it, its emoji (record indices).
pub type Taste = (String, String, Vec<usize>);

/// Tastes over the records of `split` (one emoji per base, so skin tones do not repeat an
/// emoji): name, search query and members; themes, colours and motifs with at least `min` emoji.
pub fn tastes(data: &EmojiData, split: &str, min: usize) -> Vec<Taste> {
    let mut seen = HashSet::new();
    let items: Vec<usize> =
        data.house(split).into_iter().filter(|&i| seen.insert(data.records[i].base.clone())).collect();
    let mut theme: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut colour: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut motif: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in &items {
        let r = &data.records[i];
        theme.entry(r.subcategory.clone()).or_default().push(i);
        if let Some(h) = dominant_hue(&data.image(i)) {
            colour.entry(h).or_default().push(i);
        }
        for k in r.keywords.iter().filter(|k| k.len() > 2 && !k.contains(' ')) {
            motif.entry(k.to_lowercase()).or_default().push(i);
        }
    }
    let mut out = Vec::new();
    for (sub, v) in theme.into_iter().filter(|(_, v)| v.len() >= min) {
        out.push((format!("theme {sub}"), theme_query(&sub), v));
    }
    for (h, v) in colour.into_iter().filter(|(_, v)| v.len() >= min) {
        out.push((format!("colour {h}"), format!("{h} stickers"), v));
    }
    for (k, v) in motif {
        let subs: HashSet<&String> = v.iter().map(|&i| &data.records[i].subcategory).collect();
        // Shared across themes, and specific: "face" or "person" would be most of the set.
        if v.len() >= min && v.len() <= 60 && subs.len() >= 2 {
            out.push((format!("motif {k}"), format!("{k} stickers"), v));
        }
    }
    out
}

/// `n` users, round-robin over the tastes, each a random window of 5 of the taste's emoji; the
/// `target` field is unused in training (targets are drawn per step).
pub fn training_users(ts: &[Taste], n: usize, seed: u64) -> Vec<User> {
    let mut rng = step_rng(seed, 40, 0);
    (0..n)
        .map(|u| {
            let (name, query, items) = &ts[u % ts.len()];
            let mut pick: Vec<usize> = Vec::new();
            while pick.len() < 5 {
                let i = items[rng.below(items.len())];
                if !pick.contains(&i) {
                    pick.push(i);
                }
            }
            User { taste: name.clone(), history: pick, target: items[0], query: query.clone() }
        })
        .collect()
}

/// A user's history keys and values as f16, `[layer] -> (k, v)` each `[n_head_kv, len, head_dim]`.
struct PooledUser {
    len: usize,
    kv: Vec<(Vec<f16>, Vec<f16>)>,
    /// The taste's emoji this user has not seen (their possible next picks).
    targets: Vec<usize>,
}

fn history_kv(lm: &LanguageModel, ids: &[u32]) -> Result<HostKv> {
    let mut cache = lm.model.new_cache_with(ids.len());
    lm.model.forward_hidden(ids, &mut cache, Rows::Last)?;
    HistoryKv::host_from_cache(&cache)
}

/// Prefill the histories of `users` (whose tastes are among `tastes`) and keep their KV as f16.
fn pool(lm: &LanguageModel, data: &EmojiData, users: &[User], tastes: &[Taste]) -> Result<Vec<PooledUser>> {
    let tastes: BTreeMap<&String, &Vec<usize>> = tastes.iter().map(|(n, _, v)| (n, v)).collect();
    let opts = ExtractOptions::default();
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(users.len());
    for (k, u) in users.iter().enumerate() {
        let ids = prompt(lm, &history_events(data, u), &opts)?;
        let (len, kv) = history_kv(lm, &ids)?;
        let half = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<_>>();
        let targets = tastes[&u.taste].iter().copied().filter(|i| !u.history.contains(i)).collect();
        out.push(PooledUser { len, kv: kv.into_iter().map(|(a, b)| (half(a), half(b))).collect(), targets });
        if (k + 1) % 60 == 0 {
            eprintln!(
                "history prefill {}/{} ({len} tokens, {:.0} s)",
                k + 1,
                users.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(out)
}

fn batch_kv(pool: &[PooledUser], idx: &[usize], lm: &LanguageModel, dev: &Device) -> Result<HistoryKv> {
    let c = &lm.model.config;
    let host: Vec<HostKv> = idx
        .iter()
        .map(|&i| {
            let p = &pool[i];
            let f = |v: &Vec<f16>| v.iter().map(|x| x.to_f32()).collect::<Vec<f32>>();
            (p.len, p.kv.iter().map(|(k, v)| (f(k), f(v))).collect())
        })
        .collect();
    HistoryKv::from_host(&host, c.n_head_kv, c.head_dim, dev)
}

/// The conditioning of a batch: soft rows `[b, k, w]` first, then each caption (or nothing),
/// padded; the mask is true at padding. The denoiser's cross-attention has no positions, so the
/// order of rows does not matter (inference puts the soft rows last).
fn context(
    soft: Tensor<3>,
    captions: &[Option<&Conditioning>],
    width: usize,
    dev: &Device,
) -> (Tensor<3>, Tensor<2, Bool>) {
    let [b, k, _] = soft.dims();
    let l = captions.iter().map(|c| c.map_or(0, |c| c.len)).max().unwrap_or(0);
    if l == 0 {
        return (soft, Tensor::from_data(TensorData::new(vec![false; b * k], [b, k]), dev));
    }
    let mut rows = vec![0f32; b * l * width];
    let mut mask = vec![false; b * (k + l)];
    for (i, c) in captions.iter().enumerate() {
        let n = c.map_or(0, |c| c.len);
        if let Some(c) = c {
            rows[i * l * width..][..n * width].copy_from_slice(&c.rows);
        }
        mask[i * (k + l) + k + n..(i + 1) * (k + l)].iter_mut().for_each(|m| *m = true);
    }
    let caps = Tensor::<3>::from_data(TensorData::new(rows, [b, l, width]), dev);
    (Tensor::cat(vec![soft, caps], 1), Tensor::from_data(TensorData::new(mask, [b, k + l]), dev))
}

/// Everything a step needs, loaded once.
struct Setup<'a> {
    lm: &'a LanguageModel,
    dense: DenseLlama,
    unet: UNet,
    /// Per record, its latent (every record, held-out ones for the held-out check).
    latents: Vec<Vec<f32>>,
    bank: CaptionBank,
    schedule: NoiseSchedule,
    shape: [usize; 3],
}

impl Setup<'_> {
    /// The denoising loss of one batch: users `idx` of `pool`, targets, captions (or none),
    /// timesteps and noise from `rng`. With `soft: None` the rows are left out (the reference).
    fn loss(
        &self,
        net: Option<&SoftPromptNet>,
        pool: &[PooledUser],
        idx: &[usize],
        rng: &mut pmg::rng::SeededRng,
        dev: &Device,
    ) -> Result<Tensor<1>> {
        let b = idx.len();
        let per: usize = self.shape.iter().product();
        let (mut xt, mut target, mut ts, mut caps) =
            (Vec::with_capacity(b * per), Vec::with_capacity(b * per), Vec::with_capacity(b), Vec::with_capacity(b));
        for &u in idx {
            let p = &pool[u];
            let rec = p.targets[rng.below(p.targets.len())];
            let r = &self.bank.by_record[rec];
            let cap = self.bank.cond(r.start + rng.below(r.len()));
            caps.push(if rng.uniform() < CAPTION_DROP { None } else { Some(cap) });
            let t = rng.below(TRAIN_STEPS);
            ts.push(t as f32);
            let (a, s) = self.schedule.coefficients(t);
            let noise = rng.normals(per);
            for (x0, e) in self.latents[rec].iter().zip(&noise) {
                xt.push(a * x0 + s * e);
                target.push(a * e - s * x0);
            }
        }
        let w = self.bank.width;
        let (ctx, mask) = match net {
            Some(net) => {
                let hist = batch_kv(pool, idx, self.lm, dev)?;
                let k = net.tokens.dims()[0];
                let x = net.tokens.val().unsqueeze::<3>().expand([b, k, w]);
                let soft = net.adapt(self.dense.forward(x, &hist)?);
                context(soft, &caps, w, dev)
            }
            None => {
                let null = Conditioning::null(w);
                let conds: Vec<&Conditioning> = caps.iter().map(|c| c.unwrap_or(&null)).collect();
                pmg::diffusion::context_batch(&conds, dev)
            }
        };
        let s = self.shape;
        let xt = Tensor::<4>::from_data(TensorData::new(xt, [b, s[0], s[1], s[2]]), dev);
        let target = Tensor::<4>::from_data(TensorData::new(target, [b, s[0], s[1], s[2]]), dev);
        let pred = self.unet.forward(xt, &ts, ctx, mask);
        Ok((pred - target).powf_scalar(2.0).mean())
    }
}

/// Held-out check: mean denoising loss over users built from the *held-out* emoji tastes, with
/// and without the soft rows, on the same targets, captions, timesteps and noise.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SoftEval {
    pub users: usize,
    pub batches: usize,
    pub loss_without: f64,
    pub loss_with: f64,
}

fn heldout_eval(setup: &Setup, net: &SoftPromptNet, data: &EmojiData, seed: u64, dev: &Device) -> Result<SoftEval> {
    let ts = tastes(data, "heldout", 6);
    let users: Vec<User> = ts
        .iter()
        .flat_map(|(name, query, items)| {
            (0..4).map(move |u| User {
                taste: name.clone(),
                history: (0..5).map(|k| items[(u * 2 + k) % items.len()]).collect(),
                target: items[0],
                query: query.clone(),
            })
        })
        .collect();
    let pool = pool(setup.lm, data, &users, &ts)?;
    let (mut with, mut without, mut n) = (0.0, 0.0, 0);
    for (bi, chunk) in (0..pool.len()).collect::<Vec<_>>().chunks(8).enumerate() {
        for rep in 0..4u64 {
            let mut r1 = step_rng(seed, 41, bi * 4 + rep as usize);
            let mut r2 = step_rng(seed, 41, bi * 4 + rep as usize);
            with += pmg::device::read_f32(setup.loss(Some(net), &pool, chunk, &mut r1, dev)?)?[0] as f64;
            without += pmg::device::read_f32(setup.loss(None, &pool, chunk, &mut r2, dev)?)?[0] as f64;
            n += 1;
        }
    }
    Ok(SoftEval { users: users.len(), batches: n, loss_without: without / n as f64, loss_with: with / n as f64 })
}

/// Stage 4: train the soft tokens and the adapter; export them with the held-out check.
pub fn soft_prompt(
    cfg: RunConfig,
    sp: SoftPromptConfig,
    lm: &LanguageModel,
    ae_path: &Path,
    unet_path: &Path,
    out: &Path,
) -> Result<()> {
    let data = EmojiData::load(&cfg.data)?;
    let bank = CaptionBank::load(&cfg.data.join(BANK_FILE), &data)?;
    if bank.width != sp.width || lm.model.config.n_embd != sp.width {
        return Err(Error::InvalidArgument(format!(
            "widths differ: captions {}, LLM {}, soft prompt {}",
            bank.width, lm.model.config.n_embd, sp.width
        )));
    }
    let (aw, ae, scale) = read_autoencoder(ae_path)?;
    let encoder = ae.load_encoder(&aw, "autoencoder", &Device::flex())?;
    let all: Vec<usize> = (0..data.records.len()).collect();
    let latents = encode_all(&encoder, &data.images, &all, scale)?;
    let side = 64 / ae.factor;
    let unet_bytes = std::fs::read(unet_path).map_err(|e| io_err(unet_path, e))?;
    if cfg.device != pmg::device::DeviceChoice::Cpu {
        return Err(Error::InvalidArgument("the soft prompt trains on the CPU, next to the quantized LLM".into()));
    }
    let dev = train_device(&cfg)?;
    eprintln!("dequantizing the LLM's blocks to f32 for the soft positions");
    let setup = Setup {
        lm,
        dense: DenseLlama::from_llama(&lm.model, &dev)?,
        // The retrieval bank is not used here: the loss starts from the target's own latent.
        unet: load_denoiser(&unet_bytes, "denoiser", &ae, &dev)?.0.no_grad(),
        latents,
        bank,
        schedule: NoiseSchedule::cosine(TRAIN_STEPS),
        shape: [ae.latent_channels, side, side],
    };
    let ts = tastes(&data, "train", 6);
    let users = training_users(&ts, POOL_USERS, cfg.seed);
    eprintln!("{} training users over {} tastes; prefilling their histories", users.len(), ts.len());
    let pool = pool(lm, &data, &users, &ts)?;
    let mut tr = Trainer::new(sp.init_from_words(lm, &dev)?, cfg.clone())?;
    let mut last = f64::NAN;
    while !tr.done() {
        let mut rng = step_rng(cfg.seed, 4, tr.step);
        let idx: Vec<usize> = (0..cfg.batch).map(|_| rng.below(pool.len())).collect();
        let loss = setup.loss(Some(&tr.model), &pool, &idx, &mut rng, &dev)?;
        last = tr.update(loss)?;
    }
    if !tr.complete() {
        return Ok(());
    }
    let net = &tr.model;
    let eval = heldout_eval(&setup, net, &data, cfg.seed, &dev)?;
    eprintln!(
        "held-out denoising loss: {:.5} without the soft rows, {:.5} with them ({} users)",
        eval.loss_without, eval.loss_with, eval.users
    );
    let mut w = module_weights(net);
    w.metadata.insert("config".into(), serde_json::to_string(&sp).expect("json"));
    w.metadata.insert("instruction".into(), pmg::soft_prompt::INSTRUCTION.into());
    w.metadata.insert("heldout".into(), serde_json::to_string(&eval).expect("json"));
    w.metadata.insert("pool_users".into(), POOL_USERS.to_string());
    w.metadata.insert("caption_drop".into(), CAPTION_DROP.to_string());
    facts(&mut w, &cfg, tr.elapsed(), last);
    write_export(&w, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(px: impl Fn(usize) -> [u8; 4]) -> Image {
        Image { width: 8, height: 8, rgba: (0..64).flat_map(px).collect() }
    }

    #[test]
    fn dominant_hue_needs_a_saturated_majority() {
        assert_eq!(dominant_hue(&image(|_| [220, 30, 30, 255])), Some("red"));
        assert_eq!(dominant_hue(&image(|_| [40, 90, 230, 255])), Some("blue"));
        assert_eq!(dominant_hue(&image(|_| [250, 210, 40, 255])), Some("yellow"));
        // Grey, transparent, or split between two colours: no colour taste.
        assert_eq!(dominant_hue(&image(|_| [128, 128, 128, 255])), None);
        assert_eq!(dominant_hue(&image(|_| [220, 30, 30, 0])), None);
        assert_eq!(dominant_hue(&image(|i| if i < 32 { [220, 30, 30, 255] } else { [40, 90, 230, 255] })), None);
    }

    #[test]
    fn context_puts_soft_rows_first_and_masks_caption_padding() {
        let dev = Device::flex();
        let soft = Tensor::<3>::zeros([2, 3, 4], &dev);
        let cap = Conditioning { rows: vec![1.0; 2 * 4], len: 2, width: 4 };
        let (ctx, mask) = context(soft.clone(), &[Some(&cap), None], 4, &dev);
        assert_eq!(ctx.dims(), [2, 5, 4]);
        let m: Vec<bool> = mask.into_data().try_to_vec().unwrap();
        assert_eq!(m, [false, false, false, false, false, false, false, false, true, true]);
        let (ctx, mask) = context(soft, &[None, None], 4, &dev);
        assert_eq!((ctx.dims(), mask.dims()), ([2, 3, 4], [2, 3]));
    }
}
