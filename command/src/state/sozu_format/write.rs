//! Our orders as Sōzu 2.1's state file records: the inverse of reading, for `sozu state save`
//! in Sōzu's format and for Sōzu-shaped JSON answers.

use std::net::SocketAddr;

use serde_json::{Map, Value, json};

use super::*;
use crate::request::Order;

/// Writes `orders` as Sōzu 2.1's state file: one record per order, each followed by `\n\0`.
/// Returns the number of records. An order Sōzu has no equivalent for (our extensions, a
/// `found` redirect) is an error naming it, and nothing is worth keeping of a partial file.
pub fn write(orders: &[Order], out: &mut impl std::io::Write) -> Result<usize, WriteError> {
    for (index, order) in orders.iter().enumerate() {
        let mut record = record_of(order)?;
        crate::state::sozu_records::complete(order, &mut record);
        let record = json!({
            "id": format!("SAVE-{index}"),
            "content": { "request_type": { order.name(): record } },
        });
        serde_json::to_writer(&mut *out, &record).map_err(std::io::Error::from)?;
        out.write_all(b"\n\0")?;
    }
    out.flush()?;
    Ok(orders.len())
}

/// Why a state could not be written in Sōzu's format.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The file could not be written.
    #[error("cannot write the state file")]
    Io(#[from] std::io::Error),
    /// An order that Sōzu's state file cannot express (a fault, a TCP content rule…).
    #[error("{order} has no equivalent in Sōzu's state file: {reason}")]
    NoEquivalent {
        /// The order's name.
        order: &'static str,
        /// What Sōzu lacks.
        reason: String,
    },
}

/// The fields of Sōzu's request for `order` (an added listener, cluster, frontend, backend or
/// certificate), as its protobuf JSON has them: the inverse of [`convert`]. Fields our order
/// leaves unset are absent, where Sōzu writes `null`.
pub fn record_of(order: &Order) -> Result<Map<String, Value>, WriteError> {
    let no_equivalent = |reason: String| WriteError::NoEquivalent {
        order: order.name(),
        reason,
    };
    let ours = match serde_json::to_value(order) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) | Err(_) => return Err(no_equivalent("not an object".to_string())),
    };
    sozu_fields(order, &ours).map_err(no_equivalent)
}

/// The fields of Sōzu's request for `order`, whose JSON is `ours`.
fn sozu_fields(order: &Order, ours: &Fields) -> Result<Fields, String> {
    match order {
        Order::AddHttpListener(_) | Order::AddTcpListener(_) => sozu_listener(ours),
        Order::AddHttpsListener(_) => {
            let http = ours
                .get("http")
                .and_then(Value::as_object)
                .ok_or("no `http` settings")?;
            let mut fields = sozu_listener(http)?;
            if let Some(tls) = ours.get("tls").and_then(Value::as_object) {
                sozu_tls(tls, &mut fields);
            }
            Ok(fields)
        }
        Order::ActivateListener(_) => {
            let mut fields = addresses(ours)?;
            fields.insert("proxy".to_string(), number(ours, "proxy", LISTENER_KINDS)?);
            fields.insert("from_scm".to_string(), json!(false));
            Ok(fields)
        }
        Order::AddCluster(_) => {
            let mut fields = Fields::new();
            copy(ours, &mut fields, CLUSTER_FIELDS);
            fields.insert(
                "load_balancing".to_string(),
                number(ours, "load_balancing", ALGORITHMS)?,
            );
            for (key, names) in [
                ("load_metric", LOAD_METRICS),
                ("proxy_protocol", PROXY_PROTOCOLS),
            ] {
                if ours.contains_key(key) {
                    fields.insert(key.to_string(), number(ours, key, names)?);
                }
            }
            Ok(fields)
        }
        Order::AddHttpFrontend(_) | Order::AddHttpsFrontend(_) => sozu_frontend(ours),
        Order::AddTcpFrontend(_) => {
            let mut fields = addresses(ours)?;
            copy(ours, &mut fields, &["cluster_id", "tags"]);
            Ok(fields)
        }
        Order::AddCertificate(_) => {
            let mut fields = addresses(ours)?;
            let mut certificate = ours
                .get("certificate")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let versions = sozu_versions(&certificate);
            certificate.insert("versions".to_string(), versions);
            fields.insert("certificate".to_string(), Value::Object(certificate));
            Ok(fields)
        }
        Order::AddBackend(_) => {
            let mut fields = addresses(ours)?;
            copy(
                ours,
                &mut fields,
                &["cluster_id", "backend_id", "sticky_id", "backup"],
            );
            let weight = ours.get("weight").cloned().unwrap_or(json!(100));
            fields.insert(
                "load_balancing_parameters".to_string(),
                json!({ "weight": weight }),
            );
            Ok(fields)
        }
        _ => Err("an extension of this proxy".to_string()),
    }
}

/// `address` and `public_address` as Sōzu's `SocketAddress`es.
fn addresses(ours: &Fields) -> Result<Fields, String> {
    let mut fields = Fields::new();
    for key in ["address", "public_address"] {
        if let Some(text) = ours.get(key).and_then(Value::as_str) {
            let address: SocketAddr = text
                .parse()
                .map_err(|_| format!("`{key}` {text} is not an address"))?;
            fields.insert(key.to_string(), sozu_address(address));
        }
    }
    Ok(fields)
}

/// An address as Sōzu's JSON writes it: `{"ip": {"inner": {"V4": n}}, "port": p}`.
pub fn sozu_address(address: SocketAddr) -> Value {
    let inner = match address.ip() {
        IpAddr::V4(ip) => json!({ "V4": u32::from(ip) }),
        IpAddr::V6(ip) => {
            let bits = u128::from(ip);
            // The two halves of the 128 bits; the casts keep exactly 64 bits each.
            json!({ "V6": { "high": (bits >> 64) as u64, "low": bits as u64 } })
        }
    };
    json!({ "ip": { "inner": inner }, "port": address.port() })
}

/// The fields of an HTTP or TCP listener (and the HTTP half of an HTTPS one).
fn sozu_listener(ours: &Fields) -> Result<Fields, String> {
    let mut fields = addresses(ours)?;
    copy(ours, &mut fields, &["expect_proxy"]);
    copy(ours, &mut fields, HTTP_LISTENER_KEYS);
    copy(ours, &mut fields, &["answers"]);
    fields.insert("active".to_string(), json!(false));
    Ok(fields)
}

fn sozu_tls(tls: &Fields, fields: &mut Fields) {
    fields.insert("versions".to_string(), sozu_versions(tls));
    copy(
        tls,
        fields,
        &[
            "cipher_list",
            "cipher_suites",
            "groups_list",
            "send_tls13_tickets",
            "alpn_protocols",
            "strict_sni_binding",
            "hsts",
        ],
    );
    if let Some(pair) = tls.get("certificate").and_then(Value::as_object) {
        copy(pair, fields, &["certificate", "certificate_chain", "key"]);
    }
}

/// `versions` names as Sōzu's TlsVersion numbers.
fn sozu_versions(fields: &Fields) -> Value {
    let numbers: Vec<u64> = fields
        .get("versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|name| match name.as_str() {
            Some("TLS_V12") => Some(4),
            Some("TLS_V13") => Some(5),
            _ => None,
        })
        .collect();
    json!(numbers)
}

fn sozu_frontend(ours: &Fields) -> Result<Fields, String> {
    if ours.contains_key("answer") {
        return Err("an answer frontend is an extension of this proxy".to_string());
    }
    let mut fields = addresses(ours)?;
    copy(ours, &mut fields, HTTP_FRONTEND_KEYS);
    let path = ours.get("path").and_then(Value::as_object);
    let kind = path.map_or(Ok(json!(0)), |path| number(path, "kind", PATH_KINDS))?;
    let value = path
        .and_then(|path| path.get("value"))
        .cloned()
        .unwrap_or(json!(""));
    fields.insert("path".to_string(), json!({ "kind": kind, "value": value }));
    fields.insert("position".to_string(), number(ours, "position", POSITIONS)?);
    fields.insert("redirect".to_string(), number(ours, "redirect", REDIRECTS)?);
    fields.insert(
        "redirect_scheme".to_string(),
        number(ours, "redirect_scheme", SCHEMES)?,
    );
    if ours
        .get("headers")
        .and_then(Value::as_array)
        .is_some_and(|headers| !headers.is_empty())
    {
        return Err("frontend header edits are not written in Sōzu's format yet".to_string());
    }
    Ok(fields)
}

/// The number of the enumeration name `ours[key]` among `names` (absent is the first).
fn number(ours: &Fields, key: &str, names: &[&str]) -> Result<Value, String> {
    let Some(name) = ours.get(key).and_then(Value::as_str) else {
        return Ok(json!(0));
    };
    names
        .iter()
        .position(|known| *known == name)
        .map(|index| json!(index))
        .ok_or_else(|| format!("`{key}` {name} is not a value of Sōzu 2.1"))
}
