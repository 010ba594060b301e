//! `pmg bench-sd`: speed and memory of a Stable Diffusion folder's parts on one device, the same
//! measurements `scripts/bench_sd.py time` takes with diffusers (issue 21, deliver 6).

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Tensor, TensorData};
use pmg::sd::Precision;
use pmg::sd::pipeline::StableDiffusion;
use pmg::{DeviceChoice, PmgDevice, Result};

pub struct BenchSdArgs {
    pub dir: PathBuf,
    pub vae: Option<PathBuf>,
    pub size: Option<usize>,
    pub quantize: Precision,
    pub batch: usize,
    pub runs: usize,
    pub device: DeviceChoice,
}

/// Load, then medians after one warm-up of: the text encoder on one prompt (77 tokens), one UNet
/// call on `batch` latents (2 = one image with classifier-free guidance), one decode of one
/// latent; each includes reading its output back. Prints JSON.
pub fn bench_sd(a: BenchSdArgs) -> Result<()> {
    let dev = PmgDevice::new(a.device)?;
    let t0 = Instant::now();
    let sd = StableDiffusion::from_dir(&a.dir, a.vae.as_deref(), &dev, a.quantize)?;
    let load_s = t0.elapsed().as_secs_f64();
    let size = a.size.unwrap_or_else(|| sd.native_size());
    let f = sd.vae.downscale();
    let lat = size / f;
    let d = &dev.device;
    let noise = |n: usize, seed: u64| pmg::rng::SeededRng::new(seed).normals(n);
    let ch = sd.unet.config.in_channels;
    let x = Tensor::<4>::from_data(TensorData::new(noise(a.batch * ch * lat * lat, 1), [a.batch, ch, lat, lat]), d);
    let cond = sd.encode("a red fox sticker")?;
    let ctx = Tensor::<3>::from_data(TensorData::new(cond.rows.repeat(a.batch), [a.batch, cond.len, cond.width]), d);
    let z = Tensor::<4>::from_data(TensorData::new(noise(ch * lat * lat, 2), [1, ch, lat, lat]), d);
    let timesteps = vec![999.0; a.batch];
    let time = |call: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let mut ms = Vec::new();
        for run in 0..=a.runs {
            let t = Instant::now();
            call()?;
            if run > 0 {
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    };
    let text_ms = time(&mut || sd.encode("a red fox sticker").map(drop))?;
    let unet_ms = time(&mut || pmg::device::read_f32(sd.unet.forward(x.clone(), &timesteps, &ctx, None)?).map(drop))?;
    // A decode the device cannot hold is refused (as `denoise_from` refuses it), not timed.
    let fits = dev.check_tensor_bytes(sd.vae.peak_bytes([size, size], false), "decoding").map_err(|e| e.to_string());
    let decode_ms = match &fits {
        Ok(()) => Some(time(&mut || pmg::device::read_f32(sd.vae.decode(z.clone())?).map(drop))?),
        Err(_) => None,
    };
    let v = serde_json::json!({
        "system": format!("pmg {} ({}), {:?}", env!("CARGO_PKG_VERSION"), dev.adapter, a.quantize),
        "threads": pmg::host::pool::Pool::global().threads(),
        "size": size,
        "batch": a.batch,
        "load_s": load_s,
        "text_ms": text_ms,
        "unet_ms": unet_ms,
        "decode_ms": decode_ms,
        "unet_weight_mb": sd.unet.weight_bytes as f64 / (1 << 20) as f64,
        "text_weight_mb": sd.text_encoder.weight_bytes as f64 / (1 << 20) as f64,
        "peak_rss_mb": crate::peak_rss_mb(),
        "max_tensor_mb": dev.max_tensor_bytes.map(|b| b >> 20),
        "decode_refused": fits.err(),
    });
    println!("{v}");
    Ok(())
}
