//! How much a denoiser uses the caption: on 60 training emoji (spread over its retrieval bank), the
//! v-prediction error at a few timesteps with the emoji's own name caption, with the null
//! conditioning and with another emoji's caption. A denoiser that has learned the captions has a
//! much lower error with its own caption than with the null one, most of all at high noise.
//!
//!     cargo run --release --example caption_use -- [models/emoji-denoiser.safetensors]
//!
//! Needs the shipped autoencoder and the LLM in `models/` (`scripts/fetch-models.sh`).

use burn::tensor::{Tensor, TensorData};
use pmg::PmgDevice;
use pmg::diffusion::{Conditioning, Generator, MAX_TEXT_TOKENS, context_batch, encode_text};
use pmg::rng::SeededRng;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn main() -> pmg::Result<()> {
    let denoiser = std::env::args().nth(1).unwrap_or_else(|| "models/emoji-denoiser.safetensors".into());
    let dev = PmgDevice::cpu();
    let g = Generator::from_bytes(&read("models/emoji-autoencoder.safetensors"), &read(&denoiser), &dev)?;
    let lm = pmg::llm::LanguageModel::from_gguf_bytes(&read("models/SmolLM2-135M-Instruct.Q4_1.gguf"), &dev, 64)?;
    let bank = g.retrieval.as_ref().expect("a denoiser file with a retrieval bank (its training emoji)");
    let [c, h, w] = g.latent_shape();
    let per = c * h * w;
    let n = 60;
    let every = bank.names.len() / n;
    let conds: Vec<Conditioning> =
        (0..n).map(|k| encode_text(&lm, &bank.names[k * every], MAX_TEXT_TOKENS)).collect::<pmg::Result<_>>()?;
    let null = Conditioning::null(g.unet_config.d_text);
    println!("{denoiser}: v-MSE on {n} training emoji, own caption / null / another emoji's caption");
    for t in [200usize, 500, 800, 950] {
        let (a, s) = g.schedule.coefficients(t);
        let mut mse = [0.0f32; 3];
        for k in 0..n {
            let x0 = bank.latent(k * every);
            let noise = SeededRng::new((t * 1000 + k) as u64).normals(per);
            let xt: Vec<f32> = x0.iter().zip(&noise).map(|(x, e)| a * x + s * e).collect();
            let v_true: Vec<f32> = noise.iter().zip(x0).map(|(e, x)| a * e - s * x).collect();
            let x = Tensor::<4>::from_data(TensorData::new(xt.repeat(3), [3, c, h, w]), &dev.device);
            let (ctx, mask) = context_batch(&[&conds[k], &null, &conds[(k + n / 2) % n]], &dev.device);
            let v = pmg::device::read_f32(g.unet.forward(x, &[t as f32; 3], ctx, mask))?;
            for (j, m) in mse.iter_mut().enumerate() {
                *m += v[j * per..(j + 1) * per].iter().zip(&v_true).map(|(p, q)| (p - q) * (p - q)).sum::<f32>()
                    / (per * n) as f32;
            }
        }
        println!("t {t:>3}: {:.3} / {:.3} / {:.3}", mse[0], mse[1], mse[2]);
    }
    Ok(())
}
