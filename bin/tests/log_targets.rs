//! `log_target` as Sōzu has it (issue 11): the main process and every worker send their log
//! lines to a UDP address or a Unix datagram socket, one datagram per line; an unreachable TCP
//! target is named on stderr, where the lines then go.

mod common;

use std::{
    fs,
    io::ErrorKind,
    net::{TcpListener, UdpSocket},
    os::unix::net::UnixDatagram,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{DEADLINE, SOZU, free_address};

/// A started `sozu` whose processes are killed when it drops.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sozu` on a configuration with `log_target` and an HTTP listener, in `dir`.
fn start(dir: &Path, log_target: &str, stderr: Stdio) -> Started {
    let config = dir.join("config.toml");
    let text = format!(
        "command_socket = \"sozu.sock\"\nworker_count = 2\nlog_level = \"info\"\n\
         log_target = \"{log_target}\"\n\n[[listeners]]\nprotocol = \"http\"\naddress = \"{}\"\n",
        free_address()
    );
    fs::write(&config, text).expect("write the configuration");
    let child = Command::new(SOZU)
        .args(["start", "-c"])
        .arg(&config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start sozu");
    Started(child)
}

/// Reads datagrams with `receive` until the main process and both workers have each sent a
/// line, or the deadline passes; returns the lines read.
fn lines_of_every_process(
    mut receive: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    let mut lines = Vec::new();
    let mut buf = vec![0; 65_536];
    let seen = |lines: &[String], role: &str| lines.iter().any(|line| line.contains(role));
    while Instant::now() < deadline
        && !(seen(&lines, " main[") && seen(&lines, " worker 0[") && seen(&lines, " worker 1["))
    {
        match receive(&mut buf) {
            Ok(count) => lines.push(String::from_utf8_lossy(&buf[..count]).into_owned()),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => panic!("cannot read the log socket: {error}"),
        }
    }
    lines
}

#[track_caller]
fn assert_every_process_logged(lines: &[String]) {
    for role in [" main[", " worker 0[", " worker 1["] {
        assert!(
            lines.iter().any(|line| line.contains(role)),
            "no line from{role}…] in {lines:#?}"
        );
    }
    assert!(
        lines.iter().all(|line| !line.ends_with('\n')),
        "one line per datagram, without its newline: {lines:#?}"
    );
}

#[test]
fn main_and_workers_log_to_a_udp_target() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let target = format!("udp://{}", receiver.local_addr().expect("address"));
    let _sozu = start(dir.path(), &target, Stdio::null());
    let lines = lines_of_every_process(|buf| receiver.recv(buf));
    assert_every_process_logged(&lines);
}

#[test]
fn main_and_workers_log_to_a_unix_datagram_target() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("log.sock");
    let receiver = UnixDatagram::bind(&path).expect("bind");
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let _sozu = start(
        dir.path(),
        &format!("unix://{}", path.display()),
        Stdio::null(),
    );
    let lines = lines_of_every_process(|buf| receiver.recv(buf));
    assert_every_process_logged(&lines);
}

#[test]
fn an_unreachable_tcp_target_is_named_and_logs_go_to_stderr() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let stderr = dir.path().join("stderr");
    let file = fs::File::create(&stderr).expect("create");
    let _sozu = start(dir.path(), &format!("tcp://{address}"), Stdio::from(file));
    let named = format!("cannot reach the log target tcp://{address}");
    let read = || fs::read_to_string(&stderr).unwrap_or_default();
    assert!(
        common::wait_until(DEADLINE, || read().contains(&named)
            && read().contains(" main[")),
        "stderr: {}",
        read()
    );
}

/// `access_logs_colored` (Sōzu's key): access lines written to stdout carry Sōzu's escapes,
/// the status in its class's colour.
#[test]
fn access_logs_colored_colours_access_lines_on_stdout() {
    let backend = common::Backend::start("app");
    let proxy = common::Proxy::start("access_logs_colored = true\n");
    proxy.route("app", "app.test", &backend);
    assert_eq!(proxy.get("app.test").expect("a response").0, 200);
    assert!(
        common::wait_until(DEADLINE, || {
            proxy
                .log_text()
                .contains("app/app-app \"GET app.test/\" \x1b[32m200\x1b[m")
        }),
        "{}",
        proxy.log_text()
    );
}
