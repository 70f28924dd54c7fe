//! A TCP frontend's rule, compiled: what it needs from the first bytes, and whether they
//! match.

use regex::bytes::Regex;
use sozu_command_lib::request::{
    NamePattern, RuleError, TcpProtocol, TcpRule, bytes_regex, name_regex, parse_prefix,
};

use super::{
    Judgement,
    client_hello::{self, ClientHello, Hello},
    detect,
};

/// A compiled name pattern of `sni`, `alpn` or `http_host`.
#[derive(Debug)]
enum Name {
    Exact(Vec<u8>),
    /// The suffix, dot included: `*.a.test` is `.a.test`, and one label must come before it.
    Wildcard(Vec<u8>),
    Regex(Regex),
}

impl Name {
    /// Names compare without regard to ASCII case when `case_insensitive` (host names; ALPN
    /// protocol ids are compared byte for byte).
    fn compile(pattern: &str, case_insensitive: bool) -> Result<Name, RuleError> {
        let fold = |text: &str| {
            if case_insensitive {
                text.to_ascii_lowercase().into_bytes()
            } else {
                text.as_bytes().to_vec()
            }
        };
        Ok(match NamePattern::parse(pattern) {
            NamePattern::Exact(name) => Name::Exact(fold(name)),
            NamePattern::Wildcard(suffix) => Name::Wildcard(fold(suffix)),
            NamePattern::Regex(regex) => Name::Regex(name_regex(regex, case_insensitive)?),
        })
    }

    /// `name` is already case-folded for host names.
    fn matches(&self, name: &[u8]) -> bool {
        match self {
            Name::Exact(exact) => name == exact.as_slice(),
            Name::Wildcard(suffix) => name
                .strip_suffix(suffix.as_slice())
                .is_some_and(|label| !label.is_empty() && !label.contains(&b'.')),
            Name::Regex(regex) => regex.is_match(name),
        }
    }
}

/// What a rule tests.
#[derive(Debug)]
enum Test {
    Sni(Name),
    Alpn(Name),
    HttpHost(Name),
    Prefix(Vec<u8>),
    Regex(Regex),
    Protocol(TcpProtocol),
}

/// A rule ready to judge the first bytes of connections.
#[derive(Debug)]
pub struct CompiledRule {
    test: Test,
}

impl CompiledRule {
    pub fn compile(rule: &TcpRule) -> Result<CompiledRule, RuleError> {
        let test = match rule {
            TcpRule::Sni(pattern) => Test::Sni(Name::compile(pattern, true)?),
            TcpRule::Alpn(pattern) => Test::Alpn(Name::compile(pattern, false)?),
            TcpRule::HttpHost(pattern) => Test::HttpHost(Name::compile(pattern, true)?),
            TcpRule::Prefix(prefix) => Test::Prefix(parse_prefix(prefix)?),
            TcpRule::Regex(regex) => Test::Regex(bytes_regex(regex)?),
            TcpRule::Protocol(protocol) => Test::Protocol(*protocol),
        };
        Ok(CompiledRule { test })
    }

    /// Whether `facts` match; `NeedMore` while more bytes could change the answer.
    pub fn judge(&self, facts: &mut Facts<'_>) -> Judgement {
        match &self.test {
            Test::Sni(name) => match facts.hello() {
                Hello::Complete(hello) => {
                    Judgement::from_match(hello.server_name.is_some_and(|n| name.matches(n)))
                }
                Hello::Partial => Judgement::NeedMore,
                Hello::Invalid => Judgement::NoMatch,
            },
            Test::Alpn(name) => match facts.hello() {
                Hello::Complete(hello) => {
                    Judgement::from_match(hello.alpn.iter().any(|protocol| name.matches(protocol)))
                }
                Hello::Partial => Judgement::NeedMore,
                Hello::Invalid => Judgement::NoMatch,
            },
            Test::HttpHost(name) => match http_host(facts.data) {
                Ok(Some(host)) => Judgement::from_match(name.matches(&host)),
                Ok(None) => Judgement::NoMatch,
                Err(judgement) => judgement,
            },
            Test::Prefix(prefix) => detect::starts_with(facts.data, prefix),
            Test::Regex(regex) => {
                if regex.is_match(facts.data) {
                    Judgement::Match
                } else {
                    // More bytes could still match.
                    Judgement::NeedMore
                }
            }
            Test::Protocol(protocol) => detect::detect(*protocol, facts.data),
        }
    }
}

/// The first bytes of a connection, with the ClientHello read once for every rule that asks.
pub struct Facts<'d> {
    data: &'d [u8],
    /// Where a ClientHello split over several records is gathered; taken by the first read.
    scratch: Option<&'d mut Vec<u8>>,
    /// The ClientHello, once a rule asked for it; its server name is lowercased.
    hello: Option<Hello<ClientHello<'d>>>,
    server_name: Option<Vec<u8>>,
}

/// What the rules see of a ClientHello.
pub struct HelloFacts<'f> {
    server_name: Option<&'f [u8]>,
    alpn: &'f [&'f [u8]],
}

impl<'d> Facts<'d> {
    pub fn new(data: &'d [u8], scratch: &'d mut Vec<u8>) -> Self {
        Facts {
            data,
            scratch: Some(scratch),
            hello: None,
            server_name: None,
        }
    }

    fn hello(&mut self) -> Hello<HelloFacts<'_>> {
        if self.hello.is_none()
            && let Some(scratch) = self.scratch.take()
        {
            let hello = client_hello::read(self.data, scratch);
            if let Hello::Complete(ClientHello {
                server_name: Some(name),
                ..
            }) = &hello
            {
                self.server_name = Some(name.to_ascii_lowercase());
            }
            self.hello = Some(hello);
        }
        match &self.hello {
            Some(Hello::Complete(hello)) => Hello::Complete(HelloFacts {
                server_name: self.server_name.as_deref(),
                alpn: &hello.alpn,
            }),
            Some(Hello::Partial) => Hello::Partial,
            Some(Hello::Invalid) | None => Hello::Invalid,
        }
    }
}

/// The Host of a plain HTTP/1.x request head, lowercased and without its port: `Ok(None)`
/// when the head ends without one.
fn http_host(data: &[u8]) -> Result<Option<Vec<u8>>, Judgement> {
    let mut rest = data.get(detect::request_line(data)?..).unwrap_or_default();
    loop {
        let Some(end) = memchr::memchr(b'\n', rest) else {
            return Err(if data.len() > MAX_HEAD {
                Judgement::NoMatch
            } else {
                Judgement::NeedMore
            });
        };
        let line = &rest[..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        rest = &rest[end + 1..];
        if line.is_empty() {
            return Ok(None);
        }
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"host") {
            let value = line[colon + 1..].trim_ascii();
            return Ok(Some(host_without_port(value).to_ascii_lowercase()));
        }
    }
}

/// The longest head read for a Host.
const MAX_HEAD: usize = 16_384;

/// `host[:port]` without its port and one final dot; an IPv6 literal keeps its brackets.
fn host_without_port(value: &[u8]) -> &[u8] {
    let host = if value.starts_with(b"[") {
        match memchr::memchr(b']', value) {
            Some(end) => &value[..=end],
            None => value,
        }
    } else {
        match memchr::memrchr(b':', value) {
            Some(colon) => &value[..colon],
            None => value,
        }
    };
    host.strip_suffix(b".").unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::content::client_hello::tests::rustls_client_hello;

    fn judge(rule: TcpRule, data: &[u8]) -> Judgement {
        let mut scratch = Vec::new();
        let compiled = CompiledRule::compile(&rule).unwrap();
        compiled.judge(&mut Facts::new(data, &mut scratch))
    }

    fn sni(pattern: &str) -> TcpRule {
        TcpRule::Sni(pattern.to_string())
    }

    #[test]
    fn sni_patterns_exact_wildcard_and_regex() {
        let hello = rustls_client_hello("Api.A.test", &[b"h2"]);
        assert_eq!(judge(sni("api.a.test"), &hello), Judgement::Match);
        assert_eq!(judge(sni("*.a.test"), &hello), Judgement::Match);
        assert_eq!(judge(sni("*.test"), &hello), Judgement::NoMatch);
        assert_eq!(judge(sni("/api\\.[a-z]\\.test/"), &hello), Judgement::Match);
        assert_eq!(judge(sni("/api/"), &hello), Judgement::NoMatch);
        assert_eq!(judge(sni("b.test"), &hello), Judgement::NoMatch);
        assert_eq!(judge(sni("a.test"), &hello[..20]), Judgement::NeedMore);
        assert_eq!(
            judge(sni("a.test"), b"GET / HTTP/1.1\r\n"),
            Judgement::NoMatch
        );
    }

    #[test]
    fn alpn_matches_any_offered_protocol_byte_for_byte() {
        let hello = rustls_client_hello("a.test", &[b"h2", b"http/1.1"]);
        let alpn = |p: &str| TcpRule::Alpn(p.to_string());
        assert_eq!(judge(alpn("http/1.1"), &hello), Judgement::Match);
        assert_eq!(judge(alpn("H2"), &hello), Judgement::NoMatch);
        assert_eq!(judge(alpn("/h[23]/"), &hello), Judgement::Match);
    }

    #[test]
    fn http_host_reads_the_host_header_without_its_port() {
        let host = |p: &str| TcpRule::HttpHost(p.to_string());
        let request = include_bytes!("data/curl-http-c.test.bin");
        assert_eq!(judge(host("c.test"), request), Judgement::Match);
        assert_eq!(
            judge(host("C.TEST"), b"GET / HTTP/1.1\r\nHost: c.test.\r\n"),
            Judgement::Match
        );
        assert_eq!(
            judge(host("c.test"), b"GET / HTTP/1.1\r\nHost: c.te"),
            Judgement::NeedMore
        );
        assert_eq!(
            judge(host("c.test"), b"GET / HTTP/1.1\r\n\r\n"),
            Judgement::NoMatch
        );
        assert_eq!(
            judge(
                host("[::1]"),
                b"GET / HTTP/1.1\r\nX: y\r\nhost:[::1]:80\r\n"
            ),
            Judgement::Match
        );
        assert_eq!(judge(host("c.test"), b"\x16\x03\x01"), Judgement::NoMatch);
    }

    #[test]
    fn prefix_and_regex_rules() {
        let prefix = TcpRule::Prefix(r"\x16\x03".to_string());
        assert_eq!(judge(prefix.clone(), b"\x16"), Judgement::NeedMore);
        assert_eq!(judge(prefix.clone(), b"\x16\x03\x01"), Judgement::Match);
        assert_eq!(judge(prefix, b"\x17"), Judgement::NoMatch);
        let regex = TcpRule::Regex(r"^git-upload-pack /(\w+)/".to_string());
        assert_eq!(
            judge(regex.clone(), b"git-upload-pack /alice/x"),
            Judgement::Match
        );
        assert_eq!(judge(regex, b"git-upload-pack /ali"), Judgement::NeedMore);
        let bytes = TcpRule::Regex(r"\xff\x00".to_string());
        assert_eq!(judge(bytes, b"a\xff\x00"), Judgement::Match);
    }
}
