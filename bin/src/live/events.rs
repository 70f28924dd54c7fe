//! The latest events, numbered, for the views' event streams.

use std::{collections::VecDeque, time::SystemTime};

use serde::Serialize;
use sozu_command_lib::response::Event;

use super::serialize_unix_millis;

/// An event and when it was received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedEvent {
    /// Increases by one with each event received, from 1.
    pub seq: u64,
    #[serde(serialize_with = "serialize_unix_millis")]
    pub time: SystemTime,
    #[serde(flatten)]
    pub event: Event,
}

/// The last `capacity` events, oldest first.
#[derive(Debug, Clone)]
pub struct EventLog {
    events: VecDeque<LoggedEvent>,
    capacity: usize,
    last_seq: u64,
}

impl EventLog {
    pub fn new(capacity: usize) -> EventLog {
        EventLog {
            events: VecDeque::with_capacity(capacity),
            capacity,
            last_seq: 0,
        }
    }

    pub fn push(&mut self, event: Event, time: SystemTime) {
        self.last_seq = self.last_seq.saturating_add(1);
        if self.events.len() >= self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(LoggedEvent {
            seq: self.last_seq,
            time,
            event,
        });
    }

    pub fn events(&self) -> impl DoubleEndedIterator<Item = &LoggedEvent> + ExactSizeIterator {
        self.events.iter()
    }
}

/// One line for an event: its kind, then what it is about.
pub fn describe(event: &Event) -> String {
    let kind = serde_json::to_value(event.kind)
        .ok()
        .and_then(|value| value.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", event.kind));
    let mut line = kind;
    if let Some(cluster) = &event.cluster_id {
        line.push_str(&format!(" cluster={cluster}"));
    }
    if let Some(backend) = &event.backend_id {
        line.push_str(&format!(" backend={backend}"));
    }
    if let Some(address) = &event.address {
        line.push_str(&format!(" address={address}"));
    }
    if !event.message.is_empty() {
        line.push_str(&format!(" {}", event.message));
    }
    line
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::response::EventKind;

    use super::*;

    fn event(backend: &str) -> Event {
        Event {
            kind: EventKind::BackendDown,
            cluster_id: Some("api".into()),
            backend_id: Some(backend.into()),
            address: None,
            message: String::new(),
        }
    }

    #[test]
    fn the_log_keeps_the_latest_events_numbered() {
        let mut log = EventLog::new(2);
        for backend in ["a", "b", "c"] {
            log.push(event(backend), SystemTime::UNIX_EPOCH);
        }
        let kept: Vec<(u64, Option<&str>)> = log
            .events()
            .map(|logged| (logged.seq, logged.event.backend_id.as_deref()))
            .collect();
        assert_eq!(kept, [(2, Some("b")), (3, Some("c"))]);
    }

    #[test]
    fn an_event_reads_as_its_kind_then_what_it_is_about() {
        assert_eq!(describe(&event("a")), "BACKEND_DOWN cluster=api backend=a");
    }
}
