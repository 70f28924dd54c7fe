//! Talking to a running proxy: finding its command socket, sending orders, waiting for their
//! final answer (PROCESSING answers come first for orders the workers carry out), and printing
//! results as text or JSON.

use std::{
    io::{self, Write},
    os::{fd::AsFd, unix::net::UnixStream},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use serde::Serialize;
use sozu_command_lib::{
    channel::{Channel, ChannelError},
    request::{Order, Request},
    response::{Response, ResponseContent, ResponseStatus},
};

use super::{
    Cli, Command, JsonFormat, backend, certificate, cluster,
    config_socket::{DEFAULT_TIMEOUT, read_config_socket},
    connection_limit, fault, frontend, listener, metrics, processes, registration, sozu_json,
    state,
};

/// Where Sōzu looks for its configuration when no `-c` is given.
const DEFAULT_CONFIG: &str = "/etc/sozu/config.toml";
/// The least a long operation (stop, upgrade, state load, reload) waits between two answers
/// when no `-t` is given.
const LONG_OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for the reason of a refused connection.
const REFUSAL_WAIT: Duration = Duration::from_millis(500);
/// Messages on the command channel: the proxy's default `max_command_buffer_size` is 2 MB.
const MAX_MESSAGE: usize = 64 << 20;

/// A connection to the command socket of a running proxy.
pub struct Client {
    channel: Channel<Request, Response>,
    /// How long to wait for the next answer; `None` waits without limit.
    timeout: Option<Duration>,
    next_id: u64,
    pub json: Option<JsonFormat>,
}

/// A FAILURE answer to an order, carrying the proxy's message.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OrderFailed(pub String);

/// Runs a subcommand that talks to the proxy, and exits with 1 on any failure: an order the
/// proxy refused is told on stderr as Sōzu's command line tells it (`failure_text`), with or
/// without `--json`; any other failure prints `error: …`.
pub fn run(cli: &Cli, command: &Command) -> ExitCode {
    match connect_and_run(cli, command) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`sozu events | head -1`) is not a failure.
        Err(error) if error.is::<ReaderGone>() => ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<OrderFailed>() {
                Some(OrderFailed(message)) => eprint!("{}", failure_text(message)),
                None => eprintln!("error: {error:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Stdout's reader went away (`sozu events | head -1`): the command stops without a failure.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct ReaderGone;

/// Writes to stdout and flushes; a closed pipe becomes [`ReaderGone`] (not the command socket's
/// broken pipe, which is a failure).
pub fn write_out(write: impl FnOnce(&mut io::StdoutLock) -> io::Result<()>) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match write(&mut out).and_then(|()| out.flush()) {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(ReaderGone.into()),
        result => Ok(result?),
    }
}

/// What Sōzu 2.1's command line prints on stderr when the proxy refuses an order.
fn failure_text(message: &str) -> String {
    format!("\nRequest failed: {message}\n\nError: Cli(Failure({message:?}))\n")
}

fn connect_and_run(cli: &Cli, command: &Command) -> anyhow::Result<()> {
    let is_udp = match command {
        Command::Listener { command } => {
            matches!(**command, listener::ListenerCommand::Udp { .. })
        }
        Command::Frontend { command } => matches!(command, frontend::FrontendCommand::Udp { .. }),
        _ => false,
    };
    if is_udp {
        bail!(super::UDP_NOT_BUILT);
    }
    // `cluster health-check set --timeout S` is Sōzu's health check timeout, which the global
    // `-t/--timeout` flag takes: it is not the command line's timeout there.
    let is_health_check_set = matches!(
        command,
        Command::Cluster {
            command: cluster::ClusterCommand::HealthCheck {
                command: cluster::HealthCheckCommand::Set { .. }
            }
        }
    );
    let is_long = matches!(
        command,
        Command::Shutdown { .. }
            | Command::Upgrade { .. }
            | Command::Reload { .. }
            | Command::State { .. }
    );
    let cli_timeout = if is_health_check_set {
        None
    } else {
        cli.timeout
    };
    let mut client = Client::connect(cli, cli_timeout, is_long)?;
    match command {
        Command::Status => processes::status(&mut client),
        Command::Shutdown { hard } => processes::shutdown(&mut client, *hard),
        Command::Upgrade { worker } => processes::upgrade(&mut client, *worker),
        Command::Events => processes::events(&mut client),
        Command::Logging { filter } => processes::logging(&mut client, filter),
        Command::Reload { file } => state::reload(&mut client, file.as_deref()),
        Command::State { command } => state::run(&mut client, command),
        Command::Metrics { command } => metrics::run(&mut client, command),
        Command::Cluster { command } => cluster::run(&mut client, command, cli.timeout),
        Command::Backend { command } => backend::run(&mut client, command),
        Command::Frontend { command } => frontend::run(&mut client, command),
        Command::Listener { command } => listener::run(&mut client, command),
        Command::Certificate { command } => certificate::run(&mut client, command),
        Command::ConnectionLimit { command } => connection_limit::run(&mut client, command),
        Command::Registration { command } => registration::run(&mut client, command),
        Command::Fault { command } => fault::run(&mut client, command),
        Command::Start
        | Command::Worker(_)
        | Command::Main(_)
        | Command::Config { .. }
        | Command::Top(_)
        | Command::Chaos(_)
        | Command::Route(_)
        | Command::Fleet { .. } => {
            bail!("this subcommand does not talk to a running proxy")
        }
    }
}

impl Client {
    pub(super) fn connect(
        cli: &Cli,
        cli_timeout: Option<Duration>,
        is_long: bool,
    ) -> anyhow::Result<Client> {
        let config = match &cli.config {
            Some(path) => Some((path.clone(), read_config_socket(path)?)),
            None if cli.socket.is_none() && Path::new(DEFAULT_CONFIG).exists() => {
                let path = PathBuf::from(DEFAULT_CONFIG);
                let read = read_config_socket(&path)?;
                Some((path, read))
            }
            None => None,
        };
        let (socket, config_timeout) = match (&cli.socket, &config) {
            (Some(socket), _) => (socket.clone(), DEFAULT_TIMEOUT),
            (None, Some((_, read))) => (read.socket.clone(), read.timeout),
            (None, None) => bail!(
                "no command socket: pass --socket PATH, or -c CONFIG to use its command_socket"
            ),
        };
        let timeout = match cli_timeout {
            Some(timeout) if timeout.is_zero() => None,
            Some(timeout) => Some(timeout),
            None if is_long => Some(config_timeout.max(LONG_OPERATION_TIMEOUT)),
            None if config_timeout.is_zero() => None,
            None => Some(config_timeout),
        };
        let stream = UnixStream::connect(&socket).map_err(|error| {
            let hint = match &config {
                Some((path, _)) if cli.socket.is_none() => {
                    format!("is command_socket in {} right?", path.display())
                }
                _ => "is the --socket path right?".to_string(),
            };
            anyhow!(
                "cannot connect to the command socket {}: {error}; is sozu running? {hint}",
                socket.display()
            )
        })?;
        let channel = Channel::from_std(stream, 64 << 10, MAX_MESSAGE)?;
        Ok(Client {
            channel,
            timeout,
            next_id: 0,
            json: cli.json,
        })
    }

    /// Sends an order without waiting; returns its request id.
    pub fn send(&mut self, order: Order) -> anyhow::Result<String> {
        self.next_id += 1;
        let id = format!("cli-{}-{}", std::process::id(), self.next_id);
        if let Err(error) = self.channel.write_message(&Request::new(id.clone(), order)) {
            if let Some(refusal) = self.refusal() {
                bail!("refused: {refusal}");
            }
            return Err(error).context("cannot send the order");
        }
        Ok(id)
    }

    /// Why the proxy refused this connection, when it did: it says so in one FAILURE answer,
    /// then closes. Read from the socket itself, since the channel takes a failed write for
    /// the end of the connection.
    fn refusal(&self) -> Option<String> {
        let stream = UnixStream::from(self.channel.as_fd().try_clone_to_owned().ok()?);
        stream.set_read_timeout(Some(REFUSAL_WAIT)).ok()?;
        let mut line = String::new();
        io::BufRead::read_line(&mut io::BufReader::new(stream), &mut line).ok()?;
        let response: Response = serde_json::from_str(&line).ok()?;
        (response.status == ResponseStatus::Failure).then_some(response.message)
    }

    /// The next message from the proxy, within the timeout. `None` when the proxy closed the
    /// connection.
    pub fn next_message(&mut self, timeout: Option<Duration>) -> anyhow::Result<Option<Response>> {
        let message = match timeout {
            Some(timeout) => self.channel.read_message_timeout(timeout),
            None => self.channel.read_message(),
        };
        match message {
            Ok(message) => Ok(message),
            Err(ChannelError::Timeout { timeout }) => Err(anyhow!(
                "no answer within {} ms (pass a longer -t MS, or -t 0 to wait without limit)",
                timeout.as_millis()
            )),
            Err(error) => Err(error).context("cannot read the answer"),
        }
    }

    /// Waits for the final answer to request `id`, whatever its status. PROCESSING answers are
    /// shown on stderr when `progress` is set.
    pub fn final_response(&mut self, id: &str, progress: bool) -> anyhow::Result<Response> {
        loop {
            let Some(response) = self.next_message(self.timeout)? else {
                bail!("the proxy closed the connection before answering");
            };
            // An answer without id is about the connection or a message the proxy could not
            // read: this order will get no other.
            if response.id.is_empty() && response.status == ResponseStatus::Failure {
                bail!("refused: {}", response.message);
            }
            if response.id != id {
                continue;
            }
            if response.is_final() {
                return Ok(response);
            }
            if progress && self.json.is_none() && !response.message.is_empty() {
                eprintln!("{}", response.message);
            }
        }
    }

    /// Sends an order and returns its successful final answer; a FAILURE is an error carrying
    /// the proxy's message.
    pub fn order(&mut self, order: Order) -> anyhow::Result<Response> {
        self.order_with_progress(order, false)
    }

    pub fn order_with_progress(
        &mut self,
        order: Order,
        progress: bool,
    ) -> anyhow::Result<Response> {
        let id = self.send(order)?;
        let response = self.final_response(&id, progress)?;
        match response.status {
            ResponseStatus::Failure => Err(OrderFailed(response.message).into()),
            _ => Ok(response),
        }
    }

    /// Sends an order and prints its outcome: the proxy's message, or the response as JSON.
    pub fn order_and_print(&mut self, order: Order) -> anyhow::Result<()> {
        let response = self.order(order)?;
        self.print_done(&response)
    }

    /// Prints the outcome of an order that returns no content.
    pub fn print_done(&self, response: &Response) -> anyhow::Result<()> {
        match self.json {
            Some(JsonFormat::Sozu) => return print_pretty(&sozu_json::done()),
            Some(JsonFormat::Compact) => return print_json(response),
            None => {}
        }
        if response.message.is_empty() {
            println!("OK");
        } else {
            println!("{}", response.message);
        }
        Ok(())
    }

    /// Prints a query's content as JSON when `--json` is given and returns `true`; the caller
    /// prints text otherwise.
    pub fn printed_as_json(&self, response: &Response) -> anyhow::Result<bool> {
        let Some(format) = self.json else {
            return Ok(false);
        };
        let sozu_shape = response
            .content
            .as_ref()
            .filter(|_| format == JsonFormat::Sozu)
            .and_then(sozu_json::shape);
        match (sozu_shape, &response.content) {
            (Some(shape), _) => print_pretty(&shape)?,
            (None, Some(content)) => print_json(content)?,
            (None, None) => print_json(response)?,
        }
        Ok(true)
    }
}

/// One JSON value, indented as Sōzu prints it.
fn print_pretty(value: &serde_json::Value) -> anyhow::Result<()> {
    write_out(|out| {
        serde_json::to_writer_pretty(&mut *out, value)?;
        writeln!(out)
    })
}

/// One JSON value on one line of stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    write_out(|out| {
        serde_json::to_writer(&mut *out, value)?;
        writeln!(out)
    })
}

/// The content of a response, or an error naming what was expected.
pub fn content(response: Response) -> anyhow::Result<ResponseContent> {
    response
        .content
        .ok_or_else(|| anyhow!("the proxy answered without content: {}", response.message))
}

/// Makes a path the proxy receives absolute: the proxy does not share our working directory.
pub fn absolute(path: &Path) -> anyhow::Result<String> {
    let absolute =
        std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))?;
    Ok(absolute.to_string_lossy().into_owned())
}
