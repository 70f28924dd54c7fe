//! `sozu top` without a proxy: the app fed with samples and keys, drawn into a test buffer of
//! 80×24.

use std::time::{Duration, SystemTime};

use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
};
use sozu_command_lib::response::{Event, EventKind};

use super::{
    app::{Action, App, Connection, SortKey, filter, sort},
    draw::draw,
};
use crate::live::{
    ClusterFigures, Sample,
    fixtures::{pair, traffic, worker},
};

fn cluster(id: &str, requests: f64, server_errors: f64, connections: u64) -> ClusterFigures {
    let mut cluster = ClusterFigures {
        id: id.to_string(),
        active_connections: connections,
        ..ClusterFigures::default()
    };
    cluster.rates.requests = requests;
    cluster.rates.statuses.server_error = server_errors;
    cluster
}

fn ids(clusters: &[&ClusterFigures]) -> Vec<String> {
    clusters.iter().map(|cluster| cluster.id.clone()).collect()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Two samples a second apart: `api` served 42 requests (2 of them 5xx) through backends `a`
/// (up) and `b` (down in the one worker).
fn samples() -> (Sample, Sample) {
    pair(
        worker(
            "api",
            traffic(100, 100, &[(800, 100)]),
            &[("a", true, 2, 0), ("b", false, 0, 0)],
        ),
        worker(
            "api",
            traffic(142, 140, &[(800, 130), (12_000, 12)]),
            &[("a", true, 2, 42), ("b", false, 0, 0)],
        ),
        Duration::from_secs(1),
        &["a", "b"],
    )
}

fn running_app() -> App {
    let (before, after) = samples();
    let mut app = App::new("/run/sozu.sock".to_string(), Duration::from_secs(1));
    app.sampled(before);
    app.sampled(after);
    app
}

fn screen(app: &App) -> String {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("a test terminal");
    terminal
        .draw(|frame| draw(frame, app))
        .expect("draw into the buffer");
    let buffer = terminal.backend().buffer();
    let width = usize::from(buffer.area.width);
    buffer
        .content()
        .chunks(width)
        .map(|row| row.iter().map(|cell| cell.symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

fn line_with<'a>(screen: &'a str, text: &str) -> &'a str {
    screen
        .lines()
        .find(|line| line.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in\n{screen}"))
}

#[test]
fn clusters_sort_by_the_chosen_figure_then_by_id() {
    let clusters = [
        cluster("b", 10.0, 0.0, 1),
        cluster("a", 10.0, 3.0, 7),
        cluster("c", 50.0, 1.0, 0),
    ];
    let mut listed: Vec<&ClusterFigures> = clusters.iter().collect();
    sort(&mut listed, SortKey::Requests);
    assert_eq!(ids(&listed), ["c", "a", "b"]);
    sort(&mut listed, SortKey::Errors);
    assert_eq!(ids(&listed), ["a", "c", "b"]);
    sort(&mut listed, SortKey::Connections);
    assert_eq!(ids(&listed), ["a", "b", "c"]);
    sort(&mut listed, SortKey::Id);
    assert_eq!(ids(&listed), ["a", "b", "c"]);
}

#[test]
fn clusters_sort_by_p99_with_unknown_last() {
    let mut slow = cluster("slow", 1.0, 0.0, 0);
    slow.rates.p99 = Some(Duration::from_millis(900));
    let mut fast = cluster("fast", 1.0, 0.0, 0);
    fast.rates.p99 = Some(Duration::from_millis(2));
    let idle = cluster("idle", 0.0, 0.0, 0);
    let clusters = [fast, idle, slow];
    let mut listed: Vec<&ClusterFigures> = clusters.iter().collect();
    sort(&mut listed, SortKey::P99);
    assert_eq!(ids(&listed), ["slow", "fast", "idle"]);
}

#[test]
fn the_filter_keeps_ids_containing_it_ignoring_case() {
    let clusters = [
        cluster("API-eu", 0.0, 0.0, 0),
        cluster("web", 0.0, 0.0, 0),
        cluster("api-us", 0.0, 0.0, 0),
    ];
    assert_eq!(ids(&filter(&clusters, "api")), ["API-eu", "api-us"]);
    assert_eq!(ids(&filter(&clusters, "")).len(), 3);
    assert!(filter(&clusters, "db").is_empty());
}

#[test]
fn keys_sort_filter_select_and_quit() {
    let mut app = running_app();
    assert_eq!(
        app.selected.as_deref(),
        Some("api"),
        "the busiest is selected"
    );
    assert_eq!(app.key(key(KeyCode::Char('s'))), Action::Nothing);
    assert_eq!(app.sort, SortKey::Errors);
    assert_eq!(app.key(key(KeyCode::Down)), Action::Select);
    assert_eq!(app.selected.as_deref(), Some("idle"));
    assert_eq!(
        app.key(key(KeyCode::Down)),
        Action::Nothing,
        "already the last"
    );

    app.key(key(KeyCode::Char('/')));
    for c in "AP".chars() {
        app.key(key(KeyCode::Char(c)));
    }
    assert_eq!(app.key(key(KeyCode::Enter)), Action::Nothing);
    assert_eq!(app.filter, "AP");
    assert_eq!(ids(&app.visible_clusters()), ["api"]);
    assert_eq!(
        app.selected.as_deref(),
        Some("api"),
        "moved to a visible cluster"
    );
    assert_eq!(app.key(key(KeyCode::Char('q'))), Action::Quit);
    assert_eq!(
        app.key(key(KeyCode::Esc)),
        Action::Nothing,
        "Esc clears the filter"
    );
    assert!(app.filter.is_empty());
    assert_eq!(app.key(key(KeyCode::Esc)), Action::Quit);
    assert_eq!(
        app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Action::Quit
    );
}

#[test]
fn while_the_filter_is_typed_keys_go_to_it() {
    let mut app = running_app();
    app.key(key(KeyCode::Char('/')));
    app.key(key(KeyCode::Char('q')));
    app.key(key(KeyCode::Char('x')));
    app.key(key(KeyCode::Backspace));
    assert!(app.is_editing_filter);
    assert_eq!(app.filter, "q");
    assert!(app.visible_clusters().is_empty());
    assert_eq!(app.selected, None);
    app.key(key(KeyCode::Esc));
    assert!(!app.is_editing_filter);
    assert_eq!(app.visible_clusters().len(), 2);
}

#[test]
fn after_a_lost_connection_rates_start_again_from_the_next_sample() {
    let mut app = running_app();
    let lost_at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100);
    app.failed("connection refused".to_string(), lost_at);
    app.failed(
        "still refused".to_string(),
        lost_at + Duration::from_secs(5),
    );
    assert_eq!(
        app.connection,
        Connection::Lost {
            since: lost_at,
            error: "still refused".to_string()
        }
    );
    assert!(app.figures.is_some(), "the last figures stay shown");
    let (_, after) = samples();
    app.sampled(after);
    assert_eq!(app.connection, Connection::Answering);
    assert_eq!(app.figures.as_ref().and_then(|f| f.interval), None);
}

#[test]
fn the_screen_shows_every_pane_at_80_by_24() {
    let mut app = running_app();
    app.event(
        Event {
            kind: EventKind::BackendDown,
            cluster_id: Some("api".to_string()),
            backend_id: Some("b".to_string()),
            address: None,
            message: "3 connect failures in a row".to_string(),
        },
        SystemTime::UNIX_EPOCH + Duration::from_secs(3600 + 120 + 5),
    );
    let screen = screen(&app);
    assert_eq!(screen.lines().count(), 24);
    assert!(
        line_with(&screen, "sozu top").contains("42 req/s"),
        "{screen}"
    );
    let workers = line_with(&screen, "1000");
    assert!(workers.contains("RUNNING"), "{screen}");
    let api = line_with(&screen, "> api").replace('│', " ");
    let figures: Vec<&str> = api.split_whitespace().collect();
    // CLUSTER REQ/S 2XX/S 4XX/S 5XX/S P50 P99 CONNS UP DOWN; the median of 800 µs samples is
    // what the histogram keeps of them (two significant digits).
    assert_eq!(
        figures,
        [
            ">", "api", "42", "40", "0", "2.0", "803µs", "12.0ms", "2", "1", "1"
        ],
        "{screen}"
    );
    assert!(line_with(&screen, "idle").contains(" 0 "), "{screen}");
    assert!(screen.contains("api req/s, last minute: 42"), "{screen}");
    assert!(screen.contains("Backends of api (2)"), "{screen}");
    let up = line_with(&screen, "│a ");
    assert!(
        up.contains("UP") && up.contains("42") && up.contains("passing"),
        "{up}"
    );
    assert!(line_with(&screen, "│b ").contains("DOWN"), "{screen}");
    assert!(
        line_with(&screen, "01:02:05 BACKEND_DOWN cluster=api backend=b").contains("3 connect"),
        "{screen}"
    );
    assert!(
        line_with(&screen, "q quit").contains("/ filter"),
        "{screen}"
    );
}

#[test]
fn the_screen_says_when_the_proxy_does_not_answer() {
    let mut app = running_app();
    app.failed(
        "cannot connect to the command socket".to_string(),
        SystemTime::UNIX_EPOCH + Duration::from_secs(7200),
    );
    let screen = screen(&app);
    let header = screen.lines().next().unwrap_or_default();
    assert!(
        header.contains("proxy not answering since 02:00:00 UTC, retrying every 1s"),
        "{screen}"
    );
    assert!(
        line_with(&screen, "> api").contains("42"),
        "the last figures stay"
    );
}

#[test]
fn the_screen_before_the_first_answer() {
    let app = App::new("/run/sozu.sock".to_string(), Duration::from_secs(1));
    let screen = screen(&app);
    assert!(screen.contains("waiting for the first figures"), "{screen}");
    assert!(screen.contains("Clusters (0/0)"), "{screen}");
    assert!(screen.contains(" Backends "), "{screen}");
}

#[test]
fn backends_in_trouble_come_first() {
    let app = running_app();
    let order: Vec<&str> = app
        .selected_backends()
        .iter()
        .map(|backend| backend.backend_id.as_str())
        .collect();
    assert_eq!(order, ["b", "a"]);
}
