//! Reading back, quickly, the JSON that [`write_order`] writes for the most frequent orders of
//! a large state: frontends without options and certificates without versions or names.
//!
//! A worker decodes every order the main process sends it (110,000 at a large start), and the
//! main process every order of a state file it loads. Through `serde_json` and the derived
//! `Deserialize` impls, a frontend costs one `MapAccess` step and one field visitor per key and
//! a certificate's PEM texts go through `serde_json`'s scratch buffer. [`read_written_order`]
//! and [`read_written_request`] read those orders field by field, in the order and the form
//! `write_order` writes them: the type first, no spaces, the keys in their order, the strings'
//! only escapes `\n`, `\"` and `\\`. They read nothing else: any other line, valid or not,
//! gives `None`, and the caller decodes it with `serde_json`, which decides as before. What
//! they read is what `serde_json` reads from the same line (tests compare both, on the orders
//! written and on mutations of them). JSON stays the only form on the channel: an embedder's
//! lines and a state file's are read as before.
//!
//! [`write_order`]: super::write_order

use std::net::SocketAddr;

use super::{
    AddCertificate, CertificateAndKey, Fingerprint, HttpFrontend, Order, PathRule, PathRuleKind,
    RedirectPolicy, RedirectScheme, Request, RulePosition, WorkerRequest, frontend::Options,
    json::next_to_escape,
};
use crate::certificate::CertificateFacts;

/// The order of `text` when it is one of those [`write_order`](super::write_order) writes
/// itself, as `serde_json::from_str::<Order>(text)` would give it; `None` for any other text.
pub fn read_written_order(text: &str) -> Option<Order> {
    let mut reader = Reader { rest: text };
    let order = reader.order()?;
    reader.rest.is_empty().then_some(order)
}

/// The request of `text` (`{"id":…,"order":…}`, as the main process writes it to its workers)
/// when its order is one of those [`read_written_order`] reads, as
/// `serde_json::from_str::<Request>(text)` would give it; `None` for any other text.
pub fn read_written_request(text: &str) -> Option<Request> {
    let mut reader = Reader { rest: text };
    let (id, order) = reader.request()?;
    reader.literal("}")?;
    reader.rest.is_empty().then_some(Request { id, order })
}

/// The request of `text` as a worker reads it from its main process: a request
/// [`read_written_request`] reads, or one whose order is followed by the facts of its
/// certificate (`,"certificate_facts":{…}` as [`write_certificate_facts`] writes them), as
/// `serde_json::from_str::<WorkerRequest>(text)` would give it; `None` for any other text.
///
/// [`write_certificate_facts`]: super::write_certificate_facts
pub fn read_worker_request(text: &str) -> Option<WorkerRequest> {
    let mut reader = Reader { rest: text };
    let (id, order) = reader.request()?;
    let certificate_facts = if reader.next_is(r#","certificate_facts":"#) {
        Some(reader.certificate_facts()?)
    } else {
        None
    };
    reader.literal("}")?;
    reader.rest.is_empty().then_some(WorkerRequest {
        id,
        order,
        certificate_facts,
    })
}

/// What is left to read of a text; every method gives `None` when the text is not what it
/// reads, having consumed some of it.
struct Reader<'a> {
    rest: &'a str,
}

impl<'a> Reader<'a> {
    fn literal(&mut self, expected: &str) -> Option<()> {
        self.rest = self.rest.strip_prefix(expected)?;
        Some(())
    }

    /// Whether the text goes on with `expected`, which is then read.
    fn next_is(&mut self, expected: &str) -> bool {
        self.literal(expected).is_some()
    }

    /// A request's id and order, up to the end of the order.
    fn request(&mut self) -> Option<(String, Order)> {
        self.literal(r#"{"id":"#)?;
        let id = self.string()?;
        self.literal(r#","order":"#)?;
        Some((id, self.order()?))
    }

    /// A certificate's facts, as `write_certificate_facts` writes them.
    fn certificate_facts(&mut self) -> Option<CertificateFacts> {
        self.literal(r#"{"fingerprint":""#)?;
        let fingerprint = self.fingerprint()?;
        self.literal(r#","names":["#)?;
        let names = self.strings()?;
        self.literal(r#","not_before":"#)?;
        let not_before = self.integer()?;
        self.literal(r#","not_after":"#)?;
        let not_after = self.integer()?;
        self.literal("}")?;
        Some(CertificateFacts {
            fingerprint,
            names,
            not_before,
            not_after,
        })
    }

    /// The strings of a list and its `]`, the `[` read already.
    fn strings(&mut self) -> Option<Vec<String>> {
        let mut strings = Vec::new();
        if self.next_is("]") {
            return Some(strings);
        }
        loop {
            strings.push(self.string()?);
            if !self.next_is(",") {
                break;
            }
        }
        self.literal("]")?;
        Some(strings)
    }

    /// A fingerprint's 64 hexadecimal digits and the closing quote, the opening one read
    /// already; `None` for any other form (colons, spaces, escapes), which `serde_json` reads
    /// with `Fingerprint::from_str`, 50 times slower.
    fn fingerprint(&mut self) -> Option<Fingerprint> {
        let digits = self.rest.as_bytes().get(..64)?;
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let [high, low] = <[u8; 2]>::try_from(pair).ok()?;
            let value = char::from(high).to_digit(16)? * 16 + char::from(low).to_digit(16)?;
            *byte = u8::try_from(value).ok()?;
        }
        self.rest = self.rest.get(64..)?;
        self.literal("\"")?;
        Some(Fingerprint(bytes))
    }

    /// An `i64` as `write_certificate_facts` writes it: a minus sign for a negative one, then
    /// decimal digits without a leading zero (but `0`); `None` for any other form.
    fn integer(&mut self) -> Option<i64> {
        let sign = usize::from(self.rest.starts_with('-'));
        let digits = self
            .rest
            .bytes()
            .skip(sign)
            .position(|byte| !byte.is_ascii_digit())
            .unwrap_or(self.rest.len().saturating_sub(sign));
        let unsigned = self.rest.get(sign..sign.checked_add(digits)?)?;
        // `-0` is a float to `serde_json`, refused as an `i64`: left to it.
        if unsigned.is_empty()
            || (unsigned.len() > 1 && unsigned.starts_with('0'))
            || (sign == 1 && unsigned == "0")
        {
            return None;
        }
        let end = sign.checked_add(digits)?;
        let value = self.rest.get(..end)?.parse().ok()?;
        self.rest = self.rest.get(end..)?;
        Some(value)
    }

    fn order(&mut self) -> Option<Order> {
        self.literal(r#"{"type":""#)?;
        match self.until_quote()? {
            "ADD_HTTP_FRONTEND" => self.frontend().map(Order::AddHttpFrontend),
            "REMOVE_HTTP_FRONTEND" => self.frontend().map(Order::RemoveHttpFrontend),
            "ADD_HTTPS_FRONTEND" => self.frontend().map(Order::AddHttpsFrontend),
            "REMOVE_HTTPS_FRONTEND" => self.frontend().map(Order::RemoveHttpsFrontend),
            "ADD_CERTIFICATE" => self.add_certificate().map(Order::AddCertificate),
            _ => None,
        }
    }

    /// A frontend's fields after its type, as `write_frontend` writes them, and the `}`.
    fn frontend(&mut self) -> Option<HttpFrontend> {
        let cluster_id = if self.next_is(r#","cluster_id":"#) {
            Some(self.string()?)
        } else {
            None
        };
        self.literal(r#","address":"#)?;
        let address = self.address()?;
        self.literal(r#","hostname":"#)?;
        let hostname = self.string()?;
        let path = if self.next_is(r#","path":{"kind":""#) {
            let kind = self.word(&[
                ("PREFIX", PathRuleKind::Prefix),
                ("REGEX", PathRuleKind::Regex),
                ("EQUALS", PathRuleKind::Equals),
            ])?;
            self.literal(r#","value":"#)?;
            let value = self.string()?;
            self.literal("}")?;
            PathRule { kind, value }
        } else {
            PathRule::default()
        };
        let method = if self.next_is(r#","method":"#) {
            Some(self.string()?)
        } else {
            None
        };
        self.literal(r#","position":""#)?;
        let position = self.word(&[
            ("PRE", RulePosition::Pre),
            ("TREE", RulePosition::Tree),
            ("POST", RulePosition::Post),
        ])?;
        self.literal(r#","redirect":""#)?;
        let redirect = self.word(&[
            ("FORWARD", RedirectPolicy::Forward),
            ("PERMANENT", RedirectPolicy::Permanent),
            ("FOUND", RedirectPolicy::Found),
            ("PERMANENT_REDIRECT", RedirectPolicy::PermanentRedirect),
            ("UNAUTHORIZED", RedirectPolicy::Unauthorized),
        ])?;
        self.literal(r#","redirect_scheme":""#)?;
        let redirect_scheme = self.word(&[
            ("USE_SAME", RedirectScheme::UseSame),
            ("USE_HTTP", RedirectScheme::UseHttp),
            ("USE_HTTPS", RedirectScheme::UseHttps),
        ])?;
        let rewrite_port = if self.next_is(r#","rewrite_port":"#) {
            Some(self.port()?)
        } else {
            None
        };
        self.literal(r#","required_auth":"#)?;
        let required_auth = self.boolean()?;
        self.literal("}")?;
        Some(HttpFrontend {
            cluster_id,
            address,
            hostname,
            path,
            method,
            position,
            redirect,
            redirect_scheme,
            rewrite_port,
            required_auth,
            options: Options::default(),
        })
    }

    /// A certificate order's fields after its type, as `write_add_certificate` writes them,
    /// and the `}`.
    fn add_certificate(&mut self) -> Option<AddCertificate> {
        self.literal(r#","address":"#)?;
        let address = self.address()?;
        self.literal(r#","certificate":{"certificate":"#)?;
        let certificate = self.string()?;
        let certificate_chain = if self.next_is(r#","certificate_chain":["#) {
            self.strings()?
        } else {
            Vec::new()
        };
        self.literal(r#","key":"#)?;
        let key = self.string()?;
        self.literal(r#"},"allow_expired":"#)?;
        let allow_expired = self.boolean()?;
        self.literal("}")?;
        Some(AddCertificate {
            address,
            certificate: CertificateAndKey {
                certificate,
                certificate_chain,
                key,
                versions: Vec::new(),
                names: Vec::new(),
            },
            allow_expired,
        })
    }

    /// One of `words` followed by its closing quote, the opening one read already.
    fn word<T: Copy>(&mut self, words: &[(&str, T)]) -> Option<T> {
        let found = self.until_quote()?;
        let (_, value) = words.iter().find(|(word, _)| *word == found)?;
        Some(*value)
    }

    /// The text before the next quote, which is then read: a type, a word or an address, of a
    /// few bytes, which a loop over them finds sooner than `str::find`'s searcher (150
    /// instructions a call, three calls a frontend).
    fn until_quote(&mut self) -> Option<&'a str> {
        let end = self.rest.bytes().position(|byte| byte == b'"')?;
        let found = self.rest.get(..end)?;
        self.rest = self.rest.get(end.checked_add(1)?..)?;
        Some(found)
    }

    fn boolean(&mut self) -> Option<bool> {
        if self.next_is("true") {
            Some(true)
        } else if self.next_is("false") {
            Some(false)
        } else {
            None
        }
    }

    /// A port as `serde_json` reads a `u16`: decimal digits without a leading zero (but `0`),
    /// at most 65535.
    fn port(&mut self) -> Option<u16> {
        let digits = self
            .rest
            .bytes()
            .position(|byte| !byte.is_ascii_digit())
            .unwrap_or(self.rest.len());
        let text = self.rest.get(..digits)?;
        if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
            return None;
        }
        let port = text.parse().ok()?;
        self.rest = self.rest.get(digits..)?;
        Some(port)
    }

    /// A socket address in a string without escapes, read as `serde` reads it (`FromStr`).
    fn address(&mut self) -> Option<SocketAddr> {
        self.literal("\"")?;
        self.until_quote()?.parse().ok()
    }

    /// A string in quotes whose only escapes are `\n`, `\"` and `\\`, the runs between them
    /// copied whole; `None` for any other escape and for a control character, which
    /// `serde_json` refuses.
    fn string(&mut self) -> Option<String> {
        self.literal("\"")?;
        let text = self.rest;
        let bytes = text.as_bytes();
        // Without escaped quotes, the first quote ends the string, and each backslash before
        // it starts an escape of two bytes for one: the string's length, allocated once.
        let quote = memchr::memchr(b'"', bytes).unwrap_or(0);
        let escapes = memchr::memchr_iter(b'\\', bytes.get(..quote)?).count();
        let mut value = String::with_capacity(quote.saturating_sub(escapes));
        let mut run = 0;
        loop {
            let at = next_to_escape(bytes, run)?;
            value.push_str(text.get(run..at)?);
            let escaped = match bytes.get(at)? {
                b'"' => {
                    self.rest = text.get(at.checked_add(1)?..)?;
                    value.shrink_to_fit();
                    return Some(value);
                }
                b'\\' => bytes.get(at.checked_add(1)?)?,
                _ => return None,
            };
            value.push(match escaped {
                b'n' => '\n',
                b'"' => '"',
                b'\\' => '\\',
                _ => return None,
            });
            run = at.checked_add(2)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::request::{decode::tests::sample_orders, write_order};

    fn written(order: &Order) -> String {
        let mut json = Vec::new();
        write_order(order, &mut json).expect("an order is written");
        String::from_utf8(json).expect("JSON is text")
    }

    /// What the reader gives for `text` is what `serde_json` gives, whenever the reader reads
    /// it; the reader never panics.
    fn assert_read_as_serde_reads(text: &str) {
        if let Some(order) = read_written_order(text) {
            let expected: Order = serde_json::from_str(text)
                .unwrap_or_else(|error| panic!("serde refuses {text:?}: {error}"));
            assert_eq!(order, expected, "{text}");
        }
        let line = format!(r#"{{"id":"a\n\"b\\","order":{text}}}"#);
        if let Some(request) = read_written_request(&line) {
            let expected: Request = serde_json::from_str(&line)
                .unwrap_or_else(|error| panic!("serde refuses {line:?}: {error}"));
            assert_eq!(request, expected, "{line}");
        }
        assert_worker_request_read_as_serde_reads(&line);
    }

    /// What [`read_worker_request`] gives for `line` is what `serde_json` gives, whenever it
    /// reads it.
    fn assert_worker_request_read_as_serde_reads(line: &str) {
        if let Some(request) = read_worker_request(line) {
            let expected: WorkerRequest = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("serde refuses {line:?}: {error}"));
            assert_eq!(request, expected, "{line}");
        }
    }

    /// Facts of every shape: names to escape, validity bounds at the ends of `i64`.
    fn sample_facts() -> Vec<CertificateFacts> {
        let fingerprint = Fingerprint(std::array::from_fn(|index| (index * 37) as u8));
        [
            (vec![], 0, 0),
            (vec!["a.test".to_string()], 1_700_000_000, 2_000_000_000),
            (
                vec!["*.x.test".to_string(), "q\"\\\né".to_string()],
                -1,
                -10,
            ),
            (vec!["b".to_string(); 3], i64::MIN, i64::MAX),
        ]
        .into_iter()
        .map(|(names, not_before, not_after)| CertificateFacts {
            fingerprint: fingerprint.clone(),
            names,
            not_before,
            not_after,
        })
        .collect()
    }

    /// An `ADD_CERTIFICATE` as a start writes it.
    fn certificate_order() -> Order {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        Order::AddCertificate(AddCertificate {
            address: "127.0.0.1:443".parse().expect("an address"),
            certificate: CertificateAndKey::new(pem, "key\n"),
            allow_expired: false,
        })
    }

    /// The line the main process writes for `order` with `facts`.
    fn worker_line(order: &Order, facts: &CertificateFacts) -> String {
        let mut json = Vec::new();
        crate::request::write_certificate_facts(facts, &mut json).expect("facts are written");
        let facts = String::from_utf8(json).expect("JSON is text");
        format!(
            r#"{{"id":"start","order":{},"certificate_facts":{facts}}}"#,
            written(order)
        )
    }

    /// Issue 17, aim 4: the facts of a certificate are written as `serde_json` writes them,
    /// and a worker reads them back with their order, as `serde_json` reads the line; a line
    /// without them (any client's, an older main process's) is still read, with no facts.
    #[test]
    fn certificate_facts_go_with_their_order_and_come_back() {
        let order = certificate_order();
        for facts in sample_facts() {
            let mut json = Vec::new();
            crate::request::write_certificate_facts(&facts, &mut json).expect("facts are written");
            let expected = serde_json::to_vec(&facts).expect("facts serialise");
            assert_eq!(
                String::from_utf8_lossy(&json),
                String::from_utf8_lossy(&expected)
            );
            let line = worker_line(&order, &facts);
            let request = WorkerRequest {
                id: "start".to_string(),
                order: order.clone(),
                certificate_facts: Some(facts),
            };
            assert_eq!(read_worker_request(&line), Some(request.clone()), "{line}");
            let serialised = serde_json::to_string(&request).expect("a request serialises");
            assert_eq!(serialised, line);
            assert_worker_request_read_as_serde_reads(&line);
            assert_eq!(read_written_request(&line), None, "{line}");
        }
        let line = worker_line(&order, &sample_facts().remove(1));
        let hex = sample_facts().remove(1).fingerprint.to_string();
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|pair| String::from_utf8_lossy(pair).into_owned())
            .collect::<Vec<_>>()
            .join(":");
        for other in [
            hex.to_uppercase(),
            colons,
            format!(" {hex}"),
            hex.replacen('0', "+", 1),
        ] {
            let other = line.replace(&hex, &other);
            assert_worker_request_read_as_serde_reads(&other);
        }
        assert!(read_worker_request(&line.replace(&hex, &hex.to_uppercase())).is_some());
        // `-0`, which `serde_json` reads as a float and refuses (found by the proptest below).
        let bounds = format!(r#""not_after":{}"#, sample_facts().remove(1).not_after);
        let minus_zero = line.replace(&bounds, r#""not_after":-0"#);
        assert_ne!(minus_zero, line);
        assert_eq!(read_worker_request(&minus_zero), None, "{minus_zero}");
        assert_worker_request_read_as_serde_reads(&minus_zero);
        let mut tab = sample_facts().remove(1);
        tab.names.push("a\tb".to_string());
        let line = worker_line(&order, &tab);
        assert_eq!(
            read_worker_request(&line),
            None,
            "a tab is left to serde_json: {line}"
        );
        let expected: WorkerRequest = serde_json::from_str(&line).expect("serde reads it");
        assert_eq!(expected.certificate_facts, Some(tab));
        let line = format!(r#"{{"id":"start","order":{}}}"#, written(&order));
        let request = read_worker_request(&line).expect("a request without facts is read");
        assert_eq!(request, WorkerRequest::from(Request::new("start", order)));
        let cluster = r#"{"id":"1","order":{"type":"ADD_CLUSTER","cluster_id":"a"}}"#;
        assert_eq!(read_worker_request(cluster), None, "left to serde_json");
        let expected: WorkerRequest = serde_json::from_str(cluster).expect("serde reads it");
        assert_eq!(expected.certificate_facts, None);
    }

    fn frontend() -> impl Strategy<Value = HttpFrontend> {
        let text = "[a-z0-9.\n\"\\\\é/*-]{0,12}";
        (
            (
                proptest::option::of(text),
                prop::sample::select(&["127.0.0.1:80", "10.1.2.3:65535", "[::1]:443"][..]),
                text,
                proptest::option::of((0usize..3, text)),
                proptest::option::of(text),
            ),
            (
                0usize..3,
                0usize..5,
                0usize..3,
                proptest::option::of(any::<u16>()),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (cluster_id, address, hostname, path, method),
                    (position, redirect, scheme, rewrite_port, required_auth),
                )| {
                    let mut frontend = HttpFrontend::new(
                        cluster_id,
                        address.parse().expect("an address"),
                        hostname,
                    );
                    if let Some((kind, value)) = path {
                        let kinds = [
                            PathRuleKind::Prefix,
                            PathRuleKind::Regex,
                            PathRuleKind::Equals,
                        ];
                        frontend.path = PathRule {
                            kind: kinds[kind],
                            value,
                        };
                    }
                    frontend.method = method;
                    frontend.position =
                        [RulePosition::Pre, RulePosition::Tree, RulePosition::Post][position];
                    frontend.redirect = [
                        RedirectPolicy::Forward,
                        RedirectPolicy::Permanent,
                        RedirectPolicy::Found,
                        RedirectPolicy::PermanentRedirect,
                        RedirectPolicy::Unauthorized,
                    ][redirect];
                    frontend.redirect_scheme = [
                        RedirectScheme::UseSame,
                        RedirectScheme::UseHttp,
                        RedirectScheme::UseHttps,
                    ][scheme];
                    frontend.rewrite_port = rewrite_port;
                    frontend.required_auth = required_auth;
                    frontend
                },
            )
    }

    /// Issue 17: the orders `write_order` writes itself are read back by the reader, to the
    /// order written; every other order is left to `serde_json`.
    #[test]
    fn written_orders_are_read_back() {
        let mut read = 0;
        for order in sample_orders() {
            let text = written(&order);
            let expected = match &order {
                Order::AddHttpFrontend(frontend)
                | Order::RemoveHttpFrontend(frontend)
                | Order::AddHttpsFrontend(frontend)
                | Order::RemoveHttpsFrontend(frontend) => !frontend.has_options(),
                Order::AddCertificate(add) => {
                    add.certificate.versions.is_empty() && add.certificate.names.is_empty()
                }
                _ => false,
            };
            let back = read_written_order(&text);
            assert_eq!(back.is_some(), expected, "{text}");
            if let Some(back) = back {
                assert_eq!(back, order, "{text}");
                read += 1;
            }
            assert_read_as_serde_reads(&text);
        }
        assert!(read >= 1, "{read} orders read");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\"x\\y\n-----END CERTIFICATE-----\n";
        for chain in [vec![], vec![pem.to_string()], vec![pem.to_string(); 2]] {
            let mut certificate = CertificateAndKey::new(pem, "key\n");
            certificate.certificate_chain = chain;
            for (address, allow_expired) in [("127.0.0.1:443", true), ("[::1]:8443", false)] {
                let order = Order::AddCertificate(AddCertificate {
                    address: address.parse().expect("an address"),
                    certificate: certificate.clone(),
                    allow_expired,
                });
                let text = written(&order);
                assert_eq!(read_written_order(&text), Some(order.clone()), "{text}");
                let line = format!(r#"{{"id":"start","order":{text}}}"#);
                let request = read_written_request(&line).expect("the request is read");
                assert_eq!(request, Request::new("start", order));
            }
        }
    }

    /// Issue 17: what the reader does not read is left to `serde_json`, which decides.
    #[test]
    fn other_texts_are_left_to_serde() {
        for text in [
            "",
            "{",
            r#"{"type":"ADD_HTTP_FRONTEND"}"#,
            r#"{ "type":"ADD_HTTP_FRONTEND","address":"127.0.0.1:80","hostname":"a","position":"TREE","redirect":"FORWARD","redirect_scheme":"USE_SAME","required_auth":false}"#,
            r#"{"type":"ADD_HTTP_FRONTEND","address":"127.0.0.1:80","hostname":"a\tb","position":"TREE","redirect":"FORWARD","redirect_scheme":"USE_SAME","required_auth":false}"#,
            r#"{"type":"ADD_HTTP_FRONTEND","address":"127.0.0.1:80","hostname":"a\u0041","position":"TREE","redirect":"FORWARD","redirect_scheme":"USE_SAME","required_auth":false}"#,
            r#"{"type":"ADD_HTTP_FRONTEND","address":"127.0.0.1:80","hostname":"a","position":"TREE","redirect":"FORWARD","redirect_scheme":"USE_SAME","rewrite_port":0443,"required_auth":false}"#,
            r#"{"type":"ADD_HTTP_FRONTEND","address":"127.0.0.1:80","hostname":"a","position":"TREE","redirect":"FORWARD","redirect_scheme":"USE_SAME","rewrite_port":65536,"required_auth":false}"#,
            r#"{"type":"ADD_HTTP_FRONTEND","address":"127.0.0.1:80","hostname":"a","position":"TREE","redirect":"FORWARD","redirect_scheme":"USE_SAME","required_auth":false} "#,
            "{\"type\":\"ADD_HTTP_FRONTEND\",\"address\":\"127.0.0.1:80\",\"hostname\":\"a\u{1}\",\"position\":\"TREE\",\"redirect\":\"FORWARD\",\"redirect_scheme\":\"USE_SAME\",\"required_auth\":false}",
            r#"{"type":"ADD_CLUSTER","cluster_id":"a"}"#,
        ] {
            assert_eq!(read_written_order(text), None, "{text}");
        }
        let plain = r#"{"type":"ADD_HTTP_FRONTEND","address":"127.0.0.1:80","hostname":"a","position":"TREE","redirect":"FORWARD","redirect_scheme":"USE_SAME","rewrite_port":0,"required_auth":false}"#;
        assert!(read_written_order(plain).is_some());
        assert_read_as_serde_reads(plain);
        for line in [
            format!(r#"{{"id":"a","order":{plain},"extra":1}}"#),
            format!(r#"{{"order":{plain},"id":"a"}}"#),
            format!(r#"{{"id":"a","order":{plain}}}}}"#),
        ] {
            assert_eq!(read_written_request(&line), None, "{line}");
        }
    }

    /// `text` cut at `at`, or with the character there dropped, or `inserted` put before it
    /// or in its place (`edit` 0 to 3).
    fn mutated(text: &str, at: prop::sample::Index, edit: usize, inserted: char) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        let at = at.index(chars.len());
        match edit {
            0 => chars.truncate(at),
            1 => {
                chars.remove(at);
            }
            2 => chars.insert(at, inserted),
            _ => chars[at] = inserted,
        }
        chars.into_iter().collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Issue 17: any frontend `write_order` writes is read as `serde_json` reads it, and
        /// read at all when its strings need no other escape than `\n`, `\"` and `\\`.
        #[test]
        fn frontends_are_read_as_serde_reads_them(frontend in frontend()) {
            for order in [
                Order::AddHttpFrontend(frontend.clone()),
                Order::RemoveHttpsFrontend(frontend.clone()),
            ] {
                let text = written(&order);
                prop_assert_eq!(read_written_order(&text), Some(order), "{}", text);
            }
        }

        /// Issue 17, hostile bytes: a written order cut, with a character changed, dropped or
        /// inserted anywhere, is read as `serde_json` reads it or left to it, never a panic.
        #[test]
        fn mutated_orders_are_read_as_serde_reads_them(
            frontend in frontend(),
            certificate in any::<bool>(),
            at in any::<prop::sample::Index>(),
            edit in 0usize..4,
            inserted in prop::sample::select(
                &['"', '\\', '{', '}', ',', ':', '0', '9', 'n', 'é', '\n', '\u{1}', ' '][..],
            ),
        ) {
            let order = if certificate {
                let mut pem = CertificateAndKey::new(frontend.hostname.clone(), "k\n");
                pem.certificate_chain = frontend.method.iter().cloned().collect();
                Order::AddCertificate(AddCertificate {
                    address: frontend.address,
                    certificate: pem,
                    allow_expired: frontend.required_auth,
                })
            } else {
                Order::AddHttpFrontend(frontend)
            };
            let mutated = mutated(&written(&order), at, edit, inserted);
            assert_read_as_serde_reads(&mutated);
        }

        /// Issue 17, aim 4, hostile bytes: a worker's line with facts, cut, with a character
        /// changed, dropped or inserted anywhere, is read as `serde_json` reads it or left to
        /// it, never a panic.
        #[test]
        fn mutated_facts_are_read_as_serde_reads_them(
            facts in prop::sample::select(sample_facts()),
            at in any::<prop::sample::Index>(),
            edit in 0usize..4,
            inserted in prop::sample::select(
                &['"', '\\', '{', '}', ',', ':', '-', '0', '9', 'a', 'é', '\n', ' '][..],
            ),
        ) {
            let mutated = mutated(&worker_line(&certificate_order(), &facts), at, edit, inserted);
            assert_worker_request_read_as_serde_reads(&mutated);
        }
    }
}
