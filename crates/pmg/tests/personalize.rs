//! PMG end to end with the real LLM, generator and scorer: a history becomes preference keywords,
//! candidates over weights and seeds, an alpha-weighted choice; progress, cancel, an empty history,
//! and feedback stored with the history moving the user's alpha.

mod common;

use pmg::diffusion::Generator;
use pmg::history::store::{HistoryStore, JsonlStore};
use pmg::history::{Event, EventKind};
use pmg::llm::LanguageModel;
use pmg::personalize::{
    PersonalizeOptions, Personalized, Personalizer, Profile, Stage, Target, Weighting, personalize, select,
};
use pmg::scorer::Scorer;
use pmg::soft_prompt::SoftPrompt;
use pmg::{Error, PmgDevice};

fn model_file(name: &str) -> Vec<u8> {
    let p = format!("{}/../../models/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

struct Models {
    lm: LanguageModel,
    generator: Generator,
    scorer: Scorer,
    soft: SoftPrompt,
}

fn models() -> Models {
    let dev = PmgDevice::cpu();
    Models {
        lm: LanguageModel::from_gguf_bytes(&common::default_model_bytes(), &dev, 2048).unwrap(),
        generator: Generator::from_bytes(
            &model_file("emoji-autoencoder.safetensors"),
            &model_file("emoji-denoiser.safetensors"),
            &dev,
        )
        .unwrap(),
        scorer: Scorer::from_bytes(&model_file("emoji-scorer.safetensors"), &dev).unwrap(),
        soft: SoftPrompt::from_bytes(&model_file("emoji-soft-prompt.safetensors"), &dev).unwrap(),
    }
}

/// The cat-and-pastel history of the preference evaluation set.
fn cat_history() -> Vec<Event> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../eval/preferences/histories.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let h = v["histories"].as_array().unwrap().iter().find(|h| h["theme"] == "cats_pastel").unwrap();
    pmg::history::parse_export(&h["events"].to_string()).unwrap().0
}

fn opts() -> PersonalizeOptions {
    let mut o = PersonalizeOptions { seed: 3, ..Default::default() };
    o.sample.steps = 8;
    o
}

fn pixel_distance(a: &pmg::image::Image, b: &pmg::image::Image) -> f64 {
    a.rgba.iter().zip(&b.rgba).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum::<f64>() / a.rgba.len() as f64
}

#[test]
fn a_history_personalizes_the_target() {
    let m = models();
    let p =
        Personalizer { lm: &m.lm, generator: (&m.generator).into(), scorer: (&m.scorer).into(), soft: Some(&m.soft) };
    let events = cat_history();
    let mut stages = Vec::new();
    let r = personalize(&p, &events, "birthday cake", &opts(), |s| {
        stages.push(s);
        true
    })
    .unwrap();
    // Progress: extract, encode, every denoising step, score; nothing else.
    let mut want = vec![Stage::Extract, Stage::Encode];
    want.extend((1..=8).map(|step| Stage::Denoise { step, steps: 8 }));
    want.push(Stage::Score);
    assert_eq!(stages, want);

    assert!(!r.preferences.neutral);
    assert_eq!(r.used_keywords.len(), 3);
    assert!(
        r.preferences.phrase().contains("cat") || r.preferences.phrase().contains("kitten"),
        "{}",
        r.preferences.phrase()
    );
    let ws: Vec<(u32, u64)> = r.candidates.iter().map(|c| (c.weight, c.seed)).collect();
    assert_eq!(ws, [(0, 3), (0, 4), (1, 3), (1, 4), (2, 3), (2, 4)]);
    assert_eq!(r.alpha, 0.5, "no feedback yet: the default alpha");
    for c in &r.candidates {
        assert!(
            c.accuracy <= 0.0 && c.preference <= 0.0 && c.accuracy.is_finite() && c.preference.is_finite(),
            "{c:?}"
        );
        assert_eq!(c.image.width, 64);
    }
    // The preference conditioning reaches the image: the same seed with and without it differs.
    let d = pixel_distance(&r.candidates[0].image, &r.candidates[2].image);
    assert!(d > 3.0, "weight 1 changed the image by only {d:.2}/255 per byte");
    // w = 0 is exactly the target-only image (the unpersonalized baseline).
    assert!(r.candidates[0].prompt == "birthday cake");

    // The choice is PMG's alpha-weighted score, and alpha moves it between the extremes.
    let best = |f: &dyn Fn(&pmg::personalize::Candidate) -> f32| {
        (0..6).max_by(|&a, &b| f(&r.candidates[a]).total_cmp(&f(&r.candidates[b]))).unwrap()
    };
    assert_eq!(r.chosen, best(&|c| 0.5 * c.accuracy + 0.5 * c.preference));
    let mut c = r.candidates.clone();
    assert_eq!(select(&mut c, 0.0, &Profile::default()), best(&|c| c.accuracy));
    assert_eq!(select(&mut c, 1.0, &Profile::default()), best(&|c| c.preference));

    // Same inputs, same result (seeded noise, greedy keywords).
    let again = personalize(&p, &events, "birthday cake", &opts(), |_| true).unwrap();
    assert_eq!(again.chosen, r.chosen);
    assert_eq!(again.candidates, r.candidates);

    // The paper's text repetition (the default): the keywords appear w times in the prompt.
    assert_eq!(r.candidates[4].prompt, format!("birthday cake, {k}, {k}", k = r.used_keywords.join(", ")));
    // Row weighting: the keywords encoded once, their rows repeated; another image for the same seed.
    let rows = personalize(
        &p,
        &events,
        "birthday cake",
        &PersonalizeOptions { weighting: Weighting::Rows, weights: vec![2], seeds: 1, ..opts() },
        |_| true,
    )
    .unwrap();
    assert_eq!(rows.candidates[0].prompt, format!("birthday cake + ({}) x2", rows.used_keywords.join(", ")));
    assert!(
        pixel_distance(&rows.candidates[0].image, &r.candidates[4].image) > 1.0,
        "text and row weighting gave the same image"
    );
}

#[test]
fn implicit_embeddings_condition_the_image() {
    let m = models();
    let p =
        Personalizer { lm: &m.lm, generator: (&m.generator).into(), scorer: (&m.scorer).into(), soft: Some(&m.soft) };
    let events = cat_history();
    let only = PersonalizeOptions { keywords: false, embeddings: true, weights: vec![0, 1, 2], seeds: 1, ..opts() };
    let r = personalize(&p, &events, "birthday cake", &only, |_| true).unwrap();
    assert!(r.used_embeddings && r.used_keywords.is_empty());
    let prompts: Vec<&str> = r.candidates.iter().map(|c| c.prompt.as_str()).collect();
    assert_eq!(prompts, ["birthday cake", "birthday cake + implicit x1", "birthday cake + implicit x2"]);
    // The soft rows reach the image, more with w = 2; the keywords still score the candidates.
    let (d1, d2) = (
        pixel_distance(&r.candidates[0].image, &r.candidates[1].image),
        pixel_distance(&r.candidates[0].image, &r.candidates[2].image),
    );
    assert!(d1 > 1.0 && d2 > d1 * 0.8, "implicit rows changed the image by {d1:.2} (w=1) and {d2:.2} (w=2)");
    assert!(r.candidates[1].preference != r.candidates[1].accuracy);
    // Keywords and embeddings together: both in the conditioning, a different image again.
    let both =
        personalize(&p, &events, "birthday cake", &PersonalizeOptions { keywords: true, ..only.clone() }, |_| true)
            .unwrap();
    assert!(both.used_embeddings && both.used_keywords.len() == 3);
    assert!(
        both.candidates[1].prompt.ends_with("+ implicit x1")
            && both.candidates[1].prompt.contains(&both.used_keywords[0])
    );
    assert!(pixel_distance(&both.candidates[1].image, &r.candidates[1].image) > 1.0);
    // w = 0 stays the target-only image whatever the preferences.
    assert_eq!(both.candidates[0].image, r.candidates[0].image);
    // Asking for embeddings without the soft prompt loaded is a typed error, not a silent fallback.
    let without = Personalizer { soft: None, ..p };
    assert!(matches!(personalize(&without, &events, "birthday cake", &only, |_| true), Err(Error::InvalidArgument(_))));
    // An empty history has nothing to embed: one unpersonalized weight.
    let r = personalize(&p, &[], "birthday cake", &only, |_| true).unwrap();
    assert!(!r.used_embeddings && r.candidates.iter().all(|c| c.weight == 0));
}

#[test]
fn cancel_empty_history_and_bad_options() {
    let m = models();
    let p =
        Personalizer { lm: &m.lm, generator: (&m.generator).into(), scorer: (&m.scorer).into(), soft: Some(&m.soft) };
    // Cancel in the middle of denoising.
    let r = personalize(&p, &cat_history(), "coffee", &opts(), |s| !matches!(s, Stage::Denoise { step: 3, .. }));
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    // No history: an unpersonalized image, one weight, said so.
    let r = personalize(&p, &[], "coffee", &opts(), |_| true).unwrap();
    assert!(r.preferences.neutral && r.used_keywords.is_empty());
    assert!(r.candidates.iter().all(|c| c.weight == 0 && c.accuracy == c.preference));
    assert_eq!(r.candidates.len(), 2);
    // Bad arguments are typed errors, before any model runs.
    for (target, o) in [
        ("", opts()),
        ("cake", PersonalizeOptions { alpha: Some(2.0), ..opts() }),
        ("cake", PersonalizeOptions { seeds: 0, ..opts() }),
    ] {
        assert!(
            matches!(personalize(&p, &[], target, &o, |_| true), Err(Error::InvalidArgument(_))),
            "{target:?} {o:?}"
        );
    }
}

#[test]
fn thumbs_up_stored_with_the_history_moves_alpha() {
    let m = models();
    let p =
        Personalizer { lm: &m.lm, generator: (&m.generator).into(), scorer: (&m.scorer).into(), soft: Some(&m.soft) };
    let dir = std::env::temp_dir().join(format!("pmg-feedback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = JsonlStore::open(dir.join("history.jsonl"));
    store.import(cat_history(), Default::default()).unwrap();
    let o = PersonalizeOptions { alpha: None, ..opts() };
    let first: Personalized = personalize(&p, &store.list().unwrap(), "birthday cake", &o, |_| true).unwrap();
    assert_eq!(first.alpha, 0.5);
    // The user likes the candidate that leans most to their preferences, three times.
    let lean = |c: &pmg::personalize::Candidate| c.preference - c.accuracy;
    let fav = (0..first.candidates.len())
        .max_by(|&a, &b| lean(&first.candidates[a]).total_cmp(&lean(&first.candidates[b])))
        .unwrap();
    for k in 0..3 {
        let mut e =
            Event::new(pmg::history::store::now_ms() + k, EventKind::Feedback(first.feedback(fav, true).unwrap()));
        e.at += 1;
        store.record(e).unwrap();
    }
    // The profile is a replay of the stored history (the file, read back).
    let events = JsonlStore::open(dir.join("history.jsonl")).list().unwrap();
    let profile = Profile::from_history(&events);
    assert_eq!(profile.feedback, 3);
    assert!(profile.alpha > 0.5, "alpha {} did not rise after thumbs up on the most personal candidate", profile.alpha);
    let second = personalize(&p, &events, "birthday cake", &o, |_| true).unwrap();
    assert_eq!(second.alpha, profile.alpha);
    // Feedback events are not behaviour: the LLM reads the same history text as before.
    assert_eq!(second.preferences.rendered, first.preferences.rendered);
    // Deleting the history forgets the feedback too.
    store.clear().unwrap();
    assert_eq!(Profile::from_history(&store.list().unwrap()).alpha, 0.5);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_target_picture_is_kept() {
    let m = models();
    let p = Personalizer { lm: &m.lm, generator: (&m.generator).into(), scorer: (&m.scorer).into(), soft: None };
    // The site's picture of its item: here a rocket the generator drew, passed at 2x its size.
    let cond = pmg::diffusion::encode_text(&m.lm, "rocket", pmg::diffusion::MAX_TEXT_TOKENS).unwrap();
    let o = PersonalizeOptions { image_strengths: vec![0.2, 0.6], ..opts() };
    let rocket = m.generator.generate(&[cond], &[7], &o.sample, &mut |_, _| true).unwrap().remove(0);
    let big = pmg::image::Image {
        width: 128,
        height: 128,
        rgba: (0..128 * 128)
            .flat_map(|i| rocket.rgba[((i / 128 / 2) * 64 + (i % 128) / 2) * 4..][..4].to_vec())
            .collect(),
    };
    let mut steps = Vec::new();
    let target = Target { title: "rocket".into(), image: Some(big) };
    let r = personalize(&p, &cat_history(), target, &o, |s| {
        if let Stage::Denoise { step, steps: n } = s {
            steps.push((step, n));
        }
        true
    })
    .unwrap();
    // Weights x seeds candidates; seed i of each weight at image_strengths[i].
    assert_eq!(r.candidates.len(), 6);
    for c in &r.candidates {
        assert_eq!(c.strength, o.image_strengths[(c.seed - o.seed) as usize], "{c:?}");
    }
    // One progress count over the two runs (one per strength).
    let total = steps[0].1;
    assert!(steps.iter().all(|s| s.1 == total) && steps.last().unwrap().0 == total && total <= 2 * o.sample.steps);
    // A low strength keeps the picture, a higher one redraws more of it; both start nearer to it
    // than the text alone does.
    let near = |c: &pmg::personalize::Candidate| pixel_distance(&c.image, &rocket);
    let text_only = personalize(&p, &[], "rocket", &o, |_| true).unwrap();
    let text = text_only.candidates.iter().map(near).fold(f64::INFINITY, f64::min);
    let at = |w: u32, s: f32| near(r.candidates.iter().find(|c| c.weight == w && c.strength == s).unwrap());
    assert!(
        at(0, 0.2) < 0.6 * text && at(0, 0.2) < at(0, 0.6) && at(0, 0.6) < text,
        "{} {} {text}",
        at(0, 0.2),
        at(0, 0.6)
    );
    assert!(at(2, 0.6) > at(0, 0.2), "the preferences change it");
    // A malformed picture is a typed error.
    let bad =
        Target { title: "rocket".into(), image: Some(pmg::image::Image { width: 3, height: 3, rgba: vec![1; 5] }) };
    assert!(matches!(personalize(&p, &[], bad, &o, |_| true), Err(Error::Image(_))));
}

/// PMG on a Stable Diffusion checkpoint scored by a CLIP (the tiny random-weight folders of the
/// goldens, crates/pmg/tests/golden/sd-tiny and clip-tiny): the LLM's keywords condition the UNet
/// through CLIP text states (prompt repetition and repeated rows), a picture start runs img2img,
/// CLIP scores every candidate and the alpha-weighted choice is made as with the emoji generator.
/// The shipped scorer cannot score SD images and the emoji soft prompt's rows do not fit SD's
/// conditioning width: both are typed errors.
#[test]
fn a_stable_diffusion_checkpoint_and_clip_run_pmg() {
    let dev = PmgDevice::cpu();
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let lm = LanguageModel::from_gguf_bytes(&common::default_model_bytes(), &dev, 2048).unwrap();
    let sd =
        pmg::sd::pipeline::StableDiffusion::from_dir(&golden.join("sd-tiny"), None, &dev, Default::default()).unwrap();
    let clip = pmg::sd::clip_scorer::ClipScorer::from_dir(&golden.join("clip-tiny"), &dev).unwrap();
    let p = Personalizer { lm: &lm, generator: (&sd).into(), scorer: (&clip).into(), soft: None };
    let events = cat_history();
    let mut o = PersonalizeOptions { seed: 3, weights: vec![0, 2], seeds: 2, embeddings: false, ..Default::default() };
    o.sample.steps = 2;
    let mut denoised = 0;
    let r = personalize(&p, &events, "birthday cake", &o, |s| {
        denoised += matches!(s, Stage::Denoise { .. }) as usize;
        true
    })
    .unwrap();
    assert!(!r.used_keywords.is_empty(), "keywords from the history: {:?}", r.preferences);
    assert_eq!(r.candidates.len(), 4);
    assert_eq!(denoised, 2, "every candidate in one batched run of two steps");
    let side = sd.native_size();
    for c in &r.candidates {
        assert_eq!((c.image.width, c.image.height), (side, side));
        assert!(c.accuracy.is_finite() && c.preference.is_finite() && c.accuracy <= 0.0);
    }
    assert!(r.candidates[0].image.rgba != r.candidates[2].image.rgba, "the keywords change the image");
    assert!(r.candidates.iter().all(|c| c.score <= r.candidates[r.chosen].score));

    // Repeated rows (different lengths in one batch) and a start picture (img2img).
    let start = pmg::image::Image::decode_png(&std::fs::read(golden.join("sd-tiny/start.png")).unwrap()).unwrap();
    let rows = PersonalizeOptions { weighting: Weighting::Rows, image_strengths: vec![0.5], ..o.clone() };
    let target = Target { title: "birthday cake".into(), image: Some(start) };
    let r = personalize(&p, &events, target, &rows, |_| true).unwrap();
    assert_eq!(r.candidates.len(), 4);

    // The shipped scorer reads the emoji generator's text states; the emoji soft prompt is 576 wide.
    let m = models();
    let wrong = Personalizer { lm: &lm, generator: (&sd).into(), scorer: (&m.scorer).into(), soft: None };
    let e = personalize(&wrong, &events, "cake", &o, |_| true).err().unwrap().to_string();
    assert!(e.contains("CLIP scorer"), "{e}");
    let soft = Personalizer { soft: Some(&m.soft), ..p };
    let e = personalize(&soft, &events, "cake", &PersonalizeOptions { embeddings: true, ..o }, |_| true)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("soft prompt"), "{e}");
}
