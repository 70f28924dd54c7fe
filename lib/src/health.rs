//! Active health checks: a worker asks each backend of a cluster with a `health_check` for its
//! `uri` every `interval`, and takes a backend out after `unhealthy_threshold` failed probes in a
//! row, back in after `healthy_threshold` good ones.
//!
//! A [`Probe`] is one check: a non-blocking connect, then `GET uri` in the protocol the
//! cluster's backends speak, and the status of the answer: `GET uri HTTP/1.1` with
//! `Connection: close` and its status line, or, for a cluster with `http2 = true`, one HTTP/2
//! stream with prior knowledge and its `:status` ([`h2`]). A probe succeeds when the status is
//! the expected one (any 2xx when `expected_status` is 0) before `timeout`. The event loop
//! owns the probe's socket like a session's and calls [`Probe::ready`] on its events.

mod h2;

use std::{
    io::{ErrorKind, Read, Write},
    net::SocketAddr,
    time::Instant,
};

use mio::{Token, net::TcpStream};
use sozu_command_lib::request::HealthCheckConfig;

use crate::{backends::BackendKey, timer};

/// The longest answer head read: the status line is all that matters.
const MAX_RESPONSE: usize = 1024;

/// How a probe ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    Pending,
    Healthy,
    Unhealthy(String),
}

/// The protocol a cluster's backends speak, which its probes speak too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeProtocol {
    Http1,
    /// HTTP/2 in cleartext with prior knowledge (clusters with `http2 = true`).
    H2c,
}

/// What a probe read of the answer so far.
#[derive(Debug)]
enum Answer {
    /// The HTTP/1.1 answer's first bytes, up to its status line.
    Http1(Vec<u8>),
    /// The HTTP/2 frames of the probe's stream.
    H2c(Box<h2::Reply>),
}

/// One health check in flight.
#[derive(Debug)]
pub struct Probe {
    pub backend: BackendKey,
    pub stream: TcpStream,
    pub token: Token,
    pub deadline: Instant,
    /// Bytes for the backend, written from `written` on.
    out: Vec<u8>,
    written: usize,
    answer: Answer,
    expected_status: u16,
}

impl Probe {
    /// Starts connecting to `address`; `token` is the one the loop registers the socket with.
    pub fn start(
        backend: BackendKey,
        address: SocketAddr,
        check: &HealthCheckConfig,
        protocol: ProbeProtocol,
        token: Token,
        now: Instant,
    ) -> std::io::Result<Probe> {
        let stream = TcpStream::connect(address)?;
        let (out, answer) = match protocol {
            ProbeProtocol::Http1 => {
                let request = format!(
                    "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: sozu-health-check\r\nConnection: close\r\n\r\n",
                    check.uri
                );
                (request.into_bytes(), Answer::Http1(Vec::with_capacity(128)))
            }
            ProbeProtocol::H2c => {
                let mut out = Vec::with_capacity(128 + check.uri.len());
                h2::request(&check.uri, &address.to_string(), &mut out);
                (out, Answer::H2c(Box::new(h2::Reply::new())))
            }
        };
        Ok(Probe {
            backend,
            stream,
            token,
            deadline: timer::later(now, check.timeout),
            out,
            written: 0,
            answer,
            expected_status: check.expected_status,
        })
    }

    /// Advances the probe after an event on its socket.
    pub fn ready(&mut self) -> ProbeOutcome {
        match self.stream.take_error() {
            Ok(None) => {}
            Ok(Some(error)) | Err(error) => {
                return ProbeOutcome::Unhealthy(format!("connect failed: {error}"));
            }
        }
        if let Err(error) = self.flush() {
            return ProbeOutcome::Unhealthy(format!("cannot send the request: {error}"));
        }
        if self.written < self.out.len() {
            return ProbeOutcome::Pending;
        }
        let mut chunk = [0u8; 512];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.take(&[]),
                Ok(count) => {
                    let outcome = self.take(chunk.get(..count).unwrap_or_default());
                    if outcome != ProbeOutcome::Pending {
                        return outcome;
                    }
                    if let Err(error) = self.flush() {
                        return ProbeOutcome::Unhealthy(format!("cannot answer: {error}"));
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    return ProbeOutcome::Pending;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    return ProbeOutcome::Unhealthy(format!("cannot read the answer: {error}"));
                }
            }
        }
    }

    /// Writes what is left of `out`, as far as the socket takes it.
    fn flush(&mut self) -> std::io::Result<()> {
        while let Some(pending) = self.out.get(self.written..).filter(|rest| !rest.is_empty()) {
            match self.stream.write(pending) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(count) => self.written += count,
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::WouldBlock | ErrorKind::NotConnected
                    ) =>
                {
                    return Ok(());
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Takes bytes of the answer (none: the backend closed) and gives the verdict, once known.
    fn take(&mut self, bytes: &[u8]) -> ProbeOutcome {
        let ended = bytes.is_empty();
        match &mut self.answer {
            Answer::Http1(response) => {
                response.extend_from_slice(bytes);
                match status_line(response, ended) {
                    Ok(Some(status)) => self.verdict(status),
                    Ok(None) => ProbeOutcome::Pending,
                    Err(reason) => ProbeOutcome::Unhealthy(reason),
                }
            }
            Answer::H2c(reply) => match reply.receive(bytes, &mut self.out) {
                Ok(Some(status)) => {
                    // The answer is known: end the connection politely, as far as the socket
                    // takes it now; the probe closes it next.
                    h2::goodbye(&mut self.out);
                    let _ = self.flush();
                    self.verdict(status)
                }
                Ok(None) if ended => ProbeOutcome::Unhealthy("closed before answering".to_string()),
                Ok(None) => ProbeOutcome::Pending,
                Err(reason) => ProbeOutcome::Unhealthy(reason),
            },
        }
    }

    /// The verdict on an answer's status.
    fn verdict(&self, status: u16) -> ProbeOutcome {
        let healthy = if self.expected_status == 0 {
            (200..300).contains(&status)
        } else {
            status == self.expected_status
        };
        if healthy {
            ProbeOutcome::Healthy
        } else {
            ProbeOutcome::Unhealthy(format!("answered {status}"))
        }
    }
}

/// The status of an HTTP/1.1 answer whose first bytes are `response` (`ended`: all of it),
/// once its status line is whole.
fn status_line(response: &[u8], ended: bool) -> Result<Option<u16>, String> {
    let Some(line_end) = response.iter().position(|&b| b == b'\n') else {
        return if ended || response.len() >= MAX_RESPONSE {
            Err("no status line".to_string())
        } else {
            Ok(None)
        };
    };
    let line = String::from_utf8_lossy(response.get(..line_end).unwrap_or_default());
    let mut parts = line.split(' ');
    let version = parts.next().unwrap_or_default();
    let status: Option<u16> = parts.next().and_then(|code| code.trim().parse().ok());
    match status {
        Some(status) if version.starts_with("HTTP/1.") => Ok(Some(status)),
        _ => Err(format!("invalid status line `{}`", line.trim_end())),
    }
}

/// The checks of one backend so far.
#[derive(Debug, Clone, Default)]
pub struct HealthRecord {
    /// Probes in a row that succeeded, and that failed.
    pub successes: u32,
    pub failures: u32,
    /// When the next probe starts.
    pub next_at: Option<Instant>,
    /// The probe in flight, by its slot.
    pub in_flight: Option<usize>,
}

impl HealthRecord {
    /// Counts a probe; returns `Some(healthy)` when the backend crosses a threshold.
    pub fn count(
        &mut self,
        healthy: bool,
        check: &HealthCheckConfig,
        currently_healthy: bool,
    ) -> Option<bool> {
        if healthy {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            (!currently_healthy && self.successes >= check.healthy_threshold.max(1)).then_some(true)
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
            (currently_healthy && self.failures >= check.unhealthy_threshold.max(1))
                .then_some(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::TcpListener,
        time::Duration,
    };

    use super::*;

    fn check() -> HealthCheckConfig {
        HealthCheckConfig {
            uri: "/health".to_string(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            expected_status: 0,
        }
    }

    /// Runs a probe against a backend answering `answer` until it ends.
    fn probe_against(answer: &'static [u8]) -> (ProbeOutcome, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = vec![0u8; 1024];
            let count = stream.read(&mut request).unwrap();
            stream.write_all(answer).unwrap();
            request.truncate(count);
            request
        });
        let key = crate::backends::tests::key_for_tests();
        let mut probe = Probe::start(
            key,
            address,
            &check(),
            ProbeProtocol::Http1,
            Token(1),
            Instant::now(),
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let outcome = probe.ready();
            if outcome != ProbeOutcome::Pending || Instant::now() > deadline {
                return (outcome, server.join().unwrap());
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_2xx_answer_is_healthy_and_the_request_is_a_get_of_the_uri() {
        let (outcome, request) = probe_against(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(outcome, ProbeOutcome::Healthy);
        assert!(request.starts_with(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:"));
    }

    #[test]
    fn other_statuses_and_garbage_are_unhealthy() {
        assert_eq!(
            probe_against(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").0,
            ProbeOutcome::Unhealthy("answered 503".to_string())
        );
        assert!(matches!(
            probe_against(b"SSH-2.0-OpenSSH\r\n").0,
            ProbeOutcome::Unhealthy(_)
        ));
    }

    /// Issue 10, item 3: a health check timeout of u64::MAX seconds panicked the worker.
    #[test]
    fn a_huge_timeout_starts_a_probe_without_panicking() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let check = HealthCheckConfig {
            timeout: Duration::from_secs(u64::MAX),
            ..check()
        };
        let key = crate::backends::tests::key_for_tests();
        let now = Instant::now();
        let probe = Probe::start(
            key,
            listener.local_addr().unwrap(),
            &check,
            ProbeProtocol::Http1,
            Token(1),
            now,
        )
        .unwrap();
        assert!(probe.deadline > now + Duration::from_secs(365 * 24 * 3600));
    }

    #[test]
    fn thresholds_decide_the_transitions() {
        let mut record = HealthRecord::default();
        let check = check();
        assert_eq!(record.count(false, &check, true), None);
        assert_eq!(record.count(false, &check, true), None);
        assert_eq!(record.count(false, &check, true), Some(false));
        assert_eq!(record.count(true, &check, false), None);
        assert_eq!(record.count(true, &check, false), Some(true));
        assert_eq!(record.count(true, &check, true), None);
    }
}
