//! A blocking client of etcd v3's JSON gateway (`POST /v3/...`, keys and values in base64,
//! 64-bit integers as strings), over HTTP/1.1 with rustls: no async runtime, no code generated
//! at build time. One [`Client`] talks to one endpoint; [`Client::connect`] finds one that
//! answers. Every unary request has a deadline; the watch is a streaming answer read for as
//! long as it lasts, which [`Client::shutdown`] interrupts from another thread.

use std::{io::BufReader, sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Deserializer, de::DeserializeOwned};
use serde_json::{Value, json};
use sozu_command_lib::config::EtcdProvider;
use ureq::{
    Agent,
    tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, parse_pem},
};

/// How long connecting to an endpoint (TLS included) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read, a read of the whole prefix included.
const MAX_ANSWER: u64 = 256 << 20;
/// gRPC's status code for a missing or expired authentication token.
const UNAUTHENTICATED: i64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint could not be reached, or did not answer in time.
    #[error("{0}")]
    Unreachable(String),
    /// etcd answered with an error.
    #[error("etcd refused: {message}")]
    Refused { code: i64, message: String },
    /// An answer that is not what etcd's gateway sends.
    #[error("unexpected answer from etcd: {0}")]
    Invalid(String),
    /// The TLS files of `[provider.etcd]` cannot be used.
    #[error("{0}")]
    Settings(String),
}

/// A client of one endpoint; clones share its connections, and [`Client::shutdown`] ends them
/// all.
#[derive(Clone)]
pub struct Client {
    agent: Agent,
    /// The endpoint's URL, without a trailing `/`.
    endpoint: String,
    /// The index of the endpoint among the settings' endpoints.
    index: usize,
    credentials: Option<(String, String)>,
    /// The token of etcd's authentication, sent in the `Authorization` header.
    token: Option<String>,
    /// The deadline of one unary request.
    timeout: Duration,
}

/// One key of a read or an event, its key and value decoded.
#[derive(Debug, Deserialize)]
pub struct KeyValue {
    #[serde(default, deserialize_with = "bytes")]
    pub key: Vec<u8>,
    #[serde(default, deserialize_with = "bytes")]
    pub value: Vec<u8>,
    #[serde(default, deserialize_with = "int64")]
    pub mod_revision: i64,
}

/// One answer of a watch.
#[derive(Debug, Default, Deserialize)]
pub struct WatchResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub canceled: bool,
    #[serde(default)]
    pub cancel_reason: String,
    /// Set when the watch's start revision was compacted.
    #[serde(default, deserialize_with = "int64")]
    pub compact_revision: i64,
    #[serde(default)]
    pub events: Vec<Event>,
}

#[derive(Debug, Deserialize)]
pub struct Event {
    /// `PUT` is the default, left out of the JSON; `DELETE` otherwise.
    #[serde(default, rename = "type")]
    pub kind: EventKind,
    pub kv: Option<KeyValue>,
}

#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub enum EventKind {
    #[default]
    #[serde(rename = "PUT")]
    Put,
    #[serde(rename = "DELETE")]
    Delete,
}

#[derive(Debug, Default, Deserialize)]
pub struct Header {
    #[serde(default, deserialize_with = "int64")]
    pub revision: i64,
}

#[derive(Deserialize)]
struct RangeResponse {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize)]
struct LeaseResponse {
    #[serde(rename = "ID", default, deserialize_with = "int64")]
    id: i64,
    #[serde(rename = "TTL", default, deserialize_with = "int64")]
    ttl: i64,
    #[serde(default)]
    error: String,
}

/// An answer of a streaming call: a result, or an error in the stream.
#[derive(Deserialize)]
struct Streamed<T> {
    result: Option<T>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Token {
    token: String,
}

/// The body of an error answer.
#[derive(Deserialize)]
struct Failure {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

impl Client {
    /// A client of the first endpoint of `settings` that answers, trying them in turn from
    /// the one at `first`; it authenticates when the settings hold credentials. `timeout` is
    /// the deadline of each request.
    pub fn connect(
        settings: &EtcdProvider,
        first: usize,
        timeout: Duration,
    ) -> Result<Client, Error> {
        let agent = agent(settings)?;
        let count = settings.endpoints.len();
        let mut last = Error::Settings("no endpoint".to_string());
        for step in 0..count {
            let index = first.wrapping_add(step) % count;
            let Some(endpoint) = settings.endpoints.get(index) else {
                continue;
            };
            let mut client = Client {
                agent: agent.clone(),
                endpoint: endpoint.trim_end_matches('/').to_string(),
                index,
                credentials: settings.credentials.clone(),
                token: None,
                timeout,
            };
            let opened = if client.credentials.is_some() {
                client.authenticate()
            } else {
                client
                    .unary::<Value>("/v3/maintenance/status", &json!({}))
                    .map(drop)
            };
            match opened {
                Ok(_) => return Ok(client),
                Err(error) => last = with_endpoint(endpoint, error),
            }
        }
        Err(last)
    }

    /// The index of this client's endpoint among the settings' endpoints.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Every key starting with `prefix`, with the revision of the read.
    pub fn range_prefix(&mut self, prefix: &str) -> Result<(i64, Vec<KeyValue>), Error> {
        let read: RangeResponse = self.call(
            "/v3/kv/range",
            &json!({
                "key": STANDARD.encode(prefix),
                "range_end": STANDARD.encode(prefix_end(prefix.as_bytes())),
            }),
        )?;
        Ok((read.header.revision, read.kvs))
    }

    /// Writes every pair in one transaction, with `lease` if given.
    pub fn put_all(&mut self, puts: &[(String, Vec<u8>)], lease: Option<i64>) -> Result<(), Error> {
        let operations: Vec<Value> = puts
            .iter()
            .map(|(key, value)| {
                let mut put = json!({"key": STANDARD.encode(key), "value": STANDARD.encode(value)});
                if let Some(lease) = lease {
                    put["lease"] = json!(lease.to_string());
                }
                json!({ "request_put": put })
            })
            .collect();
        self.call::<Value>("/v3/kv/txn", &json!({ "success": operations }))
            .map(drop)
    }

    /// A lease of `ttl` seconds.
    pub fn lease_grant(&mut self, ttl: i64) -> Result<i64, Error> {
        let lease: LeaseResponse = self.call("/v3/lease/grant", &json!({ "TTL": ttl }))?;
        if lease.error.is_empty() {
            Ok(lease.id)
        } else {
            Err(Error::Refused {
                code: 0,
                message: lease.error,
            })
        }
    }

    /// Renews a lease; its time to live in seconds, 0 once it expired.
    pub fn lease_keep_alive(&mut self, lease: i64) -> Result<i64, Error> {
        let answer: Streamed<LeaseResponse> =
            self.call("/v3/lease/keepalive", &json!({ "ID": lease.to_string() }))?;
        match answer {
            Streamed {
                result: Some(lease),
                ..
            } => Ok(lease.ttl),
            Streamed { error, .. } => Err(stream_error(error)),
        }
    }

    pub fn lease_revoke(&mut self, lease: i64) -> Result<(), Error> {
        self.call::<Value>("/v3/lease/revoke", &json!({ "ID": lease.to_string() }))
            .map(drop)
    }

    /// Watches every key starting with `prefix` from `revision` on: the answers in order, for
    /// as long as the watch lasts. Waits for the watch's first answer within the request
    /// deadline, and then for as long as it takes.
    pub fn watch(
        &self,
        prefix: &str,
        revision: i64,
    ) -> Result<impl Iterator<Item = Result<WatchResponse, Error>> + use<>, Error> {
        let body = json!({"create_request": {
            "key": STANDARD.encode(prefix),
            "range_end": STANDARD.encode(prefix_end(prefix.as_bytes())),
            "start_revision": revision.to_string(),
        }});
        let request = self
            .request("/v3/watch")
            .config()
            .timeout_recv_response(Some(self.timeout))
            .build();
        let response = request.send(body.to_string()).map_err(unreachable)?;
        if response.status() != 200 {
            return Err(refusal(
                response.into_body().read_to_vec().map_err(unreachable)?,
            ));
        }
        let reader = BufReader::new(response.into_body().into_reader());
        Ok(serde_json::Deserializer::from_reader(reader)
            .into_iter::<Streamed<WatchResponse>>()
            .map(|answer| match answer {
                Ok(Streamed {
                    result: Some(response),
                    ..
                }) => Ok(response),
                Ok(Streamed { error, .. }) => Err(stream_error(error)),
                Err(error) if error.is_io() || error.is_eof() => {
                    Err(Error::Unreachable(format!("the watch ended: {error}")))
                }
                Err(error) => Err(Error::Invalid(error.to_string())),
            }))
    }

    /// Closes every connection of this client and its clones, and interrupts the requests in
    /// progress on them (a watch read on another thread).
    pub fn shutdown(&self) {
        self.agent.clone().shutdown();
    }

    fn authenticate(&mut self) -> Result<(), Error> {
        let Some((name, password)) = &self.credentials else {
            return Ok(());
        };
        let body = json!({ "name": name, "password": password });
        self.token = None;
        let token: Token = self.unary("/v3/auth/authenticate", &body)?;
        self.token = Some(token.token);
        Ok(())
    }

    /// A unary request; once more with a new token when etcd forgot the one it gave.
    fn call<T: DeserializeOwned>(&mut self, path: &str, body: &Value) -> Result<T, Error> {
        match self.unary(path, body) {
            Err(Error::Refused {
                code: UNAUTHENTICATED,
                ..
            }) if self.credentials.is_some() => {
                self.authenticate()?;
                self.unary(path, body)
            }
            answer => answer,
        }
    }

    fn unary<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, Error> {
        let request = self
            .request(path)
            .config()
            .timeout_global(Some(self.timeout))
            .build();
        let mut response = request.send(body.to_string()).map_err(unreachable)?;
        let ok = response.status() == 200;
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(unreachable)?;
        if !ok {
            return Err(refusal(answer));
        }
        serde_json::from_slice(&answer).map_err(|error| Error::Invalid(error.to_string()))
    }

    fn request(&self, path: &str) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let request = self
            .agent
            .post(format!("{}{path}", self.endpoint))
            .content_type("application/json");
        match &self.token {
            Some(token) => request.header("Authorization", token),
            None => request,
        }
    }
}

/// The agent of every endpoint of `settings`: their TLS, no proxy, errors as answers.
fn agent(settings: &EtcdProvider) -> Result<Agent, Error> {
    // The proxy's TLS provider: ureq would otherwise need ring in the build as well.
    let mut tls = TlsConfig::builder().unversioned_rustls_crypto_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ));
    if let Some(authority) = &settings.ca_certificate {
        let certificates = certificates(authority)?;
        tls = tls.root_certs(RootCerts::new_with_certs(&certificates));
    }
    if let Some((certificate, key)) = &settings.client_identity {
        let chain = certificates(certificate)?;
        let key = PrivateKey::from_pem(key.as_bytes())
            .map_err(|error| Error::Settings(format!("invalid client key: {error}")))?;
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
    }
    let config = Agent::config_builder()
        .tls_config(tls.build())
        .proxy(None)
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .build();
    Ok(Agent::new_with_config(config))
}

/// The certificates of a PEM text; at least one.
fn certificates(pem: &str) -> Result<Arc<Vec<Certificate<'static>>>, Error> {
    let mut certificates = Vec::new();
    for item in parse_pem(pem.as_bytes()) {
        match item {
            Ok(PemItem::Certificate(certificate)) => certificates.push(certificate),
            Ok(_) => {}
            Err(error) => return Err(Error::Settings(format!("invalid certificate: {error}"))),
        }
    }
    if certificates.is_empty() {
        return Err(Error::Settings("no certificate in a PEM file".to_string()));
    }
    Ok(Arc::new(certificates))
}

/// The end of the range of keys starting with `prefix`: the prefix with its last byte that
/// is not 0xff incremented, and what follows it dropped; `\0` (every key) if there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if let Some(next) = last.checked_add(1) {
            end.push(next);
            return end;
        }
    }
    vec![0]
}

fn unreachable(error: ureq::Error) -> Error {
    Error::Unreachable(error.to_string())
}

fn with_endpoint(endpoint: &str, error: Error) -> Error {
    match error {
        Error::Unreachable(error) => Error::Unreachable(format!("{endpoint}: {error}")),
        error => error,
    }
}

/// The error of an answer whose status is not 200.
fn refusal(body: Vec<u8>) -> Error {
    match serde_json::from_slice::<Failure>(&body) {
        Ok(failure) => Error::Refused {
            code: failure.code,
            message: failure.message,
        },
        Err(_) => Error::Invalid(String::from_utf8_lossy(&body).into_owned()),
    }
}

/// An error sent in a streaming answer: `{"grpc_code":16,"message":"..."}`.
fn stream_error(error: Option<Value>) -> Error {
    let Some(error) = error else {
        return Error::Invalid("an answer with neither a result nor an error".to_string());
    };
    Error::Refused {
        code: error["grpc_code"].as_i64().unwrap_or(0),
        message: error["message"]
            .as_str()
            .map_or_else(|| error.to_string(), str::to_string),
    }
}

/// A 64-bit integer, written as a string by the gateway (and accepted as a number).
fn int64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Integer {
        Text(String),
        Number(i64),
    }
    match Integer::deserialize(deserializer)? {
        Integer::Number(number) => Ok(number),
        Integer::Text(text) => text.parse().map_err(serde::de::Error::custom),
    }
}

/// Bytes, written in base64.
fn bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(deserializer)?;
    STANDARD.decode(text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_of_a_prefix_ends_after_its_last_key() {
        assert_eq!(prefix_end(b"/sozu/"), b"/sozu0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn watch_answers_are_read_as_the_gateway_writes_them() {
        let answer: Streamed<WatchResponse> = serde_json::from_str(
            r#"{"result":{"header":{"revision":"3"},"events":[
                {"kv":{"key":"L3NvenUvYQ==","mod_revision":"2","value":"MQ=="}},
                {"type":"DELETE","kv":{"key":"L3NvenUvYQ==","mod_revision":"3"}}]}}"#,
        )
        .expect("a watch answer");
        let response = answer.result.expect("a result");
        assert_eq!(response.header.revision, 3);
        let events: Vec<(&EventKind, Vec<u8>, Vec<u8>, i64)> = response
            .events
            .iter()
            .filter_map(|event| {
                let kv = event.kv.as_ref()?;
                Some((
                    &event.kind,
                    kv.key.clone(),
                    kv.value.clone(),
                    kv.mod_revision,
                ))
            })
            .collect();
        assert_eq!(
            events,
            vec![
                (&EventKind::Put, b"/sozu/a".to_vec(), b"1".to_vec(), 2),
                (&EventKind::Delete, b"/sozu/a".to_vec(), Vec::new(), 3),
            ]
        );

        let compacted: Streamed<WatchResponse> = serde_json::from_str(
            r#"{"result":{"header":{},"canceled":true,"compact_revision":"4"}}"#,
        )
        .expect("a watch answer");
        let compacted = compacted.result.expect("a result");
        assert!(compacted.canceled);
        assert_eq!(compacted.compact_revision, 4);
    }

    #[test]
    fn errors_in_a_stream_and_in_an_answer_are_read() {
        let answer: Streamed<LeaseResponse> = serde_json::from_str(
            r#"{"error":{"grpc_code":16,"http_code":401,"message":"etcdserver: invalid auth token"}}"#,
        )
        .expect("an answer");
        assert!(answer.result.is_none());
        assert!(matches!(
            stream_error(answer.error),
            Error::Refused { code: UNAUTHENTICATED, message } if message.contains("invalid auth token")
        ));
        assert!(matches!(
            refusal(br#"{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}"#.to_vec()),
            Error::Refused { code: 3, .. }
        ));
        assert!(matches!(refusal(b"<html>".to_vec()), Error::Invalid(_)));
    }

    #[test]
    fn bad_integers_and_base64_are_refused_not_guessed() {
        assert!(serde_json::from_str::<Header>(r#"{"revision":"x"}"#).is_err());
        assert!(serde_json::from_str::<Header>(r#"{"revision":7}"#).is_ok_and(|h| h.revision == 7));
        assert!(serde_json::from_str::<KeyValue>(r#"{"key":"%%"}"#).is_err());
    }
}
