//! `web/src/options.d.ts`: the TypeScript declarations of the option structs, generated from their
//! Rust definitions (serde names, doc comments) by ts-rs, so pmg-web's types cannot drift from what
//! the wasm binding accepts. `PMG_BLESS=1 cargo test --release --workspace --lib options_ts` rewrites the file.

use ts_rs::{Config, TS};

use crate::diffusion::{ImageOptions, SampleOptions, SamplerKind};
use crate::history::render::{Domain, RenderOptions};
use crate::llm::{GenerateOptions, SamplingParams};
use crate::personalize::{PersonalizeOptions, Weighting};
use crate::preference::{ExtractOptions, PromptMode};

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/src/options.d.ts");

/// A struct's declaration with its defaults (as JSON) after it.
fn with_defaults<T: TS + serde::Serialize + Default>(cfg: &Config) -> String {
    defaults_after::<T>(T::decl(cfg))
}

fn defaults_after<T: serde::Serialize + Default>(decl: String) -> String {
    let defaults = serde_json::to_string(&T::default()).expect("options serialize");
    format!("{decl}\n// Defaults: {defaults}")
}

/// `Outer`'s declaration naming the `Inner` it flattens (`{ own fields } & Inner`) where ts-rs would
/// copy Inner's fields in.
fn naming_flattened<Outer: TS + serde::Serialize + Default, Inner: TS>(cfg: &Config) -> String {
    let decl = Outer::decl(cfg);
    let inner = Inner::inline_flattened(cfg);
    let body = inner.trim().trim_start_matches('{').trim_end_matches('}').trim();
    assert!(decl.contains(body), "{} does not contain {}'s fields as expected", Outer::name(cfg), Inner::name(cfg));
    let decl = decl.replacen(body, "", 1);
    let end = decl.rfind('}').expect("an object type");
    let decl = format!("{}}} & {}{}", &decl[..end], Inner::name(cfg), &decl[end + 1..]);
    defaults_after::<Outer>(decl)
}

fn declarations() -> String {
    let cfg = Config::default();
    let decls = [
        SamplerKind::decl(&cfg),
        Domain::decl(&cfg),
        PromptMode::decl(&cfg),
        Weighting::decl(&cfg),
        with_defaults::<SamplingParams>(&cfg),
        naming_flattened::<GenerateOptions, SamplingParams>(&cfg),
        with_defaults::<RenderOptions>(&cfg),
        with_defaults::<SampleOptions>(&cfg),
        naming_flattened::<ImageOptions, SampleOptions>(&cfg),
        with_defaults::<ExtractOptions>(&cfg),
        naming_flattened::<PersonalizeOptions, SampleOptions>(&cfg),
    ];
    let mut out = String::from(
        "// Generated from the Rust option structs (crates/pmg/src/options_ts.rs); do not edit.\n\
         // Each struct's defaults (the Rust `Default`) follow it as JSON.\n",
    );
    for d in decls {
        // ts-rs documents a declaration above it; export every one.
        let d = d.replacen("\ntype ", "\nexport type ", 1);
        let d = if d.starts_with("type ") { format!("export {d}") } else { d };
        out.push('\n');
        out.push_str(d.trim());
        out.push('\n');
    }
    out
}

#[test]
fn declarations_are_current() {
    let want = declarations();
    if std::env::var_os("PMG_BLESS").is_some() {
        std::fs::write(FILE, &want).unwrap();
    }
    let have = std::fs::read_to_string(FILE).unwrap_or_default();
    assert!(
        have == want,
        "{FILE} is stale: run `PMG_BLESS=1 cargo test --release --workspace --lib options_ts` and commit it"
    );
}
