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
//!     Order::AddTcpFrontend(TcpFrontend {
//!         cluster_id: "greeter".into(),
//!         address,
//!         tags: Default::default(),
//!     }),
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
#![deny(unsafe_code)]

pub mod access_log;
pub mod backends;
pub mod faults;
pub mod health;
pub mod http;
pub mod https;
pub mod load_balancing;
pub mod metrics;
pub mod pool;
pub mod protocol;
pub mod router;
pub mod server;
pub mod session;
pub mod socket;
pub mod tcp;
pub mod timer;
