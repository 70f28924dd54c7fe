//! Hostile orders against the real binary (issue 10): random and extreme orders (huge numbers,
//! empty and 1 MB strings, CR and LF, unknown ids, invalid templates and certificates) sent on
//! the command socket. Whatever the main process accepts, every worker accepts; no worker dies;
//! and `state save` holds exactly the state the accepted orders build.
//!
//! The orders come from a fixed seed, so a failure replays.

mod common;

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::Path,
};

use common::{DEADLINE, Proxy, free_address};
use serde_json::{Value, json};
use sozu_command_lib::{request::Order, state::ConfigState};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");
const ORDERS: usize = 300;

/// splitmix64: a fixed sequence of numbers, the same on every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(bound).unwrap_or(1)).unwrap_or(0)
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }

    /// Mostly a sane value, sometimes a hostile one.
    fn mostly<T: Clone>(&mut self, sane: &[T], hostile: &[T]) -> T {
        if self.below(5) == 0 {
            self.pick(hostile)
        } else {
            self.pick(sane)
        }
    }
}

/// The texts no head may carry, and the lengths no field expects.
fn hostile_texts() -> Vec<String> {
    vec![
        String::new(),
        "a\r\nX-Forged: 1".to_string(),
        "a\rb".to_string(),
        "a\nb".to_string(),
        "a\0b".to_string(),
        "é ü".to_string(),
        "x".repeat(1_000_000),
    ]
}

fn numbers() -> Vec<Value> {
    vec![
        json!(0),
        json!(2_147_483),
        json!(2_147_484),
        json!(4_294_967_296u64),
        json!(u64::MAX),
        json!(-1),
        json!(1e30),
    ]
}

struct Generator {
    random: Random,
    http: String,
    https: String,
    hostile: Vec<Value>,
    certificate: Value,
    expired: Value,
}

impl Generator {
    fn id(&mut self) -> Value {
        let hostile = self.hostile.clone();
        self.random
            .mostly(&[json!("a"), json!("b"), json!("c")], &hostile)
    }

    fn text(&mut self, sane: &[&str]) -> Value {
        let sane: Vec<Value> = sane.iter().map(|text| json!(text)).collect();
        let hostile = self.hostile.clone();
        self.random.mostly(&sane, &hostile)
    }

    fn seconds(&mut self) -> Value {
        self.random.mostly(&[json!(5), json!(30)], &numbers())
    }

    fn count(&mut self, sane: &[u64]) -> Value {
        let sane: Vec<Value> = sane.iter().map(|n| json!(n)).collect();
        self.random.mostly(&sane, &numbers())
    }

    fn answers(&mut self) -> Value {
        let text = self.text(&["<p>busy</p>", "HTTP/1.1 503 Busy\r\nX-A: b\r\n\r\nbody"]);
        let code = self.random.mostly(&["503", "404"], &["200", "999", "x"]);
        let broken = self.random.mostly(
            std::slice::from_ref(&text),
            &[
                json!("HTTP/1.1 abc\r\n\r\n"),
                json!("HTTP/1.1 503 X\r\nA: b\rInjected: 1\r\n\r\n"),
                json!("HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n"),
            ],
        );
        json!({ code: broken })
    }

    fn health_check(&mut self) -> Value {
        json!({
            "uri": self.text(&["/health"]),
            "interval": self.seconds(),
            "timeout": self.seconds(),
            "healthy_threshold": self.count(&[3]),
            "unhealthy_threshold": self.count(&[2]),
            "expected_status": self.count(&[0, 204]),
        })
    }

    fn template(&mut self) -> Value {
        self.random.mostly(
            &[
                json!("$HOST[0].internal"),
                json!("/v2$PATH[1]"),
                json!("%HOST"),
            ],
            &[
                json!("$HOST[3]"),
                json!("$PATH[9]"),
                json!("$HOST"),
                json!("a b"),
                json!("/a\r\nX: 1"),
            ],
        )
    }

    fn frontend(&mut self) -> Value {
        let hostname = self.text(&["app.test", "*.app.test", "/api([0-9]+)/.app.test"]);
        let mut frontend = json!({
            "cluster_id": self.id(),
            "address": self.http,
            "hostname": hostname,
        });
        match self.random.below(6) {
            0 => frontend["rewrite_host"] = self.template(),
            1 => frontend["rewrite_path"] = self.template(),
            2 => {
                frontend["redirect"] = json!("PERMANENT");
                frontend["redirect_template"] = self.template();
            }
            3 => {
                let key = self.text(&["X-Edit"]);
                let key = self.random.mostly(
                    &[key],
                    &[json!("Content-Length"), json!("Transfer-Encoding")],
                );
                frontend["headers"] = json!([{
                    "position": self.random.pick(&["REQUEST", "RESPONSE", "BOTH"]),
                    "key": key,
                    "value": self.text(&["1", "on"]),
                }]);
            }
            4 => {
                frontend["answer"] = json!({
                    "status": self.count(&[200, 503]),
                    "headers": [[self.text(&["X-A"]), self.text(&["b"])]],
                    "body": self.text(&["hello"]),
                });
            }
            _ => {
                frontend["path"] = json!({
                    "kind": self.random.pick(&["PREFIX", "REGEX", "EQUALS"]),
                    "value": self.text(&["/api", "^/v([0-9]+)/", "("]),
                });
            }
        }
        frontend
    }

    fn certificate(&mut self) -> Value {
        let pick = self.random.below(4);
        match pick {
            0 => self.certificate.clone(),
            1 => self.expired.clone(),
            2 => {
                json!({ "certificate": "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n", "key": "garbage" })
            }
            _ => {
                let mut certificate = self.certificate.clone();
                certificate["names"] = json!([self.text(&["app.test"])]);
                certificate
            }
        }
    }

    fn order(&mut self) -> Value {
        match self.random.below(16) {
            0 | 1 => {
                let mut cluster = json!({ "type": "ADD_CLUSTER", "cluster_id": self.id() });
                match self.random.below(5) {
                    0 => cluster["answers"] = self.answers(),
                    1 => cluster["health_check"] = self.health_check(),
                    2 => cluster["www_authenticate"] = self.text(&["admin"]),
                    3 => cluster["retry_after"] = self.seconds(),
                    _ => cluster["max_connections_per_ip"] = self.count(&[10]),
                }
                cluster
            }
            2 => json!({ "type": "REMOVE_CLUSTER", "cluster_id": self.id() }),
            3 | 4 => json!({
                "type": "ADD_BACKEND",
                "cluster_id": self.id(),
                "backend_id": self.text(&["b1", "b2"]),
                "address": "127.0.0.1:1",
                "sticky_id": self.text(&["s1"]),
                "weight": self.count(&[100, 0]),
            }),
            5 => json!({
                "type": "REMOVE_BACKEND",
                "cluster_id": self.id(),
                "backend_id": self.text(&["b1", "unknown"]),
                "address": "127.0.0.1:1",
            }),
            6..=8 => {
                let frontend = self.frontend();
                let mut order = frontend;
                order["type"] = json!("ADD_HTTP_FRONTEND");
                order
            }
            9 => json!({
                "type": "SET_HEALTH_CHECK",
                "cluster_id": self.id(),
                "health_check": self.health_check(),
            }),
            10 => {
                let mut http = json!({});
                match self.random.below(4) {
                    0 => http["front_timeout"] = self.seconds(),
                    1 => http["request_timeout"] = self.seconds(),
                    2 => http["sozu_id_header"] = self.text(&["X-Request-Id"]),
                    _ => http["answers"] = self.answers(),
                }
                json!({ "type": "UPDATE_HTTP_LISTENER_CONFIG", "address": self.http, "http": http })
            }
            11 => {
                let mut tls = json!({});
                match self.random.below(4) {
                    0 => {
                        tls["cipher_list"] =
                            json!([self.text(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"])])
                    }
                    1 => tls["versions"] = self.random.mostly(&[json!(["TLS_V13"])], &[json!([])]),
                    2 => tls["send_tls13_tickets"] = self.count(&[2]),
                    _ => tls["certificate"] = self.certificate(),
                }
                json!({ "type": "UPDATE_HTTPS_LISTENER_CONFIG", "address": self.https, "tls": tls })
            }
            12 => json!({
                "type": "ADD_CERTIFICATE",
                "address": self.https,
                "certificate": self.certificate(),
                "allow_expired": self.random.pick(&[false, true]),
            }),
            13 => json!({
                "type": "ADD_TCP_LISTENER",
                "address": free_address().to_string(),
                "front_timeout": self.seconds(),
                "connect_timeout": self.seconds(),
            }),
            14 => json!({
                "type": "SET_MAX_CONNECTIONS_PER_IP",
                "max_connections_per_ip": self.count(&[5]),
            }),
            _ => json!({ "type": self.text(&["LAUNCH_ROCKET"]), "cluster_id": self.id() }),
        }
    }
}

fn pem(name: &str) -> String {
    fs::read_to_string(format!("{FIXTURES}/{name}")).expect("a fixture")
}

/// What the main process made of an order.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused,
}

/// Sends one request line and reads until its final answer.
fn send(
    writer: &mut UnixStream,
    reader: &mut BufReader<UnixStream>,
    id: &str,
    order: &Value,
) -> (Outcome, String) {
    let line = json!({ "id": id, "order": order }).to_string();
    writer
        .write_all(format!("{line}\n").as_bytes())
        .expect("send an order");
    loop {
        let mut answer = String::new();
        reader.read_line(&mut answer).expect("read an answer");
        assert!(!answer.is_empty(), "the main process closed the connection");
        let answer: Value = serde_json::from_str(&answer).expect("an answer in JSON");
        if answer["id"] != id || answer["status"] == "PROCESSING" {
            continue;
        }
        let message = answer["message"].as_str().unwrap_or_default().to_string();
        let outcome = if answer["status"] == "OK" {
            Outcome::Accepted
        } else {
            Outcome::Refused
        };
        return (outcome, message);
    }
}

/// The workers as `status --json` lists them: id, pid and restart count.
fn workers(proxy: &Proxy) -> Vec<(u64, u64, u64)> {
    let status: Value =
        serde_json::from_str(&proxy.ok(&["status", "--json=compact"])).expect("JSON");
    status["data"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|worker| {
            let field = |name: &str| worker[name].as_u64().unwrap_or(u64::MAX);
            (field("id"), field("pid"), field("restarts"))
        })
        .collect()
}

fn saved_state(proxy: &Proxy, path: &Path) -> ConfigState {
    proxy.ok(&["state", "save", "-f", path.to_str().expect("a path")]);
    ConfigState::load(BufReader::new(
        fs::File::open(path).expect("the state file"),
    ))
    .expect("a valid state")
}

#[test]
fn hostile_orders_never_kill_a_worker_and_the_state_holds_the_accepted_ones_only() {
    let https = free_address();
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n"
    ));
    let before = workers(&proxy);
    let mut expected = saved_state(&proxy, &proxy.dir.path().join("before.json"));

    let mut generator = Generator {
        random: Random(0x5eed_0010),
        http: proxy.http.to_string(),
        https: https.to_string(),
        hostile: hostile_texts().into_iter().map(Value::String).collect(),
        certificate: json!({ "certificate": pem("localhost.pem"), "key": pem("localhost.key") }),
        expired: json!({ "certificate": pem("expired.pem"), "key": pem("expired.key") }),
    };
    let mut writer = UnixStream::connect(&proxy.socket).expect("connect");
    writer
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut reader = BufReader::new(writer.try_clone().expect("clone the stream"));
    let mut accepted = 0;
    for index in 0..ORDERS {
        let order = generator.order();
        let (outcome, message) = send(&mut writer, &mut reader, &index.to_string(), &order);
        assert!(
            !message.contains("in the main state, but refused by"),
            "order {index} accepted by the main process and refused by a worker: {message}"
        );
        if outcome == Outcome::Accepted {
            accepted += 1;
            let order: Order = serde_json::from_value(order).expect("an accepted order parses");
            expected
                .apply(&order)
                .expect("the state takes what the main process accepted");
        }
    }
    assert!(accepted > ORDERS / 5, "only {accepted} orders accepted");
    assert!(accepted < ORDERS, "every order accepted");

    assert_eq!(workers(&proxy), before, "a worker died or was restarted");
    let saved = saved_state(&proxy, &proxy.dir.path().join("after.json"));
    assert!(
        saved == expected,
        "the saved state is not the one the accepted orders build"
    );
}
