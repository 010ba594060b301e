//! Which training emoji does each way of searching pick for a held-out caption? For every held-out
//! base emoji (its name caption as the query), the nearest training base emoji under several
//! searches, and how often that neighbour shares the held-out emoji's subcategory and category
//! (emoji.json's, e.g. "animal-mammal", "drink") -- a measure independent of the scorer -- and the
//! paired wins and losses against the shipped search (A). eval/image/RESULTS.md has the numbers;
//! search C2 was built as a bank format and tried on the whole evaluation (commit 08d4935, reverted).
//!
//!     cargo run --release --example retrieval_probe
//!
//! Needs `data/emoji` (scripts/fetch-emoji.sh, `pmg train embed`) and the scorer in `models/`.

use pmg::PmgDevice;
use pmg::diffusion::Conditioning;
use pmg::scorer::{Scorer, dot};
use pmg::train::{CaptionBank, EmojiData};

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = dot(&v, &v).sqrt().max(1e-9);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

fn centred(rows: &[Vec<f32>]) -> (Vec<f32>, Vec<Vec<f32>>) {
    let d = rows[0].len();
    let mut c = vec![0.0f32; d];
    rows.iter().for_each(|r| c.iter_mut().zip(r).for_each(|(a, b)| *a += b / rows.len() as f32));
    let keys = rows.iter().map(|r| unit(r.iter().zip(&c).map(|(a, b)| a - b).collect())).collect();
    (c, keys)
}

fn argmax(q: &[f32], keys: &[Vec<f32>]) -> usize {
    (0..keys.len()).max_by(|&a, &b| dot(q, &keys[a]).total_cmp(&dot(q, &keys[b]))).expect("keys")
}

fn main() -> pmg::Result<()> {
    let dev = PmgDevice::cpu();
    let dir = std::path::Path::new("data/emoji");
    let data = EmojiData::load(dir)?;
    let bank = CaptionBank::load(&dir.join(pmg::train::data::BANK_FILE), &data)?;
    let scorer = Scorer::from_bytes(&read("models/emoji-scorer.safetensors"), &dev)?;
    // One record per base emoji (the first), as in the generator's bank.
    let firsts = |split: &str| {
        let mut seen = std::collections::HashSet::new();
        data.split(split).into_iter().filter(|&i| seen.insert(data.records[i].base.clone())).collect::<Vec<_>>()
    };
    let (train, held) = (firsts("train"), firsts("heldout"));
    let enc = |recs: &[usize], all: bool| -> Vec<Vec<Conditioning>> {
        recs.iter()
            .map(|&i| {
                let r = bank.by_record[i].clone();
                let r = if all { r } else { r.start..r.start + 1 };
                bank.conds[r].to_vec()
            })
            .collect()
    };
    let train_c = enc(&train, true);
    let held_c = enc(&held, false);
    let mean_of = |cs: &[Conditioning]| {
        let d = cs[0].width;
        let mut m = vec![0.0f32; d];
        cs.iter().for_each(|c| m.iter_mut().zip(c.mean()).for_each(|(a, b)| *a += b / cs.len() as f32));
        m
    };
    // A: the shipped search (centred LLM mean of the name caption).
    let (center, keys_a) = centred(&train_c.iter().map(|c| c[0].mean()).collect::<Vec<_>>());
    let q_a: Vec<Vec<f32>> = held_c.iter().map(|c| unit(c[0].mean().iter().zip(&center).map(|(a, b)| a - b).collect())).collect();
    // A2: the same, keys the mean over all of a training emoji's captions.
    let (center2, keys_a2) = centred(&train_c.iter().map(|c| mean_of(c)).collect::<Vec<_>>());
    let q_a2: Vec<Vec<f32>> = held_c.iter().map(|c| unit(c[0].mean().iter().zip(&center2).map(|(a, b)| a - b).collect())).collect();
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
    // D: B + C2 (sum of the two cosines).
    let keys_d: Vec<Vec<f32>> = keys_b.iter().zip(&keys_c2).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x + y).collect()).collect();

    // E: A2 + C2, both spaces (queries and keys concatenated: the sum of the two cosines).
    let cat = |a: &Vec<Vec<f32>>, b: &Vec<Vec<f32>>| -> Vec<Vec<f32>> { a.iter().zip(b).map(|(x, y)| x.iter().chain(y).copied().collect()).collect() };
    let (q_e, keys_e) = (cat(&q_a2, &q_s), cat(&keys_a2, &keys_c2));
    let methods: Vec<(&str, &Vec<Vec<f32>>, &Vec<Vec<f32>>)> = vec![
        ("A  shipped: centred LLM mean, name keys", &q_a, &keys_a),
        ("A2 centred LLM mean, all-caption keys", &q_a2, &keys_a2),
        ("B  scorer text -> training image", &q_s, &keys_b),
        ("C  scorer text -> name text", &q_s, &keys_c),
        ("C2 scorer text -> all-caption text", &q_s, &keys_c2),
        ("D  B + C2", &q_s, &keys_d),
        ("E  A2 + C2", &q_e, &keys_e),
    ];
    let mut picks: Vec<Vec<usize>> = Vec::new();
    println!("{} held-out base emoji; neighbour shares subcategory / category; subcategory won / lost against A:", held.len());
    let same_sub = |h: usize, n: usize| data.records[h].subcategory == data.records[n].subcategory;
    for (name, q, keys) in &methods {
        let p: Vec<usize> = q.iter().map(|q| train[argmax(q, keys)]).collect();
        let sub = held.iter().zip(&p).filter(|(h, n)| data.records[**h].subcategory == data.records[**n].subcategory).count();
        let cat = held.iter().zip(&p).filter(|(h, n)| data.records[**h].category == data.records[**n].category).count();
        let (won, lost) = match picks.first() {
            Some(a) => held.iter().zip(&p).zip(a).fold((0, 0), |(w, l), ((&h, &n), &m)| (w + (same_sub(h, n) && !same_sub(h, m)) as usize, l + (!same_sub(h, n) && same_sub(h, m)) as usize)),
            None => (0, 0),
        };
        println!("{name:<42} {:5.1}% / {:5.1}%   +{won} / -{lost}", 100.0 * sub as f64 / held.len() as f64, 100.0 * cat as f64 / held.len() as f64);
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
