//! The client side of registrations: a service binds its own listening socket, registers it
//! with the proxy, and is routed to for as long as the returned [`Registered`] lives.
//!
//! ```no_run
//! use std::io::Write;
//!
//! use sozu_command_lib::registration::{Definition, listen};
//!
//! let definition = Definition::http("api", "127.0.0.1:8000".parse().unwrap(), "api.test")
//!     .path_prefix("/a");
//! let listener = listen("/run/sozu/register.sock", definition).unwrap();
//! for stream in listener.incoming() {
//!     let mut stream = stream.unwrap();
//!     let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nA\n");
//! }
//! ```
//!
//! A thread keeps the registration: it holds the connection the registration is bound to,
//! sends `RENEW` every [`KEEPALIVE_INTERVAL`], and registers again on a new connection if the
//! proxy went away (a restart). Dropping [`Registered`] sends `DEREGISTER`.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    ops::Deref,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, mpsc},
    thread::{self, JoinHandle},
    time::Duration,
};

use log::{debug, warn};

use crate::{
    request::{Order, Register, RegisteredProtocol, RegistrationId, RegistrationIds, Request},
    response::{Response, ResponseContent, ResponseStatus},
};

/// How often the keep-alive thread renews the registration.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long an answer of the proxy may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest answer line read.
const MAX_ANSWER: u64 = 1 << 20;

/// What a service registers: the fields of `REGISTER` except its own address, which
/// [`listen`] binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    /// What to register: cluster, protocol, hostname, lease.
    pub register: Register,
    /// The address the service's socket binds; `127.0.0.1:0` (an ephemeral port) by default.
    pub bind: SocketAddr,
}

impl Definition {
    fn new(cluster_id: &str, protocol: RegisteredProtocol, listen: SocketAddr) -> Self {
        Definition {
            register: Register {
                cluster_id: cluster_id.to_string(),
                protocol,
                listen,
                hostname: None,
                path_prefix: None,
                backend: SocketAddr::from(([127, 0, 0, 1], 0)),
                hold_timeout: None,
                ttl: None,
                certificate: None,
                key: None,
                certificate_chain: Vec::new(),
            },
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// Requests for `hostname` (an exact name or `*.suffix`) on the HTTP listener `listen`.
    pub fn http(cluster_id: &str, listen: SocketAddr, hostname: &str) -> Self {
        let mut definition = Definition::new(cluster_id, RegisteredProtocol::Http, listen);
        definition.register.hostname = Some(hostname.to_string());
        definition
    }

    /// Requests for `hostname` on the HTTPS listener `listen`, with this certificate and key
    /// in PEM.
    pub fn https(
        cluster_id: &str,
        listen: SocketAddr,
        hostname: &str,
        certificate: &str,
        key: &str,
    ) -> Self {
        let mut definition = Definition::new(cluster_id, RegisteredProtocol::Https, listen);
        definition.register.hostname = Some(hostname.to_string());
        definition.register.certificate = Some(certificate.to_string());
        definition.register.key = Some(key.to_string());
        definition
    }

    /// Every connection of the TCP listener `listen`.
    pub fn tcp(cluster_id: &str, listen: SocketAddr) -> Self {
        Definition::new(cluster_id, RegisteredProtocol::Tcp, listen)
    }

    /// Only the paths that start with `prefix`.
    pub fn path_prefix(mut self, prefix: &str) -> Self {
        self.register.path_prefix = Some(prefix.to_string());
        self
    }

    /// Binds the service's socket on `address` rather than an ephemeral port of 127.0.0.1.
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.bind = address;
        self
    }
}

/// Why a service could not register.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// The service's socket could not be bound.
    #[error("cannot bind the service's socket on {address}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why it failed.
        source: io::Error,
    },
    /// The proxy's registration socket could not be reached.
    #[error("cannot reach the proxy at {}", path.display())]
    Connect {
        /// The registration socket.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// Reading or writing the proxy's socket failed.
    #[error("the connection to the proxy failed")]
    Io(#[from] io::Error),
    /// The proxy's answer is not a response.
    #[error("the proxy answered with something that is not a response")]
    Answer(#[from] serde_json::Error),
    /// The proxy answered FAILURE (its message).
    #[error("the proxy refused the registration: {0}")]
    Refused(String),
}

/// A registered service: its listening socket (this derefs to it), registered as long as this
/// value lives.
#[derive(Debug)]
pub struct Registered {
    listener: TcpListener,
    ids: Arc<Mutex<RegistrationIds>>,
    /// Dropped to stop the keep-alive thread.
    stop: Option<mpsc::Sender<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl Registered {
    /// The current registration id (it changes if the proxy restarted and the service
    /// registered again).
    pub fn registration_id(&self) -> String {
        self.ids
            .lock()
            .map(|ids| ids.registration_id.clone())
            .unwrap_or_default()
    }

    /// The backend id the proxy gave the service.
    pub fn backend_id(&self) -> String {
        self.ids
            .lock()
            .map(|ids| ids.backend_id.clone())
            .unwrap_or_default()
    }
}

impl Deref for Registered {
    type Target = TcpListener;

    fn deref(&self) -> &TcpListener {
        &self.listener
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
    }
}

/// Binds the service's socket, registers it on the proxy's command or registration socket
/// at `socket_path`, and keeps the registration on a thread until the result is dropped.
pub fn listen(
    socket_path: impl AsRef<Path>,
    definition: Definition,
) -> Result<Registered, RegistrationError> {
    let listener =
        TcpListener::bind(definition.bind).map_err(|source| RegistrationError::Bind {
            address: definition.bind,
            source,
        })?;
    let mut register = definition.register;
    register.backend = listener.local_addr()?;
    let path = socket_path.as_ref().to_path_buf();
    let (connection, ids) = Connection::register(&path, &register)?;
    let ids = Arc::new(Mutex::new(ids));
    let (stop, stopped) = mpsc::channel();
    let keeper = Keeper {
        path,
        register,
        connection,
        ids: ids.clone(),
        stopped,
    };
    let keeper = thread::Builder::new()
        .name("sozu-registration".to_string())
        .spawn(move || keeper.run())?;
    Ok(Registered {
        listener,
        ids,
        stop: Some(stop),
        keeper: Some(keeper),
    })
}

/// A connection to the proxy that sends one request at a time and reads its final answer.
struct Connection {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Connection {
    fn open(path: &Path) -> Result<Self, RegistrationError> {
        let stream = UnixStream::connect(path).map_err(|source| RegistrationError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Connection {
            stream,
            reader,
            next_id: 0,
        })
    }

    /// Connects and registers; returns the connection the registration is bound to.
    fn register(
        path: &Path,
        register: &Register,
    ) -> Result<(Connection, RegistrationIds), RegistrationError> {
        let mut connection = Connection::open(path)?;
        let response = connection.ask(Order::Register(register.clone()))?;
        match response.content {
            Some(ResponseContent::Registered(ids)) => Ok((connection, ids)),
            _ => Err(RegistrationError::Refused(format!(
                "unexpected answer: {}",
                response.message
            ))),
        }
    }

    /// Sends `order` and returns the final answer; a FAILURE is an error.
    fn ask(&mut self, order: Order) -> Result<Response, RegistrationError> {
        self.next_id += 1;
        let id = format!("registration-{}", self.next_id);
        let mut line = serde_json::to_vec(&Request::new(id.clone(), order))?;
        line.push(b'\n');
        self.stream.write_all(&line)?;
        loop {
            let mut text = String::new();
            let read = (&mut self.reader).take(MAX_ANSWER).read_line(&mut text)?;
            if read == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
            }
            let response: Response = serde_json::from_str(&text)?;
            if response.id != id || !response.is_final() {
                continue;
            }
            if response.status == ResponseStatus::Failure {
                return Err(RegistrationError::Refused(response.message));
            }
            return Ok(response);
        }
    }
}

/// The keep-alive thread's state.
struct Keeper {
    path: PathBuf,
    register: Register,
    connection: Connection,
    ids: Arc<Mutex<RegistrationIds>>,
    stopped: mpsc::Receiver<()>,
}

impl Keeper {
    fn run(mut self) {
        while let Err(mpsc::RecvTimeoutError::Timeout) =
            self.stopped.recv_timeout(KEEPALIVE_INTERVAL)
        {
            self.renew();
        }
        let registration_id = self.current_id();
        if let Err(error) = self.connection.ask(Order::Deregister(RegistrationId {
            registration_id: registration_id.clone(),
        })) {
            debug!("{registration_id}: DEREGISTER failed ({error}); the connection's end ends it");
        }
    }

    fn current_id(&self) -> String {
        self.ids
            .lock()
            .map(|ids| ids.registration_id.clone())
            .unwrap_or_default()
    }

    /// Renews the registration, or registers again on a new connection if the proxy forgot
    /// it or went away.
    fn renew(&mut self) {
        let registration_id = self.current_id();
        let renewed = self.connection.ask(Order::Renew(RegistrationId {
            registration_id: registration_id.clone(),
        }));
        let Err(error) = renewed else {
            return;
        };
        warn!("{registration_id}: cannot renew ({error}): registering again");
        match Connection::register(&self.path, &self.register) {
            Ok((connection, ids)) => {
                self.connection = connection;
                if let Ok(mut current) = self.ids.lock() {
                    *current = ids;
                }
            }
            Err(error) => warn!("cannot register again: {error}; retrying later"),
        }
    }
}
