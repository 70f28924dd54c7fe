//! `splice_min_body_bytes` through the real binary: a response body at least that large is
//! spliced (the worker's `http.spliced_bytes` grows by it), a smaller one is copied.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    thread,
};

use common::{Proxy, get_path};

/// An HTTP backend whose answer to `GET /N` is a body of N bytes `z`, on a kept connection.
fn sized_backend() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a backend");
    let address = listener.local_addr().expect("backend address");
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve(stream));
        }
    });
    address
}

fn serve(stream: TcpStream) {
    let mut writer = stream.try_clone().expect("clone the backend socket");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let length: usize = line
            .split(' ')
            .nth(1)
            .and_then(|path| path.trim_start_matches('/').parse().ok())
            .unwrap_or(0);
        // The rest of the head.
        while reader.read_line(&mut line).unwrap_or(0) > 2 {}
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n");
        let mut answer = head.into_bytes();
        answer.resize(answer.len() + length, b'z');
        if writer.write_all(&answer).is_err() {
            return;
        }
    }
}

/// The worker's `http.spliced_bytes`, from `sozu metrics get --json`.
fn spliced(proxy: &Proxy) -> u64 {
    let json = proxy.ok(&["metrics", "get", "--json=compact"]);
    let value: serde_json::Value = serde_json::from_str(&json).expect("metrics as JSON");
    value["data"]["proxy"]["http.spliced_bytes"]["COUNT"]
        .as_u64()
        .unwrap_or_else(|| panic!("no http.spliced_bytes: {json}"))
}

#[test]
fn bodies_from_splice_min_body_bytes_on_are_spliced() {
    let proxy = Proxy::start("splice_min_body_bytes = 500000\n");
    proxy.route_to("sized", "sized.test", "sized-0", sized_backend());

    let (status, body) = get_path(proxy.http, "sized.test", "/300000").expect("a small body");
    assert_eq!((status, body.len()), (200, 300_000));
    assert_eq!(spliced(&proxy), 0, "300000 bytes stay under the threshold");

    let (status, body) = get_path(proxy.http, "sized.test", "/2000000").expect("a large body");
    assert_eq!((status, body.len()), (200, 2_000_000));
    assert!(body.bytes().all(|byte| byte == b'z'));
    let count = spliced(&proxy);
    assert!(
        (1_000_000..=2_000_000).contains(&count),
        "{count} bytes spliced"
    );
}
