//! The audit log of the command socket, as Sōzu's `audit_logs_target` and
//! `audit_logs_json_target` keep it: each order that changes something, when the main process
//! receives it, with who sent it (the user and process at the other end of the socket, from
//! `SO_PEERCRED`). The line goes to the main log at `info` and, when configured, is appended to
//! a text file and to a JSON-lines file (created with mode 0640).
//!
//! Certificates and private keys in an order are never written: any text holding a PEM block
//! is replaced by its size.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    time::SystemTime,
};

use log::{error, info};
use serde_json::{Value, json};
use sozu_command_lib::request::Order;

use super::command_server::Client;

/// The open audit files.
#[derive(Debug, Default)]
pub struct Audit {
    text: Option<File>,
    json: Option<File>,
}

/// Who sent an order, and on which socket.
pub struct Actor<'a> {
    pub client_id: u64,
    /// `(uid, pid)` from `SO_PEERCRED`, when the kernel told.
    pub peer: Option<(u32, i32)>,
    pub socket: &'a Path,
}

impl<'a> Actor<'a> {
    pub fn of(client: &Client, socket: &'a Path) -> Actor<'a> {
        Actor {
            client_id: client.id,
            peer: client.peer,
            socket,
        }
    }
}

impl Audit {
    /// Opens the files for appending, creating them with mode 0640. A file that cannot be
    /// opened is reported and left out: its lines still go to the main log.
    pub fn open(text: Option<&Path>, json: Option<&Path>) -> Audit {
        Audit {
            text: text.and_then(open_file),
            json: json.and_then(open_file),
        }
    }

    /// Records `order`, received from `actor` with request id `request_id`, when it is one
    /// that changes something.
    pub fn record(&mut self, actor: &Actor<'_>, request_id: &str, order: &Order) {
        if !is_audited(order) {
            return;
        }
        let entry = Entry::new(actor, request_id, order, SystemTime::now());
        let line = entry.text();
        info!("{line}");
        if let Some(file) = self.text.as_mut() {
            write_line(file, &line);
        }
        if let Some(file) = self.json.as_mut() {
            write_line(file, &entry.json().to_string());
        }
    }
}

fn open_file(path: &Path) -> Option<File> {
    match OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
    {
        Ok(file) => Some(file),
        Err(error) => {
            error!(
                "cannot open the audit log {}: {error}; audit lines go to the main log only",
                path.display()
            );
            None
        }
    }
}

fn write_line(file: &mut File, line: &str) {
    if let Err(error) = file.write_all(format!("{line}\n").as_bytes()) {
        error!("cannot write the audit log: {error}");
    }
}

/// Orders that change the routing state, the processes or what the proxy logs and counts.
fn is_audited(order: &Order) -> bool {
    order.is_state_change()
        || matches!(
            order,
            Order::SaveState(_)
                | Order::LoadState(_)
                | Order::ReloadConfiguration(_)
                | Order::UpgradeMain
                | Order::UpgradeWorker(_)
                | Order::LaunchWorker
                | Order::SoftStop
                | Order::HardStop
                | Order::Logging(_)
                | Order::ConfigureMetrics(_)
                | Order::Register(_)
                | Order::Renew(_)
                | Order::Deregister(_)
        )
}

/// One audit record.
struct Entry {
    ts: String,
    verb: &'static str,
    uid: Option<u32>,
    pid: Option<i32>,
    client_id: u64,
    socket: String,
    request_id: String,
    /// The order's fields, PEM blocks replaced, as compact JSON.
    target: String,
    cluster_id: Option<String>,
    backend_id: Option<String>,
}

impl Entry {
    fn new(actor: &Actor<'_>, request_id: &str, order: &Order, now: SystemTime) -> Entry {
        let mut fields = serde_json::to_value(order).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut fields {
            map.remove("type");
        }
        redact(&mut fields);
        let text_field = |name: &str| fields.get(name).and_then(Value::as_str).map(String::from);
        Entry {
            ts: sozu_lib::access_log::rfc3339(now),
            verb: order.name(),
            uid: actor.peer.map(|(uid, _)| uid),
            pid: actor.peer.map(|(_, pid)| pid),
            client_id: actor.client_id,
            socket: actor.socket.display().to_string(),
            request_id: request_id.to_string(),
            cluster_id: text_field("cluster_id"),
            backend_id: text_field("backend_id"),
            target: fields.to_string(),
        }
    }

    /// Sōzu's text form: `AUDIT\tCommand(ts=…, verb=…, actor_uid=…, …)`.
    fn text(&self) -> String {
        let unknown = |value: Option<String>| value.unwrap_or_else(|| "unknown".to_string());
        format!(
            "AUDIT\tCommand(ts={}, verb={}, actor_uid={}, actor_pid={}, client_id={}, socket={}, \
             request_id={}, target={}, sozu_version={})",
            self.ts,
            self.verb,
            unknown(self.uid.map(|uid| uid.to_string())),
            unknown(self.pid.map(|pid| pid.to_string())),
            self.client_id,
            single_line(&self.socket),
            single_line(&self.request_id),
            single_line(&self.target),
            env!("CARGO_PKG_VERSION"),
        )
    }

    /// Sōzu's JSON form, one object per line.
    fn json(&self) -> Value {
        json!({
            "ts": self.ts,
            "actor": { "uid": self.uid, "pid": self.pid },
            "client_id": self.client_id,
            "socket": self.socket,
            "request_id": self.request_id,
            "verb": self.verb,
            "target": self.target,
            "cluster_id": self.cluster_id,
            "backend_id": self.backend_id,
            "sozu_version": env!("CARGO_PKG_VERSION"),
        })
    }
}

/// Replaces every text holding a PEM block (certificates, private keys) by its size.
fn redact(value: &mut Value) {
    match value {
        Value::String(text) if text.contains("-----BEGIN") => {
            *text = format!("(PEM, {} bytes)", text.len());
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::Object(map) => map.values_mut().for_each(redact),
        _ => {}
    }
}

/// Control characters of a client's text become spaces, so one order is one line.
fn single_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use sozu_command_lib::request::{AddCertificate, CertificateAndKey, ClusterId};

    use super::*;

    fn actor() -> Actor<'static> {
        Actor {
            client_id: 4,
            peer: Some((1000, 4242)),
            socket: Path::new("/run/sozu/sozu.sock"),
        }
    }

    #[test]
    fn a_change_is_recorded_with_who_sent_it() {
        let order = Order::RemoveCluster(ClusterId {
            cluster_id: "api".to_string(),
        });
        let now = UNIX_EPOCH + Duration::from_secs(1_764_547_200);
        let entry = Entry::new(&actor(), "req-1", &order, now);
        let text = entry.text();
        assert!(
            text.starts_with(
                "AUDIT\tCommand(ts=2025-12-01T00:00:00.000Z, verb=REMOVE_CLUSTER, actor_uid=1000, \
                 actor_pid=4242, client_id=4, socket=/run/sozu/sozu.sock, request_id=req-1, \
                 target={\"cluster_id\":\"api\"}, sozu_version="
            ),
            "{text}"
        );
        let json = entry.json();
        assert_eq!(json["actor"], json!({ "uid": 1000, "pid": 4242 }));
        assert_eq!(json["verb"], "REMOVE_CLUSTER");
        assert_eq!(json["cluster_id"], "api");
        assert_eq!(json["backend_id"], Value::Null);
    }

    #[test]
    fn keys_and_certificates_are_never_written() {
        let pem = "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n";
        let order = Order::AddCertificate(AddCertificate {
            address: "127.0.0.1:8443".parse().unwrap(),
            certificate: CertificateAndKey::new("-----BEGIN CERTIFICATE-----", pem),
            allow_expired: false,
        });
        let entry = Entry::new(&actor(), "req-2", &order, UNIX_EPOCH);
        assert!(!entry.text().contains("secret"), "{}", entry.text());
        assert!(entry.text().contains("(PEM, 61 bytes)"), "{}", entry.text());
        assert!(entry.text().contains("(PEM, 27 bytes)"), "{}", entry.text());
    }

    #[test]
    fn queries_are_not_recorded() {
        assert!(!is_audited(&Order::Status));
        assert!(!is_audited(&Order::ListListeners));
        assert!(is_audited(&Order::SoftStop));
    }
}
