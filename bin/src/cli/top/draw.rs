//! Drawing `sozu top`: a header line, then panes for workers and listeners, clusters,
//! sparklines of the selected cluster, its backends, and the events footer. Fits 80×24; a
//! taller or wider terminal gives the clusters and backends more room.

use std::time::{Duration, SystemTime};

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize},
    text::{Line, Span},
    widgets::{Block, Paragraph, RenderDirection, Row, Sparkline, Table, TableState},
};
use sozu_command_lib::response::RunState;

use super::{
    super::metrics::micros,
    app::{App, Connection},
};
use crate::live::{BackendState, Health, unix_millis};

pub fn draw(frame: &mut Frame, app: &App) {
    // As many worker and listener rows as there are, up to four.
    let process_rows = app.figures.as_ref().map_or(1, |figures| {
        figures
            .workers
            .len()
            .max(figures.listeners.len())
            .clamp(1, 4)
    });
    let [header, processes, clusters, sparklines, backends, events] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::try_from(process_rows).unwrap_or(4).saturating_add(3)),
        Constraint::Min(5),
        Constraint::Length(4),
        Constraint::Min(5),
        Constraint::Length(4),
    ])
    .areas(frame.area());
    draw_header(frame, app, header);
    let [workers, listeners] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
            .areas(processes);
    draw_workers(frame, app, workers);
    draw_listeners(frame, app, listeners);
    draw_clusters(frame, app, clusters);
    draw_sparklines(frame, app, sparklines);
    draw_backends(frame, app, backends);
    draw_events(frame, app, events);
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let line = match &app.connection {
        Connection::Lost { since, error } => Line::from(vec![
            Span::raw(" sozu top ").bold(),
            Span::raw(format!(
                " proxy not answering since {} UTC, retrying every {}: {error} ",
                clock(*since),
                seconds(app.refresh)
            ))
            .fg(Color::White)
            .bg(Color::Red),
        ]),
        Connection::Starting => Line::from(vec![
            Span::raw(" sozu top ").bold(),
            Span::raw(format!(" {}  waiting for the first figures", app.source)),
        ]),
        Connection::Answering => {
            let mut spans = vec![
                Span::raw(" sozu top ").bold(),
                Span::raw(format!(" {} ", app.source)),
            ];
            if let Some(figures) = &app.figures {
                spans.push(Span::raw(format!(
                    " {} UTC  every {}  {} req/s  {} conns",
                    clock(figures.time),
                    seconds(app.refresh),
                    rate(figures.proxy.rates.requests),
                    figures.proxy.active_connections
                )));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn draw_workers(frame: &mut Frame, app: &App, area: Rect) {
    let workers = app.figures.as_ref().map_or(&[][..], |f| &f.workers[..]);
    let rows = workers.iter().map(|worker| {
        let state = Span::raw(worker.run_state.to_string());
        let state = match worker.run_state {
            RunState::Running => state.fg(Color::Green),
            RunState::Stopping | RunState::Stopped => state.fg(Color::Yellow),
            RunState::NotAnswering => state.fg(Color::Red),
        };
        Row::new(vec![
            Line::from(worker.id.to_string()),
            Line::from(worker.pid.to_string()),
            Line::from(state),
            Line::from(worker.restarts.to_string()),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(8),
            Constraint::Min(8),
            Constraint::Length(8),
        ],
    )
    .header(Row::new(["ID", "PID", "STATE", "RESTARTS"]).bold())
    .block(Block::bordered().title(format!(" Workers ({}) ", workers.len())));
    frame.render_widget(table, area);
}

fn draw_listeners(frame: &mut Frame, app: &App, area: Rect) {
    let listeners = app.figures.as_ref().map_or(&[][..], |f| &f.listeners[..]);
    let rows = listeners.iter().map(|listener| {
        let address = listener.address.to_string();
        let address = if listener.active {
            Span::raw(address)
        } else {
            Span::raw(address).fg(Color::DarkGray)
        };
        Row::new(vec![
            Line::from(address),
            Line::from(listener.protocol.name()),
            Line::from(rate(listener.requests)).right_aligned(),
            Line::from(rate(listener.connections)).right_aligned(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(14),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new([
            Line::from("ADDRESS"),
            Line::from("PROTO"),
            Line::from("REQ/S").right_aligned(),
            Line::from("CONN/S").right_aligned(),
        ])
        .bold(),
    )
    .block(Block::bordered().title(format!(" Listeners ({}) ", listeners.len())));
    frame.render_widget(table, area);
}

fn draw_clusters(frame: &mut Frame, app: &App, area: Rect) {
    let visible = app.visible_clusters();
    let total = app.figures.as_ref().map_or(0, |f| f.clusters.len());
    let mut title = format!(
        " Clusters ({}/{total})  sort {} ",
        visible.len(),
        app.sort.name()
    );
    if app.is_editing_filter {
        title.push_str(&format!(" filter: {}_ ", app.filter));
    } else if !app.filter.is_empty() {
        title.push_str(&format!(" filter: {} ", app.filter));
    }
    let rows = visible.iter().map(|cluster| {
        let rates = &cluster.rates;
        let errors = Line::from(rate(rates.statuses.server_error)).right_aligned();
        let errors = if rates.statuses.server_error > 0.0 {
            errors.fg(Color::Red)
        } else {
            errors
        };
        let down = Line::from(cluster.backends.down.to_string()).right_aligned();
        let down = if cluster.backends.down > 0 {
            down.fg(Color::Red)
        } else {
            down
        };
        Row::new(vec![
            Line::from(cluster.id.as_str()),
            Line::from(rate(rates.requests)).right_aligned(),
            Line::from(rate(rates.statuses.success)).right_aligned(),
            Line::from(rate(rates.statuses.client_error)).right_aligned(),
            errors,
            Line::from(duration(rates.p50)).right_aligned(),
            Line::from(duration(rates.p99)).right_aligned(),
            Line::from(cluster.active_connections.to_string()).right_aligned(),
            Line::from(cluster.backends.up.to_string()).right_aligned(),
            down,
        ])
    });
    let header = [
        "CLUSTER", "REQ/S", "2XX/S", "4XX/S", "5XX/S", "P50", "P99", "CONNS", "UP", "DOWN",
    ]
    .into_iter()
    .enumerate()
    .map(|(index, name)| {
        if index == 0 {
            Line::from(name)
        } else {
            Line::from(name).right_aligned()
        }
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(8),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(5),
            Constraint::Length(5),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(3),
            Constraint::Length(4),
        ],
    )
    .header(Row::new(header).bold())
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
    .highlight_symbol("> ")
    .block(Block::bordered().title(title));
    let mut state = TableState::new().with_selected(
        visible
            .iter()
            .position(|cluster| Some(&cluster.id) == app.selected.as_ref()),
    );
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_sparklines(frame: &mut Frame, app: &App, area: Rect) {
    let [requests_area, p99_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let cluster = app.selected.as_deref();
    let series = app.history.series(cluster);
    let name = cluster.unwrap_or("proxy");
    let last = series.last();
    // One bar per point, drawn from the right edge: the newest first.
    let requests: Vec<u64> = series
        .iter()
        .rev()
        .map(|r| r.requests.round() as u64)
        .collect();
    let p99: Vec<Option<u64>> = series
        .iter()
        .rev()
        .map(|r| {
            r.p99
                .map(|p| u64::try_from(p.as_micros()).unwrap_or(u64::MAX))
        })
        .collect();
    let requests_title = format!(
        " {name} req/s, last minute: {} ",
        last.map_or("-".to_string(), |r| rate(r.requests))
    );
    let p99_title = format!(
        " {name} p99, last minute: {} ",
        duration(last.and_then(|r| r.p99))
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(requests_title))
            .data(requests)
            .direction(RenderDirection::RightToLeft)
            .style(Style::new().fg(Color::Cyan)),
        requests_area,
    );
    frame.render_widget(
        Sparkline::default()
            .block(Block::bordered().title(p99_title))
            .data(p99)
            .direction(RenderDirection::RightToLeft)
            .style(Style::new().fg(Color::Magenta)),
        p99_area,
    );
}

fn draw_backends(frame: &mut Frame, app: &App, area: Rect) {
    let backends = app.selected_backends();
    let title = match app.selected.as_deref() {
        Some(id) => format!(" Backends of {id} ({}) ", backends.len()),
        None => " Backends ".to_string(),
    };
    let rows = backends.iter().map(|backend| {
        let state = match backend.state {
            BackendState::Down if backend.down_in < backend.reported_by => {
                format!("DOWN {}/{}", backend.down_in, backend.reported_by)
            }
            state => state.name().to_string(),
        };
        let state = match backend.state {
            BackendState::Up => Line::from(state).fg(Color::Green),
            BackendState::Down => Line::from(state).fg(Color::Red),
            BackendState::Draining => Line::from(state).fg(Color::Yellow),
            BackendState::Unknown => Line::from(state),
        };
        let health = Line::from(backend.health.name());
        let health = match backend.health {
            Health::Failing => health.fg(Color::Red),
            Health::Passing => health.fg(Color::Green),
            Health::Unchecked | Health::Unknown => health,
        };
        Row::new(vec![
            Line::from(backend.backend_id.as_str()),
            Line::from(backend.address.map_or("-".to_string(), |a| a.to_string())),
            state,
            Line::from(backend.active_connections.to_string()).right_aligned(),
            Line::from(rate(backend.rates.requests)).right_aligned(),
            Line::from(rate(backend.rates.statuses.server_error)).right_aligned(),
            health,
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Min(8),
            Constraint::Length(21),
            Constraint::Length(9),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Length(5),
            Constraint::Length(7),
        ],
    )
    .header(
        Row::new([
            Line::from("BACKEND"),
            Line::from("ADDRESS"),
            Line::from("STATE"),
            Line::from("CONNS").right_aligned(),
            Line::from("REQ/S").right_aligned(),
            Line::from("5XX/S").right_aligned(),
            Line::from("HEALTH"),
        ])
        .bold(),
    )
    .block(Block::bordered().title(title));
    frame.render_widget(table, area);
}

fn draw_events(frame: &mut Frame, app: &App, area: Rect) {
    let height = usize::from(area.height.saturating_sub(2));
    let lines: Vec<Line> = app
        .events
        .events()
        .rev()
        .take(height)
        .rev()
        .map(|logged| {
            Line::from(format!(
                "{} {}",
                clock(logged.time),
                crate::live::describe(&logged.event)
            ))
        })
        .collect();
    let keys = " q quit  s sort  / filter  ↑↓ select ";
    let block = Block::bordered()
        .title(" Events ")
        .title_bottom(Line::from(keys).right_aligned());
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// A rate per second, short: `0`, `4.2`, `318`, `12.5k`.
fn rate(value: f64) -> String {
    if value <= 0.0 {
        "0".to_string()
    } else if value < 10.0 {
        format!("{value:.1}")
    } else if value < 10_000.0 {
        format!("{value:.0}")
    } else {
        format!("{:.1}k", value / 1000.0)
    }
}

/// A response time, or `-` when no request completed.
fn duration(value: Option<Duration>) -> String {
    value.map_or("-".to_string(), |value| {
        micros(u64::try_from(value.as_micros()).unwrap_or(u64::MAX))
    })
}

fn seconds(value: Duration) -> String {
    format!("{}s", value.as_secs_f64())
}

/// `HH:MM:SS` in UTC.
fn clock(time: SystemTime) -> String {
    let seconds = unix_millis(time) / 1000;
    let (hours, minutes, seconds) = ((seconds / 3600) % 24, (seconds / 60) % 60, seconds % 60);
    format!("{hours:02}:{minutes:02}:{seconds:02}")
}
