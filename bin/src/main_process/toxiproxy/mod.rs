//! The Toxiproxy-compatible HTTP API of the main process (`[toxiproxy] address`, off by
//! default): existing Toxiproxy clients create proxies and toxics, which become listeners,
//! clusters, backends and faults through the ordinary order path ([`api`] maps one onto the
//! other).
//!
//! Each connection carries one request (head and `Content-Length` body, at most
//! [`MAX_REQUEST`] bytes) on a non-blocking socket of the main loop, and is closed after the
//! answer. A change is answered once every worker applied it, so a client that connects to a
//! proxy it just created finds it listening. A client that does not send its request, or does
//! not read its answer, within [`API_TIMEOUT`] is closed; at most [`MAX_CONNECTIONS`] are
//! open at once.

pub mod api;

use std::{
    collections::HashMap,
    io::{ErrorKind, Read, Write},
    time::{Duration, Instant},
};

use log::{info, warn};
use mio::{Interest, Token, net::TcpListener};

use self::api::{Answer, ApiRequest, Reply};
use super::{
    Main, Owner,
    orders::Refused,
    tasks::{Purpose, Task},
};

const MAX_REQUEST: usize = 64 * 1024;
pub const API_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_CONNECTIONS: usize = 64;

/// The API's listener and its connections.
pub struct ToxiproxyApi {
    listener: TcpListener,
    connections: HashMap<u64, Connection>,
    next_connection: u64,
}

struct Connection {
    stream: mio::net::TcpStream,
    token: Token,
    request: Vec<u8>,
    response: Vec<u8>,
    written: usize,
    /// `None` while the workers apply the request's change (the task has its own timeout).
    deadline: Option<Instant>,
}

/// Where the head ends and how long the body is, once the head is complete.
fn framing(request: &[u8]) -> Option<(usize, usize)> {
    let end = request.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(request.get(..end).unwrap_or_default());
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    Some((end, length))
}

/// The request, once complete.
fn parse(request: &[u8]) -> Option<ApiRequest> {
    let (end, length) = framing(request)?;
    let body = request.get(end..end.checked_add(length)?)?.to_vec();
    let head = String::from_utf8_lossy(request.get(..end)?);
    let mut lines = head.lines();
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_string();
    let path = request_line.next()?.to_string();
    let user_agent = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("user-agent"))
        .map(|(_, value)| value.trim().to_string());
    Some(ApiRequest {
        method,
        path,
        user_agent,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        _ => "Internal Server Error",
    }
}

fn render(answer: &Answer) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len()
    )
    .into_bytes();
    response.extend_from_slice(&answer.body);
    response
}

impl Main {
    /// Starts serving the API, when the configuration asks for it.
    pub(super) fn serve_toxiproxy(&mut self) {
        let Some(address) = self.settings.toxiproxy_address else {
            return;
        };
        let mut listener = match sozu_lib::server::bind_listener(address, 128) {
            Ok(listener) => TcpListener::from_std(listener),
            Err(error) => {
                warn!("cannot serve the Toxiproxy API on {address}: {error}");
                return;
            }
        };
        let token = self.register_owner(Owner::ToxiproxyListener);
        if let Err(error) = self
            .poll
            .registry()
            .register(&mut listener, token, Interest::READABLE)
        {
            warn!("cannot serve the Toxiproxy API: {error}");
            self.release_token(token);
            return;
        }
        info!(
            "Toxiproxy API on http://{}",
            listener.local_addr().unwrap_or(address)
        );
        self.toxiproxy = Some(ToxiproxyApi {
            listener,
            connections: HashMap::new(),
            next_connection: 0,
        });
    }

    pub(super) fn accept_toxiproxy(&mut self) {
        loop {
            let Some(api) = &mut self.toxiproxy else {
                return;
            };
            if api.connections.len() >= MAX_CONNECTIONS {
                return;
            }
            match api.listener.accept() {
                Ok((stream, _)) => {
                    api.next_connection += 1;
                    let id = api.next_connection;
                    let token = self.register_owner(Owner::Toxiproxy(id));
                    let mut connection = Connection {
                        stream,
                        token,
                        request: Vec::new(),
                        response: Vec::new(),
                        written: 0,
                        deadline: Some(Instant::now() + API_TIMEOUT),
                    };
                    if let Err(error) = self.poll.registry().register(
                        &mut connection.stream,
                        token,
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        warn!("cannot register a Toxiproxy API connection: {error}");
                        self.release_token(token);
                        continue;
                    }
                    if let Some(api) = &mut self.toxiproxy {
                        api.connections.insert(id, connection);
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    warn!("cannot accept a Toxiproxy API connection: {error}");
                    return;
                }
            }
        }
    }

    /// Reads the request of connection `id`, or writes its answer.
    pub(super) fn toxiproxy_ready(&mut self, id: u64) {
        let Some(connection) = self
            .toxiproxy
            .as_mut()
            .and_then(|api| api.connections.get_mut(&id))
        else {
            return;
        };
        if !connection.response.is_empty() {
            self.write_toxiproxy(id);
            return;
        }
        if connection.deadline.is_none() {
            return;
        }
        let mut chunk = [0u8; 4096];
        let request = loop {
            match connection.stream.read(&mut chunk) {
                Ok(0) => {
                    self.close_toxiproxy(id);
                    return;
                }
                Ok(count) => {
                    connection
                        .request
                        .extend_from_slice(chunk.get(..count).unwrap_or_default());
                    if connection.request.len() > MAX_REQUEST {
                        let answer = api::error(400, "bad request body: too large");
                        self.answer_toxiproxy(id, &answer);
                        return;
                    }
                    if let Some(request) = parse(&connection.request) {
                        break request;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close_toxiproxy(id);
                    return;
                }
            }
        };
        connection.deadline = None;
        match api::handle(&self.state, &request) {
            Reply::Now(answer) => self.answer_toxiproxy(id, &answer),
            Reply::AfterChange { orders, answer } => self.toxiproxy_change(id, orders, answer),
        }
    }

    /// Applies a request's orders; the answer goes once every worker applied them.
    fn toxiproxy_change(
        &mut self,
        id: u64,
        orders: Vec<sozu_command_lib::request::Order>,
        answer: Answer,
    ) {
        if orders.is_empty() {
            self.answer_toxiproxy(id, &answer);
            return;
        }
        match self.apply_changes(orders) {
            Err(Refused::ByState(message)) => self.answer_toxiproxy(id, &api::error(400, &message)),
            Err(Refused::CannotListen(error)) => {
                let answer = api::cannot_listen(error.address, &error.source);
                self.answer_toxiproxy(id, &answer);
            }
            Ok((targets, orders)) if targets.is_empty() => {
                drop(orders);
                self.answer_toxiproxy(id, &answer);
            }
            Ok((targets, orders)) => {
                let purpose = Purpose::Toxiproxy {
                    connection: id,
                    answer,
                };
                let task = Task::new(purpose, None, self.settings.worker_timeout);
                self.start_task(task, &targets, &orders);
            }
        }
    }

    /// The workers applied a request's change: its answer, or a 500 naming their refusals.
    pub(super) fn finish_toxiproxy(&mut self, id: u64, answer: &Answer, task: &Task) {
        if task.failures.is_empty() {
            self.answer_toxiproxy(id, answer);
        } else {
            let answer = api::error(500, &task.failures.join("; "));
            self.answer_toxiproxy(id, &answer);
        }
    }

    fn answer_toxiproxy(&mut self, id: u64, answer: &Answer) {
        let Some(connection) = self
            .toxiproxy
            .as_mut()
            .and_then(|api| api.connections.get_mut(&id))
        else {
            return;
        };
        connection.response = render(answer);
        connection.deadline = Some(Instant::now() + API_TIMEOUT);
        self.write_toxiproxy(id);
    }

    fn write_toxiproxy(&mut self, id: u64) {
        let Some(connection) = self
            .toxiproxy
            .as_mut()
            .and_then(|api| api.connections.get_mut(&id))
        else {
            return;
        };
        while connection.written < connection.response.len() {
            let rest = connection
                .response
                .get(connection.written..)
                .unwrap_or_default();
            match connection.stream.write(rest) {
                Ok(count) => connection.written += count,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.close_toxiproxy(id);
    }

    fn close_toxiproxy(&mut self, id: u64) {
        let Some(api) = &mut self.toxiproxy else {
            return;
        };
        if let Some(mut connection) = api.connections.remove(&id) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
            self.release_token(connection.token);
            // A slot is free: a client may wait in the backlog.
            self.accept_toxiproxy();
        }
    }

    /// The earliest deadline of an API connection, for the event loop's wait.
    pub(super) fn next_toxiproxy_deadline(&self) -> Option<Instant> {
        self.toxiproxy.as_ref().and_then(|api| {
            api.connections
                .values()
                .filter_map(|connection| connection.deadline)
                .min()
        })
    }

    /// Closes the connections whose client is too slow.
    pub(super) fn close_late_toxiproxy(&mut self, now: Instant) {
        let late: Vec<u64> = self
            .toxiproxy
            .as_ref()
            .map(|api| {
                api.connections
                    .iter()
                    .filter(|(_, connection)| connection.deadline.is_some_and(|at| at <= now))
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        for id in late {
            self.close_toxiproxy(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_complete_with_its_body() {
        let head =
            b"POST /proxies HTTP/1.1\r\nUser-Agent: python-requests\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(parse(head), None);
        let mut full = head.to_vec();
        full.extend_from_slice(b"{}");
        assert_eq!(parse(&full), None);
        full.extend_from_slice(b"  ");
        let request = parse(&full).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/proxies");
        assert_eq!(request.user_agent.as_deref(), Some("python-requests"));
        assert_eq!(request.body, b"{}  ");
        assert_eq!(parse(b"GET /version HTTP/1.1\r\n\r\n").unwrap().body, b"");
    }

    #[test]
    fn answers_are_framed() {
        let text = render(&api::error(404, "proxy not found"));
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"proxy not found\",\"status\":404}\n"));
    }
}
