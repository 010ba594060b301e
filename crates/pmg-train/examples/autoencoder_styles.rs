//! How well an autoencoder reconstructs each style of the dataset: the same 24 training base emoji
//! (every 60th of the house style's list) in every style that has them, encoded and decoded; mean
//! |pixel difference| (0-255, over white) per style, and a grid (rows = styles, pairs of original and
//! reconstruction) to look at.
//!
//!     cargo run --release --example autoencoder_styles -- [models/emoji-autoencoder.safetensors] [out.png]
//!
//! Needs data/emoji (`scripts/fetch-emoji.sh`).

use std::collections::BTreeMap;

use pmg::PmgDevice;
use pmg::diffusion::{AutoencoderConfig, images_tensor, to_images};
use pmg::image::Image;
use pmg::tensor_io::Weights;
use pmg_train::EmojiData;

fn main() -> pmg::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "models/emoji-autoencoder.safetensors".into());
    let out = std::env::args().nth(2).unwrap_or_else(|| "autoencoder-styles.png".into());
    let dev = PmgDevice::cpu().device;
    let bytes = std::fs::read(&path).map_err(|source| pmg::Error::Io { path: path.clone(), source })?;
    let w = Weights::from_bytes(&path, &bytes)?;
    let (cfg, _scale) = AutoencoderConfig::from_weights(&w, &path)?;
    let (enc, dec) = (cfg.load_encoder(&w, &path, &dev)?, cfg.load_decoder(&w, &path, &dev)?);
    let data = EmojiData::load(std::path::Path::new("data/emoji"))?;
    let house: Vec<usize> = data
        .house("train")
        .into_iter()
        .filter(|&i| data.records[i].id == data.records[i].base.to_lowercase())
        .collect();
    let bases: Vec<&str> = house.iter().step_by(60).take(24).map(|&i| data.records[i].base.as_str()).collect();
    let mut by_style: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in data.records.iter().enumerate() {
        if r.id == r.base.to_lowercase() && bases.contains(&r.base.as_str()) {
            by_style.entry(r.style.as_str()).or_default().push(i);
        }
    }
    let mut cells = Vec::new();
    println!("{path}: mean |pixel difference| (0-255, over white) of the reconstruction, per style");
    for (style, idx) in &by_style {
        let originals: Vec<Image> = idx.iter().map(|&i| data.image(i)).collect();
        let refs: Vec<&Image> = originals.iter().collect();
        let x = dec.forward(enc.forward(images_tensor(&refs, &dev)));
        let recon = to_images(&pmg::device::read_f32(x)?, idx.len());
        // Over white: a transparent pixel's colour is arbitrary in straight RGBA.
        let white = |i: &Image| i.over([255, 255, 255]);
        let err: f64 = originals
            .iter()
            .zip(&recon)
            .map(|(a, b)| (white(a), white(b)))
            .map(|(a, b)| {
                a.rgba.iter().zip(&b.rgba).map(|(p, q)| (*p as f64 - *q as f64).abs()).sum::<f64>()
                    / a.rgba.len() as f64
            })
            .sum::<f64>()
            / idx.len() as f64;
        println!("  {style:<20} {:>2} images  {err:.2}", idx.len());
        for k in 0..8 {
            match (originals.get(k), recon.get(k)) {
                (Some(a), Some(b)) => cells.extend([a.over([255, 255, 255]), b.over([255, 255, 255])]),
                _ => cells.extend([
                    Image { width: 64, height: 64, rgba: vec![255; 64 * 64 * 4] },
                    Image { width: 64, height: 64, rgba: vec![255; 64 * 64 * 4] },
                ]),
            }
        }
    }
    std::fs::write(&out, Image::grid(&cells, 16, 2, [200, 200, 200]).encode_png())
        .map_err(|source| pmg::Error::Io { path: out.clone(), source })?;
    println!("wrote {out} (rows: {})", by_style.keys().copied().collect::<Vec<_>>().join(", "));
    Ok(())
}
