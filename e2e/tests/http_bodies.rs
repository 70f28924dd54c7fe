//! Large bodies through a real worker: 10 MB requests and responses, with Content-Length and
//! chunked, arrive byte for byte, and the connection stays usable after them.

use std::{
    io::Write,
    net::{Shutdown, SocketAddr},
    thread,
};

use sozu_command_lib::request::Cluster;
use sozu_e2e::{
    Worker,
    backend::{digest, pattern},
    http_backend::{HttpBackend, Reply, chunked_response, response},
    http_client::{Client, post},
};
use sozu_lib::server::ServerConfig;

const LENGTH: usize = 10 << 20;
const HOST: &str = "bulk.example.com";

fn proxy(backend: &HttpBackend) -> (Worker, SocketAddr) {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy(HOST, Cluster::new("bulk"), &[backend.address]);
    (worker, address)
}

/// A chunked body of `data` in chunks of varying sizes (1 byte to 1 MB).
fn chunked(data: &[u8]) -> Vec<u8> {
    let sizes = [1usize, 7, 4096, 65_536, 16_393, 1 << 20, 300_000];
    let mut out = Vec::with_capacity(data.len() + 4096);
    let mut rest = data;
    let mut index = 0;
    while !rest.is_empty() {
        let size = sizes[index % sizes.len()].min(rest.len());
        let (chunk, after) = rest.split_at(size);
        out.extend_from_slice(format!("{size:x}\r\n").as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = after;
        index += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn ten_megabyte_request_body_with_content_length_arrives_intact() {
    let backend = HttpBackend::digesting();
    let (_worker, address) = proxy(&backend);
    let body = pattern(1, LENGTH);
    let mut client = Client::connect(address);
    let response = client.exchange("POST", &post(HOST, "/upload", &body));
    assert_eq!(response.status, 200);
    let (length, checksum) = digest(&body);
    assert_eq!(response.text(), format!("{length} {checksum}"));
    assert_eq!(digest(&backend.requests()[0].body.raw), digest(&body));
}

#[test]
fn ten_megabyte_chunked_request_body_arrives_with_its_chunks() {
    let backend = HttpBackend::ok("stored");
    let (_worker, address) = proxy(&backend);
    let data = pattern(2, LENGTH);
    let wire = chunked(&data);
    let mut request =
        format!("PUT /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    request.extend_from_slice(&wire);
    let mut client = Client::connect(address);
    let response = client.exchange("PUT", &request);
    assert_eq!(response.status, 200);
    let received = &backend.requests()[0];
    assert_eq!(received.header("transfer-encoding"), Some("chunked"));
    assert_eq!(digest(&received.body.data), digest(&data));
    assert_eq!(digest(&received.body.raw), digest(&wire));
}

#[test]
fn ten_megabyte_response_body_with_content_length_arrives_intact() {
    let body = pattern(3, LENGTH);
    let expected = digest(&body);
    let backend = HttpBackend::start(move |_| Reply::Send(response(200, &[], &body)));
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let response = client.get(HOST, "/download");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-length"), Some("10485760"));
    assert_eq!(digest(&response.body), expected);
    // The connection is still in step.
    assert_eq!(digest(&client.get(HOST, "/again").body), expected);
}

#[test]
fn ten_megabyte_chunked_response_arrives_intact() {
    let body = pattern(4, LENGTH);
    let expected = digest(&body);
    let backend = HttpBackend::start(move |_| {
        let chunks: Vec<&[u8]> = body.chunks(333_333).collect();
        Reply::Send(chunked_response(&chunks))
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let response = client.get(HOST, "/download");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert_eq!(digest(&response.body), expected);
    assert_eq!(digest(&client.get(HOST, "/again").body), expected);
}

#[test]
fn ten_megabytes_each_way_in_one_exchange_then_keep_alive() {
    // The backend sends the body back, chunked, reversed so that it is not the same bytes.
    let backend = HttpBackend::start(|request| {
        let mut body = request.body.data.clone();
        body.reverse();
        let chunks: Vec<&[u8]> = body.chunks(1 << 20).collect();
        Reply::Send(chunked_response(&chunks))
    });
    let (_worker, address) = proxy(&backend);
    let data = pattern(5, LENGTH);
    let mut reversed = data.clone();
    reversed.reverse();
    let mut client = Client::connect(address);
    // Write from another thread while the response is read, as a real client may.
    let mut writer = client.stream().try_clone().expect("clone");
    let request = post(HOST, "/mirror", &data);
    let sender = thread::spawn(move || writer.write_all(&request).expect("send"));
    let response = client.response("POST");
    sender.join().expect("sender");
    assert_eq!(response.status, 200);
    assert_eq!(digest(&response.body), digest(&reversed));
    assert_eq!(
        client.exchange("POST", &post(HOST, "/small", b"ab")).text(),
        "ba"
    );
    client
        .stream()
        .shutdown(Shutdown::Write)
        .expect("shut down");
    client.assert_closed();
}
