//! More images of the same emoji concepts: the Iconify per-set npm packages (`@iconify-json/<set>`,
//! fetched by `scripts/fetch-emoji.sh`) rendered to 64x64 RGBA PNGs named like emoji-datasource's
//! (`img/<set>/64/1f355.png`), so `scripts/build_emoji_dataset.py` adds them as styles of the
//! same records.
//!
//! Iconify's JSON format (<https://iconify.design/docs/types/iconify-json.html>): `icons` holds SVG
//! bodies on the set's (or the icon's) `left top width height` viewBox, `aliases` point at a parent
//! with optional `hFlip`/`vFlip`/`rotate` (quarter turns), `hidden` marks deprecated names. A set's
//! `chars.json` maps lower-case code points joined by `-`, FE0F removed, to icon names. Sets that
//! ship an empty `chars.json` use another set's CLDR-derived names (twemoji, fluent-emoji-flat);
//! sets with their own names (fxemoji, streamline-emojis) are joined by name: letters and digits
//! of the icon name against emoji.json's names (base emoji only), where a main name wins over a
//! short name and a short name shared by several emoji joins none ("cat" is 1F408's name and a
//! short name of 1F431 cat face).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use pmg::error::{Error, Result};
use pmg::image::Image;

use super::io_err;

/// Pixels per side of the rendered images (the dataset's size).
pub const SIZE: u32 = 64;

/// How a set's icons are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// The set's own `chars.json`.
    Chars,
    /// Empty `chars.json`, CLDR-derived names: join through these sets' `chars.json`.
    Borrowed(&'static [&'static str]),
    /// Names of its own: letters and digits against emoji.json's name and short names.
    ByName,
}

/// The Iconify sets the dataset renders, with how each is joined to emoji.json. `fetch-emoji.sh`
/// pins their packages; the builder reads their licences from each package's `info.json`.
pub const SETS: &[(&str, Naming)] = &[
    ("twemoji", Naming::Chars),
    ("fluent-emoji-flat", Naming::Chars),
    ("fluent-emoji", Naming::Borrowed(&["fluent-emoji-flat"])),
    ("noto-v1", Naming::Borrowed(&["twemoji", "fluent-emoji-flat"])),
    ("emojione", Naming::Borrowed(&["twemoji", "fluent-emoji-flat"])),
    ("fxemoji", Naming::ByName),
    ("streamline-emojis", Naming::ByName),
    ("openmoji", Naming::Chars),
];

#[derive(serde::Deserialize)]
struct IconSet {
    icons: BTreeMap<String, Icon>,
    #[serde(default)]
    aliases: BTreeMap<String, Alias>,
    /// The set's default box.
    #[serde(flatten)]
    view: ViewBox,
}

/// `left top width height`, each optional: an icon's or alias's own, else the set's.
#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
struct ViewBox {
    #[serde(default)]
    left: Option<f32>,
    #[serde(default)]
    top: Option<f32>,
    #[serde(default)]
    width: Option<f32>,
    #[serde(default)]
    height: Option<f32>,
}

impl ViewBox {
    /// Each side from `self`, where missing from `other`.
    fn or(self, other: ViewBox) -> ViewBox {
        ViewBox {
            left: self.left.or(other.left),
            top: self.top.or(other.top),
            width: self.width.or(other.width),
            height: self.height.or(other.height),
        }
    }
}

/// What an icon and an alias may both say about drawing it.
#[derive(serde::Deserialize)]
struct Props {
    #[serde(flatten)]
    view: ViewBox,
    #[serde(default)]
    hidden: bool,
    #[serde(default, rename = "hFlip")]
    h_flip: bool,
    #[serde(default, rename = "vFlip")]
    v_flip: bool,
    #[serde(default)]
    rotate: u32,
}

#[derive(serde::Deserialize)]
struct Icon {
    body: String,
    #[serde(flatten)]
    props: Props,
}

#[derive(serde::Deserialize)]
struct Alias {
    parent: String,
    #[serde(flatten)]
    props: Props,
}

/// One icon with its aliases applied: what to draw and on which box.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub body: String,
    pub view: [f32; 4],
    pub h_flip: bool,
    pub v_flip: bool,
    /// Quarter turns clockwise.
    pub rotate: u32,
}

impl IconSet {
    fn parse(json: &[u8], what: &str) -> Result<Self> {
        serde_json::from_slice(json)
            .map_err(|e| Error::InvalidArgument(format!("{what}: not an Iconify icon set: {e}")))
    }

    /// The icon `name` with its alias chain applied (flips XOR, rotations add, the nearest box
    /// wins); `None` for an unknown or hidden name.
    fn resolve(&self, name: &str) -> Option<Resolved> {
        let (mut h_flip, mut v_flip, mut rotate) = (false, false, 0u32);
        let mut view = ViewBox::default();
        let mut apply = |p: &Props| {
            view = view.or(p.view);
            h_flip ^= p.h_flip;
            v_flip ^= p.v_flip;
            rotate += p.rotate;
        };
        let mut name = name;
        // An alias chain longer than the alias table is a cycle.
        for _ in 0..=self.aliases.len() {
            if let Some(icon) = self.icons.get(name) {
                if icon.props.hidden {
                    return None;
                }
                apply(&icon.props);
                let v = view.or(self.view);
                let view =
                    [v.left.unwrap_or(0.0), v.top.unwrap_or(0.0), v.width.unwrap_or(16.0), v.height.unwrap_or(16.0)];
                return Some(Resolved { body: icon.body.clone(), view, h_flip, v_flip, rotate: rotate % 4 });
            }
            let alias = self.aliases.get(name)?;
            if alias.props.hidden {
                return None;
            }
            apply(&alias.props);
            name = &alias.parent;
        }
        None
    }

    fn names(&self) -> impl Iterator<Item = &String> {
        self.icons
            .iter()
            .filter(|(_, i)| !i.props.hidden)
            .map(|(n, _)| n)
            .chain(self.aliases.iter().filter(|(_, a)| !a.props.hidden).map(|(n, _)| n))
    }
}

/// The SVG document of an icon, transforms as Iconify's `iconToSVG` applies them.
pub fn svg_document(icon: &Resolved) -> String {
    let [l, t, w, h] = icon.view;
    let mut body = icon.body.clone();
    let mut transforms = Vec::new();
    if icon.h_flip {
        transforms.push(format!("translate({} {}) scale(-1 1)", w + 2.0 * l, 0));
    }
    if icon.v_flip {
        transforms.push(format!("translate({} {}) scale(1 -1)", 0, h + 2.0 * t));
    }
    let (mut vw, mut vh) = (w, h);
    match icon.rotate {
        1 => {
            let c = h / 2.0 + t;
            transforms.insert(0, format!("rotate(90 {c} {c})"));
            (vw, vh) = (h, w);
        }
        2 => transforms.insert(0, format!("rotate(180 {} {})", w / 2.0 + l, h / 2.0 + t)),
        3 => {
            let c = w / 2.0 + l;
            transforms.insert(0, format!("rotate(-90 {c} {c})"));
            (vw, vh) = (h, w);
        }
        _ => {}
    }
    if !transforms.is_empty() {
        body = format!("<g transform=\"{}\">{body}</g>", transforms.join(" "));
    }
    let (vl, vt) = if icon.rotate % 2 == 1 { (t, l) } else { (l, t) };
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" width=\"{vw}\" height=\"{vh}\" viewBox=\"{vl} {vt} {vw} {vh}\">{body}</svg>"
    )
}

/// Render an SVG document into a `SIZE`x`SIZE` RGBA image (straight alpha), the longer side
/// filling the square and the shorter one centred.
pub fn render_svg(svg: &str) -> Result<Image> {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
        .map_err(|e| Error::Image(format!("SVG: {e}")))?;
    let size = tree.size();
    let scale = SIZE as f32 / size.width().max(size.height());
    let (dx, dy) = ((SIZE as f32 - size.width() * scale) / 2.0, (SIZE as f32 - size.height() * scale) / 2.0);
    let mut pixmap = resvg::tiny_skia::Pixmap::new(SIZE, SIZE).expect("non-zero size");
    resvg::render(
        &tree,
        resvg::tiny_skia::Transform::from_scale(scale, scale).post_translate(dx, dy),
        &mut pixmap.as_mut(),
    );
    let rgba = pixmap
        .pixels()
        .iter()
        .flat_map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        })
        .collect();
    Ok(Image { width: SIZE as usize, height: SIZE as usize, rgba })
}

/// An emoji.json entry, or one of its skin-tone variations: the image file name every style
/// shares, the join key, and (base emoji only) the names a by-name set is matched against.
struct Target {
    image: String,
    key: String,
    main: Option<String>,
    shorts: Vec<String>,
}

#[derive(serde::Deserialize)]
struct EmojiEntry {
    unified: String,
    image: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    short_names: Vec<String>,
    #[serde(default)]
    skin_variations: BTreeMap<String, SkinVariation>,
}

#[derive(serde::Deserialize)]
struct SkinVariation {
    unified: String,
    image: String,
}

/// chars.json's key for a code-point sequence: lower case, FE0F removed.
pub fn char_key(unified: &str) -> String {
    unified.to_lowercase().split('-').filter(|cp| *cp != "fe0f").collect::<Vec<_>>().join("-")
}

/// Letters and digits only, lower case: how by-name sets are matched.
fn squash(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

fn targets(emoji_json: &[u8]) -> Result<Vec<Target>> {
    let entries: Vec<EmojiEntry> =
        serde_json::from_slice(emoji_json).map_err(|e| Error::InvalidArgument(format!("emoji.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let shorts = e.short_names.iter().map(|s| squash(s)).collect();
        out.push(Target { image: e.image, key: char_key(&e.unified), main: e.name.as_deref().map(squash), shorts });
        for v in e.skin_variations.into_values() {
            out.push(Target { image: v.image, key: char_key(&v.unified), main: None, shorts: Vec::new() });
        }
    }
    Ok(out)
}

/// What rendering one set did.
#[derive(Debug, Default, serde::Serialize)]
pub struct SetReport {
    pub set: String,
    pub rendered: usize,
    pub not_in_set: usize,
    pub failed: usize,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| io_err(path, e))
}

fn chars_of(data: &Path, set: &str) -> Result<HashMap<String, String>> {
    let p = data.join("src").join(format!("iconify-{set}")).join("chars.json");
    serde_json::from_slice(&read(&p)?).map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())))
}

/// Render every emoji.json image that `set` has into `data/img/<set>/64/`, replacing what was
/// there. Reads `data/src/iconify-<set>/{icons,chars}.json` and emoji-datasource's emoji.json.
pub fn render_set(data: &Path, set: &str, naming: Naming) -> Result<SetReport> {
    let src = data.join("src").join(format!("iconify-{set}"));
    let icons = IconSet::parse(&read(&src.join("icons.json"))?, set)?;
    let targets = targets(&read(&data.join("crates/pmg/src/emoji-datasource-google/emoji.json"))?)?;
    let lookup: Vec<HashMap<String, String>> = match naming {
        Naming::Chars => vec![chars_of(data, set)?],
        Naming::Borrowed(from) => from.iter().map(|s| chars_of(data, s)).collect::<Result<_>>()?,
        Naming::ByName => Vec::new(),
    };
    // By name: squashed name -> the one target it names (main names first, then unique short names).
    let mut by_name: HashMap<String, usize> = HashMap::new();
    if naming == Naming::ByName {
        let mut shorts: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, t) in targets.iter().enumerate() {
            t.shorts.iter().for_each(|n| shorts.entry(n).or_default().push(i));
        }
        for (n, ts) in shorts {
            if ts.len() == 1 {
                by_name.insert(n.to_string(), ts[0]);
            }
        }
        for (i, t) in targets.iter().enumerate() {
            if let Some(m) = &t.main {
                by_name.insert(m.clone(), i);
            }
        }
    }
    let mut icon_of: HashMap<usize, &String> = HashMap::new();
    for n in icons.names() {
        if let Some(&t) = by_name.get(&squash(n)) {
            icon_of.entry(t).or_insert(n);
        }
    }
    let out = data.join("img").join(set).join("64");
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| io_err(&out, e))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| io_err(&out, e))?;
    let mut report = SetReport { set: set.to_string(), ..Default::default() };
    for (i, t) in targets.iter().enumerate() {
        let icon = match naming {
            Naming::ByName => icon_of.get(&i).and_then(|n| icons.resolve(n)),
            _ => lookup.iter().filter_map(|m| m.get(&t.key)).find_map(|n| icons.resolve(n)),
        };
        let Some(icon) = icon else {
            report.not_in_set += 1;
            continue;
        };
        match render_svg(&svg_document(&icon)) {
            Ok(img) => {
                let p = out.join(&t.image);
                std::fs::write(&p, img.encode_png()).map_err(|e| io_err(&p, e))?;
                report.rendered += 1;
            }
            Err(e) => {
                log::warn!("{set} {}: {e}", t.image);
                report.failed += 1;
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SET: &str = r##"{
        "prefix": "t", "width": 10, "height": 10,
        "icons": {
            "left-half": { "body": "<rect x=\"0\" y=\"0\" width=\"5\" height=\"10\" fill=\"#ff0000\"/>" },
            "wide": { "body": "<rect width=\"20\" height=\"10\" fill=\"#00ff00\"/>", "width": 20 },
            "gone": { "body": "<rect width=\"10\" height=\"10\"/>", "hidden": true }
        },
        "aliases": {
            "right-half": { "parent": "left-half", "hFlip": true },
            "left-again": { "parent": "right-half", "hFlip": true },
            "loop-a": { "parent": "loop-b" }, "loop-b": { "parent": "loop-a" },
            "to-gone": { "parent": "gone" }
        }
    }"##;

    fn px(img: &Image, x: usize, y: usize) -> [u8; 4] {
        img.rgba[(y * img.width + x) * 4..][..4].try_into().unwrap()
    }

    #[test]
    fn aliases_flip_and_render() {
        let set = IconSet::parse(SET.as_bytes(), "test").unwrap();
        let left = render_svg(&svg_document(&set.resolve("left-half").unwrap())).unwrap();
        let right = render_svg(&svg_document(&set.resolve("right-half").unwrap())).unwrap();
        let again = render_svg(&svg_document(&set.resolve("left-again").unwrap())).unwrap();
        assert_eq!((left.width, left.height), (64, 64));
        assert_eq!(px(&left, 10, 32), [255, 0, 0, 255]);
        assert_eq!(px(&left, 54, 32)[3], 0);
        assert_eq!(px(&right, 10, 32)[3], 0);
        assert_eq!(px(&right, 54, 32), [255, 0, 0, 255]);
        assert_eq!(again, left, "two flips are none");
    }

    #[test]
    fn wide_icons_are_centred_and_bad_names_are_none() {
        let set = IconSet::parse(SET.as_bytes(), "test").unwrap();
        let wide = render_svg(&svg_document(&set.resolve("wide").unwrap())).unwrap();
        assert_eq!(px(&wide, 32, 4)[3], 0, "above the band");
        assert_eq!(px(&wide, 32, 32), [0, 255, 0, 255]);
        for name in ["gone", "to-gone", "loop-a", "nothing"] {
            assert!(set.resolve(name).is_none(), "{name}");
        }
    }

    #[test]
    fn join_keys() {
        assert_eq!(char_key("2764-FE0F"), "2764");
        assert_eq!(char_key("1F44B-1F3FD"), "1f44b-1f3fd");
        assert_eq!(squash("Admission Tickets"), squash("admission_tickets"));
        assert!(render_svg("<svg").is_err());
    }
}
