//! The independent judge: a concept classifier over every base emoji, for evaluation only.
//!
//! Trained by `eval/judge/train.py` (PyTorch) on every non-share-alike style, held-out concepts
//! included, and frozen under `eval/judge/`; see its README for its own accuracy. Nothing in the
//! product, in training or in candidate selection reads it: it measures what the generator draws.
//! The export has BatchNorm folded into the convolutions, so the network here is convolutions,
//! ReLU, a mean pool and a linear head; `crates/pmg-train/tests/judge.rs` matches PyTorch's logits.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use pmg::device::read_f32;
use pmg::error::{Error, Result};
use pmg::image::Image;
use pmg::tensor_io::Weights;

struct Conv {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: usize,
    pad: usize,
}

impl Conv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv2d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            ConvOptions::new([self.stride; 2], [self.pad; 2], [1, 1], 1),
        )
    }
}

struct Block {
    conv1: Conv,
    conv2: Conv,
    proj: Option<Conv>,
}

/// One of the judge's guesses.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Guess {
    /// The base emoji's code points as emoji.json writes them (`1F355`).
    pub code: String,
    pub name: String,
    pub probability: f32,
}

/// What the file says about the judge itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JudgeInfo {
    pub version: String,
    pub unseen_style: String,
    pub unseen_top1: f64,
    pub unseen_top5: f64,
    pub train_styles: Vec<String>,
}

pub struct Judge {
    size: usize,
    stem: Conv,
    blocks: Vec<Block>,
    head_w: Tensor<2>,
    head_b: Tensor<1>,
    pub classes: Vec<String>,
    pub names: Vec<String>,
    pub info: JudgeInfo,
    device: Device,
}

impl Judge {
    pub fn from_bytes(file: &str, bytes: &[u8], device: &Device) -> Result<Self> {
        let w = Weights::from_bytes(file, bytes)?;
        let bad = |p: String| Error::Weights { file: file.to_string(), problem: p };
        if w.meta("format") != Some("pmg-judge") {
            return Err(bad("not a pmg judge (metadata `format` is not `pmg-judge`)".into()));
        }
        let json = |key: &str| -> Result<serde_json::Value> {
            let s = w.meta(key).ok_or_else(|| bad(format!("no `{key}` metadata")))?;
            serde_json::from_str(s).map_err(|e| bad(format!("metadata `{key}`: {e}")))
        };
        let list = |key: &str| -> Result<Vec<String>> {
            serde_json::from_value(json(key)?).map_err(|e| bad(format!("metadata `{key}`: {e}")))
        };
        let classes = list("classes")?;
        let names = list("names")?;
        let strides: Vec<usize> =
            serde_json::from_value(json("strides")?).map_err(|e| bad(format!("metadata `strides`: {e}")))?;
        let size: usize =
            w.meta("size").and_then(|s| s.parse().ok()).ok_or_else(|| bad("no `size` metadata".into()))?;
        if names.len() != classes.len() || strides.iter().any(|&s| s == 0 || s > 2) || size == 0 {
            return Err(bad("inconsistent metadata".into()));
        }
        let conv = |name: &str, stride: usize, cin: Option<usize>| -> Result<Conv> {
            let weight = w.get(file, &format!("{name}.weight"))?;
            let bias = w.get(file, &format!("{name}.bias"))?;
            let [o, i, kh, kw] = weight.shape[..] else { return Err(bad(format!("{name}.weight is not 4-d"))) };
            if kh != kw || kh % 2 == 0 || bias.shape != [o] || cin.is_some_and(|c| c != i) {
                return Err(bad(format!("{name}: shape {:?} / bias {:?} does not fit", weight.shape, bias.shape)));
            }
            Ok(Conv {
                weight: Tensor::from_data(TensorData::new(weight.data.clone(), [o, i, kh, kw]), device),
                bias: Tensor::from_data(TensorData::new(bias.data.clone(), [o]), device),
                stride,
                pad: kh / 2,
            })
        };
        let out_of = |c: &Conv| c.weight.dims()[0];
        let stem = conv("stem", 2, Some(3))?;
        let mut width = out_of(&stem);
        let mut blocks = Vec::new();
        for (i, &s) in strides.iter().enumerate() {
            let conv1 = conv(&format!("blocks.{i}.conv1"), s, Some(width))?;
            let conv2 = conv(&format!("blocks.{i}.conv2"), 1, Some(out_of(&conv1)))?;
            let proj = if w.tensors.contains_key(&format!("blocks.{i}.proj.weight")) {
                Some(conv(&format!("blocks.{i}.proj"), s, Some(width))?)
            } else {
                None
            };
            if out_of(&conv2) != out_of(&conv1)
                || proj.as_ref().is_some_and(|p| out_of(p) != out_of(&conv1))
                || (proj.is_none() && (s != 1 || out_of(&conv1) != width))
            {
                return Err(bad(format!("block {i}: widths do not fit")));
            }
            width = out_of(&conv1);
            blocks.push(Block { conv1, conv2, proj });
        }
        let hw = w.get(file, "head.weight")?;
        let hb = w.get(file, "head.bias")?;
        if hw.shape != [classes.len(), width] || hb.shape != [classes.len()] {
            return Err(bad(format!("head {:?} does not fit {} classes of width {width}", hw.shape, classes.len())));
        }
        let f = |key: &str| json(key).ok().and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        let info = JudgeInfo {
            version: w.meta("version").unwrap_or("?").to_string(),
            unseen_style: w.meta("unseen_style").unwrap_or("?").to_string(),
            unseen_top1: f("unseen_top1"),
            unseen_top5: f("unseen_top5"),
            train_styles: json("train_styles").ok().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default(),
        };
        Ok(Judge {
            size,
            stem,
            blocks,
            head_w: Tensor::from_data(TensorData::new(hw.data.clone(), [classes.len(), width]), device),
            head_b: Tensor::from_data(TensorData::new(hb.data.clone(), [classes.len()]), device),
            classes,
            names,
            info,
            device: device.clone(),
        })
    }

    /// The judge's input: straight RGBA over white, in [-1, 1], `size`x`size`. Images that are an
    /// integer multiple of that size (`pmg image --scale 4`) are box-averaged down first
    /// (premultiplied, so transparent pixels bring no colour).
    pub fn input(&self, img: &Image) -> Result<Vec<f32>> {
        let s = self.size;
        if img.width != img.height || !img.width.is_multiple_of(s) || img.width == 0 {
            return Err(Error::Image(format!(
                "the judge reads {s}x{s} images (or a multiple); got {}x{}",
                img.width, img.height
            )));
        }
        let k = img.width / s;
        let mut out = vec![0.0f32; 3 * s * s];
        for y in 0..s {
            for x in 0..s {
                let mut acc = [0.0f32; 4];
                for dy in 0..k {
                    for dx in 0..k {
                        let p = &img.rgba[((y * k + dy) * img.width + x * k + dx) * 4..][..4];
                        let a = p[3] as f32 / 255.0;
                        for c in 0..3 {
                            acc[c] += p[c] as f32 / 255.0 * a;
                        }
                        acc[3] += a;
                    }
                }
                let n = (k * k) as f32;
                let a = acc[3] / n;
                for c in 0..3 {
                    out[c * s * s + y * s + x] = (acc[c] / n + (1.0 - a)) * 2.0 - 1.0;
                }
            }
        }
        Ok(out)
    }

    /// Logits `[n][classes]`, in batches of 128.
    pub fn logits(&self, images: &[Image]) -> Result<Vec<Vec<f32>>> {
        let s = self.size;
        let mut out = Vec::with_capacity(images.len());
        for chunk in images.chunks(128) {
            let mut data = Vec::with_capacity(chunk.len() * 3 * s * s);
            for img in chunk {
                data.extend(self.input(img)?);
            }
            let mut h = Tensor::<4>::from_data(TensorData::new(data, [chunk.len(), 3, s, s]), &self.device);
            h = burn::tensor::activation::relu(self.stem.forward(h));
            for b in &self.blocks {
                let y = burn::tensor::activation::relu(b.conv1.forward(h.clone()));
                let y = b.conv2.forward(y);
                let skip = match &b.proj {
                    Some(p) => p.forward(h),
                    None => h,
                };
                h = burn::tensor::activation::relu(y + skip);
            }
            let [n, c, hh, ww] = h.dims();
            let pooled: Tensor<2> = h.reshape([n, c, hh * ww]).mean_dim(2).reshape([n, c]);
            let logits = pooled.matmul(self.head_w.clone().transpose()) + self.head_b.clone().unsqueeze::<2>();
            let flat = read_f32(logits)?;
            out.extend(flat.chunks(self.classes.len()).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    /// Class probabilities `[n][classes]`.
    pub fn probabilities(&self, images: &[Image]) -> Result<Vec<Vec<f32>>> {
        Ok(self.logits(images)?.into_iter().map(|l| softmax(&l)).collect())
    }

    /// The `k` most probable concepts of each image.
    pub fn top(&self, images: &[Image], k: usize) -> Result<Vec<Vec<Guess>>> {
        Ok(self.probabilities(images)?.iter().map(|p| self.guesses(p, k)).collect())
    }

    pub fn guesses(&self, probs: &[f32], k: usize) -> Vec<Guess> {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        order
            .into_iter()
            .take(k)
            .map(|i| Guess { code: self.classes[i].clone(), name: self.names[i].clone(), probability: probs[i] })
            .collect()
    }

    /// The index of a base emoji's class (`1F355`, any case).
    pub fn class_of(&self, base: &str) -> Option<usize> {
        self.classes.iter().position(|c| c.eq_ignore_ascii_case(base))
    }
}

/// 1-based rank of class `c` in `probs` (1 = the judge's first guess).
pub fn rank(probs: &[f32], c: usize) -> usize {
    1 + probs.iter().filter(|&&p| p > probs[c]).count()
}

fn softmax(l: &[f32]) -> Vec<f32> {
    let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = l.iter().map(|&x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}
