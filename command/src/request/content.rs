//! Content routing on TCP listeners: the match a TCP frontend carries (`sni`, `alpn`,
//! `http_host`, `prefix`, `regex`, `protocol`), the built-in protocol detectors' names, and the
//! listener's script.
//!
//! A TCP frontend carries at most one match. On the wire (JSON orders, the configuration file)
//! the match is one optional key of the frontend; in Rust it is [`TcpRule`], so a frontend can
//! never hold two. The proxy's `router::content` module evaluates the rules; this module only
//! names them, checks them ([`TcpRule::check`]) and ranks them ([`TcpRule::specificity`]).

use std::{collections::BTreeMap, fmt, net::SocketAddr, str::FromStr};

use serde::{Deserialize, Serialize};

use super::{TcpFrontend, UnknownName, parse_name};

/// What the first bytes of a connection must show for a TCP frontend to take it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpRule {
    /// The server name of a TLS ClientHello: exact, `*.suffix`, or `/regex/`.
    Sni(String),
    /// One of the ALPN protocols of a TLS ClientHello: exact, `*.suffix`, or `/regex/`.
    Alpn(String),
    /// The Host of a plain HTTP/1.x request head (without its port): exact, `*.suffix`, or
    /// `/regex/`.
    HttpHost(String),
    /// The first bytes, written as text with `\xNN` escapes (and `\\` for a backslash).
    Prefix(String),
    /// A regular expression over the inspected bytes (see the `regex` crate's `bytes` API).
    Regex(String),
    /// One of the built-in protocol detectors.
    Protocol(TcpProtocol),
}

/// How specific a rule is: more specific rules are tried first, then by order of addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Specificity {
    /// An exact `sni`, `alpn` or `http_host`, or a `prefix`.
    Exact,
    /// A `*.suffix` name.
    Wildcard,
    /// A `/regex/` name or a `regex` rule.
    Regex,
    /// A protocol detector.
    Protocol,
}

/// A name pattern of `sni`, `alpn` and `http_host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePattern<'a> {
    /// Compared without regard to ASCII case.
    Exact(&'a str),
    /// `*.example.com`: the suffix `.example.com`, which must follow at least one character.
    Wildcard(&'a str),
    /// The text between the slashes of `/…/`.
    Regex(&'a str),
}

impl<'a> NamePattern<'a> {
    /// Reads a pattern: `/…/` is a regular expression, `*suffix` a wildcard, anything else an exact
    /// name.
    pub fn parse(pattern: &'a str) -> Self {
        if let Some(regex) = pattern
            .strip_prefix('/')
            .and_then(|rest| rest.strip_suffix('/'))
        {
            NamePattern::Regex(regex)
        } else if let Some(suffix) = pattern.strip_prefix('*') {
            NamePattern::Wildcard(suffix)
        } else {
            NamePattern::Exact(pattern)
        }
    }
}

/// Why a rule is refused. The message says what was expected, as rule messages do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The pattern is empty.
    #[error("a pattern that is not empty")]
    Empty,
    /// A `*` pattern not written `*.suffix`.
    #[error("a wildcard written `*.suffix`")]
    Wildcard,
    /// A regular expression that does not compile.
    #[error("a regular expression that compiles ({reason})")]
    Regex {
        /// The compiler's message.
        reason: String,
    },
    /// Text with an escape other than `\xNN` and `\\`.
    #[error("text with bytes written `\\xNN` and a backslash `\\\\`")]
    Escape,
    /// A frontend with more than one of the rule keys (the keys given).
    #[error("at most one match in a TCP frontend, got {0}")]
    SeveralMatches(String),
}

impl TcpRule {
    /// The key that writes this rule in a frontend.
    pub fn key(&self) -> &'static str {
        match self {
            TcpRule::Sni(_) => "sni",
            TcpRule::Alpn(_) => "alpn",
            TcpRule::HttpHost(_) => "http_host",
            TcpRule::Prefix(_) => "prefix",
            TcpRule::Regex(_) => "regex",
            TcpRule::Protocol(_) => "protocol",
        }
    }

    /// The rule's value as written.
    pub fn value(&self) -> &str {
        match self {
            TcpRule::Sni(value)
            | TcpRule::Alpn(value)
            | TcpRule::HttpHost(value)
            | TcpRule::Prefix(value)
            | TcpRule::Regex(value) => value,
            TcpRule::Protocol(protocol) => protocol.name(),
        }
    }

    /// How specific the rule is: more specific rules of a listener are tried first.
    pub fn specificity(&self) -> Specificity {
        match self {
            TcpRule::Sni(pattern) | TcpRule::Alpn(pattern) | TcpRule::HttpHost(pattern) => {
                match NamePattern::parse(pattern) {
                    NamePattern::Exact(_) => Specificity::Exact,
                    NamePattern::Wildcard(_) => Specificity::Wildcard,
                    NamePattern::Regex(_) => Specificity::Regex,
                }
            }
            TcpRule::Prefix(_) => Specificity::Exact,
            TcpRule::Regex(_) => Specificity::Regex,
            TcpRule::Protocol(_) => Specificity::Protocol,
        }
    }

    /// Checks that the rule can be evaluated: patterns and escapes parse, regular expressions
    /// compile.
    pub fn check(&self) -> Result<(), RuleError> {
        match self {
            TcpRule::Sni(pattern) | TcpRule::Alpn(pattern) | TcpRule::HttpHost(pattern) => {
                check_name_pattern(pattern)
            }
            TcpRule::Prefix(prefix) => parse_prefix(prefix).map(drop),
            TcpRule::Regex(regex) => check_regex(regex),
            TcpRule::Protocol(_) => Ok(()),
        }
    }

    /// The name of the listener metric that counts the connections this rule took for the
    /// cluster `cluster_id`.
    pub fn matches_metric(&self, cluster_id: &str) -> String {
        format!("content.rule_matches.{cluster_id} {self}")
    }

    /// The same rule as another one: same kind, same value (names without regard to case).
    pub fn is_same(&self, other: &TcpRule) -> bool {
        match (self, other) {
            (TcpRule::Sni(a), TcpRule::Sni(b))
            | (TcpRule::Alpn(a), TcpRule::Alpn(b))
            | (TcpRule::HttpHost(a), TcpRule::HttpHost(b)) => a.eq_ignore_ascii_case(b),
            _ => self == other,
        }
    }
}

impl fmt::Display for TcpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}", self.key(), self.value())
    }
}

fn check_name_pattern(pattern: &str) -> Result<(), RuleError> {
    match NamePattern::parse(pattern) {
        NamePattern::Exact("") => Err(RuleError::Empty),
        NamePattern::Exact(_) => Ok(()),
        NamePattern::Wildcard(suffix) => {
            if suffix.len() > 1 && suffix.starts_with('.') {
                Ok(())
            } else {
                Err(RuleError::Wildcard)
            }
        }
        NamePattern::Regex(regex) => name_regex(regex, false).map(drop),
    }
}

fn check_regex(pattern: &str) -> Result<(), RuleError> {
    bytes_regex(pattern).map(drop)
}

/// The regular expression of a `/regex/` name pattern: it must match the whole name, without
/// regard to ASCII case when `case_insensitive`.
pub fn name_regex(pattern: &str, case_insensitive: bool) -> Result<regex::bytes::Regex, RuleError> {
    if pattern.is_empty() {
        return Err(RuleError::Empty);
    }
    regex::bytes::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .case_insensitive(case_insensitive)
        .build()
        .map_err(regex_error)
}

/// The regular expression of a `regex` rule: over bytes (`\xNN` is a byte, `.` any byte),
/// found anywhere in the inspected bytes unless anchored with `^`.
pub fn bytes_regex(pattern: &str) -> Result<regex::bytes::Regex, RuleError> {
    if pattern.is_empty() {
        return Err(RuleError::Empty);
    }
    regex::bytes::RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .map_err(regex_error)
}

fn regex_error(error: regex::Error) -> RuleError {
    RuleError::Regex {
        // The regex crate draws the pattern over several lines; its last line names the fault.
        reason: error
            .to_string()
            .lines()
            .last()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    }
}

/// The bytes a `prefix` stands for: its text, with `\xNN` for any byte and `\\` for a
/// backslash.
pub fn parse_prefix(prefix: &str) -> Result<Vec<u8>, RuleError> {
    let invalid = || RuleError::Escape;
    let mut bytes = Vec::with_capacity(prefix.len());
    let mut rest = prefix.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                bytes.push(b'\\');
                rest = tail;
            }
            [b'x', high, low, tail @ ..] => {
                let digits = [*high, *low];
                let text = std::str::from_utf8(&digits).map_err(|_| invalid())?;
                bytes.push(u8::from_str_radix(text, 16).map_err(|_| invalid())?);
                rest = tail;
            }
            _ => return Err(invalid()),
        }
    }
    if bytes.is_empty() {
        return Err(RuleError::Empty);
    }
    Ok(bytes)
}

/// The protocols the built-in detectors recognise from a connection's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcpProtocol {
    /// A TLS handshake record (`16 03 0x`).
    Tls,
    /// A plain HTTP/1.x request line (`GET `, `POST `, … then `HTTP/1.`).
    Http,
    /// An SSH identification string (`SSH-`).
    Ssh,
    /// A SOCKS4 or SOCKS4a request (`04 01` or `04 02`).
    Socks4,
    /// A SOCKS5 greeting (`05`, a method count, the methods).
    Socks5,
    /// A PostgreSQL startup, SSL or GSS encryption request.
    Postgres,
    /// A Redis command in RESP (`*<n>\r\n$`) or an inline `PING`/`AUTH`/`HELLO`.
    Redis,
    /// An MQTT CONNECT packet.
    Mqtt,
    /// An OpenVPN over TCP hard reset from a client (v2 or v3).
    Openvpn,
    /// An XMPP stream header (`<?xml` or `<stream:stream`).
    Xmpp,
}

impl TcpProtocol {
    /// Every detector the `protocol` key can name.
    pub const ALL: [TcpProtocol; 10] = [
        TcpProtocol::Tls,
        TcpProtocol::Http,
        TcpProtocol::Ssh,
        TcpProtocol::Socks4,
        TcpProtocol::Socks5,
        TcpProtocol::Postgres,
        TcpProtocol::Redis,
        TcpProtocol::Mqtt,
        TcpProtocol::Openvpn,
        TcpProtocol::Xmpp,
    ];

    /// The detector's name, as the `protocol` key takes it (`tls`, `ssh`…).
    pub fn name(self) -> &'static str {
        match self {
            TcpProtocol::Tls => "tls",
            TcpProtocol::Http => "http",
            TcpProtocol::Ssh => "ssh",
            TcpProtocol::Socks4 => "socks4",
            TcpProtocol::Socks5 => "socks5",
            TcpProtocol::Postgres => "postgres",
            TcpProtocol::Redis => "redis",
            TcpProtocol::Mqtt => "mqtt",
            TcpProtocol::Openvpn => "openvpn",
            TcpProtocol::Xmpp => "xmpp",
        }
    }
}

impl FromStr for TcpProtocol {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_name(s, &Self::ALL, TcpProtocol::name)
    }
}

impl fmt::Display for TcpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A TCP listener's routing script: Lua source, carried by the order (the configuration
/// loader reads the file), with the name errors and logs give it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpScript {
    /// The file it was read from, as the configuration wrote it.
    pub name: String,
    /// The Lua source.
    pub source: String,
}

/// [`TcpFrontend`] as written on the wire: the match is one of six optional keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TcpFrontendFields {
    #[serde(alias = "app_id")]
    cluster_id: String,
    address: SocketAddr,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sni: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    alpn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protocol: Option<TcpProtocol>,
}

impl TryFrom<TcpFrontendFields> for TcpFrontend {
    type Error = RuleError;

    fn try_from(fields: TcpFrontendFields) -> Result<Self, Self::Error> {
        let rules: Vec<TcpRule> = [
            fields.sni.map(TcpRule::Sni),
            fields.alpn.map(TcpRule::Alpn),
            fields.http_host.map(TcpRule::HttpHost),
            fields.prefix.map(TcpRule::Prefix),
            fields.regex.map(TcpRule::Regex),
            fields.protocol.map(TcpRule::Protocol),
        ]
        .into_iter()
        .flatten()
        .collect();
        if rules.len() > 1 {
            let keys: Vec<&str> = rules.iter().map(TcpRule::key).collect();
            return Err(RuleError::SeveralMatches(keys.join(" and ")));
        }
        Ok(TcpFrontend {
            cluster_id: fields.cluster_id,
            address: fields.address,
            tags: fields.tags,
            rule: rules.into_iter().next(),
        })
    }
}

impl From<TcpFrontend> for TcpFrontendFields {
    fn from(frontend: TcpFrontend) -> Self {
        let mut fields = TcpFrontendFields {
            cluster_id: frontend.cluster_id,
            address: frontend.address,
            tags: frontend.tags,
            sni: None,
            alpn: None,
            http_host: None,
            prefix: None,
            regex: None,
            protocol: None,
        };
        match frontend.rule {
            None => {}
            Some(TcpRule::Sni(value)) => fields.sni = Some(value),
            Some(TcpRule::Alpn(value)) => fields.alpn = Some(value),
            Some(TcpRule::HttpHost(value)) => fields.http_host = Some(value),
            Some(TcpRule::Prefix(value)) => fields.prefix = Some(value),
            Some(TcpRule::Regex(value)) => fields.regex = Some(value),
            Some(TcpRule::Protocol(protocol)) => fields.protocol = Some(protocol),
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_escapes_become_bytes() {
        assert_eq!(parse_prefix(r"\x16\x03").unwrap(), vec![0x16, 0x03]);
        assert_eq!(parse_prefix(r"GET \\").unwrap(), b"GET \\".to_vec());
        assert_eq!(parse_prefix(r"\xZZ"), Err(RuleError::Escape));
        assert_eq!(parse_prefix(r"a\x1"), Err(RuleError::Escape));
        assert_eq!(parse_prefix(r"a\n"), Err(RuleError::Escape));
        assert_eq!(parse_prefix(""), Err(RuleError::Empty));
        assert_eq!(
            RuleError::Escape.to_string(),
            r"text with bytes written `\xNN` and a backslash `\\`"
        );
    }

    #[test]
    fn specificity_ranks_exact_before_wildcard_before_regex_before_protocol() {
        let mut rules = [
            TcpRule::Protocol(TcpProtocol::Tls),
            TcpRule::Sni("/a.*/".to_string()),
            TcpRule::Sni("*.a.test".to_string()),
            TcpRule::Sni("a.test".to_string()),
        ];
        rules.sort_by_key(TcpRule::specificity);
        assert_eq!(rules[0], TcpRule::Sni("a.test".to_string()));
        assert_eq!(rules[1], TcpRule::Sni("*.a.test".to_string()));
        assert_eq!(rules[2], TcpRule::Sni("/a.*/".to_string()));
        assert_eq!(rules[3], TcpRule::Protocol(TcpProtocol::Tls));
    }

    #[test]
    fn bad_patterns_are_named() {
        let error = TcpRule::Regex("(".to_string()).check().unwrap_err();
        assert_eq!(
            error.to_string(),
            "a regular expression that compiles (unclosed group)"
        );
        let error = TcpRule::Sni("/[/".to_string()).check().unwrap_err();
        assert!(
            error.to_string().contains("unclosed character class"),
            "{error}"
        );
        assert_eq!(
            TcpRule::Sni("*a.test".to_string()).check(),
            Err(RuleError::Wildcard)
        );
        assert_eq!(
            TcpRule::HttpHost(String::new()).check(),
            Err(RuleError::Empty)
        );
        assert!(TcpRule::Alpn("h2".to_string()).check().is_ok());
    }

    #[test]
    fn protocol_names_parse_and_unknown_ones_are_listed() {
        for protocol in TcpProtocol::ALL {
            assert_eq!(protocol.name().parse::<TcpProtocol>(), Ok(protocol));
        }
        let error = "gopher".parse::<TcpProtocol>().unwrap_err();
        assert_eq!(error.given, "gopher");
        assert!(error.expected.contains("openvpn"), "{error}");
    }

    #[test]
    fn frontend_with_a_rule_round_trips_through_json() {
        let json = r#"{"cluster_id":"a","address":"127.0.0.1:5000","sni":"a.test"}"#;
        let frontend: TcpFrontend = serde_json::from_str(json).unwrap();
        assert_eq!(frontend.rule, Some(TcpRule::Sni("a.test".to_string())));
        assert_eq!(serde_json::to_string(&frontend).unwrap(), json);
        let json = r#"{"cluster_id":"a","address":"127.0.0.1:5000","protocol":"ssh"}"#;
        let frontend: TcpFrontend = serde_json::from_str(json).unwrap();
        assert_eq!(frontend.rule, Some(TcpRule::Protocol(TcpProtocol::Ssh)));
    }

    #[test]
    fn frontend_with_two_matches_or_an_unknown_protocol_is_refused() {
        let two = r#"{"cluster_id":"a","address":"127.0.0.1:5000","sni":"a","alpn":"h2"}"#;
        let error = serde_json::from_str::<TcpFrontend>(two).unwrap_err();
        assert!(error.to_string().contains("sni and alpn"), "{error}");
        let unknown = r#"{"cluster_id":"a","address":"127.0.0.1:5000","protocol":"gopher"}"#;
        let error = serde_json::from_str::<TcpFrontend>(unknown).unwrap_err();
        assert!(
            error.to_string().starts_with(
                "unknown variant `gopher`, expected one of `tls`, `http`, `ssh`, `socks4`"
            ),
            "{error}"
        );
    }
}
