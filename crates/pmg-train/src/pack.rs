//! What the denoiser stage trains on, in memory ([`DenoiserData`]) and as a compact file (the
//! *pack*) for a machine that has neither the dataset nor the LLM, such as a rented GPU behind a
//! small upload limit.
//!
//! The pack holds the training latents (f16) and the training captions' LLM hidden states,
//! deduplicated and quantized:
//! - captions of one emoji share their leading tokens ("raised fist", "raised fist, people & body",
//!   "raised fist: fingers, ..."), and a causal LM gives a shared prefix the same hidden states, so
//!   each distinct row is stored once (146k caption tokens of the training split are 74k rows);
//! - rows are int8 with one scale per hidden dimension: SmolLM2's few outlier dimensions keep their
//!   own range, and the error after the denoiser's text LayerNorm is about 0.8% (RMS, relative).
//!
//! A run on a pack is the dataset run up to that rounding: same records in the same order, same
//! captions per record, same batches for a seed.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use super::data::{CaptionBank, EmojiData, HOUSE_STYLE};
use super::io_err;
use pmg::diffusion::{Conditioning, Retrieval};
use pmg::error::{Error, Result};
use pmg::tensor_io::{Dtype, Weights};

/// The denoiser stage's inputs, one entry per training record.
pub struct DenoiserData {
    /// Scaled latents, `[c, h, w]` each.
    pub latents: Vec<Vec<f32>>,
    pub shape: [usize; 3],
    /// Every caption's hidden states.
    pub conds: Vec<Conditioning>,
    /// The captions of each record (into `conds`); the first is the record's name.
    pub captions: Vec<Range<usize>>,
    /// The sampler's retrieval bank: the first record of each base emoji (index) and its name.
    pub bank: Vec<(usize, String)>,
    /// The records of each base emoji (its skin-tone variations), bases in the order of `bank`.
    pub groups: Vec<Vec<usize>>,
}

impl DenoiserData {
    /// From the dataset: the records of the training split, their latents and captions.
    pub fn from_dataset(data: &EmojiData, captions: CaptionBank, latents: Vec<Vec<f32>>, shape: [usize; 3]) -> Self {
        let train = data.split("train");
        let mut conds = Vec::new();
        let mut ranges = Vec::with_capacity(train.len());
        for &i in &train {
            let start = conds.len();
            conds.extend(captions.by_record[i].clone().map(|c| captions.cond(c).clone()));
            ranges.push(start..conds.len());
        }
        let mut group_of: HashMap<&str, usize> = HashMap::new();
        let (mut bank, mut groups) = (Vec::new(), Vec::<Vec<usize>>::new());
        for (p, &i) in train.iter().enumerate() {
            let r = &data.records[i];
            let g = *group_of.entry(r.base.as_str()).or_insert_with(|| {
                bank.push((p, r.name.clone()));
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[g].push(p);
            // The bank shows each base emoji in the house style (Noto, as the Google PNGs), the
            // image a default-strength run starts from.
            let current = &data.records[train[bank[g].0]];
            if r.style == HOUSE_STYLE
                && r.id == r.base.to_lowercase()
                && (current.style != HOUSE_STYLE || current.id != current.base.to_lowercase())
            {
                bank[g] = (p, r.name.clone());
            }
        }
        DenoiserData { latents, shape, conds, captions: ranges, bank, groups }
    }

    /// The retrieval bank of the export: each bank entry's name caption and latent.
    pub fn retrieval(&self) -> Result<Retrieval> {
        let conds: Vec<&Conditioning> = self.bank.iter().map(|(p, _)| &self.conds[self.captions[*p].start]).collect();
        let lats: Vec<&[f32]> = self.bank.iter().map(|(p, _)| self.latents[*p].as_slice()).collect();
        Retrieval::build(&conds, &lats, self.bank.iter().map(|(_, n)| n.clone()).collect())
    }

    /// Write the pack (see the module docs).
    pub fn save_pack(&self, path: &Path) -> Result<()> {
        let width = self.conds.first().map_or(0, |c| c.width);
        let max_len = self.conds.iter().map(|c| c.len).max().unwrap_or(1);
        // Distinct rows, in first-seen order.
        let mut index: HashMap<Vec<u32>, usize> = HashMap::new();
        let mut rows: Vec<&[f32]> = Vec::new();
        let mut caption_rows = vec![0.0f32; self.conds.len() * max_len];
        for (c, cond) in self.conds.iter().enumerate() {
            for (t, row) in cond.rows.chunks_exact(width).enumerate() {
                let id = *index.entry(row.iter().map(|x| x.to_bits()).collect()).or_insert_with(|| {
                    rows.push(row);
                    rows.len() - 1
                });
                caption_rows[c * max_len + t] = id as f32;
            }
        }
        let mut scale = vec![0.0f32; width];
        for row in &rows {
            for (s, x) in scale.iter_mut().zip(row.iter()) {
                *s = s.max(x.abs());
            }
        }
        scale.iter_mut().for_each(|s| *s = if *s > 0.0 { *s / 127.0 } else { 1.0 });
        let quantized: Vec<f32> =
            rows.iter().flat_map(|row| row.iter().zip(&scale).map(|(x, s)| (x / s).round())).collect();

        let mut w = Weights::default();
        let n = self.latents.len();
        w.insert("latents", vec![n, self.shape[0], self.shape[1], self.shape[2]], self.latents.concat());
        w.insert("rows", vec![rows.len(), width], quantized);
        w.insert("row_scale", vec![width], scale);
        w.insert("caption_rows", vec![self.conds.len(), max_len], caption_rows);
        w.insert("caption_len", vec![self.conds.len()], self.conds.iter().map(|c| c.len as f32).collect());
        w.insert(
            "record_captions",
            vec![n, 2],
            self.captions.iter().flat_map(|r| [r.start as f32, r.end as f32]).collect(),
        );
        w.insert("bank", vec![self.bank.len()], self.bank.iter().map(|(p, _)| *p as f32).collect());
        let mut group = vec![0.0f32; n];
        for (g, members) in self.groups.iter().enumerate() {
            members.iter().for_each(|&p| group[p] = g as f32);
        }
        w.insert("record_group", vec![n], group);
        let names: Vec<&str> = self.bank.iter().map(|(_, n)| n.as_str()).collect();
        w.metadata.insert("bank_names".into(), serde_json::to_string(&names).expect("json"));
        w.metadata.insert("format".into(), "pmg-train-pack".into());
        let bytes = w.to_bytes_as(|name| match name {
            "rows" => Dtype::I8,
            "latents" => Dtype::F16,
            _ => Dtype::F32,
        });
        std::fs::write(path, bytes).map_err(|e| io_err(path, e))?;
        eprintln!(
            "wrote {} ({n} records, {} captions, {} distinct rows of {} caption tokens, {} bytes)",
            path.display(),
            self.conds.len(),
            rows.len(),
            self.conds.iter().map(|c| c.len).sum::<usize>(),
            std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        );
        Ok(())
    }

    /// Read a pack; every index is checked, so a truncated or hostile file is an error.
    pub fn load_pack(path: &Path) -> Result<Self> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        let w = Weights::from_bytes(&file, &bytes)?;
        let bad = |p: String| Error::Weights { file: file.clone(), problem: p };
        if w.meta("format") != Some("pmg-train-pack") {
            return Err(bad("not a pmg training pack (`pmg train pack` writes one)".into()));
        }
        let get = |name: &str, dims: usize| -> Result<&pmg::tensor_io::NamedTensor> {
            let t = w.get(&file, name)?;
            if t.shape.len() != dims {
                return Err(bad(format!("`{name}` is {}-d, expected {dims}-d", t.shape.len())));
            }
            Ok(t)
        };
        let as_index = |x: f32, below: usize, what: &str| -> Result<usize> {
            if x >= 0.0 && x.fract() == 0.0 && (x as usize) < below {
                Ok(x as usize)
            } else {
                Err(bad(format!("{what} {x} is out of range (< {below})")))
            }
        };
        let lat = get("latents", 4)?;
        let [n, c, h, wd] = lat.shape[..] else { unreachable!() };
        let shape = [c, h, wd];
        let per = c * h * wd;
        let latents = lat.data.chunks_exact(per.max(1)).map(<[f32]>::to_vec).collect::<Vec<_>>();
        let rows = get("rows", 2)?;
        let [u, width] = rows.shape[..] else { unreachable!() };
        let scale = get("row_scale", 1)?;
        if scale.shape[0] != width {
            return Err(bad(format!("row_scale has {} entries for rows {width} wide", scale.shape[0])));
        }
        let cr = get("caption_rows", 2)?;
        let [nc, max_len] = cr.shape[..] else { unreachable!() };
        let cl = get("caption_len", 1)?;
        if cl.shape[0] != nc {
            return Err(bad(format!("caption_len has {} entries for {nc} captions", cl.shape[0])));
        }
        let mut conds = Vec::with_capacity(nc);
        for i in 0..nc {
            let len = as_index(cl.data[i] - 1.0, max_len, "caption length - 1")? + 1;
            let mut data = Vec::with_capacity(len * width);
            for t in 0..len {
                let r = as_index(cr.data[i * max_len + t], u, "row index")?;
                data.extend(rows.data[r * width..][..width].iter().zip(&scale.data).map(|(q, s)| q * s));
            }
            conds.push(Conditioning { rows: data, len, width });
        }
        let rc = get("record_captions", 2)?;
        if rc.shape != [n, 2] {
            return Err(bad(format!("record_captions is {:?}, expected [{n}, 2]", rc.shape)));
        }
        let mut captions = Vec::with_capacity(n);
        for r in rc.data.chunks_exact(2) {
            let (a, b) = (as_index(r[0], nc, "caption start")?, as_index(r[1] - 1.0, nc, "caption end - 1")? + 1);
            if a >= b {
                return Err(bad(format!("record captions {a}..{b} are empty")));
            }
            captions.push(a..b);
        }
        let names: Vec<String> = serde_json::from_str(w.meta("bank_names").ok_or_else(|| bad("no bank_names".into()))?)
            .map_err(|e| bad(format!("bank_names: {e}")))?;
        let positions = get("bank", 1)?;
        if positions.data.len() != names.len() {
            return Err(bad(format!("{} bank entries for {} names", positions.data.len(), names.len())));
        }
        let bank: Vec<(usize, String)> = positions
            .data
            .iter()
            .zip(names)
            .map(|(&p, name)| Ok((as_index(p, n, "bank record")?, name)))
            .collect::<Result<_>>()?;
        let rg = get("record_group", 1)?;
        if rg.shape[0] != n {
            return Err(bad(format!("record_group has {} entries for {n} records", rg.shape[0])));
        }
        let mut groups = vec![Vec::new(); bank.len()];
        for (p, &g) in rg.data.iter().enumerate() {
            groups[as_index(g, bank.len(), "record group")?].push(p);
        }
        if groups.iter().any(Vec::is_empty) {
            return Err(bad("a base emoji without records".into()));
        }
        Ok(DenoiserData { latents, shape, conds, captions, bank, groups })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(rows: &[[f32; 3]]) -> Conditioning {
        Conditioning { rows: rows.concat(), len: rows.len(), width: 3 }
    }

    #[test]
    fn pack_round_trip_dedups_and_quantizes() {
        let (a, b, c) = ([1.0, -40.0, 0.25], [0.5, 3.0, -0.125], [0.0, 0.0, 0.0]);
        let data = DenoiserData {
            latents: vec![vec![0.5; 4], vec![-1.0; 4]],
            shape: [1, 2, 2],
            // Two captions share the prefix row `a`.
            conds: vec![cond(&[a]), cond(&[a, b]), cond(&[c, b, a])],
            captions: vec![0..2, 2..3],
            bank: vec![(0, "thing".into()), (1, "other".into())],
            groups: vec![vec![0], vec![1]],
        };
        let dir = std::env::temp_dir().join(format!("pmg-pack-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.safetensors");
        data.save_pack(&path).unwrap();
        let w = Weights::from_bytes("p", &std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(w.tensors["rows"].shape, vec![3, 3], "three distinct rows");
        let back = DenoiserData::load_pack(&path).unwrap();
        assert_eq!(back.latents, data.latents);
        assert_eq!(back.captions, data.captions);
        assert_eq!(back.bank, data.bank);
        assert_eq!(back.groups, data.groups);
        for (x, y) in back.conds.iter().zip(&data.conds) {
            assert_eq!(x.len, y.len);
            // Per-dimension int8: within half a step of that dimension's scale.
            for (i, (p, q)) in x.rows.iter().zip(&y.rows).enumerate() {
                let step = [1.0f32, 40.0, 0.25][i % 3] / 127.0;
                assert!((p - q).abs() <= step / 2.0 + 1e-6, "{p} vs {q}");
            }
        }
        // A hostile index is an error, not a panic.
        let mut evil = w.clone();
        evil.tensors.get_mut("caption_rows").unwrap().data[0] = 99.0;
        std::fs::write(&path, evil.to_bytes(Dtype::F32)).unwrap();
        assert!(matches!(DenoiserData::load_pack(&path), Err(Error::Weights { .. })));
        let mut evil = w.clone();
        evil.metadata.remove("format");
        std::fs::write(&path, evil.to_bytes(Dtype::F32)).unwrap();
        assert!(DenoiserData::load_pack(&path).is_err());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(DenoiserData::load_pack(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
