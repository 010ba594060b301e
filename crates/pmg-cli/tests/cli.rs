//! The CLI as a user runs it: history commands on a temporary file, preferences from the sample history.

use std::path::PathBuf;
use std::process::Command;

fn pmg(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pmg")).args(args).env("PMG_THREADS", "2").output().expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pmg-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join("history.jsonl")
}

#[test]
fn history_add_list_export_import_clear() {
    let file = temp_file("history");
    let f = file.to_str().unwrap();
    assert!(
        pmg(&["history", "add", "--file", f, "--type", "view", "--title", "cat face", "--tag", "cat", "--at", "1000"])
            .0
    );
    assert!(pmg(&["history", "add", "--file", f, "--type", "search", "--query", "pastel stickers", "--at", "2000"]).0);
    assert!(
        pmg(&[
            "history",
            "add",
            "--file",
            f,
            "--json",
            r#"{"at":3000,"type":"rating","item":{"id":"m","title":"Alien"},"value":5}"#
        ])
        .0
    );
    let (ok, _, err) = pmg(&["history", "add", "--file", f, "--type", "rating", "--title", "x", "--value", "9"]);
    assert!(!ok && err.contains("value"), "{err}");
    let (ok, _, err) = pmg(&["history", "add", "--file", f, "--type", "teleport", "--title", "x"]);
    assert!(!ok && err.contains("unknown event type"), "{err}");

    let (ok, out, _) = pmg(&["history", "list", "--file", f, "--json"]);
    assert!(ok);
    assert_eq!(out.lines().count(), 3, "{out}");
    let (ok, out, _) = pmg(&["history", "list", "--file", f]);
    assert!(ok && out.contains("cat face") && out.contains("pastel stickers"), "{out}");

    let export = file.with_file_name("export.json");
    assert!(pmg(&["history", "export", "--file", f, "--out", export.to_str().unwrap()]).0);
    assert!(pmg(&["history", "clear", "--file", f]).0);
    assert_eq!(pmg(&["history", "list", "--file", f]).1, "");
    let (ok, _, err) = pmg(&["history", "import", "--file", f, export.to_str().unwrap()]);
    assert!(ok && err.contains("imported 3 events"), "{err}");
    let (ok, _, err) = pmg(&["history", "retain", "--file", f, "--max-events", "1"]);
    assert!(ok && err.contains("dropped 2"), "{err}");
    assert_eq!(pmg(&["history", "list", "--file", f, "--json"]).1.lines().count(), 1);
}

#[test]
fn preferences_from_the_sample_history() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/history.json");
    let (ok, out, err) = pmg(&[
        "preferences",
        "--history",
        sample,
        "--device",
        "cpu",
        "--n-keywords",
        "5",
        "--target",
        "birthday cake",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kws = v["preferences"]["keywords"].as_array().unwrap();
    assert!(!kws.is_empty() && kws.len() <= 5, "{out}");
    assert!(v["target"].as_array().is_some_and(|t| !t.is_empty()), "{out}");
    let (ok, out, _) =
        pmg(&["preferences", "--history", sample, "--device", "cpu", "--n-keywords", "5", "--show-prompt"]);
    assert!(ok && out.contains("Stickers the user picked:") && out.contains("#User:"), "{out}");
    let (ok, _, err) = pmg(&["preferences", "--history", "/nonexistent.json", "--device", "cpu"]);
    assert!(!ok && err.contains("/nonexistent.json"), "{err}");
}

/// `pmg image --generator DIR` on the tiny diffusers checkpoint of pmg's goldens: a PNG of the
/// asked size per seed, the same bytes for the same seed, and a typed error for a wrong size.
#[test]
fn image_from_a_diffusers_folder() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../pmg/tests/golden/sd-tiny");
    let out = std::env::temp_dir().join(format!("pmg-cli-{}-sd.png", std::process::id()));
    let o = out.to_str().unwrap();
    let run = |seed: &str| {
        let args = ["image", "--prompt", "a cat", "--generator", dir, "--size", "32", "--steps", "2"];
        let (ok, _, err) = pmg(&[&args[..], &["--device", "cpu", "--seed", seed, "--out", o]].concat());
        assert!(ok, "{err}");
        let img = pmg::image::Image::decode_png(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!((img.width, img.height), (32, 32));
        img.rgba
    };
    let (a, b, c) = (run("5"), run("5"), run("6"));
    assert!(a == b && a != c, "a seed draws one image");
    let (ok, _, err) = pmg(&["image", "--prompt", "a cat", "--generator", dir, "--size", "30", "--device", "cpu"]);
    assert!(!ok && err.contains("multiple of"), "{err}");
}

/// `pmg personalize` as a user runs it, on the tiny SD and CLIP folders of pmg's goldens: the chosen
/// PNG and its JSON with every candidate's scores (this also parses every flag of the command, whose
/// option structs share field names such as `seed`).
#[test]
fn personalize_with_a_diffusers_folder_and_clip() {
    let golden = concat!(env!("CARGO_MANIFEST_DIR"), "/../pmg/tests/golden");
    let history = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/history.json");
    let out = std::env::temp_dir().join(format!("pmg-cli-{}-cake.png", std::process::id()));
    let (sd, clip) = (format!("{golden}/sd-tiny"), format!("{golden}/clip-tiny"));
    let args =
        ["personalize", "--history", history, "--target", "birthday cake", "--generator", &sd, "--scorer", &clip];
    let more =
        ["--steps", "1", "--guidance", "0", "--sampler", "euler-ancestral", "--seed", "4", "--keyword-seed", "2"];
    let (ok, stdout, err) = pmg(&[&args[..], &more, &["--device", "cpu", "--out", out.to_str().unwrap()]].concat());
    assert!(ok, "{err}");
    assert!(stdout.contains("preferences:"), "{stdout}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(out.with_extension("json")).unwrap()).unwrap();
    assert_eq!(r["candidates"].as_array().unwrap().len(), 6, "3 weights x 2 seeds");
    assert_eq!(r["candidates"][0]["seed"], 4);
    let (ok, _, err) = pmg(&["personalize", "--history", history, "--target", "x", "--generator", &sd]);
    assert!(!ok && err.contains("--scorer"), "an SD generator needs a CLIP scorer: {err}");
}
