#!/usr/bin/env python3
"""Checks eval/preferences/histories.json against the event schema of crates/pmg/src/history/mod.rs and the
evaluation set's own rules, then prints counts per domain and theme.

    python3 eval/preferences/check.py [path/to/histories.json]

Standard library only. Exit status 1 and one line per problem when something is wrong.
"""
import json
import os
import sys
from collections import Counter

# crates/pmg/src/history/mod.rs, `limits`.
ID, TITLE, CATEGORY, TAGS, TAG, DESCRIPTION, IMAGE, TEXT, QUERY, SPEAKER = 128, 300, 100, 32, 64, 2000, 2048, 4000, 500, 64
MAX_AT = 253_402_300_799_999

ITEM_FIELDS = {"id", "title", "category", "tags", "description", "image"}
# Per kind: required fields, optional fields (besides "at" and "type").
KINDS = {
    "view": ({"item"}, {"dwellMs"}),
    "click": ({"item"}, {"dwellMs"}),
    "purchase": ({"item"}, {"quantity"}),
    "rating": ({"item", "value"}, {"scale"}),
    "review": ({"item", "text"}, set()),
    "search": ({"query"}, set()),
    "message": ({"role", "text"}, {"speaker"}),
}
DOMAINS = {"stickers", "shop", "movies"}


def is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def is_uint(v, bits):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**bits


def check_str(errs, where, v, max_len, nonempty=False):
    if not isinstance(v, str):
        errs.append(f"{where}: expected a string, got {type(v).__name__}")
        return
    if len(v) > max_len:
        errs.append(f"{where}: {len(v)} characters, more than {max_len}")
    if nonempty and not v.strip():
        errs.append(f"{where}: must not be empty")


def check_item(errs, where, item):
    if not isinstance(item, dict):
        errs.append(f"{where}: item must be an object")
        return
    for k in item.keys() - ITEM_FIELDS:
        errs.append(f"{where}: unknown item field {k!r}")
    for k in ("id", "title"):
        if k not in item:
            errs.append(f"{where}: item.{k} is required")
    if "id" in item:
        check_str(errs, f"{where}.item.id", item["id"], ID, nonempty=True)
    if "title" in item:
        check_str(errs, f"{where}.item.title", item["title"], TITLE, nonempty=True)
    for k, n in (("category", CATEGORY), ("description", DESCRIPTION), ("image", IMAGE)):
        if k in item:
            check_str(errs, f"{where}.item.{k}", item[k], n)
    if "tags" in item:
        tags = item["tags"]
        if not isinstance(tags, list):
            errs.append(f"{where}.item.tags: expected a list")
        else:
            if len(tags) > TAGS:
                errs.append(f"{where}.item.tags: {len(tags)} tags, more than {TAGS}")
            for t in tags:
                check_str(errs, f"{where}.item.tags[]", t, TAG)


def check_event(errs, where, e):
    """The rules of `Event`'s serde form and `Event::validate`."""
    if not isinstance(e, dict):
        errs.append(f"{where}: an event must be an object")
        return
    at = e.get("at")
    if not (isinstance(at, int) and not isinstance(at, bool)):
        errs.append(f"{where}: `at` must be an integer (ms since 1970)")
    elif not 0 <= at <= MAX_AT:
        errs.append(f"{where}: `at` {at} is not a time in milliseconds since 1970")
    kind = e.get("type")
    if kind not in KINDS:
        errs.append(f"{where}: unknown type {kind!r}")
        return
    required, optional = KINDS[kind]
    fields = e.keys() - {"at", "type"}
    for k in fields - required - optional:
        errs.append(f"{where}: unknown field {k!r} for {kind}")
    for k in required - fields:
        errs.append(f"{where}: {kind} needs {k!r}")
    if "item" in e:
        check_item(errs, where, e["item"])
    if "dwellMs" in e and not is_uint(e["dwellMs"], 64):
        errs.append(f"{where}: dwellMs must be a non-negative integer")
    if "quantity" in e and not is_uint(e["quantity"], 32):
        errs.append(f"{where}: quantity must be a non-negative integer")
    if kind == "rating":
        scale = e.get("scale", 5)
        if not (is_num(scale) and scale >= 1):
            errs.append(f"{where}: scale {scale!r} is not a scale >= 1")
        elif not (is_num(e.get("value")) and 0 <= e["value"] <= scale):
            errs.append(f"{where}: value {e.get('value')!r} is not within 0..={scale}")
    if kind in ("review", "message") and "text" in e:
        check_str(errs, f"{where}.text", e["text"], TEXT, nonempty=True)
    if kind == "search" and "query" in e:
        check_str(errs, f"{where}.query", e["query"], QUERY, nonempty=True)
    if kind == "message":
        if e.get("role") not in ("user", "other"):
            errs.append(f"{where}: role must be \"user\" or \"other\"")
        if "speaker" in e:
            check_str(errs, f"{where}.speaker", e["speaker"], SPEAKER)


def stem(w):
    """As `stem` in crates/pmg/src/preference/eval.rs."""
    i, j = 0, len(w)
    while i < j and not w[i].isalnum():
        i += 1
    while j > i and not w[j - 1].isalnum():
        j -= 1
    w = w[i:j].lower()
    return w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w


def words(text):
    return {stem(w) for w in text.replace(",", " ").replace(":", " ").split()}


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "histories.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    errs = []
    if data.get("version") != 1:
        errs.append("version must be 1")
    for k in data.keys() - {"version", "themes", "histories"}:
        errs.append(f"unknown top-level field {k!r}")
    themes = data.get("themes", {})
    for name, t in themes.items():
        for k in t.keys() - {"description", "vocabulary"}:
            errs.append(f"theme {name}: unknown field {k!r}")
        if not isinstance(t.get("description"), str) or not t["description"].strip():
            errs.append(f"theme {name}: needs a description")
        vocab = t.get("vocabulary", [])
        if not 10 <= len(vocab) <= 25:
            errs.append(f"theme {name}: {len(vocab)} vocabulary entries, expected 10 to 25")
        for v in vocab:
            if not isinstance(v, str) or v != v.lower() or not v.strip():
                errs.append(f"theme {name}: vocabulary entry {v!r} must be a non-empty lowercase string")
        if len(set(vocab)) != len(vocab):
            errs.append(f"theme {name}: duplicate vocabulary entries")
    histories = data.get("histories", [])
    ids = Counter(h.get("id") for h in histories)
    for i, n in ids.items():
        if n > 1:
            errs.append(f"history id {i} used {n} times")
    per_domain, per_theme, kinds = Counter(), Counter(), Counter()
    signal = []
    for h in histories:
        hid = h.get("id", "?")
        for k in h.keys() - {"id", "theme", "domain", "events"}:
            errs.append(f"{hid}: unknown field {k!r}")
        if h.get("theme") not in themes:
            errs.append(f"{hid}: unknown theme {h.get('theme')!r}")
            continue
        if h.get("domain") not in DOMAINS:
            errs.append(f"{hid}: unknown domain {h.get('domain')!r}")
        events = h.get("events", [])
        if not 6 <= len(events) <= 14:
            errs.append(f"{hid}: {len(events)} events, expected 6 to 14")
        last = None
        titles = {}
        for i, e in enumerate(events):
            item = e.get("item") if isinstance(e, dict) else None
            if isinstance(item, dict) and titles.setdefault(item.get("id"), item.get("title")) != item.get("title"):
                errs.append(f"{hid}[{i}]: item {item.get('id')} has two titles in one history")
            check_event(errs, f"{hid}[{i}]", e)
            at = e.get("at") if isinstance(e, dict) else None
            if isinstance(at, int) and last is not None and at <= last:
                errs.append(f"{hid}[{i}]: timestamps must increase")
            last = at if isinstance(at, int) else last
            kinds[e.get("type")] += 1
        per_domain[h.get("domain")] += 1
        per_theme[(h["theme"], h.get("domain"))] += 1
        # How many events carry at least one vocabulary word: the theme must be visible in the data.
        vocab = {stem(w) for v in themes[h["theme"]]["vocabulary"] for w in v.split()}
        on = 0
        for e in events:
            text = " ".join([e.get("query", ""), e.get("text", "")])
            if "item" in e:
                text += " " + " ".join([e["item"].get("title", ""), " ".join(e["item"].get("tags", []))])
            on += bool(words(text) & vocab)
        signal.append((hid, on, len(events)))
        if on * 3 < len(events):
            errs.append(f"{hid}: only {on} of {len(events)} events mention the theme's vocabulary")
    for t in themes:
        if not any(h.get("theme") == t for h in histories):
            errs.append(f"theme {t} has no history")
    if errs:
        print("\n".join(errs))
        sys.exit(1)
    print(f"{path}: {len(histories)} histories, {len(themes)} themes, {sum(kinds.values())} events, all valid")
    print("domains: " + ", ".join(f"{d} {n}" for d, n in sorted(per_domain.items())))
    print("event kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    for t in themes:
        row = ", ".join(f"{d} {per_theme[(t, d)]}" for d in sorted(DOMAINS) if per_theme[(t, d)])
        print(f"  {t:<18} {row}")
    share = sum(on / n for _, on, n in signal) / len(signal)
    print(f"events that name a vocabulary word: {share:.0%} on average")


if __name__ == "__main__":
    main()
