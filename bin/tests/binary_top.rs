//! `sozu top` in a real terminal: tmux runs it at 80×24 against the real binary while a
//! client loop sends requests, and its screen is read with `capture-pane`. The cluster's row
//! shows a request rate, a stopped backend shows as down once its health check fails, the
//! header says when the proxy goes away and the figures come back with it, and `q` quits with
//! the terminal as it was.

mod common;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use common::{Backend, DEADLINE, Load, Proxy, SOZU, text, wait_until};

/// A tmux server of its own (its socket in the test's folder), running one session.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Runs `command` (a shell command) in a new 80×24 session named `top`.
    fn start(folder: &Path, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: folder.join("tmux.sock"),
        };
        let output = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            "top",
            command,
            ";",
            "set-option",
            "-t",
            "top",
            "remain-on-exit",
            "on",
        ]);
        assert!(output.status.success(), "tmux: {}", text(&output.stderr));
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux must be installed (.ci/install-test-tools installs it)")
    }

    fn screen(&self) -> String {
        text(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout)
    }

    fn pane(&self, format: &str) -> String {
        text(
            &self
                .run(&["display-message", "-p", "-t", "top", format])
                .stdout,
        )
        .trim()
        .to_string()
    }

    fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "top", keys]);
    }

    /// The screen once `condition` holds on it; fails the test after [`DEADLINE`].
    fn wait_for(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        let held = wait_until(DEADLINE, || {
            screen = self.screen();
            condition(&screen)
        });
        assert!(held, "{what}; the screen:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

/// The first line of `screen` containing `text`.
fn line<'a>(screen: &'a str, text: &str) -> Option<&'a str> {
    screen.lines().find(|line| line.contains(text))
}

/// The requests per second of the cluster row of `cluster`.
fn cluster_rate(screen: &str, cluster: &str) -> Option<f64> {
    let row = line(screen, &format!(" {cluster} "))?;
    let mut words = row.trim_matches('│').split_whitespace();
    words.find(|word| *word == cluster)?;
    words.next()?.trim_end_matches('k').parse().ok()
}

#[test]
fn top_shows_traffic_a_backend_going_down_and_quits_cleanly() {
    let proxy = Proxy::start("");
    let (up, doomed) = (Backend::start("a"), Backend::start("b"));
    proxy.route("api", "api.test", &up);
    proxy.add_backend("api", &doomed);
    proxy.ok(&[
        "cluster",
        "health-check",
        "set",
        "-i",
        "api",
        "-u",
        "/health",
        "--interval",
        "1",
        "--unhealthy-threshold",
        "1",
        "--healthy-threshold",
        "1",
    ]);
    let load = Load::start(proxy.http, &["api.test"]);
    let folder = proxy.dir.path().to_path_buf();
    let command = format!(
        "stty -g > {dir}/stty.before; {SOZU} --socket {socket} top; echo $? > {dir}/top.status; \
         stty -g > {dir}/stty.tmp; mv {dir}/stty.tmp {dir}/stty.after",
        dir = folder.display(),
        socket = proxy.socket.display(),
    );
    let tmux = Tmux::start(&folder, &command);

    let screen = tmux.wait_for("the api row with a request rate", |screen| {
        cluster_rate(screen, "api").is_some_and(|rate| rate > 0.0)
    });
    assert_eq!(
        tmux.pane("#{alternate_on}"),
        "1",
        "top uses the alternate screen"
    );
    assert!(line(&screen, "Workers (2)").is_some(), "{screen}");
    assert!(line(&screen, "Backends of api (2)").is_some(), "{screen}");
    let screen = tmux.wait_for("both backends up, health checks passing", |screen| {
        ["api-a", "api-b"].iter().all(|backend| {
            line(screen, backend).is_some_and(|row| row.contains(" UP ") && row.contains("passing"))
        })
    });
    assert!(
        line(&screen, "api-b").is_some_and(|row| row.contains(&doomed.address.to_string())),
        "{screen}"
    );

    doomed.stop();
    let screen = tmux.wait_for("the stopped backend down", |screen| {
        line(screen, "api-b").is_some_and(|row| row.contains("DOWN") && row.contains("failing"))
    });
    assert!(
        line(&screen, "api-a").is_some_and(|row| row.contains(" UP ")),
        "{screen}"
    );
    assert!(
        screen.contains("HEALTH_CHECK_UNHEALTHY cluster=api backend=api-b")
            || screen.contains("BACKEND_DOWN cluster=api backend=api-b"),
        "the event is in the footer:\n{screen}"
    );
    drop(load);

    // The proxy goes away: top says so and keeps trying; it comes back: so do the figures.
    let (dir, config, http) = proxy.stop_keeping_files();
    tmux.wait_for("the lost proxy in the header", |screen| {
        screen
            .lines()
            .next()
            .is_some_and(|header| header.contains("proxy not answering since"))
    });
    let proxy = Proxy::start_with(dir, config, http);
    tmux.wait_for("the figures of the new proxy", |screen| {
        screen
            .lines()
            .next()
            .is_some_and(|header| !header.contains("not answering") && header.contains("req/s"))
    });

    tmux.keys("q");
    let status = proxy.dir.path().join("top.status");
    assert!(
        wait_until(DEADLINE, || proxy.dir.path().join("stty.after").exists()),
        "top did not quit on q:\n{}",
        tmux.screen()
    );
    assert_eq!(fs::read_to_string(&status).unwrap_or_default().trim(), "0");
    assert_eq!(
        fs::read_to_string(proxy.dir.path().join("stty.before")).ok(),
        fs::read_to_string(proxy.dir.path().join("stty.after")).ok(),
        "the terminal's modes are restored"
    );
    assert_eq!(
        tmux.pane("#{alternate_on}"),
        "0",
        "back from the alternate screen"
    );
    assert!(!tmux.screen().contains("Clusters"), "{}", tmux.screen());
}
