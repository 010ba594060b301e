//! `pmg eval personalize`: PMG against the unpersonalized baseline on synthetic users built from
//! the held-out emoji only (never trained on by the generator or the scorer).
//!
//! A user's taste is one held-out subcategory with at least 5 distinct emoji (country flags, sky &
//! weather, mammals, drinks, ...). Their history is 5 of those emoji as shop events (view, click,
//! purchase, rating 5, view; title = the emoji's name, tags = its keywords) and one search; the
//! target is a held-out emoji of another taste, named by its caption. Every system sees the same
//! preference keywords (extracted once per user) and the same seeds; only the conditioning and the
//! choice differ.
//!
//! Metrics of the chosen image `x` (scorer `s = (1 + cos) / 2`, mean over users):
//! - accuracy: `s(x, target caption)` and `s(x, target image)` (image features on both sides);
//! - preference: `s(x, history images)` (mean over the 5) and `s(x, preference keywords)`;
//! - distance: mean |pixel difference| (0-255, RGBA) between `x` and the history images;
//! - with the independent judge (`eval/judge/`): whether the target's base emoji is the judge's
//!   first guess for `x` (top-1) or among its first five (top-5).

use std::collections::BTreeMap;

use super::data::EmojiData;
use super::judge::{Judge, rank};
use pmg::diffusion::{Generator, SampleOptions};
use pmg::error::Result;
use pmg::history::{Event, EventKind, Item};
use pmg::host::Blocking;
use pmg::host::block_on;
use pmg::image::Image;
use pmg::llm::LanguageModel;
use pmg::personalize::{PersonalizeOptions, Personalized, Personalizer, Profile, Target, Weighting};
use pmg::preference::{ExtractOptions, Extractor, Feed, Preferences};
use pmg::scorer::{Scorer, dot, score_from_cosine};
use pmg::soft_prompt::SoftPrompt;

/// One synthetic user: history record indices, the target record, the taste's name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct User {
    pub taste: String,
    pub history: Vec<usize>,
    pub target: usize,
    /// The user's one search (the taste in words).
    pub query: String,
}

/// Held-out tastes and users, deterministic: `per_taste` users per taste, each with a different
/// window of 5 of the taste's emoji and a target from the next taste in the list.
pub fn users(data: &EmojiData, per_taste: usize) -> Vec<User> {
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for i in data.house("heldout") {
        let r = &data.records[i];
        if seen.insert(r.base.clone()) {
            groups.entry(format!("{} / {}", r.category, r.subcategory)).or_default().push(i);
        }
    }
    let tastes: Vec<(String, Vec<usize>)> = groups.into_iter().filter(|(_, v)| v.len() >= 5).collect();
    let mut out = Vec::new();
    for (t, (name, items)) in tastes.iter().enumerate() {
        let other = &tastes[(t + 1) % tastes.len()].1;
        for u in 0..per_taste {
            let history: Vec<usize> = (0..5).map(|k| items[(u * 3 + k) % items.len()]).collect();
            let query = theme_query(&data.records[items[0]].subcategory);
            out.push(User { taste: name.clone(), history, target: other[(u * 2 + t) % other.len()], query });
        }
    }
    out
}

/// A user's search for a subcategory taste, in words (`animal-mammal` -> "animal mammal stickers").
pub fn theme_query(subcategory: &str) -> String {
    format!("{} stickers", subcategory.replace('-', " "))
}

/// The user's history as events (what a sticker shop would record).
pub fn history_events(data: &EmojiData, user: &User) -> Vec<Event> {
    let item = |i: usize| {
        let r = &data.records[i];
        Item {
            id: r.id.clone(),
            title: r.name.clone(),
            category: Some(r.category.clone()),
            tags: r.keywords.iter().take(6).cloned().collect(),
            description: None,
            image: Some(r.id.clone()),
        }
    };
    let t0 = 1_764_000_000_000i64;
    let mut ev = Vec::new();
    for (k, &i) in user.history.iter().enumerate() {
        let at = t0 + 60_000 * k as i64;
        let kind = match k {
            1 => EventKind::Click { item: item(i), dwell_ms: None },
            2 => EventKind::Purchase { item: item(i), quantity: None },
            3 => EventKind::Rating { item: item(i), value: 5.0, scale: None },
            _ => EventKind::View { item: item(i), dwell_ms: Some(3_000) },
        };
        ev.push(Event::new(at, kind));
    }
    ev.push(Event::new(t0 + 600_000, EventKind::Search { query: user.query.clone() }));
    ev
}

/// A system under test: how candidates are made and chosen.
#[derive(Debug, Clone, serde::Serialize)]
pub struct System {
    pub name: String,
    pub weights: Vec<u32>,
    pub weighting: Weighting,
    pub alpha: f32,
    pub keywords: bool,
    pub embeddings: bool,
    /// Candidates start from the target's own picture (the catalog item's image).
    pub picture: bool,
}

/// The systems compared; those with implicit embeddings only when a soft prompt is given.
pub fn systems(alpha: f32, with_embeddings: bool) -> Vec<System> {
    let s = |name: &str, weights: Vec<u32>, weighting, alpha, keywords, embeddings, picture| System {
        name: name.into(),
        weights,
        weighting,
        alpha,
        keywords,
        embeddings,
        picture,
    };
    let mut v = vec![
        s("target only (baseline)", vec![0], Weighting::Rows, 0.0, false, false, false),
        s("keywords, w=1, text, no choice", vec![1], Weighting::Text, alpha, true, false, false),
        s("PMG keywords, w in {0,1,2}, rows", vec![0, 1, 2], Weighting::Rows, alpha, true, false, false),
        s("PMG keywords, w in {0,1,2}, text", vec![0, 1, 2], Weighting::Text, alpha, true, false, false),
        s("target picture only (baseline)", vec![0], Weighting::Rows, 0.0, false, false, true),
        s(
            "PMG keywords from the target picture, w in {0,1,2}, rows",
            vec![0, 1, 2],
            Weighting::Rows,
            alpha,
            true,
            false,
            true,
        ),
    ];
    if with_embeddings {
        v.extend([
            s("embeddings, w=1, no choice", vec![1], Weighting::Rows, alpha, false, true, false),
            s("PMG embeddings only, w in {0,1,2}", vec![0, 1, 2], Weighting::Rows, alpha, false, true, false),
            s(
                "PMG keywords + embeddings, w in {0,1,2}, text",
                vec![0, 1, 2],
                Weighting::Text,
                alpha,
                true,
                true,
                false,
            ),
        ]);
    }
    v
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Metrics {
    pub acc_text: f64,
    pub acc_image: f64,
    pub pref_image: f64,
    pub pref_text: f64,
    pub pixel_distance: f64,
    /// Fraction of users whose chosen candidate had w > 0.
    pub personalized: f64,
    /// By the judge: the target is its first guess / among its first five (NaN without a judge).
    pub judge_top1: f64,
    pub judge_top5: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemResult {
    pub system: System,
    pub mean: Metrics,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UserResult {
    pub taste: String,
    pub history: Vec<String>,
    pub target: String,
    pub keywords: Vec<String>,
    pub metrics: Vec<Metrics>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PersonalizeEval {
    pub users: usize,
    pub seeds: usize,
    pub options: SampleOptions,
    pub seconds: f64,
    pub systems: Vec<SystemResult>,
    pub per_user: Vec<UserResult>,
}

impl PersonalizeEval {
    pub fn markdown(&self) -> String {
        let base = &self.systems[0].mean;
        let rel = |v: f64, b: f64| if b == 0.0 { 0.0 } else { 100.0 * (v - b) / b };
        let mut s = format!(
            "{} held-out users, {} seeds per weight, {} steps, guidance {}; mean over users of the chosen image (relative change to the baseline in brackets)\n\n",
            self.users, self.seeds, self.options.steps, self.options.guidance
        );
        s += "| system | judge: target top-1 | judge: target top-5 | s(x, target text) | s(x, target image) | s(x, history images) | s(x, preference keywords) | pixel distance to history | chose w > 0 |\n|---|---|---|---|---|---|---|---|---|\n";
        for r in &self.systems {
            let m = &r.mean;
            s += &format!(
                "| {} | {:.0}% | {:.0}% | {:.4} ({:+.1}%) | {:.4} ({:+.1}%) | {:.4} ({:+.1}%) | {:.4} ({:+.1}%) | {:.1} ({:+.1}%) | {:.0}% |\n",
                r.system.name,
                100.0 * m.judge_top1,
                100.0 * m.judge_top5,
                m.acc_text,
                rel(m.acc_text, base.acc_text),
                m.acc_image,
                rel(m.acc_image, base.acc_image),
                m.pref_image,
                rel(m.pref_image, base.pref_image),
                m.pref_text,
                rel(m.pref_text, base.pref_text),
                m.pixel_distance,
                rel(m.pixel_distance, base.pixel_distance),
                100.0 * m.personalized
            );
        }
        s
    }
}

/// Everything `evaluate` made, for grids: per user, the chosen image of every system.
pub struct Output {
    pub report: PersonalizeEval,
    pub users: Vec<User>,
    pub chosen: Vec<Vec<Image>>,
}

fn pixel_distance(a: &Image, b: &Image) -> f64 {
    a.rgba.iter().zip(&b.rgba).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.rgba.len() as f64
}

#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    data: &EmojiData,
    lm: &LanguageModel,
    generator: &Generator,
    scorer: &Scorer,
    soft: Option<&SoftPrompt>,
    judge: Option<&Judge>,
    sample: &SampleOptions,
    seeds: usize,
    alpha: f32,
    limit: Option<usize>,
) -> Result<Output> {
    let started = std::time::Instant::now();
    let mut us = users(data, 3);
    if let Some(n) = limit {
        us.truncate(n);
    }
    let systems = systems(alpha, soft.is_some());
    let p = Personalizer { lm, generator: generator.into(), scorer: scorer.into(), soft };
    let ex = Extractor::new(lm)?;
    let extract = ExtractOptions::default();
    let mut per_user = Vec::new();
    let mut chosen_images = Vec::new();
    for (k, user) in us.iter().enumerate() {
        let events = history_events(data, user);
        let mut feed = Feed::blocking(lm.new_session());
        let prefs: Preferences = block_on(ex.preferences(&mut feed, &events, &extract))?;
        let implicit = soft.map(|s| s.embed(lm, &events, &extract)).transpose()?;
        let target = data.records[user.target].captions[0].clone();
        let hist_imgs: Vec<Image> = user.history.iter().map(|&i| data.image(i)).collect();
        let hist_refs: Vec<&Image> = hist_imgs.iter().collect();
        let hist_feats = scorer.image_features(&hist_refs)?;
        let target_img = data.image(user.target);
        let target_feat = scorer.image_features(&[&target_img])?.remove(0);
        let pref_feat = if prefs.keywords.is_empty() {
            None
        } else {
            let c = pmg::diffusion::encode_text(lm, &prefs.phrase(), pmg::diffusion::MAX_TEXT_TOKENS)?;
            Some(scorer.text_features(&[&c])?.remove(0))
        };
        let mut metrics = Vec::new();
        let mut imgs = Vec::new();
        for sys in &systems {
            let opts = PersonalizeOptions {
                alpha: Some(sys.alpha),
                weights: sys.weights.clone(),
                seeds,
                seed: 1000 * k as u64,
                weighting: sys.weighting,
                keywords: sys.keywords,
                embeddings: sys.embeddings,
                sample: *sample,
                ..Default::default()
            };
            let r: Personalized = block_on(p.generate(
                &mut Blocking(|_| true),
                prefs.clone(),
                implicit.as_ref(),
                &Profile::default(),
                &Target { title: target.clone(), image: sys.picture.then(|| target_img.clone()) },
                &opts,
            ))?;
            let c = &r.candidates[r.chosen];
            let f = scorer.image_features(&[&c.image])?.remove(0);
            let s = |a: &[f32]| score_from_cosine(dot(&f, a)) as f64;
            let judged = match judge {
                Some(j) => {
                    let probs = j.probabilities(std::slice::from_ref(&c.image))?.remove(0);
                    let base = &data.records[user.target].base;
                    let k = j
                        .class_of(base)
                        .ok_or_else(|| pmg::error::Error::InvalidArgument(format!("the judge has no class {base}")))?;
                    let r = rank(&probs, k);
                    (f64::from(u8::from(r == 1)), f64::from(u8::from(r <= 5)))
                }
                None => (f64::NAN, f64::NAN),
            };
            metrics.push(Metrics {
                judge_top1: judged.0,
                judge_top5: judged.1,
                acc_text: c.accuracy.exp() as f64,
                acc_image: s(&target_feat),
                pref_image: hist_feats.iter().map(|h| s(h)).sum::<f64>() / hist_feats.len() as f64,
                pref_text: pref_feat.as_deref().map_or(c.accuracy.exp() as f64, s),
                pixel_distance: hist_imgs.iter().map(|h| pixel_distance(&c.image, h)).sum::<f64>()
                    / hist_imgs.len() as f64,
                personalized: if c.weight > 0 { 1.0 } else { 0.0 },
            });
            imgs.push(c.image.clone());
        }
        eprintln!(
            "user {:>2}/{} ({}): target {target:?}, keywords {}",
            k + 1,
            us.len(),
            user.taste,
            r_keywords(&prefs)
        );
        per_user.push(UserResult {
            taste: user.taste.clone(),
            history: user.history.iter().map(|&i| data.records[i].name.clone()).collect(),
            target,
            keywords: prefs.keywords.iter().map(|k| k.text.clone()).collect(),
            metrics,
        });
        chosen_images.push(imgs);
    }
    let n = per_user.len().max(1) as f64;
    let results = systems
        .iter()
        .enumerate()
        .map(|(j, sys)| {
            let mut m = Metrics::default();
            for u in &per_user {
                let x = &u.metrics[j];
                m.acc_text += x.acc_text / n;
                m.acc_image += x.acc_image / n;
                m.pref_image += x.pref_image / n;
                m.pref_text += x.pref_text / n;
                m.pixel_distance += x.pixel_distance / n;
                m.personalized += x.personalized / n;
                m.judge_top1 += x.judge_top1 / n;
                m.judge_top5 += x.judge_top5 / n;
            }
            SystemResult { system: sys.clone(), mean: m }
        })
        .collect();
    let report = PersonalizeEval {
        users: per_user.len(),
        seeds,
        options: *sample,
        seconds: started.elapsed().as_secs_f64(),
        systems: results,
        per_user,
    };
    Ok(Output { report, users: us, chosen: chosen_images })
}

fn r_keywords(p: &Preferences) -> String {
    p.keywords.iter().take(4).map(|k| k.text.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Record;

    fn record(i: usize, sub: &str, split: &str) -> Record {
        Record {
            id: format!("e{i}"),
            base: format!("e{i}"),
            image: String::new(),
            category: "C".into(),
            subcategory: sub.into(),
            name: format!("emoji {i}"),
            label: String::new(),
            captions: vec![format!("emoji {i}")],
            keywords: vec!["k".into()],
            split: split.into(),
            style: "google".into(),
            share_alike: false,
        }
    }

    #[test]
    fn users_are_held_out_coherent_and_varied() {
        let mut records = Vec::new();
        for (sub, n) in [("a", 5), ("b", 7), ("small", 4)] {
            for _ in 0..n {
                records.push(record(records.len(), sub, "heldout"));
            }
        }
        // Training emoji of a big subcategory never become users.
        for _ in 0..9 {
            records.push(record(records.len(), "t", "train"));
        }
        let data = EmojiData { dir: ".".into(), images: vec![Vec::new(); records.len()], records };
        let us = users(&data, 3);
        assert_eq!(us.len(), 6, "two tastes (a, b) with >= 5 emoji, three users each");
        for u in &us {
            let sub = |i: usize| data.records[i].subcategory.clone();
            assert!(u.history.iter().chain([&u.target]).all(|&i| data.records[i].split == "heldout"));
            assert!(u.history.iter().all(|&i| sub(i) == sub(u.history[0])), "one taste per history");
            assert_ne!(sub(u.target), sub(u.history[0]), "the target comes from another taste");
            let distinct: std::collections::HashSet<_> = u.history.iter().collect();
            assert_eq!(distinct.len(), 5);
        }
        let targets: std::collections::HashSet<_> =
            us.iter().filter(|u| u.taste.ends_with("/ a")).map(|u| u.target).collect();
        assert_eq!(targets.len(), 3, "a taste's three users get different targets");
        let ev = history_events(&data, &us[0]);
        assert_eq!(ev.len(), 6);
        assert!(ev.iter().all(|e| e.validate(0).is_ok()));
    }
}
