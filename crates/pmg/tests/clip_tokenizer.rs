//! CLIP's tokenizer against transformers' CLIPTokenizer (crates/pmg/tests/golden/clip-tokenizer/,
//! written by scripts/golden_clip_tokenizer.py): a small CLIP-style vocabulary and strings with case,
//! whitespace runs, contractions, digits, accents, emoji, unknown words and an inline special token.

use pmg::tokenizer::clip::ClipTokenizer;

fn golden(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/golden/clip-tokenizer/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn tokens_equal_transformers() {
    let t = ClipTokenizer::from_vocab_merges(&golden("vocab.json"), &golden("merges.txt")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&golden("cases.json")).unwrap();
    assert_eq!((t.bos, t.eos), (doc["bos"].as_u64().unwrap() as u32, doc["eos"].as_u64().unwrap() as u32));
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 9);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        assert_eq!(t.encode(text).unwrap(), ids(&c["ids"]), "{text:?}");
        assert_eq!(t.encode_padded(text, 16, t.eos).unwrap(), ids(&c["padded16"]), "{text:?} padded to 16");
    }
}

#[test]
fn bad_files_are_typed_errors() {
    let merges = golden("merges.txt");
    assert!(ClipTokenizer::from_vocab_merges("{not json", &merges).is_err());
    assert!(ClipTokenizer::from_vocab_merges(r#"{"a": 0}"#, "").is_err(), "no start/end tokens");
    let e = ClipTokenizer::from_vocab_merges(&golden("vocab.json"), "#version: 0.2\nabc\n").err().unwrap();
    assert!(e.to_string().contains("line 2"), "{e}");
}
