//! What happened to containers and images, as Docker's events: one JSON line per event
//! appended to `<root>/events-v1.log` (a single `write` of each line under `O_APPEND`, so
//! concurrent writers never interleave), read back by `kiln serve`'s `/events`. Recording
//! is best effort: an event that cannot be written never fails the operation.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Store;

const FILE: &str = "events-v1.log";
/// Past this size the log starts over (after a rename to `.old`, which one reader may
/// still follow).
const MAX_BYTES: u64 = 8 << 20;

/// One event, in the Engine API's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// `container` or `image`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `destroy`; `pull`, `tag`, `untag`, `delete`.
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Seconds and nanoseconds since the epoch.
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Store {
    /// The event log's path.
    pub fn events_path(&self) -> PathBuf {
        self.root().join(FILE)
    }

    /// Appends an event (`kind`, `action`, the actor's id and attributes), dated now.
    pub fn record_event(&self, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
        record(self.root(), kind, action, id, attributes);
    }

    /// The events recorded from byte `offset` of the log on, and the offset after them.
    pub fn read_events(&self, offset: u64) -> (Vec<Event>, u64) {
        let Ok(file) = std::fs::File::open(self.events_path()) else {
            return (Vec::new(), 0);
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        // A log that started over is read from its start.
        let offset = if offset > len { 0 } else { offset };
        let mut reader = std::io::BufReader::new(file);
        if std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(offset)).is_err() {
            return (Vec::new(), offset);
        }
        let mut events = Vec::new();
        let mut position = offset;
        let mut line = String::new();
        while let Ok(read) = reader.read_line(&mut line) {
            // Only whole lines: a line still being written is read next time.
            if read == 0 || !line.ends_with('\n') {
                break;
            }
            position += read as u64;
            if let Ok(event) = serde_json::from_str(line.trim_end()) {
                events.push(event);
            }
            line.clear();
        }
        (events, position)
    }
}

/// [`Store::record_event`] for the store at `root`, for callers that hold only its path
/// (a container's directory lies below it).
pub fn record(root: &Path, kind: &str, action: &str, id: &str, attributes: &[(&str, &str)]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let event = Event {
        kind: kind.to_string(),
        action: action.to_string(),
        actor: Actor {
            id: id.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
        time: now.as_secs() as i64,
        time_nano: now.as_nanos() as i64,
    };
    let Ok(mut line) = serde_json::to_vec(&event) else {
        return;
    };
    line.push(b'\n');
    let path = root.join(FILE);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_BYTES) {
        let _ = std::fs::rename(&path, path.with_extension("old"));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path);
    if let Ok(mut file) = file {
        let _ = file.write_all(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_and_read_from_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.read_events(0), (Vec::new(), 0));
        store.record_event("container", "create", "abc", &[("name", "web")]);
        let (events, end) = store.read_events(0);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].actor.attributes["name"], "web");
        store.record_event("container", "start", "abc", &[]);
        let (events, _) = store.read_events(end);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "start");
        assert!(events[0].time_nano >= events[0].time * 1_000_000_000);
    }
}
