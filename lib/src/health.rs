//! Active health checks: a worker asks each backend of a cluster with a `health_check` for its
//! `uri` every `interval`, and takes a backend out after `unhealthy_threshold` failed probes in a
//! row, back in after `healthy_threshold` good ones.
//!
//! A [`Probe`] is one check: a non-blocking connect, `GET uri HTTP/1.1` with
//! `Connection: close`, and the status line of the answer. A probe succeeds when the status is
//! the expected one (any 2xx when `expected_status` is 0) before `timeout`. The event loop
//! owns the probe's socket like a session's and calls [`Probe::ready`] on its events.

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

/// One health check in flight.
#[derive(Debug)]
pub struct Probe {
    pub backend: BackendKey,
    pub stream: TcpStream,
    pub token: Token,
    pub deadline: Instant,
    request: Vec<u8>,
    written: usize,
    response: Vec<u8>,
    expected_status: u16,
}

impl Probe {
    /// Starts connecting to `address`; `token` is the one the loop registers the socket with.
    pub fn start(
        backend: BackendKey,
        address: SocketAddr,
        check: &HealthCheckConfig,
        token: Token,
        now: Instant,
    ) -> std::io::Result<Probe> {
        let stream = TcpStream::connect(address)?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: sozu-health-check\r\nConnection: close\r\n\r\n",
            check.uri
        )
        .into_bytes();
        Ok(Probe {
            backend,
            stream,
            token,
            deadline: timer::later(now, check.timeout),
            request,
            written: 0,
            response: Vec::with_capacity(128),
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
        while self.written < self.request.len() {
            match self
                .stream
                .write(self.request.get(self.written..).unwrap_or_default())
            {
                Ok(count) => self.written += count,
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    return ProbeOutcome::Pending;
                }
                Err(error) if error.kind() == ErrorKind::NotConnected => {
                    return ProbeOutcome::Pending;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    return ProbeOutcome::Unhealthy(format!("cannot send the request: {error}"));
                }
            }
        }
        let mut chunk = [0u8; 512];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.judge(true),
                Ok(count) => {
                    self.response
                        .extend_from_slice(chunk.get(..count).unwrap_or_default());
                    let outcome = self.judge(false);
                    if outcome != ProbeOutcome::Pending || self.response.len() >= MAX_RESPONSE {
                        return outcome;
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

    /// The verdict on the bytes read so far; `ended` when the backend closed.
    fn judge(&self, ended: bool) -> ProbeOutcome {
        let Some(line_end) = self.response.iter().position(|&b| b == b'\n') else {
            return if ended || self.response.len() >= MAX_RESPONSE {
                ProbeOutcome::Unhealthy("no status line".to_string())
            } else {
                ProbeOutcome::Pending
            };
        };
        let line = String::from_utf8_lossy(self.response.get(..line_end).unwrap_or_default());
        let mut parts = line.split(' ');
        let version = parts.next().unwrap_or_default();
        let status: Option<u16> = parts.next().and_then(|code| code.trim().parse().ok());
        match status {
            Some(status) if version.starts_with("HTTP/1.") => {
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
            _ => ProbeOutcome::Unhealthy(format!("invalid status line `{}`", line.trim_end())),
        }
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
        let mut probe = Probe::start(key, address, &check(), Token(1), Instant::now()).unwrap();
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
        let probe =
            Probe::start(key, listener.local_addr().unwrap(), &check, Token(1), now).unwrap();
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
