#!/usr/bin/env python3
"""Build data/emoji/dataset.json (image, caption variants) pairs from what scripts/fetch-emoji.sh
extracted, with the fixed held-out split of models/emoji-split.json.

Python standard library only. Inputs (under data/emoji/):
  crates/pmg/src/emoji-datasource-google/emoji.json   emoji metadata (iamcal/emoji-data)
  crates/pmg/src/emojilib/dist/emoji-en-US.json       keywords, keyed by the emoji character
  img/google/64/*.png                      the 64x64 RGBA images (Noto Emoji)
  img/<set>/64/*.png                       the Iconify sets rendered by `pmg train styles`, where present
  crates/pmg/src/iconify-<set>/info.json              their licence and author
Outputs:
  data/emoji/dataset.json     one record per image on disk, sorted by (id, style)
  data/emoji/LICENSES.md      sources, licences, counts, commands
  models/EMOJI-DATA.md        the same text (checked in; the model card quotes it)
  models/emoji-split.json     only when missing: once committed the split never changes

The split holds out base emoji (an emoji with all its skin-tone variations), so nothing of a held-out
emoji reaches training. It is stratified by category: in each category the base codes are ordered
by sha256(seed + ":" + unified) and the first ceil(10%) are held out.
"""
import argparse
import collections
import hashlib
import json
import math
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "data", "emoji")
SPLIT = os.path.join(ROOT, "models", "emoji-split.json")
CARD = os.path.join(ROOT, "models", "EMOJI-DATA.md")

SEED = "pmg-emoji-split-v1"
HELDOUT_FRACTION = 0.10
RULE = (
    "Units are base emoji of emoji-datasource 16.0.0's emoji.json (their `unified` code, uppercase, as "
    "written there), the 'Component' category (skin-tone modifiers) and any lone regional indicator "
    "excluded. Per category, sort the base codes by the hex sha256 of (seed + ':' + unified) and hold out "
    "the first ceil(0.10 * n). A held-out base holds out all its skin-tone variations. The list is fixed "
    "once committed: the builder reads it and only derives it when the file is missing."
)

PACKAGES = {  # name: (version, sha512 integrity, sha1 shasum); the same pins as scripts/fetch-emoji.sh
    "emoji-datasource-google": ("16.0.0",
        "sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
        "a80ac3e8106cbd4d8648ce758aa099e8827b6157"),
    "emojilib": ("4.0.3",
        "sha512-KbWiYre9aRSaPbHrHZIz9zmoM+21LAsK1VFJtnTh1VCtWE/rNMDviGhQTmselFl95dhqtGlY22iH0leG5BuW0g==",
        "08f79f04955ba0008336335c80997c8ac7365d5f"),
    "@iconify-json/twemoji": ("1.2.5",
        "sha512-uKpuIEV0v6K5BW3Mjdyl+XKFVAbbcPxAgifKvEMtZoUZB5+YiY5zaMm2uNNCxyXzAWU9yNLlj41WU6/mvgALsw==",
        "52e65345122ef4eff61a8bf9eceefbdbb5294c7a"),
    "@iconify-json/fluent-emoji-flat": ("1.2.6",
        "sha512-RY47RgPb47fYUiyrA64sIOL0+UU02s29sXpNBbIQRBUlPlfNFTKUmZDERGuxDs/7yNGWqQYvuaSYM1M4fRXlUw==",
        "5586071d17e0d3460c185a67effc389f0bd95907"),
    "@iconify-json/fluent-emoji": ("1.2.7",
        "sha512-D8G6bKAyIsyxP1rzZtIWr/gg/fO4Rg1+DyCWlfqKK4h8W+4Em/Y0P6QYgJUQTlUcagzJvSyg+9OBv4hz4Hc/QA==",
        "93fa6ee6e46be10adeaf33c0bda08a10e142dd0d"),
    "@iconify-json/noto-v1": ("1.2.5",
        "sha512-/DsVMius69Q0fRS53z7QK1TROSuar606jiIx+laXtdsYGMXpf6LtHBx6CGfoo3UHHb/XpBsw+1L1x3eyPqMuVA==",
        "5e8b04718889814019ea9f604f1af152e961a0db"),
    "@iconify-json/emojione": ("1.2.3",
        "sha512-T9+T3HIbJNLKKsmxYKlaYhvnHYkz/HNYTV7SHCXVZPfeUi4FqskY70YeN8yYAZT8cCv7w5vJxS4Q1m8zb9CMMg==",
        "b74a8f5d73a3d94b4948c9b9d4eef4ab0d3927b9"),
    "@iconify-json/fxemoji": ("1.2.2",
        "sha512-UAasRaxzFUKfIGSmLwnoarsssA4LX0VLLuEmplIqM6ZNQqIQRtav8tZ4H1neTlBreXuMQyAifr5jP4kn78DpiQ==",
        "cfc146e8936b7fa7924ee515e74618404a730136"),
    "@iconify-json/streamline-emojis": ("1.2.4",
        "sha512-iNr9T9XuZVTyQPJO8ZlLxBzPkpi7qMl+z1l0C31vpEMqhPMelth3n7CeWQYtixdetDPdI81yeG4ROqjWpYJE6A==",
        "bfc5a1693ef87eb07270c4efe2e92904b6fd7c10"),
    "@iconify-json/openmoji": ("1.2.29",
        "sha512-vXdhkqcXVSO6suy+m9LbcUM3OdVyuNOtpV8/als/WqfkQIRxevL5Geb/g+6GH/Qwnq1OqksEmaDGTCmZ5nFKJQ==",
        "abf3b76420992ec5b44afa6ddbed8ae7fb6526eb"),
}

# The Iconify sets, in the order `pmg train styles` renders them (crates/pmg-train/src/styles.rs SETS). A set
# is a style of the dataset when its images are on disk.
ICONIFY = ["twemoji", "fluent-emoji-flat", "fluent-emoji", "noto-v1", "emojione", "fxemoji",
           "streamline-emojis", "openmoji"]
SHARE_ALIKE = {"CC-BY-SA-4.0"}


def style_licence(style):
    """SPDX id of a style's images: Noto Emoji for the Google PNGs, else the set's info.json."""
    if style == "google":
        return "Apache-2.0"
    return iconify_info(style)["license"]["spdx"]


def iconify_info(style):
    with open(os.path.join(DATA, "src", f"iconify-{style}", "info.json"), encoding="utf-8") as f:
        return json.load(f)

SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}


def char_of(unified):
    return "".join(chr(int(cp, 16)) for cp in unified.split("-"))


def words(s):
    """A short name or keyword as plain words: `_`, `-` -> spaces, lowercase, single spaces."""
    return " ".join(s.replace("_", " ").replace("-", " ").lower().split())


def dedupe(items):
    seen, out = set(), []
    for x in items:
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def tone_names(key):
    """'1F3FD' -> ['medium skin tone']; '1F3FB-1F3FF' -> ['light skin tone', 'dark skin tone'];
    a repeated tone ('1F3FB-1F3FB', both people alike) is named once, as CLDR does."""
    return dedupe(SKIN_TONES[t] for t in key.split("-"))


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def is_emoticon(kw):
    # emojilib mixes in emoticons such as ":D" and ":)"; they are not words a caption should carry
    return kw.startswith(":") or not re.search(r"[a-z0-9]", kw)


def load_json(*parts):
    path = os.path.join(DATA, *parts)
    if not os.path.exists(path):
        sys.exit(f"build_emoji_dataset: {path} is missing; run scripts/fetch-emoji.sh first")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def base_emoji(emoji):
    """The split's units: every base emoji except components and lone regional indicators."""
    out = []
    for e in emoji:
        if e["category"] == "Component":
            continue
        cps = [int(c, 16) for c in e["unified"].split("-")]
        if len(cps) == 1 and 0x1F1E6 <= cps[0] <= 0x1F1FF:
            continue
        out.append(e)
    return out


def derive_split(bases):
    by_cat = collections.defaultdict(list)
    for e in bases:
        by_cat[e["category"]].append(e["unified"])
    held = []
    for cat, codes in sorted(by_cat.items()):
        codes.sort(key=lambda c: hashlib.sha256(f"{SEED}:{c}".encode()).hexdigest())
        held += codes[: math.ceil(HELDOUT_FRACTION * len(codes))]
    return {"version": 1, "seed": SEED, "rule": RULE, "heldout": sorted(held)}


def base_names(e, keywords):
    """The names of one base emoji: its emoji.json name (the Unicode character name for single code
    points, e.g. "father christmas"), emojilib's first keyword (which follows the CLDR short name,
    "santa claus") and the short names with `_`/`-` as spaces ("santa")."""
    cldr = words(keywords[0]) if keywords else None
    return dedupe([e["name"].lower(), cldr] + [words(s) for s in e["short_names"]])


def captions_for(e, names, ambiguous, keywords, tones):
    """Caption variants for one image: the base emoji's names that name no other emoji, and sentences
    headed by the first such name (the label), with the skin tone(s) when the image has any."""
    clear = [n for n in names if n not in ambiguous]
    head = clear[0] if clear else names[0]
    kws = dedupe(words(k) for k in keywords[1:] if not is_emoticon(k))
    kws = [k for k in kws if k not in names]
    cat = e["category"].lower()
    sub = words(e["subcategory"])
    tone = ", ".join(tones)
    if tone:
        caps = [f"{n}: {tone}" for n in clear]
        label = f"{head}: {tone}"
        head = f"{head}, {tone}"
    else:
        caps = list(clear)
        label = head
    caps.append(f"{head}, {cat}")
    caps.append(f"{head}, {sub}")
    if kws:
        caps.append(f"{head}: {', '.join(kws)}")
    return label, dedupe(caps), kws


def drop_ambiguous_captions(records):
    """A caption that names two different images would teach the scorer that they are the same; drop
    it from both, keeping at least one caption. (Names are already filtered this way in
    captions_for; this catches whatever else collides.)"""
    owners = collections.defaultdict(set)
    for r in records:
        for c in r["captions"]:
            owners[c].add(r["unified"])
    ambiguous = {c for c, u in owners.items() if len(u) > 1}
    for r in records:
        kept = [c for c in r["captions"] if c not in ambiguous]
        r["captions"] = kept or r["captions"][:1]
    return sorted(ambiguous)


def keywords_of(e, lib):
    ch = char_of(e["unified"])
    kw = lib.get(ch)
    if kw is None and e.get("non_qualified"):
        kw = lib.get(char_of(e["non_qualified"]))
    if kw is None:
        kw = lib.get(ch.replace("\ufe0f", ""))
    return kw or []


def build(styles):
    emoji = load_json("src", "emoji-datasource-google", "emoji.json")
    lib = load_json("src", "emojilib", "dist", "emoji-en-US.json")
    bases = base_emoji(emoji)
    base_codes = {e["unified"] for e in bases}

    if os.path.exists(SPLIT):
        with open(SPLIT, encoding="utf-8") as f:
            split = json.load(f)
        print(f"split   {os.path.relpath(SPLIT, ROOT)}: {len(split['heldout'])} held-out base emoji (kept)")
    else:
        split = derive_split(bases)
        with open(SPLIT, "w", encoding="utf-8") as f:
            json.dump(split, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print(f"split   {os.path.relpath(SPLIT, ROOT)}: derived, {len(split['heldout'])} held-out base emoji")
    heldout = set(split["heldout"])
    unknown = sorted(heldout - base_codes)
    if unknown:
        print(f"warning: {len(unknown)} held-out codes are not in emoji.json: {unknown[:10]}", file=sys.stderr)

    # Names shared by two base emoji: a main name (emoji.json or CLDR) beats a short name ("cat" is
    # 1F408's name and a short name of 1F431 cat face: 1F408 keeps it); two main names that cross
    # (1F601's Unicode name "grinning face with smiling eyes" is 1F604's CLDR name) caption neither.
    keywords_by = {e["unified"]: keywords_of(e, lib) for e in bases}
    names_by = {e["unified"]: base_names(e, keywords_by[e["unified"]]) for e in bases}
    owners = collections.defaultdict(lambda: collections.defaultdict(set))  # name -> rank -> codes
    for e in bases:
        code, kw = e["unified"], keywords_by[e["unified"]]
        main = {e["name"].lower()} | ({words(kw[0])} if kw else set())
        for n in names_by[code]:
            owners[n][0 if n in main else 1].add(code)
    not_for = collections.defaultdict(set)  # code -> names it may not use
    ambiguous_names = set()
    for n, ranks in owners.items():
        if sum(len(c) for c in ranks.values()) < 2:
            continue
        ambiguous_names.add(n)
        best = ranks[min(ranks)]
        for rank, codes in ranks.items():
            for code in codes:
                if not (rank == min(ranks) and len(best) == 1):
                    not_for[code].add(n)

    records, missing, bad_png, no_keywords = [], collections.Counter(), [], []
    licences = {style: style_licence(style) for style in styles}
    for e in bases:
        keywords, names = keywords_by[e["unified"]], names_by[e["unified"]]
        if not keywords:
            no_keywords.append(e["unified"])
        kind = "flag" if e["category"] == "Flags" else "emoji"
        variants = [(e["unified"], e["image"], [], e)]
        for key, v in sorted((e.get("skin_variations") or {}).items()):
            variants.append((v["unified"], v["image"], tone_names(key), v))
        for unified, image, tones, meta in variants:
            label, captions, kws = captions_for(e, names, not_for[e["unified"]], keywords, tones)
            for style in styles:
                if not meta.get(f"has_img_{style}", True):
                    missing[style] += 1
                    continue
                rel = f"img/{style}/64/{image}"
                path = os.path.join(DATA, rel)
                if not os.path.exists(path):
                    missing[style] += 1
                    continue
                if png_size(path) != (64, 64):
                    bad_png.append(rel)
                    continue
                rec = {
                    "id": image[: -len(".png")],
                    "image": rel,
                    "style": style,
                    "unified": unified,
                    "base": e["unified"],
                    "kind": kind,
                    "category": e["category"],
                    "subcategory": e["subcategory"],
                    "name": e["name"].lower() + (": " + ", ".join(tones) if tones else ""),
                    "label": label,
                    "captions": captions,
                    "keywords": kws,
                    "split": "heldout" if e["unified"] in heldout else "train",
                }
                if tones:
                    rec["skin_tones"] = tones
                rec["licence"] = licences[style]
                if licences[style] in SHARE_ALIKE:
                    rec["share_alike"] = True
                records.append(rec)
    records.sort(key=lambda r: (r["id"], r["style"]))
    ambiguous = sorted(ambiguous_names)
    dropped = drop_ambiguous_captions(records)
    if dropped:
        print(f"warning: {len(dropped)} more captions named more than one image: {dropped[:8]}", file=sys.stderr)
    labels = collections.Counter((r["label"], r["style"]) for r in records)
    same = sorted(k[0] for k, n in labels.items() if n > 1)
    if same:
        print(f"warning: {len(same)} labels name more than one image: {same[:8]}", file=sys.stderr)
    if bad_png:
        sys.exit(f"build_emoji_dataset: {len(bad_png)} images are not 64x64 PNGs: {bad_png[:5]}")
    ids = collections.Counter((r["id"], r["style"]) for r in records)
    dup = [k for k, n in ids.items() if n > 1]
    if dup:
        sys.exit(f"build_emoji_dataset: duplicate ids {dup[:5]}")
    leak = {r["base"] for r in records if r["split"] == "train"} & heldout
    assert not leak, leak

    out = os.path.join(DATA, "dataset.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"version": 1, "split": os.path.relpath(SPLIT, ROOT), "records": records},
                  f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote   {os.path.relpath(out, ROOT)}: {len(records)} records")
    for style in styles:
        if missing[style]:
            print(f"warning: {missing[style]} {style} images listed in emoji.json are not on disk", file=sys.stderr)
    if no_keywords:
        print(f"note:   {len(no_keywords)} base emoji without emojilib keywords: {no_keywords[:10]}")

    print(f"note:   {len(ambiguous)} names are shared by several emoji (kept by at most one): {ambiguous[:8]}")

    card = card_text(styles, bases, heldout, records, no_keywords, ambiguous)
    for path in (os.path.join(DATA, "LICENSES.md"), CARD):
        with open(path, "w", encoding="utf-8") as f:
            f.write(card)
        print(f"wrote   {os.path.relpath(path, ROOT)}")
    return records


def read_text(*parts):
    path = os.path.join(DATA, *parts)
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def readme_licence_lines(pkg, style_word):
    """The image-licence bullet for one image set, verbatim from the package README."""
    for line in read_text("src", pkg, "README.md").splitlines():
        if line.startswith("*") and style_word in line and "licen" in line.lower():
            return line.strip()
    return None


def image_source_row(pkg, label):
    """The README's image-source table header and the row for one image set, verbatim."""
    lines = read_text("src", pkg, "README.md").splitlines()
    head = next((l.strip() for l in lines if l.startswith("| Image Set")), None)
    row = next((l.strip() for l in lines if l.startswith(f"| {label} ")), None)
    return "\n".join(x for x in (head, row) if x) if row else None


def quote(*parts):
    return "```\n" + "\n\n".join(p for p in parts if p) + "\n```\n"


def card_text(styles, bases, heldout, records, no_keywords, ambiguous):
    iconify = [s for s in styles if s != "google"]
    pkgs = ["emoji-datasource-google", "emojilib"] + [f"@iconify-json/{s}" for s in iconify]
    L = []
    L.append("# Emoji training data: sources, licences, split\n")
    L.append("Generated by `scripts/build_emoji_dataset.py` (do not edit by hand). The same text is written to "
             "`data/emoji/LICENSES.md` next to the data and to `models/EMOJI-DATA.md` (checked in); the model "
             "card of any model trained on this data must carry the attribution below.\n")
    L.append("## Sources (npm registry)\n")
    L.append("| Package | Version | dist.integrity | dist.shasum | Used for |")
    L.append("| --- | --- | --- | --- | --- |")
    use = {"emoji-datasource-google": "`emoji.json` (names, short names, categories, skin-tone variations), `img/google/64/*.png`",
           "emojilib": "`dist/emoji-en-US.json` (keywords per emoji character)",
           **{f"@iconify-json/{s}": f"`icons.json`, `chars.json` rendered to `img/{s}/64/*.png`" for s in iconify}}
    for p in pkgs:
        ver, integ, sha1 = PACKAGES[p]
        L.append(f"| `{p}` | {ver} | `{integ}` | `{sha1}` | {use[p]} |")
    L.append("")
    L.append("## Licences and attribution\n")
    ds_lic = read_text("src", "emoji-datasource-google", "LICENSE")
    L.append("### emoji-datasource (data: `emoji.json`, categories, names)\n")
    L.append("`emoji-datasource-google` declares `\"license\": \"MIT\"` in its package.json; its LICENSE file reads:\n")
    L.append("```\n" + ds_lic + "\n```\n")
    L.append("### Google images: Noto Emoji\n")
    row = image_source_row("emoji-datasource-google", "Google")
    bullet = readme_licence_lines("emoji-datasource-google", "Google")
    L.append("The package README (section *Image Sources*) says where the images come from and under which "
             "licence (verbatim):\n")
    L.append(quote(row, bullet))
    L.append("So the 64x64 Google PNGs are Noto Emoji artwork by Google, under the Apache License 2.0 "
             "(https://www.apache.org/licenses/LICENSE-2.0; upstream: https://github.com/googlefonts/noto-emoji). "
             "The tarball carries no copy of the Apache-2.0 text itself, only this link, so a model card (or "
             "anything redistributed) must credit \"Noto Emoji by Google, Apache License 2.0\" and include or "
             "link the licence text. (Upstream noto-emoji states that its flag images, from "
             "third_party/region-flags, are public domain; that is not in the tarball and not checked here, so "
             "treat every image as Apache-2.0.)\n")
    if iconify:
        L.append("### Iconify emoji sets (images rendered from SVG)\n")
        L.append("Each `@iconify-json/<set>` package states its set's name, author and licence in `info.json` "
                 "(quoted below). The images were resized (rendered to 64x64 from the vector art). CC BY 4.0 "
                 "requires attribution with a link to the licence and a note of changes; CC BY-SA 4.0 also "
                 "requires that adaptations carry the same licence, so **share-alike sets are marked "
                 "`share_alike` in dataset.json and kept out of every shipped model's training** (the "
                 "evaluation may use them).\n")
        L.append("| Set | Name | Author | Licence | Images |")
        L.append("| --- | --- | --- | --- | ---: |")
        count = collections.Counter(r["style"] for r in records)
        for s in iconify:
            info = iconify_info(s)
            a, lic = info.get("author", {}), info["license"]
            L.append(f"| `{s}` | {info.get('name', s)} | [{a.get('name', '?')}]({a.get('url', '')}) | "
                     f"[{lic.get('title', lic['spdx'])}]({lic.get('url', '')}) (`{lic['spdx']}`) | {count[s]} |")
        L.append("")
    L.append("### emojilib (keywords)\n")
    L.append("`emojilib` declares `\"license\": \"MIT\"`; its LICENSE file reads:\n")
    L.append("```\n" + read_text("src", "emojilib", "LICENSE") + "\n```\n")

    L.append("## Dataset\n")
    L.append("`data/emoji/dataset.json`: one record per image on disk, sorted by (id, style): `id` (the image "
             "file stem, e.g. `1f44b-1f3fd`), `image` (path under `data/emoji/`), `style`, `unified`, `base` "
             "(the base emoji's `unified`, shared by its skin-tone variations), `kind` (`flag` for the Flags "
             "category, else `emoji`), `category`, `subcategory`, `name` (lowercased emoji.json name, "
             "`: <skin tone>` appended for variations), `captions` (variants: the name, emojilib's CLDR-like "
             "name, the short names with `_`/`-` as spaces, `<name>, <category>`, `<name>, <subcategory>`, "
             "`<name>: <emojilib keywords>`; a name shared by several emoji is kept only by the one whose main "
             "(emoji.json or CLDR) name it is, and by none if that is not exactly one), "
             "`label` (the first of the names that names only this emoji, with the skin tone: one string per "
             "image, for zero-shot evaluation), `keywords`, `skin_tones` (variations only), `split` "
             "(`train`/`heldout`). The 'Component' category (the five bare skin-tone modifiers) is left out.\n")
    L.append("### Split\n")
    L.append(f"`models/emoji-split.json` (seed `{SEED}`): {RULE}\n")

    by_style = collections.defaultdict(collections.Counter)
    for r in records:
        by_style[r["style"]][r["split"]] += 1
    L.append("### Counts\n")
    L.append("| Style | Images | Train | Held out |")
    L.append("| --- | ---: | ---: | ---: |")
    for s in styles:
        c = by_style[s]
        L.append(f"| {s} | {c['train'] + c['heldout']} | {c['train']} | {c['heldout']} |")
    L.append("")
    cats = collections.defaultdict(collections.Counter)
    for e in bases:
        cats[e["category"]]["heldout" if e["unified"] in heldout else "train"] += 1
        cats[e["category"]]["variations"] += len(e.get("skin_variations") or {})
    L.append("Base emoji per category (a base emoji is one image plus its skin-tone variations):\n")
    L.append("| Category | Base emoji | Train | Held out | Held out % | Skin-tone variations |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    tot = collections.Counter()
    for cat in sorted(cats):
        c = cats[cat]
        n = c["train"] + c["heldout"]
        tot.update(c)
        L.append(f"| {cat} | {n} | {c['train']} | {c['heldout']} | {100 * c['heldout'] / n:.1f} | {c['variations']} |")
    n = tot["train"] + tot["heldout"]
    L.append(f"| **all** | {n} | {tot['train']} | {tot['heldout']} | {100 * tot['heldout'] / n:.1f} | {tot['variations']} |")
    L.append("")
    L.append(f"{len(ambiguous)} names are shared by several base emoji (kept by at most one, as above): "
             + ", ".join(f"`{c}`" for c in ambiguous) + ".\n")
    if no_keywords:
        L.append(f"{len(no_keywords)} base emoji have no emojilib keywords: {', '.join(no_keywords)}.\n")
    L.append("## Commands\n")
    L.append("```sh")
    L.append("scripts/fetch-emoji.sh            # npm pack + sha512/sha1 check + extract into data/emoji/, then:")
    L.append("python3 scripts/build_emoji_dataset.py   # dataset.json, LICENSES.md, this file")
    L.append("scripts/fetch-emoji.sh --google-only  # the Google PNGs alone (no Iconify sets, no Rust build)")
    L.append("```\n")
    L.append("`fetch-emoji.sh` runs `npm pack <pkg>@<ver>` (registry only), checks the tarball's sha512 and sha1 "
             "against the values pinned above, which must also equal `npm view <pkg>@<ver> dist.integrity "
             "dist.shasum`, and is idempotent. The builder needs only the Python standard library.")
    if not iconify:
        L.append("\nThis file was generated without the Iconify sets; counts cover the Google style only.")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--google-only", action="store_true", help="the Google style alone, even where Iconify sets are rendered")
    args = ap.parse_args()
    styles = ["google"]
    if not args.google_only:
        styles += [s for s in ICONIFY if os.path.isdir(os.path.join(DATA, "img", s, "64"))]
    build(styles)


if __name__ == "__main__":
    main()
