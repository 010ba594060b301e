//! Where a history lives on the device. Natively: a JSON-lines file, one event per line, appended
//! and flushed per event; rewrites (retention, import, clear) go through a temporary file and a
//! rename, so a crash leaves either the old or the new file, never a mix. In the browser the
//! npm package keeps the same events in IndexedDB (`web/src/history.js`).

use std::path::{Path, PathBuf};

use super::{Event, ImportReport, Retention, parse_event};
use crate::error::{Error, Result};

/// The operations every store offers.
pub trait HistoryStore {
    /// Validate and append one event.
    fn record(&mut self, event: Event) -> Result<()>;
    /// All events, oldest first.
    fn list(&self) -> Result<Vec<Event>>;
    /// Add the valid events of a batch (they are merged by time); refused ones are reported.
    fn import(&mut self, events: Vec<Event>, report: ImportReport) -> Result<ImportReport>;
    /// Remove everything.
    fn clear(&mut self) -> Result<()>;
    /// Apply a retention policy; returns how many events were dropped.
    fn retain(&mut self, policy: Retention, now_ms: i64) -> Result<usize>;
}

/// Events in memory (tests, and the pipeline's one-off histories).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    events: Vec<Event>,
}

impl MemoryStore {
    pub fn new(events: Vec<Event>) -> Self {
        let mut events = events;
        events.sort_by_key(|e| e.at);
        MemoryStore { events }
    }
}

impl HistoryStore for MemoryStore {
    fn record(&mut self, event: Event) -> Result<()> {
        event.validate(self.events.len())?;
        let pos = self.events.partition_point(|e| e.at <= event.at);
        self.events.insert(pos, event);
        Ok(())
    }
    fn list(&self) -> Result<Vec<Event>> {
        Ok(self.events.clone())
    }
    fn import(&mut self, events: Vec<Event>, report: ImportReport) -> Result<ImportReport> {
        self.events.extend(events);
        self.events.sort_by_key(|e| e.at);
        Ok(report)
    }
    fn clear(&mut self) -> Result<()> {
        self.events.clear();
        Ok(())
    }
    fn retain(&mut self, policy: Retention, now_ms: i64) -> Result<usize> {
        Ok(policy.apply(&mut self.events, now_ms))
    }
}

/// A JSON-lines file (`~/.local/share/pmg/history.jsonl` by default in the CLI).
#[derive(Debug, Clone)]
pub struct JsonlStore {
    path: PathBuf,
}

impl JsonlStore {
    pub fn open(path: impl AsRef<Path>) -> Self {
        JsonlStore { path: path.as_ref().to_path_buf() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io { path: self.path.display().to_string(), source }
    }

    fn write_all(&self, events: &[Event]) -> Result<()> {
        use std::io::Write;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| self.io(e))?);
        for e in events {
            serde_json::to_writer(&mut f, e).expect("events serialize");
            f.write_all(b"\n").map_err(|e| self.io(e))?;
        }
        let f = f.into_inner().map_err(|e| self.io(e.into_error()))?;
        f.sync_all().map_err(|e| self.io(e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))
    }
}

impl HistoryStore for JsonlStore {
    fn record(&mut self, event: Event) -> Result<()> {
        use std::io::Write;
        event.validate(0)?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        }
        // One write of one whole line: a crash can only leave a torn last line, which `list` skips.
        let mut line = serde_json::to_vec(&event).expect("events serialize");
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| self.io(e))?;
        f.write_all(&line).map_err(|e| self.io(e))?;
        f.sync_data().map_err(|e| self.io(e))
    }

    fn list(&self) -> Result<Vec<Event>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut events = Vec::new();
        let complete = text.ends_with('\n');
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse_event(line, i + 1) {
                Ok(e) => events.push(e),
                // A torn last line from an interrupted append is dropped; anything else is damage to report.
                Err(_) if i + 1 == lines.len() && !complete => {
                    log::warn!("{}: ignoring an incomplete last line", self.path.display())
                }
                Err(e) => return Err(Error::History(e)),
            }
        }
        events.sort_by_key(|e| e.at);
        Ok(events)
    }

    fn import(&mut self, events: Vec<Event>, report: ImportReport) -> Result<ImportReport> {
        let mut all = self.list()?;
        all.extend(events);
        all.sort_by_key(|e| e.at);
        self.write_all(&all)?;
        Ok(report)
    }

    fn clear(&mut self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    fn retain(&mut self, policy: Retention, now_ms: i64) -> Result<usize> {
        let mut all = self.list()?;
        let dropped = policy.apply(&mut all, now_ms);
        if dropped > 0 {
            self.write_all(&all)?;
        }
        Ok(dropped)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    #[cfg(target_family = "wasm")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(target_family = "wasm"))]
    {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::HistoryError;
    use crate::history::{EventKind, parse_export};

    fn search(at: i64, q: &str) -> Event {
        Event::new(at, EventKind::Search { query: q.into() })
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pmg-history-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("history.jsonl")
    }

    #[test]
    fn jsonl_record_list_import_retain_clear() {
        let path = temp_path("ops");
        let mut s = JsonlStore::open(&path);
        assert!(s.list().unwrap().is_empty());
        s.record(search(30, "c")).unwrap();
        s.record(search(10, "a")).unwrap();
        assert_eq!(s.list().unwrap().iter().map(|e| e.at).collect::<Vec<_>>(), [10, 30]);
        assert!(matches!(s.record(search(40, "")), Err(Error::History(_))));
        let (events, report) =
            parse_export(r#"[{"at":20,"type":"search","query":"b"},{"at":1,"type":"bogus"}]"#).unwrap();
        let report = s.import(events, report).unwrap();
        assert_eq!((report.accepted, report.rejected.len()), (1, 1));
        assert_eq!(s.list().unwrap().iter().map(|e| e.at).collect::<Vec<_>>(), [10, 20, 30]);
        assert_eq!(s.retain(Retention { max_events: 2, max_age_ms: None }, 100).unwrap(), 1);
        assert_eq!(s.list().unwrap().iter().map(|e| e.at).collect::<Vec<_>>(), [20, 30]);
        s.clear().unwrap();
        assert!(s.list().unwrap().is_empty());
        s.clear().unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_damage_elsewhere_is_an_error() {
        let path = temp_path("torn");
        let mut s = JsonlStore::open(&path);
        s.record(search(1, "a")).unwrap();
        s.record(search(2, "b")).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(r#"{"at":3,"type":"sea"#);
        std::fs::write(&path, &text).unwrap();
        assert_eq!(s.list().unwrap().len(), 2);
        std::fs::write(&path, text.replacen("search", "sxarch", 1) + "\n").unwrap();
        let err = s.list().unwrap_err();
        assert!(matches!(err, Error::History(HistoryError::Json { index: 1, .. })), "{err}");
    }
}
