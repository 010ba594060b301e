//! The training stages: autoencoder, denoiser, scorer. Each ends by writing its f16 safetensors
//! export (with the config and training facts in the metadata).

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use super::data::{BANK_FILE, CaptionBank, EmojiData};
use super::pack::DenoiserData;
use super::{RunConfig, Trainer, io_err, step_rng, train_device};
use pmg::device::read_f32;
use pmg::diffusion::{AutoencoderConfig, Conditioning, Encoder, NoiseSchedule, TRAIN_STEPS, UNetConfig, context_batch};
use pmg::error::Result;
use pmg::scorer::ScorerConfig;
use pmg::tensor_io::{Dtype, Weights, module_weights};

fn batch(images: &[Vec<f32>], idx: &[usize], shape: [usize; 3], dev: &Device) -> Tensor<4> {
    let data: Vec<f32> = idx.iter().flat_map(|&i| images[i].iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [idx.len(), shape[0], shape[1], shape[2]]), dev)
}

pub(super) fn write_export(w: &Weights, out: &Path) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    }
    std::fs::write(out, w.to_bytes(Dtype::F16)).map_err(|e| io_err(out, e))?;
    eprintln!(
        "wrote {} ({} parameters, {} bytes)",
        out.display(),
        w.num_params(),
        std::fs::metadata(out).map(|m| m.len()).unwrap_or(0)
    );
    Ok(())
}

pub(super) fn facts(w: &mut Weights, cfg: &RunConfig, seconds: f64, final_loss: f64) {
    w.metadata.insert("steps".into(), cfg.steps.to_string());
    w.metadata.insert("batch".into(), cfg.batch.to_string());
    w.metadata.insert("lr".into(), cfg.lr.to_string());
    w.metadata.insert("seed".into(), cfg.seed.to_string());
    w.metadata.insert("train_seconds_last_process".into(), format!("{seconds:.0}"));
    // A complete run re-exported (resumed at its last step) ran no step here: its last logged loss.
    let final_loss = if final_loss.is_finite() { Some(final_loss) } else { last_logged_loss(&cfg.run) };
    if let Some(l) = final_loss {
        w.metadata.insert("final_loss".into(), format!("{l:.5}"));
    }
    w.metadata.insert("format".into(), "pmg".into());
}

fn last_logged_loss(run: &Path) -> Option<f64> {
    let log = std::fs::read_to_string(run.join("loss.jsonl")).ok()?;
    let line: serde_json::Value = serde_json::from_str(log.lines().last()?).ok()?;
    line["loss"].as_f64()
}

/// Stage 1: the autoencoder on the training images (L1 + L2 reconstruction, a small latent
/// penalty). The export's `latent_scale` makes the training latents unit-variance.
pub fn autoencoder(cfg: RunConfig, ae: AutoencoderConfig, out: &Path) -> Result<()> {
    let data = EmojiData::load(&cfg.data)?;
    let train = data.split("train");
    let dev = train_device(&cfg)?;
    let mut tr = Trainer::new(ae.init(&dev), cfg.clone())?;
    let mut last = f64::NAN;
    while !tr.done() {
        let mut rng = step_rng(cfg.seed, 1, tr.step);
        let idx: Vec<usize> = (0..cfg.batch).map(|_| train[rng.below(train.len())]).collect();
        let x = batch(&data.images, &idx, [4, 64, 64], &dev);
        let z = tr.model.encoder.forward(x.clone());
        let d = tr.model.decoder.forward(z.clone()) - x;
        let loss = d.clone().abs().mean() + d.powf_scalar(2.0).mean() + z.powf_scalar(2.0).mean() * 1e-4;
        last = tr.update(loss)?;
    }
    if !tr.complete() {
        return Ok(());
    }
    let mut w = module_weights(&tr.model);
    w.metadata.insert("config".into(), serde_json::to_string(&ae).expect("json"));
    // The scale is measured with the weights as shipped (f16).
    let shipped = Weights::from_bytes("autoencoder", &w.to_bytes(Dtype::F16))?;
    let encoder = ae.load_encoder(&shipped, "autoencoder", &Device::flex())?;
    let lat = encode_all(&encoder, &data.images, &train, 1.0)?;
    let n = lat.iter().map(Vec::len).sum::<usize>() as f64;
    let mean = lat.iter().flatten().map(|&x| x as f64).sum::<f64>() / n;
    let var = lat.iter().flatten().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    w.metadata.insert("latent_scale".into(), format!("{:.6}", 1.0 / var.sqrt()));
    facts(&mut w, &cfg, tr.elapsed(), last);
    write_export(&w, out)
}

/// Latents (times `scale`) of the images at `idx`, on the plain CPU device.
pub fn encode_all(encoder: &Encoder, images: &[Vec<f32>], idx: &[usize], scale: f32) -> Result<Vec<Vec<f32>>> {
    let dev = Device::flex();
    let mut out = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(64) {
        let z = read_f32(encoder.forward(batch(images, chunk, [4, 64, 64], &dev)) * scale)?;
        let per = z.len() / chunk.len();
        out.extend(z.chunks_exact(per).map(<[f32]>::to_vec));
    }
    Ok(out)
}

/// An autoencoder export: its tensors, config and latent scale.
pub fn read_autoencoder(path: &Path) -> Result<(Weights, AutoencoderConfig, f32)> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let file = path.display().to_string();
    let w = Weights::from_bytes(&file, &bytes)?;
    let (ae, scale) = AutoencoderConfig::from_weights(&w, &file)?;
    Ok((w, ae, scale))
}

/// Fraction of training captions replaced by the null conditioning (for classifier-free guidance).
pub const CAPTION_DROPOUT: f64 = 0.1;

/// On a GPU the EMA is updated every this many steps (reading the weights back costs more than a step).
const EMA_EVERY_ON_GPU: usize = 8;

/// Where the denoiser stage reads its inputs.
pub enum DenoiserInput<'a> {
    /// The dataset (`cfg.data`), its caption bank, and the autoencoder export that encodes the latents.
    Dataset { autoencoder: &'a Path },
    /// A training pack (`pmg train pack`): the same inputs, compact, with no dataset or LLM needed.
    Pack(&'a Path),
}

/// The dataset's denoiser inputs: training records, their latents (scaled) and caption states.
pub fn denoiser_data(data_dir: &Path, ae_path: &Path) -> Result<DenoiserData> {
    let data = EmojiData::load(data_dir)?;
    let bank = CaptionBank::load(&data_dir.join(BANK_FILE), &data)?;
    let (aw, ae, scale) = read_autoencoder(ae_path)?;
    let latents =
        encode_all(&ae.load_encoder(&aw, "autoencoder", &Device::flex())?, &data.images, &data.split("train"), scale)?;
    let side = 64 / ae.factor;
    Ok(DenoiserData::from_dataset(&data, bank, latents, [ae.latent_channels, side, side]))
}

/// Which training records a denoiser batch draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleBy {
    /// A base emoji uniformly, then one of its records (its styles and skin-tone variations): every
    /// concept gets the same share of the batches however many records it has. The 9-style run
    /// (scripts/torch/train_denoiser.py, eval/image/RESULTS.md) draws this way.
    Base,
    /// A record uniformly (the recipe of emoji-v1 to v3).
    #[default]
    Record,
}

pmg::names_from_serde!(SampleBy, "sampling");

/// Stage 2: the denoiser on the autoencoder's latents of the training images, v-prediction on the
/// cosine schedule, random caption per image, 10% null captions; the export holds the EMA
/// weights (decay 0.999 with warm-up) and the sampler's retrieval bank of training latents.
pub fn diffusion(
    cfg: RunConfig,
    unet: UNetConfig,
    input: DenoiserInput,
    sample_by: SampleBy,
    out: &Path,
) -> Result<()> {
    if cfg.workers > 1 && (cfg.device != pmg::device::DeviceChoice::Cpu || !cfg.batch.is_multiple_of(cfg.workers)) {
        return Err(crate::Error::InvalidArgument(format!(
            "--workers {} needs --device cpu and a batch divisible by it (batch {}, device {:?})",
            cfg.workers, cfg.batch, cfg.device
        )));
    }
    let d = match input {
        DenoiserInput::Dataset { autoencoder } => denoiser_data(&cfg.data, autoencoder)?,
        DenoiserInput::Pack(path) => DenoiserData::load_pack(path)?,
    };
    let shape = d.shape;
    let per = shape.iter().product::<usize>();
    let width = d.conds.first().map_or(0, |c| c.width);
    let schedule = NoiseSchedule::cosine(TRAIN_STEPS);
    let null = Conditioning::null(width);
    let dev = train_device(&cfg)?;
    let mut tr = Trainer::new(unet.init(&dev), cfg.clone())?;
    let ema_path = cfg.run.join("ema.safetensors");
    let mut ema = if tr.step > 0 && ema_path.exists() {
        Weights::from_bytes("ema", &std::fs::read(&ema_path).map_err(|e| io_err(&ema_path, e))?)?
    } else {
        module_weights(&tr.model)
    };
    let ema_every = if cfg.device == pmg::device::DeviceChoice::Cpu { 1 } else { EMA_EVERY_ON_GPU };
    let mut last = f64::NAN;
    while !tr.done() {
        let mut rng = step_rng(cfg.seed, 2, tr.step);
        let pos: Vec<usize> = (0..cfg.batch)
            .map(|_| match sample_by {
                SampleBy::Record => rng.below(d.latents.len()),
                SampleBy::Base => {
                    let g = &d.groups[rng.below(d.groups.len())];
                    g[rng.below(g.len())]
                }
            })
            .collect();
        let mut conds = Vec::with_capacity(cfg.batch);
        let (mut xt, mut target, mut ts) =
            (Vec::with_capacity(cfg.batch * per), Vec::with_capacity(cfg.batch * per), Vec::new());
        for &p in &pos {
            let r = &d.captions[p];
            conds.push(if rng.uniform() < CAPTION_DROPOUT { &null } else { &d.conds[r.start + rng.below(r.len())] });
            let t = rng.below(TRAIN_STEPS);
            ts.push(t as f32);
            let (a, s) = schedule.coefficients(t);
            let noise = rng.normals(per);
            for (x0, e) in d.latents[p].iter().zip(&noise) {
                xt.push(a * x0 + s * e);
                target.push(a * e - s * x0);
            }
        }
        // Equal parts of the batch, one per worker (the mean of their losses is the batch's).
        let parts = cfg.workers;
        let rows = cfg.batch / parts;
        last = tr.update_parallel(parts, |model, k| {
            let r = k * rows..(k + 1) * rows;
            let (ctx, mask) = context_batch(&conds[r.clone()], &dev);
            let dims = [rows, shape[0], shape[1], shape[2]];
            let xt = Tensor::<4>::from_data(TensorData::new(xt[r.start * per..r.end * per].to_vec(), dims), &dev);
            let target =
                Tensor::<4>::from_data(TensorData::new(target[r.start * per..r.end * per].to_vec(), dims), &dev);
            let pred = model.forward(xt, &ts[r], ctx, mask);
            (pred - target).powf_scalar(2.0).mean()
        })?;
        // Every `ema_every` steps, with the decay of that many steps.
        if tr.step % ema_every == 0 || tr.done() {
            let decay = (0.999f32).min((1 + tr.step) as f32 / (10 + tr.step) as f32).powi(ema_every as i32);
            let now = module_weights(&tr.model);
            for (k, t) in ema.tensors.iter_mut() {
                let n = &now.tensors[k].data;
                t.data.iter_mut().zip(n).for_each(|(e, x)| *e = decay * *e + (1.0 - decay) * x);
            }
        }
        if tr.step % cfg.checkpoint_every == 0 || tr.done() {
            std::fs::write(&ema_path, ema.to_bytes(Dtype::F32)).map_err(|e| io_err(&ema_path, e))?;
        }
    }
    if !tr.complete() {
        return Ok(());
    }
    let mut w = ema;
    w.metadata.insert("config".into(), serde_json::to_string(&unet).expect("json"));
    w.metadata.insert("prediction".into(), "v".into());
    w.metadata.insert("schedule".into(), format!("cosine-{TRAIN_STEPS}"));
    w.metadata.insert("text_prefix".into(), pmg::diffusion::TEXT_PREFIX.into());
    w.metadata.insert("sample_by".into(), sample_by.to_string());
    d.retrieval()?.insert_into(&mut w);
    facts(&mut w, &cfg, tr.elapsed(), last);
    write_export(&w, out)
}

fn log_sum_exp(x: Tensor<2>, dim: usize) -> Tensor<2> {
    let m = x.clone().max_dim(dim).detach();
    m.clone() + (x - m).exp().sum_dim(dim).log()
}

/// Stage 3: the scorer, CLIP's symmetric InfoNCE over batches of distinct base emoji, on real
/// images and (half the time) their autoencoder reconstructions, so generated images are in
/// its domain.
pub fn scorer(cfg: RunConfig, sc: ScorerConfig, ae_path: Option<&Path>, out: &Path) -> Result<()> {
    let data = EmojiData::load(&cfg.data)?;
    let bank = CaptionBank::load(&cfg.data.join(BANK_FILE), &data)?;
    let train = data.split("train");
    let recon: Option<Vec<Vec<f32>>> = match ae_path {
        Some(p) => {
            let (aw, ae, _) = read_autoencoder(p)?;
            let z = encode_all(&ae.load_encoder(&aw, "autoencoder", &Device::flex())?, &data.images, &train, 1.0)?;
            let dec = ae.load_decoder(&aw, "autoencoder", &Device::flex())?;
            let side = 64 / ae.factor;
            let mut all = vec![Vec::new(); data.images.len()];
            for (chunk, zs) in train.chunks(64).zip(z.chunks(64)) {
                let zt =
                    batch(zs, &(0..zs.len()).collect::<Vec<_>>(), [ae.latent_channels, side, side], &Device::flex());
                let y = read_f32(dec.forward(zt))?;
                for (i, img) in chunk.iter().zip(y.chunks_exact(4 * 64 * 64)) {
                    all[*i] = img.to_vec();
                }
            }
            Some(all)
        }
        None => None,
    };
    let dev = train_device(&cfg)?;
    let mut tr = Trainer::new(sc.init(&dev), cfg.clone())?;
    let b = cfg.batch;
    let eye: Vec<f32> = (0..b * b).map(|i| if i / b == i % b { 1.0 } else { 0.0 }).collect();
    let eye = Tensor::<2>::from_data(TensorData::new(eye, [b, b]), &dev);
    let mut last = f64::NAN;
    while !tr.done() {
        let mut rng = step_rng(cfg.seed, 3, tr.step);
        let mut idx: Vec<usize> = Vec::with_capacity(b);
        while idx.len() < b {
            let i = train[rng.below(train.len())];
            let r = &data.records[i];
            if !idx.iter().any(|&j| data.records[j].base == r.base || data.records[j].name == r.name) {
                idx.push(i);
            }
        }
        let mut pix = Vec::with_capacity(b * 4 * 64 * 64);
        let mut text = Vec::with_capacity(b * bank.width);
        for &i in &idx {
            let use_recon = recon.as_ref().is_some_and(|_| rng.uniform() < 0.5);
            pix.extend_from_slice(if use_recon { &recon.as_ref().expect("recon")[i] } else { &data.images[i] });
            let r = &bank.by_record[i];
            text.extend(bank.cond(r.start + rng.below(r.len())).mean());
        }
        let x = Tensor::<4>::from_data(TensorData::new(pix, [b, 4, 64, 64]), &dev);
        let t = Tensor::<2>::from_data(TensorData::new(text, [b, bank.width]), &dev);
        let fi = tr.model.image.forward(x);
        let ft = tr.model.text.forward(t);
        let scale = tr.model.logit_scale.val().clamp_max(100f32.ln()).exp().reshape([1, 1]);
        let logits = fi.matmul(ft.transpose()) * scale;
        let diag = (logits.clone() * eye.clone()).sum_dim(1);
        let rows = (log_sum_exp(logits.clone(), 1) - diag.clone()).mean();
        let cols = (log_sum_exp(logits, 0) - diag.transpose()).mean();
        last = tr.update((rows + cols) * 0.5)?;
    }
    if !tr.complete() {
        return Ok(());
    }
    let mut w = module_weights(&tr.model);
    w.metadata.insert("config".into(), serde_json::to_string(&sc).expect("json"));
    facts(&mut w, &cfg, tr.elapsed(), last);
    write_export(&w, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::GradientsParams;
    use pmg::tensor_io::load_module;

    /// One training step of each model on tiny random batches: shapes line up, gradients reach
    /// every parameter, and weights survive an f16 export and reload.
    #[test]
    fn one_step_of_each_model() {
        let dev = Device::flex().autodiff();
        dev.seed(1);
        let unet = UNetConfig::default().init(&dev);
        let b = 2;
        let x = Tensor::<4>::random([b, 4, 16, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &dev);
        let c1 = Conditioning { rows: vec![0.5; 3 * 576], len: 3, width: 576 };
        let c2 = Conditioning::null(576);
        let (ctx, mask) = context_batch(&[&c1, &c2], &dev);
        let v = unet.forward(x.clone(), &[10.0, 900.0], ctx, mask);
        assert_eq!(v.dims(), [b, 4, 16, 16]);
        let loss = (v - x).powf_scalar(2.0).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &unet);
        assert!(grads.len() > 50, "{} parameters got gradients", grads.len());

        let ae = AutoencoderConfig::default().init(&dev);
        let img = Tensor::<4>::random([b, 4, 64, 64], burn::tensor::Distribution::Uniform(-1.0, 1.0), &dev);
        let z = ae.encoder.forward(img.clone());
        assert_eq!(z.dims(), [b, 4, 16, 16]);
        let y = ae.decoder.forward(z);
        assert_eq!(y.dims(), [b, 4, 64, 64]);

        let sc = ScorerConfig::default().init(&dev);
        let fi = sc.image.forward(img);
        let ft = sc.text.forward(Tensor::<2>::random([b, 576], burn::tensor::Distribution::Normal(0.0, 1.0), &dev));
        assert_eq!(fi.dims(), [b, 256]);
        let logits = fi.matmul(ft.transpose()) * sc.logit_scale.val().exp().reshape([1, 1]);
        assert_eq!(log_sum_exp(logits, 1).dims(), [b, 1]);

        let w = module_weights(&sc);
        let back = Weights::from_bytes("t", &w.to_bytes(Dtype::F16)).unwrap();
        let reloaded = load_module(ScorerConfig::default().init(&Device::flex()), &back, "t").unwrap();
        assert_eq!(module_weights(&reloaded).tensors.keys().collect::<Vec<_>>(), w.tensors.keys().collect::<Vec<_>>());
        let mut wrong = back.clone();
        wrong.tensors.remove("logit_scale");
        assert!(load_module(ScorerConfig::default().init(&Device::flex()), &wrong, "t").is_err());
    }
}
