//! A person's behaviour history: typed events, validated on the way in, kept on their device.
//!
//! The JSON form (one event) is documented in `docs/history.md` and `docs/history.schema.json`:
//! `{"type": "view" | "click" | "purchase" | "rating" | "review" | "search" | "message" | "feedback", "at": <ms since
//! the Unix epoch>, ...}` with an `item` for the item kinds, `value` for ratings, `text` for reviews
//! and messages, `query` for searches, `up` and scores for feedback. Unknown kinds and unknown fields are errors, so that a typo
//! does not silently drop data.

pub mod render;
pub mod store;

use serde::{Deserialize, Serialize};

use crate::error::{Error, HistoryError, Result};

/// Limits on what one event may hold. A longer field is an error for that event alone.
pub mod limits {
    pub const ID: usize = 128;
    pub const TITLE: usize = 300;
    pub const CATEGORY: usize = 100;
    pub const TAGS: usize = 32;
    pub const TAG: usize = 64;
    pub const DESCRIPTION: usize = 2_000;
    pub const IMAGE: usize = 2_048;
    pub const TEXT: usize = 4_000;
    pub const QUERY: usize = 500;
    pub const SPEAKER: usize = 64;
    /// Events in one import.
    pub const IMPORT_EVENTS: usize = 100_000;
}

/// Something a user looked at, bought or rated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Item {
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A reference to the item's picture (a URL or an emoji code point such as `1f431`), never its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Who said a conversation turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The person whose history this is.
    User,
    /// Anyone else in the conversation.
    Other,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventKind {
    View {
        item: Item,
        #[serde(default, rename = "dwellMs", skip_serializing_if = "Option::is_none")]
        dwell_ms: Option<u64>,
    },
    Click {
        item: Item,
        #[serde(default, rename = "dwellMs", skip_serializing_if = "Option::is_none")]
        dwell_ms: Option<u64>,
    },
    Purchase {
        item: Item,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantity: Option<u32>,
    },
    /// `value` on a scale of 1 to `scale` (default 5).
    Rating {
        item: Item,
        value: f32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<f32>,
    },
    Review {
        item: Item,
        text: String,
    },
    Search {
        query: String,
    },
    /// A conversation turn.
    Message {
        role: Role,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speaker: Option<String>,
    },
    /// Thumbs up or down on a personalized image (`crate::personalize`): what it was made for and
    /// how it scored against the other candidates, which is all the dynamic alpha needs.
    Feedback(Feedback),
}

/// A rating of one generated candidate. Scores are the scorer's `ln s` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Feedback {
    pub up: bool,
    /// The target the image was made for.
    pub target: String,
    /// The alpha the candidates were ranked with.
    pub alpha: f32,
    /// The candidate's preference weight `w`.
    #[serde(default)]
    pub weight: u32,
    /// `ln s(image, target)` and `ln s(image, preferences)` of the rated candidate...
    pub accuracy: f32,
    pub preference: f32,
    /// ...and their means over all candidates of that generation.
    pub mean_accuracy: f32,
    pub mean_preference: f32,
}

/// One event: what, and when (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: i64,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn new(at: i64, kind: EventKind) -> Self {
        Event { at, kind }
    }

    /// The item this event is about, if any.
    pub fn item(&self) -> Option<&Item> {
        match &self.kind {
            EventKind::View { item, .. }
            | EventKind::Click { item, .. }
            | EventKind::Purchase { item, .. }
            | EventKind::Rating { item, .. }
            | EventKind::Review { item, .. } => Some(item),
            EventKind::Search { .. } | EventKind::Message { .. } | EventKind::Feedback(_) => None,
        }
    }

    /// The event's kind as written in JSON (`"view"`, ...).
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            EventKind::View { .. } => "view",
            EventKind::Click { .. } => "click",
            EventKind::Purchase { .. } => "purchase",
            EventKind::Rating { .. } => "rating",
            EventKind::Review { .. } => "review",
            EventKind::Search { .. } => "search",
            EventKind::Message { .. } => "message",
            EventKind::Feedback(_) => "feedback",
        }
    }

    /// Check sizes and values. `index` names the event in errors.
    pub fn validate(&self, index: usize) -> std::result::Result<(), HistoryError> {
        let long = |field: &str, s: &str, max: usize| {
            let len = s.chars().count();
            if len > max { Err(HistoryError::TooLong { index, field: field.into(), len, max }) } else { Ok(()) }
        };
        let bad = |field: &str, problem: String| Err(HistoryError::BadValue { index, field: field.into(), problem });
        // Year 1970 to 9999: a seconds-for-milliseconds mix-up shows up as 1970.
        if !(0..=253_402_300_799_999).contains(&self.at) {
            return bad("at", format!("{} is not a time in milliseconds since 1970", self.at));
        }
        if let Some(item) = self.item() {
            if item.id.trim().is_empty() {
                return bad("item.id", "must not be empty".into());
            }
            if item.title.trim().is_empty() {
                return bad("item.title", "must not be empty".into());
            }
            long("item.id", &item.id, limits::ID)?;
            long("item.title", &item.title, limits::TITLE)?;
            long("item.category", item.category.as_deref().unwrap_or(""), limits::CATEGORY)?;
            long("item.description", item.description.as_deref().unwrap_or(""), limits::DESCRIPTION)?;
            long("item.image", item.image.as_deref().unwrap_or(""), limits::IMAGE)?;
            if item.tags.len() > limits::TAGS {
                return Err(HistoryError::TooLong {
                    index,
                    field: "item.tags".into(),
                    len: item.tags.len(),
                    max: limits::TAGS,
                });
            }
            for t in &item.tags {
                long("item.tags[]", t, limits::TAG)?;
            }
        }
        match &self.kind {
            EventKind::Rating { value, scale, .. } => {
                let scale = scale.unwrap_or(5.0);
                if !(scale.is_finite() && scale >= 1.0) {
                    return bad("scale", format!("{scale} is not a scale >= 1"));
                }
                if !(value.is_finite() && *value >= 0.0 && *value <= scale) {
                    return bad("value", format!("{value} is not within 0..={scale}"));
                }
            }
            EventKind::Review { text, .. } => {
                long("text", text, limits::TEXT)?;
                if text.trim().is_empty() {
                    return bad("text", "must not be empty".into());
                }
            }
            EventKind::Search { query } => {
                long("query", query, limits::QUERY)?;
                if query.trim().is_empty() {
                    return bad("query", "must not be empty".into());
                }
            }
            EventKind::Message { text, speaker, .. } => {
                long("text", text, limits::TEXT)?;
                long("speaker", speaker.as_deref().unwrap_or(""), limits::SPEAKER)?;
                if text.trim().is_empty() {
                    return bad("text", "must not be empty".into());
                }
            }
            EventKind::Feedback(f) => {
                long("target", &f.target, limits::QUERY)?;
                if !(f.alpha.is_finite() && (0.0..=1.0).contains(&f.alpha)) {
                    return bad("alpha", format!("{} is not within 0..=1", f.alpha));
                }
                for (field, v) in [
                    ("accuracy", f.accuracy),
                    ("preference", f.preference),
                    ("meanAccuracy", f.mean_accuracy),
                    ("meanPreference", f.mean_preference),
                ] {
                    // ln s with s in (0, 1]: finite and at most 0 (small float excess allowed).
                    if !(v.is_finite() && (-50.0..=1e-3).contains(&v)) {
                        return bad(field, format!("{v} is not a log score (a finite number <= 0)"));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Rating normalised to 0..=1, if this is a rating.
    pub fn rating01(&self) -> Option<f32> {
        match &self.kind {
            EventKind::Rating { value, scale, .. } => Some(value / scale.unwrap_or(5.0)),
            _ => None,
        }
    }
}

/// Parse one event from JSON and validate it.
pub fn parse_event(json: &str, index: usize) -> std::result::Result<Event, HistoryError> {
    let e: Event = serde_json::from_str(json).map_err(|e| HistoryError::Json { index, message: e.to_string() })?;
    e.validate(index)?;
    Ok(e)
}

/// What an import kept and what it refused (each refused event with its own error).
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub accepted: usize,
    pub rejected: Vec<HistoryError>,
}

/// Parse an export (`{"version": 1, "events": [...]}`) or a bare array of events. Valid events are
/// kept even when others are refused; the report says which and why.
pub fn parse_export(json: &str) -> Result<(Vec<Event>, ImportReport)> {
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Error::History(HistoryError::Json { index: 0, message: e.to_string() }))?;
    let list = match &v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => {
            if let Some(ver) = o.get("version").and_then(|v| v.as_u64()).filter(|&v| v != EXPORT_VERSION) {
                return Err(Error::History(HistoryError::BadValue {
                    index: 0,
                    field: "version".into(),
                    problem: format!("export version {ver} is not supported (expected {EXPORT_VERSION})"),
                }));
            }
            o.get("events").and_then(|e| e.as_array()).ok_or_else(|| {
                Error::History(HistoryError::BadValue {
                    index: 0,
                    field: "events".into(),
                    problem: "an export needs an `events` array".into(),
                })
            })?
        }
        _ => {
            return Err(Error::History(HistoryError::BadValue {
                index: 0,
                field: "(top level)".into(),
                problem: "expected an array of events or {\"version\": 1, \"events\": [...]}".into(),
            }));
        }
    };
    if list.len() > limits::IMPORT_EVENTS {
        return Err(Error::History(HistoryError::TooMany { count: list.len(), max: limits::IMPORT_EVENTS }));
    }
    let mut events = Vec::with_capacity(list.len());
    let mut report = ImportReport::default();
    for (i, v) in list.iter().enumerate() {
        let parsed = serde_json::from_value::<Event>(v.clone())
            .map_err(|e| HistoryError::Json { index: i, message: e.to_string() })
            .and_then(|e| e.validate(i).map(|_| e));
        match parsed {
            Ok(e) => events.push(e),
            Err(err) => report.rejected.push(err),
        }
    }
    report.accepted = events.len();
    Ok((events, report))
}

pub const EXPORT_VERSION: u64 = 1;

/// The export format: `{"version": 1, "events": [...]}`, oldest first.
pub fn to_export(events: &[Event]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "version": EXPORT_VERSION, "events": events }))
        .expect("events serialize")
}

/// How much history to keep: at most `max_events` (the oldest go first) and nothing older than
/// `max_age_ms` before `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    pub max_events: usize,
    pub max_age_ms: Option<i64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_events: 5_000, max_age_ms: None }
    }
}

impl Retention {
    /// Apply to events sorted oldest first; returns how many were dropped.
    pub fn apply(&self, events: &mut Vec<Event>, now_ms: i64) -> usize {
        let before = events.len();
        if let Some(age) = self.max_age_ms {
            events.retain(|e| now_ms.saturating_sub(e.at) <= age);
        }
        if events.len() > self.max_events {
            events.drain(..events.len() - self.max_events);
        }
        before - events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(title: &str) -> Item {
        Item {
            id: title.to_lowercase(),
            title: title.into(),
            category: Some("animals".into()),
            tags: vec!["cute".into()],
            ..Default::default()
        }
    }

    #[test]
    fn json_round_trip_of_every_kind() {
        let events = vec![
            Event::new(1, EventKind::View { item: item("Cat face"), dwell_ms: Some(5400) }),
            Event::new(2, EventKind::Click { item: item("Dog face"), dwell_ms: None }),
            Event::new(3, EventKind::Purchase { item: item("Mug"), quantity: Some(2) }),
            Event::new(4, EventKind::Rating { item: item("Film"), value: 4.5, scale: None }),
            Event::new(5, EventKind::Review { item: item("Film"), text: "Loved the colours".into() }),
            Event::new(6, EventKind::Search { query: "pastel stickers".into() }),
            Event::new(
                7,
                EventKind::Message { role: Role::User, text: "I love cats".into(), speaker: Some("Alice".into()) },
            ),
        ];
        let json = to_export(&events);
        let (back, report) = parse_export(&json).unwrap();
        assert_eq!(back, events);
        assert!(report.rejected.is_empty());
        let one = serde_json::to_string(&events[0]).unwrap();
        assert_eq!(
            one,
            r#"{"at":1,"type":"view","item":{"id":"cat face","title":"Cat face","category":"animals","tags":["cute"]},"dwellMs":5400}"#
        );
    }

    #[test]
    fn bad_events_are_refused_one_by_one_and_valid_ones_kept() {
        let long = "x".repeat(limits::TITLE + 1);
        let json = format!(
            r#"[{{"at":1,"type":"search","query":"ok"}},
               {{"at":2,"type":"teleport"}},
               {{"at":3,"type":"view","item":{{"id":"a","title":"{long}"}}}},
               {{"at":4,"type":"rating","item":{{"id":"a","title":"t"}},"value":9}},
               {{"at":5,"type":"search","query":"q","extra":1}},
               {{"at":6,"type":"view","item":{{"id":"a"}}}},
               {{"at":-1,"type":"search","query":"q"}},
               {{"at":8,"type":"message","role":"user","text":"hi"}}]"#
        );
        let (events, report) = parse_export(&json).unwrap();
        assert_eq!(events.iter().map(|e| e.at).collect::<Vec<_>>(), [1, 8]);
        assert_eq!(report.accepted, 2);
        let msgs: Vec<String> = report.rejected.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs.len(), 6, "{msgs:#?}");
        assert!(msgs[0].contains("teleport"), "{}", msgs[0]);
        assert!(
            matches!(report.rejected[1], HistoryError::TooLong { index: 2, ref field, len: 301, max: 300 } if field == "item.title")
        );
        assert!(msgs[2].contains("value"), "{}", msgs[2]);
        assert!(msgs[3].contains("extra"), "{}", msgs[3]);
        assert!(msgs[4].contains("title"), "{}", msgs[4]);
        assert!(msgs[5].contains("milliseconds"), "{}", msgs[5]);
    }

    #[test]
    fn malformed_documents_are_errors() {
        for bad in ["", "{", "42", r#"{"version":2,"events":[]}"#, r#"{"events":3}"#] {
            assert!(matches!(parse_export(bad), Err(Error::History(_))), "{bad:?}");
        }
    }

    #[test]
    fn retention_drops_oldest_and_expired() {
        let mut events: Vec<Event> =
            (0..10).map(|i| Event::new(i * 1000, EventKind::Search { query: format!("q{i}") })).collect();
        let dropped = Retention { max_events: 5, max_age_ms: Some(7_000) }.apply(&mut events, 9_000);
        assert_eq!(dropped, 5);
        assert_eq!(events.iter().map(|e| e.at).collect::<Vec<_>>(), [5000, 6000, 7000, 8000, 9000]);
        let dropped = Retention { max_events: 100, max_age_ms: Some(2_000) }.apply(&mut events, 9_000);
        assert_eq!((dropped, events.len()), (2, 3));
    }
}
