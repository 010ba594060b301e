//! Retrieval for the sampler: the training emoji whose captions are nearest to the conditioning,
//! and their latents. A run with `strength < 1` starts from the nearest one's latent, noised to
//! that fraction of the schedule (SDEdit, Meng et al. 2022), instead of from pure noise.
//!
//! ~1,700 training emoji are too few for a 3M-parameter denoiser trained for two hours on a CPU
//! to draw an unseen object from pure noise: "cow" came out as a brown blob. Started from the
//! nearest training emoji ("goat") noised 70% of the way, it keeps a real emoji's silhouette and
//! colours and redraws the rest from the caption. Neighbours are found in the LLM's space (the
//! centred, normalised mean of the conditioning rows), so the search needs no extra model, works
//! for any conditioning (prompt, preference keywords, soft rows) and costs one 1,700 x 576
//! product on the host. Held-out emoji are not in the bank.
//!
//! Also tried (models/EMOJI-MODELS.md): the neighbours' latents as extra denoiser input channels
//! (retrieval-augmented diffusion, Blattmann et al. 2022), trained for 3,000 steps. The training
//! loss did not move from the text-only run's and the reference weights stayed ~30x smaller than
//! the latent's: shown neighbours that differ from the target, a small UNet did not learn to use
//! them, so the shipped denoiser reads text only.
//!
//! Two search spaces, told apart by the file's tensors:
//! - `Llm` (emoji-v3, v4): keys are the centred, normalised mean of the name caption's LLM rows. LLM
//!   hidden states are a poor sentence embedding: "postal horn" found "zombie", "pie" a pear.
//! - `Scorer` (emoji-v5 on): the query is the scorer's text head (a host copy, stored in the bank)
//!   applied to the conditioning's mean, the space the contrastive scorer learned to match captions
//!   to pictures in; a key is the normalised mean of that embedding over all of a training emoji's
//!   captions (name, short names, category, keywords), written by `pmg train retrieval` once the
//!   scorer exists. On the 194 held-out base emoji the neighbour shares the emoji's subcategory
//!   (emoji.json's, e.g. "drink") 61.3% of the time against 53.1% for `Llm`
//!   (`examples/retrieval_probe.rs`, which also lists the other searches tried).
//!
//! The bank lives in the denoiser's safetensors file (`retrieval.*`), f16 like the weights.

use crate::error::{Error, Result};
use crate::tensor_io::Weights;

use super::Conditioning;

/// The searchable bank: one entry per training base emoji.
#[derive(Debug, Clone)]
pub struct Retrieval {
    /// Width of the conditionings it searches by (the LLM's hidden size).
    pub width: usize,
    space: Space,
    /// `[n, dim]`, unit length (`dim`: the space's width).
    keys: Vec<f32>,
    /// `[n, per]`: scaled latents, as the denoiser sees its input.
    latents: Vec<f32>,
    /// Elements of one latent.
    pub per: usize,
    pub names: Vec<String>,
}

/// Where queries and keys are compared (see the module docs).
#[derive(Debug, Clone)]
enum Space {
    /// LLM hidden states, less this mean of the raw keys (they share a large common component
    /// that would otherwise dominate the cosine).
    Llm { center: Vec<f32> },
    /// The scorer's text space.
    Scorer(TextHead),
}

/// The scorer's text head on the host (`scorer::TextHead`: LayerNorm, linear, exact GELU, linear,
/// unit length), so a search is the same plain arithmetic natively and in wasm.
#[derive(Debug, Clone)]
pub struct TextHead {
    gamma: Vec<f32>,
    beta: Vec<f32>,
    /// `[d_in, d_hidden]` (burn's `Linear` layout), and its bias.
    w1: Vec<f32>,
    b1: Vec<f32>,
    /// `[d_hidden, d_out]`, and its bias.
    w2: Vec<f32>,
    b2: Vec<f32>,
}

/// burn's `LayerNormConfig` default.
const LAYER_NORM_EPS: f32 = 1e-5;

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), for the exact GELU.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0 - t * (0.254_829_592 + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429)))) * (-x * x).exp();
    y.copysign(x)
}

fn linear(x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    let mut y = b.to_vec();
    for (xi, row) in x.iter().zip(w.chunks_exact(b.len())) {
        y.iter_mut().zip(row).for_each(|(a, wi)| *a += xi * wi);
    }
    y
}

const HEAD: [&str; 6] = ["norm.gamma", "norm.beta", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"];

impl TextHead {
    /// The text head of a scorer's weights (`text.*`), reading `d_in`-wide conditionings.
    pub fn from_scorer(w: &Weights, file: &str, d_in: usize) -> Result<Self> {
        Self::read(w, file, "text.", d_in)
    }

    fn read(w: &Weights, file: &str, prefix: &str, d_in: usize) -> Result<Self> {
        let t: Vec<&crate::tensor_io::NamedTensor> = HEAD.iter().map(|n| w.get(file, &format!("{prefix}{n}"))).collect::<Result<_>>()?;
        let h = t[3].shape.first().copied().unwrap_or(0);
        let d = t[5].shape.first().copied().unwrap_or(0);
        let want = [vec![d_in], vec![d_in], vec![d_in, h], vec![h], vec![h, d], vec![d]];
        if h == 0 || d == 0 || t.iter().zip(&want).any(|(t, s)| &t.shape != s) {
            let got: Vec<_> = t.iter().map(|t| t.shape.clone()).collect();
            return Err(Error::Weights { file: file.to_string(), problem: format!("text head shapes {got:?}, expected {want:?}") });
        }
        let v = |i: usize| t[i].data.clone();
        Ok(TextHead { gamma: v(0), beta: v(1), w1: v(2), b1: v(3), w2: v(4), b2: v(5) })
    }

    fn insert_into(&self, w: &mut Weights, prefix: &str) {
        let (d_in, h, d) = (self.gamma.len(), self.b1.len(), self.b2.len());
        let shapes = [vec![d_in], vec![d_in], vec![d_in, h], vec![h], vec![h, d], vec![d]];
        let data = [&self.gamma, &self.beta, &self.w1, &self.b1, &self.w2, &self.b2];
        for ((n, s), x) in HEAD.iter().zip(shapes).zip(data) {
            w.insert(format!("{prefix}{n}"), s, x.clone());
        }
    }

    /// Width of the embedding.
    pub fn dim(&self) -> usize {
        self.b2.len()
    }

    /// A pooled conditioning (`d_in` values) -> a unit vector in the scorer's text space.
    pub fn embed(&self, x: &[f32]) -> Vec<f32> {
        let n = x.len() as f32;
        let mean = x.iter().sum::<f32>() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
        let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
        let normed: Vec<f32> = x.iter().zip(self.gamma.iter().zip(&self.beta)).map(|(v, (g, b))| (v - mean) * inv * g + b).collect();
        let hidden: Vec<f32> = linear(&normed, &self.w1, &self.b1)
            .into_iter()
            .map(|v| (0.5 * v as f64 * (1.0 + erf(v as f64 / std::f64::consts::SQRT_2))) as f32)
            .collect();
        let mut y = linear(&hidden, &self.w2, &self.b2);
        l2_normalise(&mut y);
        y
    }
}

const KEYS: &str = "retrieval.keys";
const CENTER: &str = "retrieval.center";
const HEAD_PREFIX: &str = "retrieval.head.";
const LATENTS: &str = "retrieval.latents";
const NAMES: &str = "retrieval_names";

fn l2_normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

impl Retrieval {
    /// Build from the entries' conditionings (their names' captions) and latents.
    pub fn build(conds: &[&Conditioning], latents: &[&[f32]], names: Vec<String>) -> Result<Self> {
        let (n, width) = (conds.len(), conds.first().map(|c| c.width).unwrap_or(0));
        if n == 0 || latents.len() != n || names.len() != n {
            return Err(Error::InvalidArgument(format!("retrieval bank of {n} entries, {} latents, {} names", latents.len(), names.len())));
        }
        let raw: Vec<Vec<f32>> = conds.iter().map(|c| c.mean()).collect();
        let mut center = vec![0.0f32; width];
        for r in &raw {
            center.iter_mut().zip(r).for_each(|(c, x)| *c += x / n as f32);
        }
        let mut keys = Vec::with_capacity(n * width);
        for r in raw {
            let mut v: Vec<f32> = r.iter().zip(&center).map(|(x, c)| x - c).collect();
            l2_normalise(&mut v);
            keys.extend(v);
        }
        let per = latents[0].len();
        Ok(Retrieval { width, space: Space::Llm { center }, keys, latents: latents.concat(), per, names })
    }

    /// Move the bank into the scorer's text space: entry `i`'s key is the normalised mean of
    /// `head`'s embeddings of `captions[i]` (all of that emoji's captions).
    pub fn rekey(&mut self, head: TextHead, captions: &[Vec<&Conditioning>]) -> Result<()> {
        if captions.len() != self.len() || captions.iter().any(|c| c.is_empty()) || head.gamma.len() != self.width {
            return Err(Error::InvalidArgument(format!(
                "rekeying a bank of {} entries ({} wide) with captions for {} and a head reading {}",
                self.len(),
                self.width,
                captions.len(),
                head.gamma.len()
            )));
        }
        let mut keys = Vec::with_capacity(captions.len() * head.dim());
        for caps in captions {
            let mut k = vec![0.0f32; head.dim()];
            for c in caps {
                k.iter_mut().zip(head.embed(&c.mean())).for_each(|(a, b)| *a += b);
            }
            l2_normalise(&mut k);
            keys.extend(k);
        }
        self.keys = keys;
        self.space = Space::Scorer(head);
        Ok(())
    }

    /// "llm" or "scorer": the space the bank searches in.
    pub fn space(&self) -> &'static str {
        match self.space {
            Space::Llm { .. } => "llm",
            Space::Scorer(_) => "scorer",
        }
    }

    fn dim(&self) -> usize {
        match &self.space {
            Space::Llm { .. } => self.width,
            Space::Scorer(h) => h.dim(),
        }
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The search vector of a conditioning, from its rows' mean: centred and normalised (`Llm`),
    /// or through the scorer's text head (`Scorer`).
    pub fn query(&self, cond: &Conditioning) -> Vec<f32> {
        match &self.space {
            Space::Llm { center } => {
                let mut q: Vec<f32> = cond.mean().iter().zip(center).map(|(x, c)| x - c).collect();
                l2_normalise(&mut q);
                q
            }
            Space::Scorer(head) => head.embed(&cond.mean()),
        }
    }

    /// The `k` entries most similar to `cond` (best first) with their cosine.
    pub fn nearest(&self, cond: &Conditioning, k: usize) -> Vec<(usize, f32)> {
        let q = self.query(cond);
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
        for (i, key) in self.keys.chunks_exact(self.dim()).enumerate() {
            let s: f32 = key.iter().zip(&q).map(|(a, b)| a * b).sum();
            if best.len() < k || best.last().is_some_and(|&(_, b)| s > b) {
                let at = best.partition_point(|&(_, b)| b >= s);
                best.insert(at, (i, s));
                best.truncate(k);
            }
        }
        best
    }

    /// The latent of entry `i` (`per` values, scaled as the denoiser sees latents).
    pub fn latent(&self, i: usize) -> &[f32] {
        &self.latents[i * self.per..][..self.per]
    }

    /// Store the bank in a weights file (next to the denoiser's tensors).
    pub fn insert_into(&self, w: &mut Weights) {
        let n = self.len();
        w.tensors.retain(|k, _| !k.starts_with("retrieval."));
        w.insert(KEYS, vec![n, self.dim()], self.keys.clone());
        match &self.space {
            Space::Llm { center } => w.insert(CENTER, vec![self.width], center.clone()),
            Space::Scorer(head) => head.insert_into(w, HEAD_PREFIX),
        }
        w.insert(LATENTS, vec![n, self.per], self.latents.clone());
        w.metadata.insert(NAMES.into(), serde_json::to_string(&self.names).expect("json"));
    }

    /// Take the bank out of a denoiser file's tensors (they are not module parameters): `None`
    /// for a file without one; an incomplete bank, or one of another width or latent size, is an
    /// error.
    pub fn take_from(w: &mut Weights, file: &str, width: usize, per: usize) -> Result<Option<Self>> {
        let bad = |p: String| Error::Weights { file: file.to_string(), problem: p };
        let head = if w.tensors.keys().any(|k| k.starts_with(HEAD_PREFIX)) { Some(TextHead::read(w, file, HEAD_PREFIX, width)?) } else { None };
        w.tensors.retain(|k, _| !k.starts_with(HEAD_PREFIX));
        let parts = (w.tensors.remove(KEYS), w.tensors.remove(CENTER), w.tensors.remove(LATENTS), w.meta(NAMES));
        let (keys, space, latents, names) = match (parts, head) {
            ((None, None, None, None), None) => return Ok(None),
            ((Some(k), Some(c), Some(l), Some(n)), None) => {
                if c.shape != [width] {
                    return Err(bad(format!("retrieval center {:?}, expected [{width}]", c.shape)));
                }
                (k, Space::Llm { center: c.data }, l, n)
            }
            ((Some(k), None, Some(l), Some(n)), Some(h)) => (k, Space::Scorer(h), l, n),
            _ => {
                return Err(bad(
                    "incomplete retrieval bank (retrieval.keys, .latents, retrieval_names and either .center or .head.* go together)".into(),
                ));
            }
        };
        let names: Vec<String> = serde_json::from_str(names).map_err(|e| bad(format!("{NAMES}: {e}")))?;
        let n = names.len();
        let mut r = Retrieval { width, space, keys: Vec::new(), latents: Vec::new(), per, names };
        let dim = r.dim();
        if n == 0 || keys.shape != [n, dim] || latents.shape != [n, per] {
            return Err(bad(format!(
                "retrieval bank shapes keys {:?}, latents {:?} for {n} names; expected [{n}, {dim}], [{n}, {per}]",
                keys.shape, latents.shape
            )));
        }
        (r.keys, r.latents) = (keys.data, latents.data);
        Ok(Some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(v: &[f32]) -> Conditioning {
        Conditioning { rows: v.to_vec(), len: 1, width: v.len() }
    }

    #[test]
    fn nearest_is_by_centred_cosine_and_the_bank_round_trips() {
        let conds = [cond(&[1.0, 0.0, 5.0]), cond(&[0.0, 1.0, 5.0]), cond(&[-1.0, 0.0, 5.0]), cond(&[0.0, -1.0, 5.0])];
        let lat: Vec<Vec<f32>> = (0..4).map(|i| vec![i as f32; 2]).collect();
        let r = Retrieval::build(&conds.iter().collect::<Vec<_>>(), &lat.iter().map(Vec::as_slice).collect::<Vec<_>>(), (0..4).map(|i| i.to_string()).collect()).unwrap();
        // The shared component (5.0) is centred away: [0.9, 0.2, 5] is nearest to entry 0, then 1;
        // uncentred, every entry would be about equally near.
        let q = cond(&[0.9, 0.2, 5.0]);
        let n = r.nearest(&q, 2);
        assert_eq!(n.iter().map(|x| x.0).collect::<Vec<_>>(), vec![0, 1]);
        assert!(n[0].1 > 0.9 && n[0].1 <= 1.0 + 1e-6 && n[1].1 < 0.5);
        assert_eq!(r.nearest(&q, 10).len(), 4);
        assert_eq!(r.latent(3), &[3.0, 3.0]);

        let mut w = Weights::default();
        r.insert_into(&mut w);
        let back = Retrieval::take_from(&mut w.clone(), "t", 3, 2).unwrap().unwrap();
        assert_eq!(back.nearest(&q, 2), n);
        assert!(Retrieval::take_from(&mut w.clone(), "t", 4, 2).is_err(), "wrong width");
        assert!(Retrieval::take_from(&mut w.clone(), "t", 3, 3).is_err(), "wrong latent size");
        let mut partial = w.clone();
        partial.tensors.remove(LATENTS);
        assert!(Retrieval::take_from(&mut partial, "t", 3, 2).is_err(), "incomplete bank");
        assert!(Retrieval::take_from(&mut Weights::default(), "t", 3, 2).unwrap().is_none(), "no bank");
    }

    #[test]
    fn the_host_text_head_is_the_scorers_and_a_rekeyed_bank_round_trips() {
        use burn::tensor::{Tensor, TensorData};
        // A scorer with random weights and perturbed LayerNorm parameters: the host head must
        // give burn's text features (same layouts, same exact GELU) to float rounding.
        let dev = crate::device::PmgDevice::cpu();
        let net = crate::scorer::ScorerConfig::default().init(&dev.device);
        let mut w = crate::tensor_io::module_weights(&net);
        let mut rng = crate::diffusion::SeededNoise::new(7);
        for n in ["text.norm.gamma", "text.norm.beta", "text.fc1.bias", "text.fc2.bias"] {
            let t = w.tensors.get_mut(n).unwrap();
            let e = rng.normals(t.data.len());
            t.data.iter_mut().zip(e).for_each(|(x, e)| *x += 0.3 * e);
        }
        let net = crate::tensor_io::load_module(crate::scorer::ScorerConfig::default().init(&dev.device), &w, "s").unwrap();
        let head = TextHead::from_scorer(&w, "s", 576).unwrap();
        let conds: Vec<Conditioning> = (0..4).map(|k| Conditioning { rows: rng.normals(576 * (k + 1)), len: k + 1, width: 576 }).collect();
        let pooled: Vec<f32> = conds.iter().flat_map(|c| c.mean()).collect();
        let burn = crate::device::read_f32(net.text.forward(Tensor::<2>::from_data(TensorData::new(pooled, [4, 576]), &dev.device))).unwrap();
        for (c, want) in conds.iter().zip(burn.chunks_exact(256)) {
            let got = head.embed(&c.mean());
            let err = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(err < 1e-5, "host head differs from burn's by {err}");
        }
        assert!(TextHead::from_scorer(&w, "s", 512).is_err(), "a head reading another width");

        // Rekeyed with two captions per entry, an entry's own caption finds it.
        let lat: Vec<Vec<f32>> = (0..4).map(|i| vec![i as f32; 2]).collect();
        let mut r = Retrieval::build(&conds.iter().collect::<Vec<_>>(), &lat.iter().map(Vec::as_slice).collect::<Vec<_>>(), (0..4).map(|i| i.to_string()).collect()).unwrap();
        let others: Vec<Conditioning> = (0..4).map(|_| Conditioning { rows: rng.normals(576), len: 1, width: 576 }).collect();
        let caps: Vec<Vec<&Conditioning>> = (0..4).map(|i| vec![&conds[i], &conds[i]]).collect();
        assert!(r.clone().rekey(head.clone(), &caps[..3]).is_err(), "captions for another bank size");
        r.rekey(head, &caps).unwrap();
        assert_eq!(r.space(), "scorer");
        for (i, c) in conds.iter().enumerate() {
            let n = r.nearest(c, 1);
            assert_eq!(n[0].0, i);
            assert!((n[0].1 - 1.0).abs() < 1e-5);
        }
        let mut file = Weights::default();
        file.insert(CENTER, vec![576], vec![0.0; 576]); // a stale LLM-space tensor is replaced
        r.insert_into(&mut file);
        assert!(!file.tensors.contains_key(CENTER));
        let back = Retrieval::take_from(&mut file.clone(), "t", 576, 2).unwrap().unwrap();
        assert_eq!(back.space(), "scorer");
        for c in conds.iter().chain(&others) {
            assert_eq!(back.nearest(c, 4), r.nearest(c, 4));
        }
        let mut partial = file.clone();
        partial.tensors.remove("retrieval.head.fc2.bias");
        assert!(Retrieval::take_from(&mut partial, "t", 576, 2).is_err(), "a head without one tensor");
        let mut both = file.clone();
        both.insert(CENTER, vec![576], vec![0.0; 576]);
        assert!(Retrieval::take_from(&mut both, "t", 576, 2).is_err(), "a bank in both spaces");
    }
}
