//! A real client through a real HTTP worker: curl (installed by `.ci/install-test-tools`)
//! sends GET and POST requests over HTTP/1.1 and reuses its connection for several URLs.

use std::{
    io::ErrorKind,
    net::SocketAddr,
    process::{Command, Output},
};

use sozu_command_lib::request::Cluster;
use sozu_e2e::{
    Worker,
    http_backend::{HttpBackend, Reply, response},
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "curl.example.com";

/// Runs curl with `arguments`, resolving [`HOST`] to the proxy; fails the test if curl is
/// missing or fails.
fn curl(address: SocketAddr, arguments: &[&str]) -> String {
    let resolve = format!("{HOST}:{}:127.0.0.1", address.port());
    let output: Output = match Command::new("curl")
        .args(["--http1.1", "--silent", "--show-error", "--max-time", "20"])
        .args(["--resolve", &resolve])
        .args(arguments)
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == ErrorKind::NotFound => {
            panic!("curl is not installed: run .ci/install-test-tools (or apt-get install curl)")
        }
        Err(error) => panic!("cannot run curl: {error}"),
    };
    assert!(
        output.status.success(),
        "curl failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("curl printed UTF-8")
}

/// A backend that answers with the method, target and body it received.
fn echo_backend() -> HttpBackend {
    HttpBackend::start(|request| {
        let body = format!(
            "{} {} {}",
            request.method(),
            request.target(),
            String::from_utf8_lossy(&request.body.data)
        );
        Reply::Send(response(
            200,
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
        ))
    })
}

fn proxy(backend: &HttpBackend) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("curl"), &[backend.address]);
    (worker, address)
}

fn url(address: SocketAddr, path: &str) -> String {
    format!("http://{HOST}:{}{path}", address.port())
}

#[test]
fn curl_get_through_the_proxy() {
    let backend = echo_backend();
    let (_worker, address) = proxy(&backend);
    let output = curl(
        address,
        &[
            "--write-out",
            "\n%{http_code} %{http_version}",
            &url(address, "/hello?x=1"),
        ],
    );
    assert_eq!(output, "GET /hello?x=1 \n200 1.1");
    let received = &backend.requests()[0];
    assert_eq!(
        received.header("host"),
        Some(format!("{HOST}:{}", address.port()).as_str())
    );
    assert_eq!(received.header("x-forwarded-for"), Some("127.0.0.1"));
    assert!(
        received
            .header("user-agent")
            .is_some_and(|agent| agent.starts_with("curl/"))
    );
}

#[test]
fn curl_post_with_a_body_through_the_proxy() {
    let backend = echo_backend();
    let (_worker, address) = proxy(&backend);
    let output = curl(
        address,
        &[
            "--data-binary",
            "name=sozu&value=42",
            "--write-out",
            "\n%{http_code}",
            &url(address, "/form"),
        ],
    );
    assert_eq!(output, "POST /form name=sozu&value=42\n200");
    let received = &backend.requests()[0];
    assert_eq!(received.header("content-length"), Some("18"));
    assert_eq!(
        received.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[test]
fn curl_reuses_its_connection_for_several_urls() {
    let backend = echo_backend();
    let (_worker, address) = proxy(&backend);
    let output = curl(
        address,
        &[
            "--write-out",
            " [%{num_connects}]\n",
            &url(address, "/one"),
            &url(address, "/two"),
            &url(address, "/three"),
        ],
    );
    assert_eq!(output, "GET /one  [1]\nGET /two  [0]\nGET /three  [0]\n");
    let requests = backend.requests();
    assert_eq!(requests.len(), 3);
    // One client connection, so one backend connection carried all three.
    assert_eq!(backend.connections(), 1);
    assert!(requests.iter().all(|request| request.connection == 0));
}
