//! The proxy engine: one single-threaded event loop per worker that accepts connections,
//! routes them and moves bytes between frontends and backends.
//!
//! # Embedding
//!
//! A Rust program runs a worker in a thread of its own: create a channel pair, start the
//! [`server::Server`] on one end, and send [orders](sozu_command_lib::request::Order) on the
//! other. Each order gets one final [response](sozu_command_lib::response::Response), except
//! `SOFT_STOP`, which gets a PROCESSING response first and its final one when the last
//! session ended. Responses with the id [`server::EVENT_RESPONSE_ID`] are events (a backend
//! went down, a drained backend is gone…), not answers.
//!
//! ```
//! use std::{io::{Read, Write}, net::{TcpListener, TcpStream}, thread};
//!
//! use sozu_command_lib::{
//!     channel::Channel,
//!     request::{AddBackend, Cluster, ListenerAddress, ListenerType, Order, Request,
//!               TcpFrontend, TcpListenerConfig},
//!     response::{Response, ResponseStatus},
//!     scm::Listeners,
//! };
//! use sozu_lib::server::{Server, ServerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A backend that greets whoever connects.
//! let backend = TcpListener::bind("127.0.0.1:0")?;
//! let backend_address = backend.local_addr()?;
//! thread::spawn(move || {
//!     for mut stream in backend.incoming().flatten() {
//!         let _ = stream.write_all(b"hello");
//!     }
//! });
//!
//! // The worker, built and run on its own thread (it is not `Send`: it uses `Rc` inside).
//! let (mut command, worker_end) = Channel::<Request, Response>::pair(4096, 1 << 20)?;
//! thread::spawn(move || {
//!     Server::new(ServerConfig::default(), worker_end, Listeners::default())?.run()
//! });
//!
//! // A TCP listener on a free port, routed to the backend.
//! let address = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
//! let orders = [
//!     Order::AddTcpListener(TcpListenerConfig::new(address)),
//!     Order::AddCluster(Cluster::new("greeter")),
//!     Order::AddBackend(AddBackend {
//!         cluster_id: "greeter".into(),
//!         backend_id: "greeter-1".into(),
//!         address: backend_address,
//!         sticky_id: None,
//!         weight: 100,
//!         backup: false,
//!     }),
//!     Order::AddTcpFrontend(TcpFrontend::new("greeter", address)),
//!     Order::ActivateListener(ListenerAddress { address, proxy: ListenerType::Tcp }),
//! ];
//! for (index, order) in orders.into_iter().enumerate() {
//!     command.write_message(&Request::new(index.to_string(), order))?;
//!     let response = command.read_message()?.ok_or("the worker hung up")?;
//!     assert_eq!(response.status, ResponseStatus::Ok, "{}", response.message);
//! }
//!
//! // Through the proxy.
//! let mut client = TcpStream::connect(address)?;
//! let mut greeting = [0; 5];
//! client.read_exact(&mut greeting)?;
//! assert_eq!(&greeting, b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`server`]: the event loop. It owns the sessions, the sockets (by token), the timers,
//!   the backends, the idle pool and the orders, and never names a protocol: it acts on the
//!   `session::Action`s sessions return. `server/accept.rs` accepts connections and gives
//!   each session its first stage by listener kind; `server/connect.rs` opens backend
//!   connections for a (session, slot); `server/backend_pool.rs` keeps idle backend
//!   connections; `server/mux.rs` shares backend HTTP/2 connections among sessions'
//!   streams, bounded per backend; `server/orders.rs` applies orders, checked by `server/validation.rs`;
//!   `server/health.rs` runs active health checks; `server/channel.rs` reads orders and
//!   writes responses and events; `server/observations.rs` flushes access logs and statsd;
//!   `server/config.rs` holds the settings a worker starts with.
//! - `session`: a client connection as two parts borrowed apart: its stage (an enum with a
//!   hand-written delegating `match`) that moves bytes, and `session::SessionIo`, the rest
//!   (the client endpoint, its backend connections by slot (`session::backs`), addresses,
//!   timeouts). A stage's functions take their own state, `&mut SessionIo` and a
//!   `session::Context` (what the loop lends: clock, timers, pool, listeners, clusters,
//!   recorder, faults); they return an `Action` for the loop, or the stage they become
//!   (`session::Outcome::Become`), never touching the session itself. `session::endpoint` is
//!   one end of a session: a socket (or a stream of a shared backend HTTP/2 connection,
//!   `session::mux`), its token and readiness, reads and writes, TLS inside.
//!   `session::shaper` is a session's write budget while faults act on it.
//! - [`protocol`]: the stages. [`protocol::http`] is HTTP/1.1 (the codec, a stream per
//!   request with typed phases, the routing policy as a pure decision, Basic auth, the
//!   proxy's answers, the access-log record) and, in [`protocol::http::h2`], HTTP/2 toward
//!   clients (a codec of its own, and a stage that takes over a connection whose ALPN or
//!   preface says HTTP/2 and forwards each stream on a backend slot of its own, sharing the
//!   routing, editing, answers and records of HTTP/1.1) and toward the backends of clusters
//!   with `http2 = true` (`h2::backend`: the state of a backend connection shared by many
//!   sessions, each slot's HTTP/1.1 exchanges carried as streams through a handle);
//!   `protocol::pipe` copies bytes both ways (TCP
//!   mode, upgraded connections), with `protocol::splice` on Linux (which also carries large
//!   HTTP/1 bodies of known length), after
//!   `protocol::sniff` decided where a TCP connection goes; [`protocol::tls`] is
//!   the rustls server side; [`protocol::proxy_protocol`] reads and writes PROXY headers.
//! - `tcp` and `https`: what is particular to TCP listeners (the PROXY header stage, the
//!   pipe's first bytes) and to HTTPS listeners (TLS settings and certificates).
//! - [`router`]: hostnames, paths and methods to frontends; one lookup per request.
//! - [`backends`] and [`load_balancing`]: backends per cluster, their state, connection
//!   accounting by lease, and the choice of a backend; `health` keeps health check verdicts.
//! - [`faults`]: which injected faults act on a connection or request and what they do,
//!   pure (no I/O, no clock); `server/faults.rs` keeps the worker's set in step with orders.
//! - `pool`: fixed-size buffers reused across sessions. `timer`: the deadlines of
//!   sessions. [`metrics`] and [`access_log`]: figures and request lines; [`log_socket`]: the
//!   TCP, UDP and Unix sockets log lines go to.
//!
//! Every public item is documented (`missing_docs` is denied): a new one says what it means
//! for a program that embeds the proxy, with its unit and when it is set. Modules only the
//! crate uses are `pub(crate)`.
#![deny(missing_docs)]

pub mod access_log;
pub mod backends;
pub mod faults;
pub(crate) mod health;
pub(crate) mod https;
pub mod load_balancing;
pub mod log_socket;
pub mod metrics;
pub(crate) mod pool;
pub mod protocol;
pub mod router;
pub mod server;
pub(crate) mod session;
pub(crate) mod tcp;
#[cfg(test)]
mod testing;
pub(crate) mod timer;
