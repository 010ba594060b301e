//! The history's rules have one source, `docs/history.schema.json`, which pmg-web's history module
//! interprets (web/src/history.js). These tests hold the Rust validation to the same schema: the same
//! limits, and the same verdict on every case of `golden/history-cases.json` (which the JS unit tests
//! run too).

use pmg::HistoryError;
use pmg::history::{limits, parse_event};
use serde_json::Value;

fn repo_file(path: &str) -> Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))).unwrap()
}

#[test]
fn the_schema_states_the_crates_limits() {
    let schema = repo_file("../../docs/history.schema.json");
    let defs = &schema["$defs"];
    let item = &defs["item"]["properties"];
    let branch = |ty: &str| {
        defs["event"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| {
                b["properties"]["type"]["const"] == ty
                    || b["properties"]["type"]["enum"].as_array().is_some_and(|e| e.iter().any(|v| v == ty))
            })
            .unwrap_or_else(|| panic!("no schema branch for {ty}"))["properties"]
            .clone()
    };
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a number: {v}")) as usize;
    assert_eq!(n(&item["id"]["maxLength"]), limits::ID);
    assert_eq!(n(&item["title"]["maxLength"]), limits::TITLE);
    assert_eq!(n(&item["category"]["maxLength"]), limits::CATEGORY);
    assert_eq!(n(&item["tags"]["maxItems"]), limits::TAGS);
    assert_eq!(n(&item["tags"]["items"]["maxLength"]), limits::TAG);
    assert_eq!(n(&item["description"]["maxLength"]), limits::DESCRIPTION);
    assert_eq!(n(&item["image"]["maxLength"]), limits::IMAGE);
    assert_eq!(n(&defs["text"]["maxLength"]), limits::TEXT);
    assert_eq!(n(&branch("search")["query"]["maxLength"]), limits::QUERY);
    assert_eq!(n(&branch("feedback")["target"]["maxLength"]), limits::QUERY);
    assert_eq!(n(&branch("message")["speaker"]["maxLength"]), limits::SPEAKER);
    assert_eq!(n(&schema["properties"]["events"]["maxItems"]), limits::IMPORT_EVENTS);
    assert_eq!(schema["properties"]["version"]["const"], pmg::history::EXPORT_VERSION);
}

#[test]
fn the_crate_agrees_with_every_shared_case() {
    let cases = repo_file("tests/golden/history-cases.json");
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut failures = Vec::new();
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let got = parse_event(&c["event"].to_string(), 0);
        let valid = c["valid"].as_bool().unwrap();
        match (&got, valid) {
            (Ok(_), true) => {}
            (Ok(_), false) => failures.push(format!("{name}: accepted, the case says invalid")),
            (Err(e), true) => failures.push(format!("{name}: refused ({e}), the case says valid")),
            (Err(e), false) => {
                let field = match e {
                    HistoryError::TooLong { field, .. } | HistoryError::BadValue { field, .. } => Some(field.as_str()),
                    _ => None,
                };
                if let (Some(got), Some(want)) = (field, c["field"].as_str())
                    && got != want
                {
                    failures.push(format!("{name}: refused for `{got}`, the case says `{want}`"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
