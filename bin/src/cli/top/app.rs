//! What `sozu top` shows and how keys change it: the latest figures and the last minute of
//! them, the events, the clusters' order and filter, the selected cluster, and whether the
//! proxy answers. Nothing here touches the terminal or the socket, so every step is a plain
//! function of values.

use std::{
    cmp::Ordering,
    time::{Duration, SystemTime},
};

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use sozu_command_lib::response::Event;

use crate::live::{
    BackendFacts, BackendFigures, BackendState, ClusterFigures, EventLog, Figures, History, Sample,
};

/// How many events the footer keeps.
const EVENTS_KEPT: usize = 200;

/// The clusters pane's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// By id, A to Z.
    Id,
    /// The busiest first.
    Requests,
    /// The most 5xx answers per second first.
    Errors,
    /// The slowest 99th percentile first.
    P99,
    /// The most open backend connections first.
    Connections,
}

impl SortKey {
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Requests => "req/s",
            SortKey::Errors => "5xx/s",
            SortKey::P99 => "p99",
            SortKey::Connections => "conns",
        }
    }

    fn next(self) -> SortKey {
        match self {
            SortKey::Id => SortKey::Requests,
            SortKey::Requests => SortKey::Errors,
            SortKey::Errors => SortKey::P99,
            SortKey::P99 => SortKey::Connections,
            SortKey::Connections => SortKey::Id,
        }
    }
}

/// Whether the proxy answered the last refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Before the first answer.
    Starting,
    Answering,
    /// It stopped answering at `since`; `error` is the last failure.
    Lost {
        since: SystemTime,
        error: String,
    },
}

/// What a key asks of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Another cluster is selected: its backends are to be fetched.
    Select,
    Quit,
}

pub struct App {
    /// Where the figures come from (the command socket), for the header.
    pub source: String,
    pub refresh: Duration,
    previous: Option<Sample>,
    current: Option<Sample>,
    pub figures: Option<Figures>,
    pub history: History,
    pub events: EventLog,
    pub sort: SortKey,
    pub filter: String,
    /// Keys go to the filter until Enter or Esc.
    pub is_editing_filter: bool,
    pub selected: Option<String>,
    pub connection: Connection,
}

impl App {
    pub fn new(source: String, refresh: Duration) -> App {
        App {
            source,
            refresh,
            previous: None,
            current: None,
            figures: None,
            history: History::default(),
            events: EventLog::new(EVENTS_KEPT),
            sort: SortKey::Requests,
            filter: String::new(),
            is_editing_filter: false,
            selected: None,
            connection: Connection::Starting,
        }
    }

    /// A new sample: figures since the previous one, unless the proxy did not answer in
    /// between (its counters may have started again). Returns whether the selection changed.
    pub fn sampled(&mut self, sample: Sample) -> bool {
        let baseline = match self.connection {
            Connection::Answering => self.current.take(),
            Connection::Starting | Connection::Lost { .. } => None,
        };
        let figures = Figures::between(baseline.as_ref(), &sample);
        self.history.record(&figures);
        self.figures = Some(figures);
        self.previous = baseline;
        self.current = Some(sample);
        self.connection = Connection::Answering;
        self.keep_selection_visible()
    }

    /// The refresh failed: say so, keep the last figures.
    pub fn failed(&mut self, error: String, now: SystemTime) {
        let since = match &self.connection {
            Connection::Lost { since, .. } => *since,
            Connection::Starting | Connection::Answering => now,
        };
        self.connection = Connection::Lost { since, error };
    }

    pub fn event(&mut self, event: Event, now: SystemTime) {
        self.events.push(event, now);
    }

    /// The backends of the selected cluster changed: figures again from the same samples.
    pub fn backends(&mut self, facts: Vec<BackendFacts>) {
        let Some(current) = &mut self.current else {
            return;
        };
        current.backends = facts;
        self.figures = Some(Figures::between(self.previous.as_ref(), current));
    }

    /// The clusters the pane lists: those matching the filter, in the chosen order.
    pub fn visible_clusters(&self) -> Vec<&ClusterFigures> {
        let Some(figures) = &self.figures else {
            return Vec::new();
        };
        let mut clusters = filter(&figures.clusters, &self.filter);
        sort(&mut clusters, self.sort);
        clusters
    }

    /// The selected cluster's backends, those in trouble first (a small pane shows them).
    pub fn selected_backends(&self) -> Vec<&BackendFigures> {
        let Some(figures) = &self.figures else {
            return Vec::new();
        };
        let mut backends: Vec<&BackendFigures> = figures
            .backends
            .iter()
            .filter(|backend| Some(&backend.cluster_id) == self.selected.as_ref())
            .collect();
        backends.sort_by_key(|backend| (trouble_first(backend.state), &backend.backend_id));
        backends
    }

    /// Handles a key press.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if self.is_editing_filter {
            match key.code {
                KeyCode::Enter => self.is_editing_filter = false,
                KeyCode::Esc => {
                    self.is_editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => return Action::Nothing,
            }
            return self.after_filter_change();
        }
        match key.code {
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                Action::Nothing
            }
            KeyCode::Char('/') => {
                self.is_editing_filter = true;
                Action::Nothing
            }
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.after_filter_change()
            }
            KeyCode::Esc => Action::Quit,
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX),
            _ => Action::Nothing,
        }
    }

    fn after_filter_change(&mut self) -> Action {
        if self.keep_selection_visible() {
            Action::Select
        } else {
            Action::Nothing
        }
    }

    /// Moves the selection `step` rows down (up when negative), within the visible clusters.
    fn move_selection(&mut self, step: isize) -> Action {
        let visible = self.visible_clusters();
        let Some(last) = visible.len().checked_sub(1) else {
            return Action::Nothing;
        };
        let position = visible
            .iter()
            .position(|cluster| Some(&cluster.id) == self.selected.as_ref())
            .unwrap_or(0);
        let target = position.saturating_add_signed(step).min(last);
        let id = visible.get(target).map(|cluster| cluster.id.clone());
        if id == self.selected {
            return Action::Nothing;
        }
        self.selected = id;
        Action::Select
    }

    /// Selects the first visible cluster when the selected one is not shown. Returns whether
    /// the selection changed.
    fn keep_selection_visible(&mut self) -> bool {
        let visible = self.visible_clusters();
        if visible
            .iter()
            .any(|cluster| Some(&cluster.id) == self.selected.as_ref())
        {
            return false;
        }
        let first = visible.first().map(|cluster| cluster.id.clone());
        let changed = first != self.selected;
        self.selected = first;
        changed
    }
}

/// The clusters whose id contains `filter`, ignoring case; all of them for an empty filter.
pub fn filter<'a>(clusters: &'a [ClusterFigures], filter: &str) -> Vec<&'a ClusterFigures> {
    let wanted = filter.to_lowercase();
    clusters
        .iter()
        .filter(|cluster| cluster.id.to_lowercase().contains(&wanted))
        .collect()
}

/// Orders clusters by `key`, ties by id.
pub fn sort(clusters: &mut [&ClusterFigures], key: SortKey) {
    let descending = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(Ordering::Equal);
    clusters.sort_by(|a, b| {
        let order = match key {
            SortKey::Id => Ordering::Equal,
            SortKey::Requests => descending(a.rates.requests, b.rates.requests),
            SortKey::Errors => {
                descending(a.rates.statuses.server_error, b.rates.statuses.server_error)
            }
            SortKey::P99 => b.rates.p99.cmp(&a.rates.p99),
            SortKey::Connections => b.active_connections.cmp(&a.active_connections),
        };
        order.then_with(|| a.id.cmp(&b.id))
    });
}

/// Down backends come first, then draining ones, then those no worker reports, then those up.
fn trouble_first(state: BackendState) -> u8 {
    match state {
        BackendState::Down => 0,
        BackendState::Draining => 1,
        BackendState::Unknown => 2,
        BackendState::Up => 3,
    }
}
