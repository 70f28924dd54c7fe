use std::{io::{Read, Write}, net::{TcpListener, TcpStream}, thread, time::Duration};
use sozu_command_lib::request::*;
use sozu_e2e::{Worker, free_address, backend_order};
use sozu_lib::server::ServerConfig;

#[test]
fn smoke() {
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let baddr = backend.local_addr().unwrap();
    thread::spawn(move || {
        for s in backend.incoming() {
            let mut s = s.unwrap();
            thread::spawn(move || {
                let mut buf = vec![0; 65536];
                loop {
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = s.read(&mut buf).unwrap_or(0);
                        if n == 0 { return; }
                        got.extend_from_slice(&buf[..n]);
                    }
                    eprintln!("BACKEND GOT {:?}", String::from_utf8_lossy(&got));
                    s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").unwrap();
                }
            });
        }
    });
    let mut worker = Worker::start(ServerConfig::default());
    let address = free_address();
    worker.ok(Order::AddHttpListener(HttpListenerConfig::new(address)));
    worker.ok(Order::AddCluster(Cluster::new("web")));
    worker.ok(Order::AddBackend(backend_order("web", "web-0", baddr)));
    worker.ok(Order::AddHttpFrontend(HttpFrontend::new(Some("web".into()), address, "example.com")));
    worker.ok(Order::ActivateListener(ListenerAddress { address, proxy: ListenerType::Http }));
    let mut c = TcpStream::connect(address).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for i in 0..3 {
        c.write_all(b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n").unwrap();
        let mut buf = vec![0; 4096];
        let n = c.read(&mut buf).unwrap();
        eprintln!("CLIENT GOT {i}: {:?}", String::from_utf8_lossy(&buf[..n]));
    }
    c.write_all(b"GET /x HTTP/1.1\r\nHost: nope.com\r\n\r\n").unwrap();
    let mut buf = vec![0; 4096];
    let n = c.read(&mut buf).unwrap();
    eprintln!("CLIENT GOT 404: {:?}", String::from_utf8_lossy(&buf[..n]));
}
