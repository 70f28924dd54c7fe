//! `sozu top`: a live view of the proxy in the terminal, refreshed every `-r SECS`.
//!
//! [`source`] reads samples and events over the command socket, [`app`] turns them into what
//! is shown and handles keys, [`draw`] paints it with ratatui. The loop refreshes, draws, and
//! waits for a key until the next refresh; a failed refresh is shown in the header and tried
//! again at the next one. The terminal is put back as it was on quit, on error and on panic.

mod app;
mod draw;
mod source;
#[cfg(test)]
mod tests;

use std::{
    process::ExitCode,
    time::{Duration, Instant, SystemTime},
};

use clap::Args;
use ratatui::{
    DefaultTerminal,
    crossterm::event::{self, Event, KeyEventKind},
};

use self::{
    app::{Action, App},
    source::Source,
};
use super::Cli;

/// The longest wait for a key before events are looked at again.
const EVENT_WAIT: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Args)]
pub struct TopArgs {
    /// Seconds between two refreshes.
    #[arg(short, long, value_name = "SECS", default_value_t = 1.0, value_parser = refresh_seconds)]
    refresh: f64,
    /// Milliseconds between two refreshes (Sōzu's flag), instead of -r.
    #[arg(long, value_name = "MS", conflicts_with = "refresh")]
    refresh_ms: Option<u64>,
    #[command(flatten)]
    sozu_only: SozuOnlyFlags,
}

/// Flags of Sōzu's `top` that this view does not have: recognised, and refused with a
/// reason, rather than taken for a typo or ignored.
#[derive(Debug, Clone, Args)]
struct SozuOnlyFlags {
    #[arg(long, hide = true, value_name = "LEVEL")]
    detail: Option<String>,
    #[arg(long, hide = true, value_name = "SECONDS")]
    lease_ttl_seconds: Option<String>,
    #[arg(long, hide = true, value_name = "NAME")]
    skin: Option<String>,
    #[arg(long, hide = true, value_name = "KIND")]
    glyphs: Option<String>,
    #[arg(long, hide = true)]
    no_mouse: bool,
    #[arg(long, hide = true, value_name = "N")]
    snapshot: Option<String>,
    #[arg(long, hide = true)]
    tick_once: bool,
}

impl SozuOnlyFlags {
    /// The first flag given, as written on the command line.
    fn first_given(&self) -> Option<&'static str> {
        [
            (self.detail.is_some(), "--detail"),
            (self.lease_ttl_seconds.is_some(), "--lease-ttl-seconds"),
            (self.skin.is_some(), "--skin"),
            (self.glyphs.is_some(), "--glyphs"),
            (self.no_mouse, "--no-mouse"),
            (self.snapshot.is_some(), "--snapshot"),
            (self.tick_once, "--tick-once"),
        ]
        .into_iter()
        .find_map(|(given, flag)| given.then_some(flag))
    }
}

impl TopArgs {
    fn interval(&self) -> Duration {
        match self.refresh_ms {
            Some(ms) => Duration::from_millis(ms.max(100)),
            None => Duration::from_secs_f64(self.refresh),
        }
    }
}

/// A refresh interval of at least 0.1 s and at most a day.
fn refresh_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.1..=86_400.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err("the refresh interval is between 0.1 and 86400 seconds".to_string())
    }
}

pub fn run(cli: &Cli, args: &TopArgs) -> ExitCode {
    if let Some(flag) = args.sozu_only.first_given() {
        eprintln!(
            "error: `sozu top {flag}` is Sōzu's and not built here: this view takes -r SECS or \
             --refresh-ms MS only (doc/cli.md)"
        );
        return ExitCode::FAILURE;
    }
    let mut source = match Source::connect(cli) {
        Ok(source) => source,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let name = cli
        .socket
        .as_ref()
        .or(cli.config.as_ref())
        .map_or("the proxy".to_string(), |path| path.display().to_string());
    let mut app = App::new(name, args.interval());
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(error) => {
            ratatui::restore();
            eprintln!("error: cannot use the terminal: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = run_loop(&mut terminal, &mut app, &mut source);
    ratatui::restore();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    source: &mut Source,
) -> anyhow::Result<()> {
    let mut next_refresh = Instant::now();
    loop {
        if Instant::now() >= next_refresh {
            refresh(app, source);
            next_refresh = Instant::now() + app.refresh;
        }
        for event in source.events() {
            app.event(event, SystemTime::now());
        }
        terminal.draw(|frame| draw::draw(frame, app))?;
        let wait = next_refresh
            .saturating_duration_since(Instant::now())
            .min(EVENT_WAIT);
        if !event::poll(wait)? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        match app.key(key) {
            Action::Nothing => {}
            Action::Select => select(app, source),
            Action::Quit => return Ok(()),
        }
    }
}

fn refresh(app: &mut App, source: &mut Source) {
    match source.sample(app.selected.as_deref()) {
        Ok(sample) => {
            if app.sampled(sample) {
                select(app, source);
            }
        }
        Err(error) => app.failed(format!("{error:#}"), SystemTime::now()),
    }
}

/// Fetches the backends of the cluster just selected.
fn select(app: &mut App, source: &mut Source) {
    let Some(cluster_id) = app.selected.clone() else {
        return;
    };
    match source.backends(&cluster_id) {
        Ok(facts) => app.backends(facts),
        Err(error) => app.failed(format!("{error:#}"), SystemTime::now()),
    }
}
