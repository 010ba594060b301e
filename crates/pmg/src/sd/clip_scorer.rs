//! A standard CLIP (transformers `CLIPModel`, e.g. openai/clip-vit-base-patch32) as PMG's
//! image-text scorer, from the files of its folder (issue 21): the model, its tokenizer, and its
//! image preprocessing as transformers' `CLIPImageProcessor` runs it on the PIL backend
//! (transformers `models/clip/image_processing_pil_clip.py`, `image_processing_backends.py`
//! `PilBackend`, `image_transforms.py`): to RGB over white, a bicubic resize of the shortest edge,
//! a center crop, rescale, normalise. Pillow's resampler is reproduced on the host in 8-bit fixed
//! point, so the crops match transformers' exactly. Every file is read by its path ([`FILES`]), so
//! a directory (natively) and files fetched one by one (the browser) load the same way.
//! `tests/clip_scorer.rs` matches transformers on a tiny random checkpoint.

use std::borrow::Cow;
use std::ops::Range;

use burn::tensor::{Tensor, TensorData};
use serde_json::Value;

use super::clip_model::{ClipConfig, ClipModel};
#[cfg(not(target_family = "wasm"))]
use super::folder::read_dir_file;
use super::folder::{ReadFile, clip_tokenizer, need, open, read_bytes, utf8};
use crate::device::PmgDevice;
use crate::error::{Error, Result};
use crate::image::Image;
use crate::tensor_io::SafetensorsView;
use crate::tokenizer::clip::{ClipTokenizer, MAX_LENGTH};

/// The files of a transformers CLIP folder the scorer reads. The tokenizer is `tokenizer.json`
/// (transformers 5) or else `vocab.json` + `merges.txt`; `tokenizer_config.json` (the padding
/// token) and `preprocessor_config.json` (else CLIP's defaults) are optional.
pub const FILES: &[&str] = &[CONFIG, WEIGHTS, TOKENIZER_JSON, VOCAB, MERGES, TOKENIZER_CONFIG, PREPROCESSOR];
const CONFIG: &str = "config.json";
const WEIGHTS: &str = "model.safetensors";
const TOKENIZER_JSON: &str = "tokenizer.json";
const VOCAB: &str = "vocab.json";
const MERGES: &str = "merges.txt";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
const PREPROCESSOR: &str = "preprocessor_config.json";

/// transformers' `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`, Python floats rounded to f32 as numpy's
/// `normalize` rounds them.
const CLIP_MEAN: [f32; 3] = [0.48145466f64 as f32, 0.4578275f64 as f32, 0.40821073f64 as f32];
const CLIP_STD: [f32; 3] = [0.26862954f64 as f32, 0.26130258f64 as f32, 0.27577711f64 as f32];
/// The largest side a preprocessing config may ask for.
const MAX_SIDE: usize = 8192;

/// CLIP's image preprocessing (a `preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// The shortest edge after the resize (the other keeps the aspect ratio).
    pub shortest_edge: usize,
    /// The center crop, `[height, width]`.
    pub crop: [usize; 2],
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Applied to the 8-bit levels before normalising (1/255).
    pub rescale: f32,
}

impl Default for Preprocess {
    /// `CLIPImageProcessor`'s defaults.
    fn default() -> Self {
        Preprocess { shortest_edge: 224, crop: [224, 224], mean: CLIP_MEAN, std: CLIP_STD, rescale: 1.0 / 255.0 }
    }
}

fn bad(what: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("{PREPROCESSOR}: {what}"))
}

fn side(v: &Value, key: &str) -> Result<usize> {
    v.as_u64()
        .map(|s| s as usize)
        .filter(|s| (1..=MAX_SIDE).contains(s))
        .ok_or_else(|| bad(format!("`{key}` {v} is not a side in 1..={MAX_SIDE}")))
}

/// A mean or std: three numbers, or one for all channels.
fn triple(v: &Value, key: &str) -> Result<[f32; 3]> {
    let one = |x: &Value| x.as_f64().map(|x| x as f32).filter(|x| x.is_finite());
    let t = match v {
        Value::Array(a) if a.len() == 3 => [one(&a[0]), one(&a[1]), one(&a[2])],
        x => [one(x); 3],
    };
    match t {
        [Some(a), Some(b), Some(c)] => Ok([a, b, c]),
        _ => Err(bad(format!("`{key}` {v} is not 3 finite numbers"))),
    }
}

impl Preprocess {
    /// From a `preprocessor_config.json`: `size` as `{"shortest_edge": n}` or a bare `n` (older
    /// configs, which transformers' `get_size_dict` reads the same way), `crop_size` as
    /// `{"height", "width"}` or a bare side. What this preprocessing cannot follow (no resize or no
    /// crop, another resampling filter, a fixed `height` x `width` resize) is an error.
    pub fn from_json(text: &str) -> Result<Self> {
        let v: Value = serde_json::from_str(text).map_err(bad)?;
        let d = Preprocess::default();
        let flag = |key: &str| v.get(key).and_then(Value::as_bool).unwrap_or(true);
        if !flag("do_resize") || !flag("do_center_crop") {
            return Err(bad("only configs that resize and center-crop are supported"));
        }
        if let Some(r) = v.get("resample").filter(|r| r.as_u64() != Some(3)) {
            return Err(bad(format!("resample {r}: only bicubic (3) is supported")));
        }
        let shortest_edge = match v.get("size") {
            None => d.shortest_edge,
            Some(s @ Value::Number(_)) => side(s, "size")?,
            Some(s) => match (s.get("shortest_edge"), s.get("longest_edge"), s.get("height")) {
                (Some(e), None, None) => side(e, "size.shortest_edge")?,
                _ => return Err(bad(format!("size {s}: only `shortest_edge` is supported"))),
            },
        };
        let crop = match v.get("crop_size") {
            None => d.crop,
            Some(s @ Value::Number(_)) => [side(s, "crop_size")?; 2],
            Some(s) => match (s.get("height"), s.get("width")) {
                (Some(h), Some(w)) => [side(h, "crop_size.height")?, side(w, "crop_size.width")?],
                _ => return Err(bad(format!("crop_size {s}: `height` and `width` expected"))),
            },
        };
        let (mut mean, mut std) = (d.mean, d.std);
        if flag("do_normalize") {
            if let Some(m) = v.get("image_mean") {
                mean = triple(m, "image_mean")?;
            }
            if let Some(s) = v.get("image_std") {
                std = triple(s, "image_std")?;
            }
        } else {
            (mean, std) = ([0.0; 3], [1.0; 3]);
        }
        let rescale = match (flag("do_rescale"), v.get("rescale_factor")) {
            (false, _) => 1.0,
            (true, None) => d.rescale,
            (true, Some(f)) => f.as_f64().map(|f| f as f32).ok_or_else(|| bad(format!("rescale_factor {f}")))?,
        };
        let p = Preprocess { shortest_edge, crop, mean, std, rescale };
        p.validate()?;
        Ok(p)
    }

    pub fn validate(&self) -> Result<()> {
        let sides = [self.shortest_edge, self.crop[0], self.crop[1]];
        let sane = sides.iter().all(|s| (1..=MAX_SIDE).contains(s))
            && self.mean.iter().all(|m| m.is_finite())
            && self.std.iter().all(|s| s.is_finite() && *s != 0.0)
            && self.rescale.is_finite();
        if !sane {
            return Err(bad(format!("unusable preprocessing {self:?}")));
        }
        Ok(())
    }

    /// `[height, width]` after the resize: transformers' `get_resize_output_image_size` with
    /// `default_to_square=False` (the long side `int(shortest_edge * long / short)`).
    pub fn resized_size(&self, height: usize, width: usize) -> [usize; 2] {
        let (short, long) = if width <= height { (width, height) } else { (height, width) };
        let s = self.shortest_edge;
        let new_long = (s as f64 * long as f64 / short as f64) as usize;
        if width <= height { [new_long, s] } else { [s, new_long] }
    }

    /// The image as the model's crop sees it, in 8-bit levels, `[crop_h, crop_w, 3]` row-major:
    /// over white, resized, center-cropped (zero-padded where the resized image is smaller).
    pub fn crop_rgb(&self, image: &Image) -> Result<Vec<u8>> {
        self.validate()?;
        let (w, h) = (image.width, image.height);
        if w == 0 || h == 0 || w.checked_mul(h).and_then(|n| n.checked_mul(4)) != Some(image.rgba.len()) {
            return Err(Error::Image(format!("a {w}x{h} image with {} bytes of RGBA", image.rgba.len())));
        }
        let rgb = over_white(&image.rgba);
        let [nh, nw] = self.resized_size(h, w);
        let [ch, cw] = self.crop;
        let (oy, ox) = (crop_offset(nh, ch), crop_offset(nw, cw));
        let (rows, cols) = (kept(nh, ch, oy), kept(nw, cw, ox));
        let block = resample_bicubic(&rgb, [h, w], [nh, nw], rows.clone(), cols.clone());
        let mut out = vec![0u8; ch * cw * 3];
        let n = cols.len() * 3;
        for (i, r) in rows.enumerate() {
            let y = (r as isize - oy) as usize;
            let x = (cols.start as isize - ox) as usize;
            out[(y * cw + x) * 3..][..n].copy_from_slice(&block[i * n..][..n]);
        }
        Ok(out)
    }

    /// CLIP's `pixel_values` of one image, `[3, crop_h, crop_w]`.
    pub fn pixel_values(&self, image: &Image) -> Result<Vec<f32>> {
        let rgb = self.crop_rgb(image)?;
        let n = self.crop[0] * self.crop[1];
        // numpy's `rescale` multiplies in f64 by the config's 1/255 (a Python float) and casts to
        // f32; recover that f64 for the usual factor so the values agree to the bit.
        let scale = if self.rescale == (1.0f64 / 255.0) as f32 { 1.0 / 255.0 } else { f64::from(self.rescale) };
        let mut out = vec![0f32; 3 * n];
        for c in 0..3 {
            let (m, s) = (self.mean[c], self.std[c]);
            for (o, p) in out[c * n..][..n].iter_mut().zip(rgb.chunks_exact(3)) {
                *o = ((f64::from(p[c]) * scale) as f32 - m) / s;
            }
        }
        Ok(out)
    }
}

/// RGBA drawn over opaque white, as transformers' `convert_to_rgb` does it for a PIL image with
/// alpha (`PIL.Image.alpha_composite` onto white, then `convert("RGB")`), in Pillow's integer
/// arithmetic (`src/libImaging/AlphaComposite.c`, 7 fraction bits); opaque pixels are unchanged.
fn over_white(rgba: &[u8]) -> Vec<u8> {
    const BITS: u32 = 7;
    let div255 = |a: u32| ((a >> 8) + a) >> 8; // Pillow's SHIFTFORDIV255
    let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
    for p in rgba.chunks_exact(4) {
        let a = u32::from(p[3]);
        if a == 0 {
            out.extend_from_slice(&[255; 3]);
            continue;
        }
        // The background is opaque: blend = 255 * (255 - a).
        let outa255 = a * 255 + 255 * (255 - a);
        let coef1 = a * 255 * 255 * (1 << BITS) / outa255;
        let coef2 = 255 * (1 << BITS) - coef1;
        for &c in &p[..3] {
            let t = u32::from(c) * coef1 + 255 * coef2;
            out.push((div255(t + (0x80 << BITS)) >> BITS) as u8);
        }
    }
    out
}

/// Where the crop starts in the resized image along one axis (transformers' `center_crop`):
/// `(size - crop) // 2` inside it, or the negative padding `ceil((crop - size) / 2)` when smaller.
fn crop_offset(size: usize, crop: usize) -> isize {
    if size >= crop { ((size - crop) / 2) as isize } else { -((crop - size).div_ceil(2) as isize) }
}

/// The resized image's indices the crop keeps along one axis.
fn kept(size: usize, crop: usize, offset: isize) -> Range<usize> {
    offset.max(0) as usize..((offset + crop as isize) as usize).min(size)
}

/// Pillow's fixed-point fraction bits for 8-bit images (`PRECISION_BITS = 32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel with `a = -0.5` (`bicubic_filter` in `src/libImaging/Resample.c`; the
/// operations in its order, so the weights agree to the bit).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// One output sample's taps: its first input index and fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i64>,
}

/// The taps of the outputs `out` of an `in_size` -> `out_size` resize along one axis (Pillow's
/// `precompute_coeffs` and `normalize_coeffs_8bpc`): a downscale widens the kernel by the scale
/// (antialiasing); the weights are normalised to sum 1, then rounded to `PRECISION_BITS`.
fn taps(in_size: usize, out_size: usize, out: Range<usize>) -> Vec<Taps> {
    let scale = in_size as f32 as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let inv = 1.0 / filterscale;
    let one = f64::from(1u32 << PRECISION_BITS);
    out.map(|xx| {
        let center = (xx as f64 + 0.5) * scale;
        // C's `(int)` truncates toward zero, as `as` does.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
        let mut k: Vec<f64> = (xmin..xmax.max(xmin)).map(|x| bicubic((x as f64 - center + 0.5) * inv)).collect();
        let ww: f64 = k.iter().sum();
        if ww != 0.0 {
            k.iter_mut().for_each(|w| *w /= ww);
        }
        let weights =
            k.iter().map(|&w| if w < 0.0 { (-0.5 + w * one) as i64 } else { (0.5 + w * one) as i64 }).collect();
        Taps { first: xmin, weights }
    })
    .collect()
}

/// One fixed-point sum to a level (Pillow's `clip8` after the `1 << (PRECISION_BITS - 1)` bias).
fn level(sum: i64) -> u8 {
    ((sum + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS).clamp(0, 255) as u8
}

/// The input indices a pass's taps read.
fn span(taps: &[Taps]) -> Range<usize> {
    let first = taps.iter().map(|t| t.first).min().unwrap_or(0);
    let last = taps.iter().map(|t| t.first + t.weights.len()).max().unwrap_or(first);
    first..last
}

/// A block `rows` x `cols` of an RGB image (its own coordinates), row-major.
struct Block<'a> {
    px: Cow<'a, [u8]>,
    rows: Range<usize>,
    cols: Range<usize>,
}

impl Block<'_> {
    fn at(&self, r: usize, c: usize) -> usize {
        ((r - self.rows.start) * self.cols.len() + c - self.cols.start) * 3
    }

    /// The block `rows` x `cols` whose level at `(r, c, channel)` is `f(r, c, channel)`.
    fn map(rows: Range<usize>, cols: Range<usize>, mut f: impl FnMut(usize, usize, usize) -> u8) -> Block<'static> {
        let mut px = Vec::with_capacity(rows.len() * cols.len() * 3);
        for r in rows.clone() {
            for c in cols.clone() {
                px.extend((0..3).map(|ch| f(r, c, ch)));
            }
        }
        Block { px: Cow::Owned(px), rows, cols }
    }

    fn crop(&self, rows: Range<usize>, cols: Range<usize>) -> Block<'static> {
        Block::map(rows, cols, |r, c, ch| self.px[self.at(r, c) + ch])
    }

    /// Pillow's `ImagingResampleHorizontal_8bpc`: the outputs `cols` (`taps` from `cols.start`)
    /// of the rows `rows`.
    fn horizontal(&self, taps: &[Taps], rows: Range<usize>, cols: Range<usize>) -> Block<'static> {
        let c0 = cols.start;
        Block::map(rows, cols, |r, c, ch| {
            let t = &taps[c - c0];
            let base = self.at(r, t.first) + ch;
            level(t.weights.iter().enumerate().map(|(i, k)| i64::from(self.px[base + 3 * i]) * k).sum())
        })
    }

    /// Pillow's `ImagingResampleVertical_8bpc`: the outputs `rows` (`taps` from `rows.start`) of
    /// the columns `cols`.
    fn vertical(&self, taps: &[Taps], rows: Range<usize>, cols: Range<usize>) -> Block<'static> {
        let (r0, stride) = (rows.start, self.cols.len() * 3);
        Block::map(rows, cols, |r, c, ch| {
            let t = &taps[r - r0];
            let base = self.at(t.first, c) + ch;
            level(t.weights.iter().enumerate().map(|(i, k)| i64::from(self.px[base + stride * i]) * k).sum())
        })
    }
}

/// Pillow's `ImagingResample` with `BICUBIC` of an RGB image `[h, w, 3]` to `[nh, nw]`, evaluated
/// only at the output `rows` x `cols` (`[rows, cols, 3]`): two passes, each rounded to 8 bits and
/// skipped where that side keeps its size. Pillow 13's `ImagingResampleInner` runs the vertical
/// pass first when the height shrinks by more than twice as many pixels as the width (earlier
/// Pillow always ran the horizontal pass first; the order moves some levels by 1). Every output
/// depends only on its own taps, so the block equals that part of the whole resize.
fn resample_bicubic(
    rgb: &[u8],
    [h, w]: [usize; 2],
    [nh, nw]: [usize; 2],
    rows: Range<usize>,
    cols: Range<usize>,
) -> Vec<u8> {
    let src = Block { px: Cow::Borrowed(rgb), rows: 0..h, cols: 0..w };
    let hz = (nw != w).then(|| taps(w, nw, cols.clone()));
    let vt = (nh != h).then(|| taps(h, nh, rows.clone()));
    // The input columns the horizontal pass reads, the input rows the vertical pass reads.
    let hz_in = hz.as_deref().map_or(cols.clone(), span);
    let vt_in = vt.as_deref().map_or(rows.clone(), span);
    let vertical_first = h > nh && (h - nh) as i64 > 2 * (w as i64 - nw as i64);
    let out = if vertical_first {
        let mid = match &vt {
            Some(t) => src.vertical(t, rows.clone(), hz_in),
            None => src.crop(rows.clone(), hz_in),
        };
        match &hz {
            Some(t) => mid.horizontal(t, rows, cols),
            None => mid.crop(rows, cols),
        }
    } else {
        let mid = match &hz {
            Some(t) => src.horizontal(t, vt_in, cols.clone()),
            None => src.crop(vt_in, cols.clone()),
        };
        match &vt {
            Some(t) => mid.vertical(t, rows, cols),
            None => mid.crop(rows, cols),
        }
    };
    out.px.into_owned()
}

/// Rows scaled to unit length (transformers' `CLIPModel` returns its embeddings so).
fn unit(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt();
    x.div(norm)
}

pub struct ClipScorer {
    pub model: ClipModel,
    pub tokenizer: ClipTokenizer,
    pub preprocess: Preprocess,
    /// The id texts are padded with (the checkpoint's `pad_token`, else the end token).
    pub pad: u32,
    pub device: PmgDevice,
}

impl ClipScorer {
    /// From a CLIP folder's files, each read by its path in [`FILES`] (`read` answers `Ok(None)`
    /// for a file the folder lacks).
    pub fn from_files(read: &mut ReadFile<'_>, device: &PmgDevice) -> Result<Self> {
        let preprocess = match read_bytes(read, PREPROCESSOR)? {
            Some(b) => Preprocess::from_json(utf8(PREPROCESSOR, &b)?)?,
            None => Preprocess::default(),
        };
        let (tokenizer, pad) = clip_tokenizer(read, "CLIP", "")?;
        let mut need = |path: &str| need(read, "CLIP", path);
        let config = ClipConfig::from_json(utf8(CONFIG, &need(CONFIG)?)?)?;
        let (t, v) = (&config.text_config, &config.vision_config);
        if [tokenizer.bos, tokenizer.eos, pad].iter().any(|&id| id as usize >= t.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "the tokenizer's special ids (start {}, end {}, pad {pad}) exceed the text model's vocabulary ({})",
                tokenizer.bos, tokenizer.eos, t.vocab_size
            )));
        }
        // 2 is transformers' legacy "highest id" (see `ClipTextConfig::eos_token_id`).
        if t.eos_token_id != 2 && t.eos_token_id != tokenizer.eos {
            return Err(Error::InvalidArgument(format!(
                "{CONFIG} pools at end token {}, the tokenizer ends with {}",
                t.eos_token_id, tokenizer.eos
            )));
        }
        if v.num_channels != 3 || preprocess.crop != [v.image_size; 2] {
            return Err(Error::InvalidArgument(format!(
                "{PREPROCESSOR} crops {}x{} RGB, the vision model reads {s}x{s} with {} channels",
                preprocess.crop[0],
                preprocess.crop[1],
                v.num_channels,
                s = v.image_size
            )));
        }
        let file = open(read, "CLIP", WEIGHTS)?;
        let model =
            ClipModel::from_weights(config, &SafetensorsView::parse(WEIGHTS, file.as_ref())?, WEIGHTS, &device.device)?;
        Ok(ClipScorer { model, tokenizer, preprocess, pad, device: device.clone() })
    }

    /// From a folder on disk.
    #[cfg(not(target_family = "wasm"))]
    pub fn from_dir(dir: &std::path::Path, device: &PmgDevice) -> Result<Self> {
        Self::from_files(&mut |f| read_dir_file(dir, f), device)
    }

    /// CLIP's `pixel_values` of the images, `[b, 3, crop_h, crop_w]` on the device (see
    /// [`Preprocess`]; transparency is drawn over white, as transformers does).
    pub fn pixels(&self, images: &[&Image]) -> Result<Tensor<4>> {
        if images.is_empty() {
            return Err(Error::InvalidArgument("CLIP pixels of no images".into()));
        }
        let [h, w] = self.preprocess.crop;
        let mut v = Vec::with_capacity(images.len() * 3 * h * w);
        for im in images {
            v.extend(self.preprocess.pixel_values(im)?);
        }
        Ok(Tensor::<4>::from_data(TensorData::new(v, [images.len(), 3, h, w]), &self.device.device))
    }

    /// Unit-length image embeddings `[b, projection_dim]` on the device.
    pub fn image_features(&self, images: &[&Image]) -> Result<Tensor<2>> {
        Ok(unit(self.model.image_embeds(self.pixels(images)?)?))
    }

    /// Unit-length text embeddings `[b, projection_dim]` on the device. Each text is padded with
    /// [`Self::pad`] to the text model's context (77), as `CLIPProcessor(padding="max_length")`
    /// makes it (truncated keeping the end token); the pooled token is the end token, which the
    /// causal attention keeps from seeing the padding, so padding does not change the result.
    pub fn text_features(&self, texts: &[&str]) -> Result<Tensor<2>> {
        if texts.is_empty() {
            return Err(Error::InvalidArgument("CLIP text features of no texts".into()));
        }
        let len = MAX_LENGTH.min(self.model.config.text_config.max_position_embeddings);
        let ids = texts.iter().map(|t| self.tokenizer.encode_padded(t, len, self.pad)).collect::<Result<Vec<_>>>()?;
        Ok(unit(self.model.text_embeds(&ids)?))
    }
}
