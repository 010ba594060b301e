//! A whole SD 1.x/2.x checkpoint in one GGUF file, as stable-diffusion.cpp's `sd-cli -M convert`
//! writes it (its `src/convert.cpp`): no metadata, no configs, no tokenizer; the UNet, the
//! autoencoder and CLIP's text encoder under the names of the checkpoint it was converted from:
//! the original (CompVis/LDM) names `model.diffusion_model.*`, `first_stage_model.*` and
//! `cond_stage_model.*` (OpenAI CLIP in transformers' names for SD 1.x, OpenCLIP's for SD 2.x;
//! `--convert-name` gives transformers' names with OpenCLIP's fused `in_proj`), or diffusers'
//! names under `unet.`, `vae.` and `te.` when converted from a diffusers folder. Weights of
//! linear layers (and 1-d norms) whose rows are whole 32-value blocks are Q8_0/Q4_0/...; the rest
//! (convolutions, biases, embeddings, the time embedding) f16 or f32
//! (`ModelLoader::tensor_should_be_converted`).
//!
//! Here the names are mapped to diffusers' (the inverse of diffusers'
//! `scripts/convert_diffusers_to_original_stable_diffusion.py`, which sd.cpp's
//! `src/name_conversion.cpp` follows), the configs are inferred from the tensors' shapes, and
//! each model reads its tensors through [`TensorSource`]: quantized matrices stay in their blocks
//! (multiplied by pmg's kernels), everything else is decoded to f32 a tensor at a time. What
//! shapes cannot tell follows SD's family, told apart as sd.cpp does by the UNet: SD 2.x projects
//! into its transformers with linear layers (SD 1.x with 1x1 convolutions), has 64-wide attention
//! heads (SD 1.x: 8 heads per block) and OpenCLIP ViT-H's GELU text tower whose penultimate layer
//! it conditions on, and pads prompts with `!`.

use std::collections::BTreeMap;

use half::{bf16, f16};

use crate::bytes::ByteSource;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufIndex, quant};
use crate::kernels::QMatrix;
use crate::tensor_io::TensorSource;

/// Which SD generation a checkpoint belongs to (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Sd1,
    Sd2,
}

/// Where one diffusers-named tensor lies: a GGUF tensor, or a slice of its outermost (torch)
/// dimension (OpenCLIP's fused q/k/v projection), seen with `shape` (torch's order).
#[derive(Debug, Clone)]
struct Slot {
    tensor: usize,
    shape: Vec<usize>,
    /// First index and count along the outermost dimension.
    slice: Option<(usize, usize)>,
}

/// One model's tensors under diffusers' names.
#[derive(Debug, Default)]
pub struct Part {
    slots: BTreeMap<String, Slot>,
}

impl Part {
    /// The diffusers names this part maps.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    fn shape(&self, name: &str) -> Option<&[usize]> {
        self.slots.get(name).map(|s| s.shape.as_slice())
    }

    fn count(&self, f: impl Fn(usize) -> String) -> usize {
        (0..).take_while(|&i| self.slots.contains_key(&f(i))).count()
    }

    fn dim(&self, name: &str, axis: usize) -> Result<usize> {
        self.shape(name).and_then(|s| s.get(axis).copied()).ok_or_else(|| missing(name))
    }
}

fn missing(name: &str) -> Error {
    Error::InvalidArgument(format!("the GGUF checkpoint has no tensor that maps to `{name}`"))
}

/// The parts of a GGUF checkpoint, read from the file a tensor at a time.
pub struct GgufCheckpoint {
    pub file: String,
    src: Box<dyn ByteSource>,
    index: GgufIndex,
    pub unet: Part,
    pub vae: Part,
    pub text: Part,
    pub family: Family,
    /// The UNet predicts v (sd.cpp's convention: a `v_pred` marker tensor).
    pub v_prediction: bool,
    /// The text tower came from OpenCLIP (SD 2.x's original checkpoints): its last layer is
    /// not used.
    openclip: bool,
}

/// Which of the three models a [`PartView`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    Unet,
    Vae,
    Text,
}

impl GgufCheckpoint {
    /// Reads the header of `file` (named in errors) and maps its tensors; nothing else is read.
    pub fn read(file: &str, src: Box<dyn ByteSource>) -> Result<Self> {
        let index = GgufIndex::read(src.as_ref())?;
        let mut raw: [Vec<(String, usize)>; 3] = Default::default();
        let (mut ldm_unet, mut ldm_vae, mut openclip) = (false, false, false);
        let mut v_prediction = false;
        for (i, t) in index.tensors.iter().enumerate() {
            let n = t.name.as_str();
            let (part, rest) = if let Some(r) = n.strip_prefix("model.diffusion_model.") {
                ldm_unet |= r.starts_with("input_blocks.");
                (0, r.to_string())
            } else if let Some(r) = n.strip_prefix("unet.") {
                (0, r.to_string())
            } else if let Some(r) = n.strip_prefix("first_stage_model.").or(n.strip_prefix("vae.")) {
                ldm_vae |= r.starts_with("decoder.up.") || r.starts_with("encoder.down.");
                (1, r.to_string())
            } else if let Some(r) = n.strip_prefix("cond_stage_model.model.") {
                openclip = true;
                match openclip_name(r) {
                    Some(r) => (2, r),
                    None => continue,
                }
            } else if let Some(r) = n.strip_prefix("cond_stage_model.transformer.").or(n.strip_prefix("te.")) {
                openclip |= r.contains(".self_attn.in_proj.");
                (2, r.strip_prefix("text_model.").unwrap_or(r).to_string())
            } else {
                v_prediction |= n == "v_pred";
                continue;
            };
            raw[part].push((rest, i));
        }
        let torch_shape = |i: usize| index.tensors[i].dims.iter().rev().map(|&d| d as usize).collect::<Vec<_>>();
        let mut parts: [Part; 3] = Default::default();
        for (p, list) in raw.into_iter().enumerate() {
            for (name, i) in list {
                let shape = torch_shape(i);
                let name = match (p, ldm_unet, ldm_vae) {
                    (0, true, _) => unet_name(&name),
                    (1, _, true) => vae_name(&name),
                    _ => Some(name),
                };
                let Some(name) = name else { continue };
                for (name, slot) in split(name, i, shape) {
                    parts[p].slots.insert(name, slot);
                }
            }
        }
        let [unet, mut vae, text] = parts;
        if ldm_vae {
            // The decoder's levels are numbered from the bottom in LDM (`decoder.up.0` is the
            // last diffusers up block): renumbered once their count is known.
            let levels = vae.count(|i| format!("decoder.up.{i}.resnets.0.conv1.weight"));
            vae.slots =
                std::mem::take(&mut vae.slots).into_iter().map(|(k, v)| (ldm_decoder_level(&k, levels), v)).collect();
        }
        if unet.slots.is_empty() || text.slots.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{file}: not an SD 1.x/2.x checkpoint (stable-diffusion.cpp's names: {} UNet and {} text encoder tensors)",
                unet.slots.len(),
                text.slots.len()
            )));
        }
        let linear_projection = unet.slots.iter().any(|(k, s)| k.ends_with(".proj_in.weight") && s.shape.len() == 2);
        let family = if linear_projection { Family::Sd2 } else { Family::Sd1 };
        Ok(GgufCheckpoint { file: file.into(), src, index, unet, vae, text, family, v_prediction, openclip })
    }

    pub fn view(&self, which: Which) -> PartView<'_> {
        let part = match which {
            Which::Unet => &self.unet,
            Which::Vae => &self.vae,
            Which::Text => &self.text,
        };
        PartView { ck: self, part }
    }

    /// The UNet's `config.json`, from the shapes.
    pub fn unet_config(&self) -> Result<String> {
        let u = &self.unet;
        let levels = u.count(|i| format!("down_blocks.{i}.resnets.0.conv1.weight"));
        let widths: Vec<usize> =
            (0..levels).map(|i| u.dim(&format!("down_blocks.{i}.resnets.0.conv1.weight"), 0)).collect::<Result<_>>()?;
        let cross = |i: usize, side: &str| u.slots.contains_key(&format!("{side}.{i}.attentions.0.proj_in.weight"));
        let down: Vec<&str> =
            (0..levels).map(|i| if cross(i, "down_blocks") { "CrossAttnDownBlock2D" } else { "DownBlock2D" }).collect();
        let up: Vec<&str> =
            (0..levels).map(|i| if cross(i, "up_blocks") { "CrossAttnUpBlock2D" } else { "UpBlock2D" }).collect();
        let layers: Vec<usize> =
            (0..levels).map(|i| u.count(|j| format!("down_blocks.{i}.resnets.{j}.conv1.weight"))).collect();
        let depth: Vec<usize> = (0..levels)
            .map(|i| u.count(|k| format!("down_blocks.{i}.attentions.0.transformer_blocks.{k}.norm1.weight")).max(1))
            .collect();
        let context = u
            .slots
            .iter()
            .find(|(k, _)| k.ends_with(".attn2.to_k.weight"))
            .and_then(|(_, s)| s.shape.get(1).copied())
            .ok_or_else(|| missing("*.attn2.to_k.weight"))?;
        let heads: Vec<usize> = widths
            .iter()
            .map(|&c| match self.family {
                Family::Sd1 => 8,
                Family::Sd2 => (c / 64).max(1),
            })
            .collect();
        let mid = u.slots.contains_key("mid_block.resnets.0.conv1.weight");
        let config = serde_json::json!({
            "in_channels": u.dim("conv_in.weight", 1)?,
            "out_channels": u.dim("conv_out.weight", 0)?,
            "conv_in_kernel": u.dim("conv_in.weight", 2)?,
            "conv_out_kernel": u.dim("conv_out.weight", 2)?,
            "block_out_channels": widths,
            "down_block_types": down,
            "up_block_types": up,
            "mid_block_type": if mid { Some("UNetMidBlock2DCrossAttn") } else { None },
            "layers_per_block": layers,
            "transformer_layers_per_block": depth,
            "num_attention_heads": heads,
            "cross_attention_dim": context,
            "use_linear_projection": self.family == Family::Sd2,
            "time_embedding_dim": u.dim("time_embedding.linear_1.weight", 0)?,
        });
        Ok(config.to_string())
    }

    /// The text encoder's `config.json`, from the shapes (heads are 64 wide in both families).
    pub fn text_config(&self) -> Result<String> {
        let t = &self.text;
        let [vocab, width] = [0, 1].map(|a| t.dim("embeddings.token_embedding.weight", a));
        let width = width?;
        let layers = t.count(|i| format!("encoder.layers.{i}.layer_norm1.weight"));
        let layers = if self.openclip && layers > 1 { layers - 1 } else { layers };
        let config = serde_json::json!({
            "hidden_size": width,
            "intermediate_size": t.dim("encoder.layers.0.mlp.fc1.weight", 0)?,
            "num_attention_heads": (width / 64).max(1),
            "num_hidden_layers": layers,
            "hidden_act": if self.family == Family::Sd2 { "gelu" } else { "quick_gelu" },
            "vocab_size": vocab?,
            "max_position_embeddings": t.dim("embeddings.position_embedding.weight", 0)?,
        });
        Ok(config.to_string())
    }

    /// The autoencoder's `config.json`, from the shapes, `None` when the file has no autoencoder.
    /// SD's latent scale (0.18215) is not in the weights: every SD 1.x/2.x autoencoder uses it.
    pub fn vae_config(&self) -> Result<Option<String>> {
        let v = &self.vae;
        if v.slots.is_empty() {
            return Ok(None);
        }
        let levels = v.count(|i| format!("encoder.down_blocks.{i}.resnets.0.conv1.weight"));
        let widths: Vec<usize> = (0..levels)
            .map(|i| v.dim(&format!("encoder.down_blocks.{i}.resnets.0.conv1.weight"), 0))
            .collect::<Result<_>>()?;
        let config = serde_json::json!({
            "in_channels": v.dim("encoder.conv_in.weight", 1)?,
            "out_channels": v.dim("decoder.conv_out.weight", 0)?,
            "latent_channels": v.dim("decoder.conv_in.weight", 1)?,
            "block_out_channels": widths,
            "down_block_types": vec!["DownEncoderBlock2D"; levels],
            "up_block_types": vec!["UpDecoderBlock2D"; levels],
            "layers_per_block": v.count(|j| format!("encoder.down_blocks.0.resnets.{j}.conv1.weight")),
            "use_quant_conv": v.slots.contains_key("quant_conv.weight"),
            "use_post_quant_conv": v.slots.contains_key("post_quant_conv.weight"),
            "mid_block_add_attention": v.slots.contains_key("decoder.mid_block.attentions.0.group_norm.weight"),
        });
        Ok(Some(config.to_string()))
    }

    /// A slot's bytes as stored (the whole tensor, or its slice).
    fn raw(&self, s: &Slot) -> Result<(GgmlType, Vec<u8>)> {
        let info = &self.index.tensors[s.tensor];
        let ty = info.ggml_type;
        let (start, bytes) = match s.slice {
            None => (info.offset, info.size),
            Some((first, count)) => {
                let inner: usize = s.shape[1..].iter().product();
                let block = ty.block_size();
                if !(first * inner).is_multiple_of(block) || !(count * inner).is_multiple_of(block) {
                    return Err(Error::Weights {
                        file: self.file.clone(),
                        problem: format!("`{}`: a {ty:?} split that cuts its blocks", info.name),
                    });
                }
                let at = |n: usize| (n * inner / block * ty.type_size()) as u64;
                (info.offset + at(first), at(count))
            }
        };
        let mut out = vec![0; bytes as usize];
        self.src.read_at(start as usize, &mut out);
        Ok((ty, out))
    }
}

/// A part of a [`GgufCheckpoint`] as a source of diffusers-named tensors.
pub struct PartView<'a> {
    ck: &'a GgufCheckpoint,
    part: &'a Part,
}

impl TensorSource for PartView<'_> {
    fn shape(&self, name: &str) -> Option<&[usize]> {
        self.part.shape(name)
    }

    fn values(&self, name: &str) -> Result<Vec<f32>> {
        let s = self.part.slots.get(name).ok_or_else(|| missing(name))?;
        let (ty, raw) = self.ck.raw(s)?;
        let values: Vec<f32> = match ty {
            GgmlType::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            GgmlType::F16 => raw.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            GgmlType::BF16 => raw.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            _ => {
                let mut out = vec![0f32; raw.len() / ty.type_size() * ty.block_size()];
                quant::dequantize_row(ty, &raw, &mut out);
                out
            }
        };
        if values.iter().any(|x| !x.is_finite()) {
            let file = self.ck.file.clone();
            return Err(Error::Weights { file, problem: format!("`{name}` holds a non-finite value") });
        }
        Ok(values)
    }

    fn quantized(&self, name: &str) -> Option<Result<QMatrix>> {
        let s = self.part.slots.get(name)?;
        let info = &self.ck.index.tensors[s.tensor];
        let kernel = matches!(info.ggml_type, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1);
        let [rows, cols] = s.shape[..] else { return None };
        if !kernel || cols as u64 != info.dims[0] {
            return None;
        }
        Some(self.ck.raw(s).map(|(ty, data)| QMatrix { ty, rows, cols, data: data.into() }))
    }
}

/// The slots one mapped tensor gives: itself, or OpenCLIP's fused `in_proj` (`[3d, d]` and
/// `[3d]`) split into q, k and v; the autoencoder's 1x1-conv attention weights seen as matrices.
fn split(name: String, tensor: usize, mut shape: Vec<usize>) -> Vec<(String, Slot)> {
    if let Some(base) = name.strip_suffix(".self_attn.in_proj.weight").or(name.strip_suffix(".self_attn.in_proj.bias"))
    {
        let kind = if name.ends_with("weight") { "weight" } else { "bias" };
        let d = shape[0] / 3;
        shape[0] = d;
        return ["q_proj", "k_proj", "v_proj"]
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let slot = Slot { tensor, shape: shape.clone(), slice: Some((i * d, d)) };
                (format!("{base}.self_attn.{p}.{kind}"), slot)
            })
            .collect();
    }
    if name.contains("mid_block.attentions.0.to_") && shape.len() == 4 && shape[2..] == [1, 1] {
        shape.truncate(2);
    }
    vec![(name, Slot { tensor, shape, slice: None })]
}

/// `name` with `from` replaced by `to` at its start.
fn swap(name: &str, from: &str, to: &str) -> Option<String> {
    name.strip_prefix(from).map(|r| format!("{to}{r}"))
}

/// `"12.rest"` as `(12, "rest")`.
fn index(s: &str) -> Option<(usize, &str)> {
    let (i, rest) = s.split_once('.')?;
    Some((i.parse().ok()?, rest))
}

/// An LDM `ResBlock`'s names as diffusers' `ResnetBlock2D`'s.
fn resnet(rest: &str) -> String {
    const MAP: [(&str, &str); 6] = [
        ("in_layers.0.", "norm1."),
        ("in_layers.2.", "conv1."),
        ("out_layers.0.", "norm2."),
        ("out_layers.3.", "conv2."),
        ("emb_layers.1.", "time_emb_proj."),
        ("skip_connection.", "conv_shortcut."),
    ];
    MAP.iter().find_map(|(a, b)| swap(rest, a, b)).unwrap_or_else(|| rest.to_string())
}

/// An LDM UNet name as diffusers'. LDM numbers the blocks three per level as SD's
/// `layers_per_block = 2` makes them (distilled UNets keep the numbers and leave gaps, as sd.cpp
/// does): `input_blocks.{3i+j+1}` is down level i's layer j and `input_blocks.{3i+3}` its
/// downsampler; `output_blocks.{3i+j}` is up level i's layer j, its upsampler after the layer.
fn unet_name(n: &str) -> Option<String> {
    const FIXED: [(&str, &str); 5] = [
        ("time_embed.0.", "time_embedding.linear_1."),
        ("time_embed.2.", "time_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."),
        ("out.0.", "conv_norm_out."),
        ("out.2.", "conv_out."),
    ];
    if let Some(m) = FIXED.iter().find_map(|(a, b)| swap(n, a, b)) {
        return Some(m);
    }
    if let Some(r) = n.strip_prefix("input_blocks.") {
        let (b, r) = index(r)?;
        let (k, rest) = index(r)?;
        let b = b.checked_sub(1)?;
        let (i, j) = (b / 3, b % 3);
        return Some(match (j, k) {
            (2, 0) => format!("down_blocks.{i}.downsamplers.0.conv.{}", rest.strip_prefix("op.")?),
            (_, 0) => format!("down_blocks.{i}.resnets.{j}.{}", resnet(rest)),
            (_, 1) => format!("down_blocks.{i}.attentions.{j}.{rest}"),
            _ => return None,
        });
    }
    if let Some(r) = n.strip_prefix("middle_block.") {
        let (k, rest) = index(r)?;
        return Some(match k {
            0 | 2 => format!("mid_block.resnets.{}.{}", k / 2, resnet(rest)),
            1 => format!("mid_block.attentions.0.{rest}"),
            _ => return None,
        });
    }
    if let Some(r) = n.strip_prefix("output_blocks.") {
        let (b, r) = index(r)?;
        let (k, rest) = index(r)?;
        let (i, j) = (b / 3, b % 3);
        return Some(match k {
            0 => format!("up_blocks.{i}.resnets.{j}.{}", resnet(rest)),
            _ if rest.starts_with("conv.") => format!("up_blocks.{i}.upsamplers.0.{rest}"),
            1 => format!("up_blocks.{i}.attentions.{j}.{rest}"),
            _ => return None,
        });
    }
    None
}

/// An LDM autoencoder name as diffusers', the decoder's levels still LDM's (see
/// [`ldm_decoder_level`]).
fn vae_name(n: &str) -> Option<String> {
    let (side, r) = n.split_once('.')?;
    if !matches!(side, "encoder" | "decoder") {
        return Some(n.to_string()); // quant_conv, post_quant_conv
    }
    let vae_resnet = |rest: &str| rest.replacen("nin_shortcut.", "conv_shortcut.", 1);
    // A level `{i}` of ResNets `block.{j}` and a resampling conv `{ldm_sampler}`.
    let level = |r: &str, stem: &str, ldm_sampler: &str, sampler: &str| -> Option<String> {
        let (i, r) = index(r)?;
        Some(match r.strip_prefix("block.") {
            Some(r) => {
                let (j, rest) = index(r)?;
                format!("{stem}.{i}.resnets.{j}.{}", vae_resnet(rest))
            }
            None => format!("{stem}.{i}.{sampler}.0.{}", r.strip_prefix(ldm_sampler)?),
        })
    };
    let mapped = if let Some(r) = r.strip_prefix("down.") {
        level(r, "down_blocks", "downsample.", "downsamplers")?
    } else if let Some(r) = r.strip_prefix("up.") {
        level(r, "up", "upsample.", "upsamplers")?
    } else if let Some(r) = r.strip_prefix("mid.") {
        if let Some(r) = r.strip_prefix("block_") {
            let (k, rest) = index(r)?;
            format!("mid_block.resnets.{}.{}", k.checked_sub(1)?, vae_resnet(rest))
        } else {
            const ATTN: [(&str, &str); 5] = [
                ("norm.", "group_norm."),
                ("q.", "to_q."),
                ("k.", "to_k."),
                ("v.", "to_v."),
                ("proj_out.", "to_out.0."),
            ];
            let r = r.strip_prefix("attn_1.")?;
            format!("mid_block.attentions.0.{}", ATTN.iter().find_map(|(a, b)| swap(r, a, b))?)
        }
    } else if let Some(r) = r.strip_prefix("norm_out.") {
        format!("conv_norm_out.{r}")
    } else {
        r.to_string() // conv_in, conv_out
    };
    Some(format!("{side}.{mapped}"))
}

/// `decoder.up.{k}.*` (LDM counts from the bottom) as `decoder.up_blocks.{levels-1-k}.*`.
fn ldm_decoder_level(name: &str, levels: usize) -> String {
    match name.strip_prefix("decoder.up.").and_then(index) {
        Some((k, rest)) if k < levels => format!("decoder.up_blocks.{}.{rest}", levels - 1 - k),
        _ => name.to_string(),
    }
}

/// An OpenCLIP text tower name (after `cond_stage_model.model.`) as transformers' (without
/// `text_model.`); `None` for what the text encoder does not use (projection, logit scale).
fn openclip_name(n: &str) -> Option<String> {
    const TOP: [(&str, &str); 4] = [
        ("token_embedding.weight", "embeddings.token_embedding.weight"),
        ("positional_embedding", "embeddings.position_embedding.weight"),
        ("ln_final.weight", "final_layer_norm.weight"),
        ("ln_final.bias", "final_layer_norm.bias"),
    ];
    if let Some((_, to)) = TOP.iter().find(|(from, _)| *from == n) {
        return Some(to.to_string());
    }
    const LAYER: [(&str, &str); 7] = [
        ("ln_1.", "layer_norm1."),
        ("ln_2.", "layer_norm2."),
        ("attn.in_proj_weight", "self_attn.in_proj.weight"),
        ("attn.in_proj_bias", "self_attn.in_proj.bias"),
        ("attn.out_proj.", "self_attn.out_proj."),
        ("mlp.c_fc.", "mlp.fc1."),
        ("mlp.c_proj.", "mlp.fc2."),
    ];
    let (i, rest) = index(n.strip_prefix("transformer.resblocks.")?)?;
    Some(format!("encoder.layers.{i}.{}", LAYER.iter().find_map(|(a, b)| swap(rest, a, b))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldm_unet_names_map_to_diffusers() {
        for (ldm, diffusers) in [
            ("time_embed.2.weight", "time_embedding.linear_2.weight"),
            ("input_blocks.0.0.bias", "conv_in.bias"),
            ("input_blocks.1.0.in_layers.2.weight", "down_blocks.0.resnets.0.conv1.weight"),
            ("input_blocks.2.1.proj_in.weight", "down_blocks.0.attentions.1.proj_in.weight"),
            ("input_blocks.3.0.op.weight", "down_blocks.0.downsamplers.0.conv.weight"),
            ("input_blocks.4.0.skip_connection.bias", "down_blocks.1.resnets.0.conv_shortcut.bias"),
            ("input_blocks.11.0.emb_layers.1.weight", "down_blocks.3.resnets.1.time_emb_proj.weight"),
            ("middle_block.2.out_layers.3.weight", "mid_block.resnets.1.conv2.weight"),
            (
                "middle_block.1.transformer_blocks.0.attn2.to_k.weight",
                "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            ),
            ("output_blocks.2.1.conv.weight", "up_blocks.0.upsamplers.0.conv.weight"),
            ("output_blocks.5.2.conv.bias", "up_blocks.1.upsamplers.0.conv.bias"),
            ("output_blocks.5.1.norm.weight", "up_blocks.1.attentions.2.norm.weight"),
            ("output_blocks.11.0.out_layers.0.bias", "up_blocks.3.resnets.2.norm2.bias"),
            ("out.2.weight", "conv_out.weight"),
        ] {
            assert_eq!(unet_name(ldm).as_deref(), Some(diffusers), "{ldm}");
        }
    }

    #[test]
    fn ldm_vae_and_openclip_names_map_to_diffusers() {
        let v = |n: &str| vae_name(n).map(|n| ldm_decoder_level(&n, 4));
        assert_eq!(
            v("encoder.down.1.block.0.nin_shortcut.weight").unwrap(),
            "encoder.down_blocks.1.resnets.0.conv_shortcut.weight"
        );
        assert_eq!(v("encoder.down.2.downsample.conv.bias").unwrap(), "encoder.down_blocks.2.downsamplers.0.conv.bias");
        assert_eq!(v("decoder.up.3.block.2.norm1.weight").unwrap(), "decoder.up_blocks.0.resnets.2.norm1.weight");
        assert_eq!(v("decoder.up.1.upsample.conv.weight").unwrap(), "decoder.up_blocks.2.upsamplers.0.conv.weight");
        assert_eq!(v("decoder.mid.attn_1.proj_out.bias").unwrap(), "decoder.mid_block.attentions.0.to_out.0.bias");
        assert_eq!(v("encoder.mid.block_2.conv1.weight").unwrap(), "encoder.mid_block.resnets.1.conv1.weight");
        assert_eq!(v("encoder.norm_out.weight").unwrap(), "encoder.conv_norm_out.weight");
        assert_eq!(v("post_quant_conv.bias").unwrap(), "post_quant_conv.bias");
        assert_eq!(
            openclip_name("transformer.resblocks.22.mlp.c_proj.weight").unwrap(),
            "encoder.layers.22.mlp.fc2.weight"
        );
        assert_eq!(openclip_name("positional_embedding").unwrap(), "embeddings.position_embedding.weight");
        assert_eq!(openclip_name("text_projection"), None);
        let q = split("encoder.layers.0.self_attn.in_proj.weight".into(), 7, vec![96, 32]);
        assert_eq!(q.len(), 3);
        assert_eq!(q[1].0, "encoder.layers.0.self_attn.k_proj.weight");
        assert_eq!((q[1].1.shape.clone(), q[1].1.slice), (vec![32, 32], Some((32, 32))));
    }
}
