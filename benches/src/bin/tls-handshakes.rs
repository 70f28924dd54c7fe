//! The client of the load benchmark's `handshakes` scenario (benches/load/handshakes.sh): opens
//! TLS 1.3 connections to a proxy, one GET of `/` with `Connection: close` on each, from several
//! threads at once, and checks that each answer holds the backend's token.
//!
//! `full` gives each connection an empty session store of its own, as on a first visit: it
//! offers resumption (so servers send their tickets) but has no ticket to offer, and every
//! connection is a full handshake. `resumed` shares one session store (filled by a first
//! connection), so each connection offers a ticket received on an earlier one. Prints `HANDSHAKES RESUMED SECONDS FAILURES`; exits with an
//! error if any connection failed or, with `resumed`, if none resumed.
//!
//!     tls-handshakes ADDRESS TOKEN COUNT THREADS full|resumed

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    process::ExitCode,
    sync::Arc,
    thread,
    time::Instant,
};

use rustls::{
    ClientConfig, ClientConnection, HandshakeKind, StreamOwned, client::Resumption, version::TLS13,
};
use rustls_pki_types::ServerName;
use sozu_e2e::{DEADLINE, tls::client_config};

/// What one connection's handshake was, or why the connection failed.
fn fetch(config: &Arc<ClientConfig>, address: SocketAddr, token: &str) -> Result<bool, String> {
    let name = ServerName::try_from("localhost").map_err(|error| error.to_string())?;
    let connection = ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
    let socket = TcpStream::connect(address).map_err(|error| format!("connect: {error}"))?;
    socket
        .set_read_timeout(Some(DEADLINE))
        .map_err(|error| error.to_string())?;
    let mut stream = StreamOwned::new(connection, socket);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|error| format!("handshake or request: {error}"))?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        // A server may close without close_notify once its answer is sent.
        Ok(_) => {}
        Err(error) if error.kind() == ErrorKind::UnexpectedEof => {}
        Err(error) => return Err(format!("answer: {error}")),
    }
    if !answer.ends_with(token.as_bytes()) {
        return Err(format!(
            "the answer is not the backend's token: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    Ok(stream.conn.handshake_kind() == Some(HandshakeKind::Resumed))
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let [address, token, count, threads, mode] = arguments.as_slice() else {
        eprintln!("usage: tls-handshakes ADDRESS TOKEN COUNT THREADS full|resumed");
        return ExitCode::FAILURE;
    };
    let (Ok(address), Ok(count), Ok(threads)) = (
        address.parse::<SocketAddr>(),
        count.parse::<usize>(),
        threads.parse::<usize>(),
    ) else {
        eprintln!("ADDRESS is ip:port, COUNT and THREADS are numbers");
        return ExitCode::FAILURE;
    };
    let resume = match mode.as_str() {
        "full" => false,
        "resumed" => true,
        _ => {
            eprintln!("the mode is `full` or `resumed`");
            return ExitCode::FAILURE;
        }
    };
    let config = client_config(&TLS13);
    // `full`: a configuration of its own per connection, with an empty session store.
    let config_of_connection = || {
        if resume {
            return config.clone();
        }
        let mut fresh = (*config).clone();
        fresh.resumption = Resumption::in_memory_sessions(8);
        Arc::new(fresh)
    };
    if resume && let Err(error) = fetch(&config, address, token) {
        eprintln!("the first connection failed: {error}");
        return ExitCode::FAILURE;
    }
    let threads = threads.clamp(1, count.max(1));
    let started = Instant::now();
    let results: Vec<(usize, usize, Option<String>)> = thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|index| {
                let config_of_connection = &config_of_connection;
                let share = count / threads + usize::from(index < count % threads);
                scope.spawn(move || {
                    let (mut resumed, mut failures, mut first_error) = (0, 0, None);
                    for _ in 0..share {
                        match fetch(&config_of_connection(), address, token) {
                            Ok(true) => resumed += 1,
                            Ok(false) => {}
                            Err(error) => {
                                failures += 1;
                                first_error.get_or_insert(error);
                            }
                        }
                    }
                    (resumed, failures, first_error)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or((0, 0, Some("a thread panicked".into())))
            })
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let resumed: usize = results.iter().map(|(resumed, _, _)| resumed).sum();
    let failures: usize = results.iter().map(|(_, failures, _)| failures).sum();
    println!("{count} {resumed} {seconds:.3} {failures}");
    if let Some(error) = results.into_iter().find_map(|(_, _, error)| error) {
        eprintln!("{failures} of {count} connections failed, the first: {error}");
        return ExitCode::FAILURE;
    }
    if resume && resumed == 0 {
        eprintln!("no connection resumed a session");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
