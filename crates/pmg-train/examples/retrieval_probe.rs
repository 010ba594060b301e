//! Which training emoji does each way of searching pick for a held-out caption? For every held-out
//! base emoji (its name caption as the query), the nearest training base emoji under several
//! searches, and how often that neighbour shares the held-out emoji's subcategory and category
//! (emoji.json's, e.g. "animal-mammal", "drink") -- a measure independent of the scorer -- and the
//! paired wins and losses against the shipped search (A). eval/image/RESULTS.md has the numbers;
//! search C2 was built as a bank format and tried on the whole evaluation (commit 08d4935, reverted).
//!
//!     cargo run --release --example retrieval_probe
//!
//! Needs `data/emoji` (scripts/fetch-emoji.sh, `pmg train embed`) and the shipped models in `models/`;
//! search A is the shipped denoiser's own retrieval bank.

use pmg::PmgDevice;
use pmg::diffusion::{AutoencoderConfig, Conditioning, Retrieval, load_denoiser};
use pmg::scorer::{Scorer, dot};
use pmg::tensor_io::Weights;
use pmg_train::{CaptionBank, EmojiData};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = dot(&v, &v).sqrt().max(1e-9);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Cosine of a query against every key.
fn cosines(q: &[f32], keys: &[Vec<f32>]) -> Vec<f32> {
    keys.iter().map(|k| dot(q, k)).collect()
}

/// A bank's cosines for `cond`, entry `j` of the bank at position `at[j]`.
fn bank_cosines(r: &Retrieval, cond: &Conditioning, at: &[usize]) -> Vec<f32> {
    let mut s = vec![f32::NEG_INFINITY; at.len()];
    r.nearest(cond, r.len()).into_iter().for_each(|(j, c)| s[at[j]] = c);
    s
}

fn argmax(s: &[f32]) -> usize {
    (0..s.len()).max_by(|&a, &b| s[a].total_cmp(&s[b])).expect("keys")
}

fn main() -> pmg::Result<()> {
    let dev = PmgDevice::cpu();
    let dir = std::path::Path::new("data/emoji");
    let data = EmojiData::load(dir)?;
    let bank = CaptionBank::load(&dir.join(pmg_train::data::BANK_FILE), &data)?;
    let scorer = Scorer::from_bytes(&read("models/emoji-scorer.safetensors"), &dev)?;
    let (ae, _) = AutoencoderConfig::from_weights(
        &Weights::from_bytes("autoencoder", &read("models/emoji-autoencoder.safetensors"))?,
        "autoencoder",
    )?;
    let shipped = load_denoiser(&read("models/emoji-denoiser.safetensors"), "denoiser", &ae, &dev.device)?
        .2
        .expect("a denoiser with a retrieval bank");
    // One record per base emoji (the first), as in the generator's bank.
    let firsts = |split: &str| {
        let mut seen = std::collections::HashSet::new();
        data.split(split).into_iter().filter(|&i| seen.insert(data.records[i].base.clone())).collect::<Vec<_>>()
    };
    let (train, held) = (firsts("train"), firsts("heldout"));
    let position: std::collections::HashMap<&str, usize> =
        train.iter().enumerate().map(|(k, &i)| (data.records[i].name.as_str(), k)).collect();
    let shipped_at: Vec<usize> = shipped.names.iter().map(|n| position[n.as_str()]).collect();
    let enc = |recs: &[usize], all: bool| -> Vec<Vec<Conditioning>> {
        recs.iter()
            .map(|&i| {
                let r = bank.by_record[i].clone();
                let r = if all { r } else { r.start..r.start + 1 };
                r.map(|c| bank.cond(c).clone()).collect::<Vec<_>>()
            })
            .collect()
    };
    let train_c = enc(&train, true);
    let held_c = enc(&held, false);
    // A2's keys: one row, the mean over all of a training emoji's captions.
    let mean_row = |cs: &[Conditioning]| {
        let mut m = vec![0.0f32; cs[0].width];
        cs.iter().for_each(|c| m.iter_mut().zip(c.mean()).for_each(|(a, b)| *a += b / cs.len() as f32));
        Conditioning { rows: m, len: 1, width: cs[0].width }
    };
    let all_caption_keys: Vec<Conditioning> = train_c.iter().map(|c| mean_row(c)).collect();
    let no_latents = vec![&[][..]; train.len()];
    let names: Vec<String> = train.iter().map(|&i| data.records[i].name.clone()).collect();
    let a2 = Retrieval::build(&all_caption_keys.iter().collect::<Vec<_>>(), &no_latents, names)?;
    let in_order: Vec<usize> = (0..train.len()).collect();
    // B: scorer text -> scorer image of the training emoji (CLIP-style text-to-image retrieval).
    let q_s = scorer.text_features(&held_c.iter().map(|c| &c[0]).collect::<Vec<_>>())?;
    let imgs: Vec<_> = train.iter().map(|&i| data.image(i)).collect();
    let mut keys_b = Vec::new();
    for ch in imgs.chunks(64) {
        keys_b.extend(scorer.image_features(&ch.iter().collect::<Vec<_>>())?);
    }
    // C: scorer text -> scorer text of the training names; C2: of all their captions (mean, renormalised).
    let keys_c = scorer.text_features(&train_c.iter().map(|c| &c[0]).collect::<Vec<_>>())?;
    let mut keys_c2 = Vec::new();
    for c in &train_c {
        let f = scorer.text_features(&c.iter().collect::<Vec<_>>())?;
        let mut m = vec![0.0f32; f[0].len()];
        f.iter().for_each(|r| m.iter_mut().zip(r).for_each(|(a, b)| *a += b));
        keys_c2.push(unit(m));
    }

    // Per method, per held-out emoji: its cosine against every training emoji (in `train` order).
    let sum = |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(x, y)| x + y).collect() };
    let per_query = |f: &dyn Fn(usize) -> Vec<f32>| -> Vec<Vec<f32>> { (0..held.len()).map(f).collect() };
    let score_a2 = |k: usize| bank_cosines(&a2, &held_c[k][0], &in_order);
    let score_c2 = |k: usize| cosines(&q_s[k], &keys_c2);
    let methods: Vec<(&str, Vec<Vec<f32>>)> = vec![
        ("A  shipped: centred LLM mean, name keys", per_query(&|k| bank_cosines(&shipped, &held_c[k][0], &shipped_at))),
        ("A2 centred LLM mean, all-caption keys", per_query(&score_a2)),
        ("B  scorer text -> training image", per_query(&|k| cosines(&q_s[k], &keys_b))),
        ("C  scorer text -> name text", per_query(&|k| cosines(&q_s[k], &keys_c))),
        ("C2 scorer text -> all-caption text", per_query(&score_c2)),
        ("D  B + C2", per_query(&|k| sum(&cosines(&q_s[k], &keys_b), &score_c2(k)))),
        ("E  A2 + C2", per_query(&|k| sum(&score_a2(k), &score_c2(k)))),
    ];
    let mut picks: Vec<Vec<usize>> = Vec::new();
    println!(
        "{} held-out base emoji; neighbour shares subcategory / category; subcategory won / lost against A:",
        held.len()
    );
    let same_sub = |h: usize, n: usize| data.records[h].subcategory == data.records[n].subcategory;
    for (name, scores) in &methods {
        let p: Vec<usize> = scores.iter().map(|s| train[argmax(s)]).collect();
        let sub = held.iter().zip(&p).filter(|(h, n)| same_sub(**h, **n)).count();
        let cat = held.iter().zip(&p).filter(|(h, n)| data.records[**h].category == data.records[**n].category).count();
        let (won, lost) = match picks.first() {
            Some(a) => held.iter().zip(&p).zip(a).fold((0, 0), |(w, l), ((&h, &n), &m)| {
                (w + (same_sub(h, n) && !same_sub(h, m)) as usize, l + (!same_sub(h, n) && same_sub(h, m)) as usize)
            }),
            None => (0, 0),
        };
        println!(
            "{name:<42} {:5.1}% / {:5.1}%   +{won} / -{lost}",
            100.0 * sub as f64 / held.len() as f64,
            100.0 * cat as f64 / held.len() as f64
        );
        picks.push(p);
    }
    if std::env::args().any(|a| a == "--list") {
        for (k, &h) in held.iter().enumerate() {
            let names: Vec<&str> = picks.iter().map(|p| data.records[p[k]].name.as_str()).collect();
            println!("{} [{}]: {}", data.records[h].name, data.records[h].subcategory, names.join(" | "));
        }
    }
    Ok(())
}
