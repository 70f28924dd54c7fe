//! Header edits: the head the proxy sends on, built from the parsed head in one pass.
//!
//! A request head loses its hop-by-hop fields (RFC 9110 §7.6.1: Connection and the fields it
//! names, Keep-Alive, Proxy-Connection, TE, Upgrade, which is written anew when the proxy
//! lets the upgrade through, see [`super::upgrade`]), gets
//! `X-Forwarded-For` appended, `X-Forwarded-Proto`, `X-Forwarded-Port`, `Forwarded`
//! (RFC 7239) and the request id set, `X-Real-IP` set or removed as the listener says, the
//! frontend's header rules and rewrites applied, and the sticky cookie removed. An
//! absolute-form target is sent in origin form, with a Host that agrees with it. A response
//! head loses its hop-by-hop fields and gets the frontend's rules, HSTS, the sticky cookie
//! and the request id; for an HTTP/1.0 client it also loses Transfer-Encoding (the body is
//! sent without its chunks) and says `Connection: keep-alive` when the connection stays.
//!
//! The new head is written to a reusable buffer: the kept lines are copied as they are, so
//! editing costs one copy of a few hundred bytes and no allocation once the buffer has grown.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr},
};

use sozu_command_lib::request::{HeaderEdit, HeaderPosition, Hsts};

use super::parser::{Header, HeaderKind, RequestHead, ResponseHead, Span, TargetForm};

/// What to change in a request head.
pub struct RequestEdits<'a> {
    pub client: SocketAddr,
    /// The address the client connected to (public address when the listener has one).
    pub listener: SocketAddr,
    pub is_tls: bool,
    pub request_id_header: &'a str,
    pub request_id: &'a str,
    pub send_x_real_ip: bool,
    pub elide_x_real_ip: bool,
    /// New Host, without port, and new port; `None` keeps them.
    pub rewrite_host: Option<&'a [u8]>,
    pub rewrite_port: Option<u16>,
    /// New path and query.
    pub rewrite_path: Option<&'a [u8]>,
    pub rules: &'a [HeaderEdit],
    /// The sticky cookie's name, removed from the Cookie field when the cluster is sticky.
    pub sticky_cookie: Option<&'a str>,
    /// The protocol to offer the backend in `Upgrade`, with `Connection: upgrade`. The
    /// request's own `Upgrade` fields are removed either way.
    pub upgrade: Option<&'a [u8]>,
}

/// What to change in a response head.
pub struct ResponseEdits<'a> {
    pub request_id_header: &'a str,
    pub request_id: &'a str,
    pub rules: &'a [HeaderEdit],
    pub hsts: Option<&'a Hsts>,
    /// `(cookie name, sticky id)` to set.
    pub set_sticky: Option<(&'a str, &'a str)>,
    /// The connection to the client ends after this response.
    pub close: bool,
    /// A 101 answer: keep `Upgrade` and send `Connection: upgrade`.
    pub upgrade: bool,
    /// The client speaks HTTP/1.0: Transfer-Encoding is removed (the body goes without it),
    /// and a connection that stays says so with `Connection: keep-alive` (RFC 9112 §C.2.2).
    pub client_http10: bool,
}

/// Whether a field is hop-by-hop for a message that does not upgrade.
fn is_hop_by_hop(header: &Header) -> bool {
    header.is_connection_option
        || matches!(
            header.kind,
            HeaderKind::Connection
                | HeaderKind::KeepAlive
                | HeaderKind::ProxyConnection
                | HeaderKind::Te
        )
}

/// The kept field lines not copied yet: lines that follow each other in the parsed buffer
/// go to the new head in one copy.
#[derive(Default)]
struct KeptLines {
    run: Span,
}

impl KeptLines {
    /// Keeps `line`, after the lines kept before it.
    fn add(&mut self, line: Span, buf: &[u8], out: &mut Vec<u8>) {
        if self.run.is_empty() || self.run.end != line.start {
            self.flush(buf, out);
            self.run.start = line.start;
        }
        self.run.end = line.end;
    }

    /// Copies the lines kept so far.
    fn flush(&mut self, buf: &[u8], out: &mut Vec<u8>) {
        if !self.run.is_empty() {
            out.extend_from_slice(self.run.slice(buf));
            self.run = Span::default();
        }
    }
}

/// The request line in `buf`, CRLF included, when it is the line the proxy would write with
/// the target unchanged: the parser allows single spaces only, so it is when the version is
/// written as the proxy writes it (not a higher minor version of HTTP/1).
fn request_line_as_is(buf: &[u8], head: &RequestHead) -> Option<Span> {
    let version = head.version.as_bytes();
    let version_start = head.target.end + 1;
    let version_end = version_start + version.len();
    (buf.get(version_start..version_end) == Some(version)).then_some(Span {
        start: head.method_span.start,
        end: version_end + 2,
    })
}

/// The status line in `buf` (where the head starts), CRLF included, when it is the line the
/// proxy would write: `HTTP/1.1`, the three digits, SP and the reason (the SP before an empty
/// reason may be missing in `buf`).
fn status_line_as_is(buf: &[u8], head: &ResponseHead) -> Option<Span> {
    const PREFIX: &[u8] = b"HTTP/1.1 ";
    let is_as_is = buf.starts_with(PREFIX) && head.reason.start == PREFIX.len() + 4;
    is_as_is.then_some(Span {
        start: 0,
        end: head.reason.end + 2,
    })
}

fn is_ruled(name: &[u8], rules: &[HeaderEdit], position: HeaderPosition) -> bool {
    rules
        .iter()
        .any(|rule| applies(rule, position) && rule.key.as_bytes().eq_ignore_ascii_case(name))
}

fn applies(rule: &HeaderEdit, position: HeaderPosition) -> bool {
    rule.position == position || rule.position == HeaderPosition::Both
}

fn write_rules(rules: &[HeaderEdit], position: HeaderPosition, out: &mut Vec<u8>) {
    for rule in rules
        .iter()
        .filter(|rule| applies(rule, position) && !rule.value.is_empty())
    {
        write_field(out, rule.key.as_bytes(), rule.value.as_bytes());
    }
}

fn write_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes the request head to send to the backend.
pub fn write_request_head(
    buf: &[u8],
    head: &RequestHead,
    headers: &[Header],
    edits: &RequestEdits<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    let absolute = head.target_form == TargetForm::Absolute;
    let mut kept = KeptLines::default();
    match request_line_as_is(buf, head).filter(|_| edits.rewrite_path.is_none() && !absolute) {
        // Kept as it came, with the field lines kept after it.
        Some(line) => kept.run = line,
        None => {
            out.extend_from_slice(head.method_span.slice(buf));
            out.push(b' ');
            match edits.rewrite_path {
                Some(path) => out.extend_from_slice(path),
                None => write_origin_target(buf, head, out),
            }
            out.push(b' ');
            out.extend_from_slice(head.version.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }

    let rewrites_host = edits.rewrite_host.is_some() || edits.rewrite_port.is_some() || absolute;
    let mut forwarded_for: Vec<Span> = Vec::new();
    let mut forwarded: Vec<Span> = Vec::new();
    for header in headers {
        let name = header.name.slice(buf);
        let keep = match header.kind {
            HeaderKind::Host => !rewrites_host,
            HeaderKind::Upgrade => false,
            HeaderKind::XForwardedFor => {
                forwarded_for.push(header.value);
                false
            }
            HeaderKind::Forwarded => {
                forwarded.push(header.value);
                false
            }
            HeaderKind::XForwardedProto | HeaderKind::XForwardedPort | HeaderKind::RequestId => {
                false
            }
            HeaderKind::XRealIp => !(edits.send_x_real_ip || edits.elide_x_real_ip),
            HeaderKind::Cookie if edits.sticky_cookie.is_some() => {
                kept.flush(buf, out);
                write_cookie_without(buf, header, edits.sticky_cookie.unwrap_or_default(), out);
                false
            }
            _ => !is_hop_by_hop(header),
        };
        if keep && !is_ruled(name, edits.rules, HeaderPosition::Request) {
            kept.add(header.line(), buf, out);
        }
    }
    kept.flush(buf, out);
    if rewrites_host {
        write_host(buf, head, edits, out);
    }
    write_forwarded_for(buf, &forwarded_for, edits.client.ip(), out);
    write_forwarded(buf, &forwarded, edits, out);
    // Two fields in one copy.
    let proto_and_port: &[u8] = if edits.is_tls {
        b"X-Forwarded-Proto: https\r\nX-Forwarded-Port: "
    } else {
        b"X-Forwarded-Proto: http\r\nX-Forwarded-Port: "
    };
    out.extend_from_slice(proto_and_port);
    push_decimal(out, edits.listener.port());
    out.extend_from_slice(b"\r\n");
    if edits.send_x_real_ip {
        out.extend_from_slice(b"X-Real-IP: ");
        push_ip(out, edits.client.ip());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(protocol) = edits.upgrade {
        write_field(out, b"Upgrade", protocol);
    }
    let connection: &[u8] = if edits.upgrade.is_some() {
        b"upgrade"
    } else {
        b""
    };
    write_tail(
        out,
        edits.request_id_header,
        edits.request_id,
        edits.rules,
        HeaderPosition::Request,
        connection,
    );
}

/// The fields every edited head ends with: the request id, the frontend's rules, and a
/// Connection field when `connection` is not empty; then the empty line.
fn write_tail(
    out: &mut Vec<u8>,
    request_id_header: &str,
    request_id: &str,
    rules: &[HeaderEdit],
    position: HeaderPosition,
    connection: &[u8],
) {
    if !request_id_header.is_empty() {
        write_field(out, request_id_header.as_bytes(), request_id.as_bytes());
    }
    write_rules(rules, position, out);
    if !connection.is_empty() {
        write_field(out, b"Connection", connection);
    }
    out.extend_from_slice(b"\r\n");
}

/// The request target in origin form: an absolute-form target loses its scheme and authority.
fn write_origin_target(buf: &[u8], head: &RequestHead, out: &mut Vec<u8>) {
    if head.target_form != TargetForm::Absolute {
        out.extend_from_slice(head.target.slice(buf));
        return;
    }
    let path = head.path.slice(buf);
    if !path.starts_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(path);
}

fn write_host(buf: &[u8], head: &RequestHead, edits: &RequestEdits<'_>, out: &mut Vec<u8>) {
    let (host, port) = match &head.authority {
        Some(authority) => (authority.host.slice(buf), authority.port),
        None => (&b""[..], None),
    };
    let host = edits.rewrite_host.unwrap_or(host);
    out.extend_from_slice(b"Host: ");
    out.extend_from_slice(host);
    if let Some(port) = edits.rewrite_port.or(port) {
        let _ = write!(out, ":{port}");
    }
    out.extend_from_slice(b"\r\n");
}

/// Removes the `name=value` pair of the sticky cookie from a Cookie field; drops the field if
/// nothing remains.
fn write_cookie_without(buf: &[u8], header: &Header, name: &str, out: &mut Vec<u8>) {
    let value = header.value.slice(buf);
    let mut kept: Vec<&[u8]> = Vec::new();
    for pair in value.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        let is_sticky = pair
            .split(|&b| b == b'=')
            .next()
            .is_some_and(|key| key.trim_ascii() == name.as_bytes());
        if !pair.is_empty() && !is_sticky {
            kept.push(pair);
        }
    }
    if kept.is_empty() {
        return;
    }
    out.extend_from_slice(header.name.slice(buf));
    out.extend_from_slice(b": ");
    for (index, pair) in kept.iter().enumerate() {
        if index > 0 {
            out.extend_from_slice(b"; ");
        }
        out.extend_from_slice(pair);
    }
    out.extend_from_slice(b"\r\n");
}

fn write_forwarded_for(buf: &[u8], previous: &[Span], client: IpAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(b"X-Forwarded-For: ");
    for value in previous
        .iter()
        .map(|span| span.slice(buf))
        .filter(|v| !v.is_empty())
    {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    push_ip(out, client);
    out.extend_from_slice(b"\r\n");
}

/// `Forwarded` with the earlier elements, then ours (RFC 7239 §4: IPv6 in brackets, quoted).
fn write_forwarded(buf: &[u8], previous: &[Span], edits: &RequestEdits<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"Forwarded: ");
    for value in previous
        .iter()
        .map(|span| span.slice(buf))
        .filter(|v| !v.is_empty())
    {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(b"for=");
    write_node(out, edits.client.ip());
    out.extend_from_slice(b";by=");
    write_node(out, edits.listener.ip());
    out.extend_from_slice(if edits.is_tls {
        b";proto=https\r\n"
    } else {
        b";proto=http\r\n"
    });
}

/// A node of `Forwarded`, written straight into the head (no intermediate text).
fn write_node(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(_) => push_ip(out, ip),
        IpAddr::V6(ip) => {
            let _ = write!(out, "\"[{ip}]\"");
        }
    }
}

/// `ip` as text. An IPv4 address, in three fields of every forwarded request, is written
/// from a table of the 256 octets: through `Display`, each took about a thousand instructions
/// (issue 16), digit by digit about a hundred (issue 17).
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            let mut text = [0u8; 16];
            let len = ipv4_text(ip.octets(), &mut text);
            out.extend_from_slice(text.get(..len).unwrap_or_default());
        }
        IpAddr::V6(ip) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// Each octet's decimal digits followed by a dot, left-aligned in four bytes, and how many of
/// the four bytes they take.
const OCTET_TEXTS: [([u8; 4], u8); 256] = {
    let mut texts = [([0u8; 4], 0u8); 256];
    let mut octet = 0;
    while octet < 256 {
        let mut text = [0u8; 4];
        let mut len = 0;
        if octet >= 100 {
            text[len] = b'0' + (octet / 100) as u8;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + (octet / 10 % 10) as u8;
            len += 1;
        }
        text[len] = b'0' + (octet % 10) as u8;
        text[len + 1] = b'.';
        texts[octet] = (text, len as u8 + 2);
        octet += 1;
    }
    texts
};

/// Writes the dotted decimal text of `octets` into `text` (15 bytes at most, and the room of
/// one more four-byte copy) and returns its length: each octet is one copy of four bytes from
/// [`OCTET_TEXTS`], the dot after the last one left out.
fn ipv4_text(octets: [u8; 4], text: &mut [u8; 16]) -> usize {
    let mut len = 0;
    for octet in octets {
        let (digits, count) = OCTET_TEXTS[usize::from(octet)];
        // At most 12 bytes before the last octet: the four bytes always fit.
        if let Some(slot) = text.get_mut(len..len + 4) {
            slot.copy_from_slice(&digits);
        }
        len += usize::from(count);
    }
    len.saturating_sub(1)
}

/// `value` in decimal.
fn push_decimal(out: &mut Vec<u8>, value: u16) {
    let mut digits = [b'0'; 5];
    let mut rest = value;
    let mut count = 0;
    for slot in digits.iter_mut().rev() {
        // The remainder of a division by 10 is one digit.
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        count += 1;
        if rest == 0 {
            break;
        }
    }
    let start = digits.len().saturating_sub(count);
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Writes the response head to send to the client.
pub fn write_response_head(
    buf: &[u8],
    head: &ResponseHead,
    headers: &[Header],
    edits: &ResponseEdits<'_>,
    out: &mut Vec<u8>,
) {
    out.clear();
    let mut kept = KeptLines::default();
    match status_line_as_is(buf, head) {
        // Kept as it came, with the field lines kept after it.
        Some(line) => kept.run = line,
        None => {
            out.extend_from_slice(b"HTTP/1.1 ");
            push_decimal(out, head.status);
            out.push(b' ');
            out.extend_from_slice(head.reason.slice(buf));
            out.extend_from_slice(b"\r\n");
        }
    }
    let mut has_hsts = false;
    for header in headers {
        let name = header.name.slice(buf);
        let keep = match header.kind {
            HeaderKind::Upgrade => edits.upgrade,
            HeaderKind::TransferEncoding => !edits.client_http10,
            _ => {
                !is_hop_by_hop(header)
                    && !name.eq_ignore_ascii_case(edits.request_id_header.as_bytes())
            }
        };
        if !keep || is_ruled(name, edits.rules, HeaderPosition::Response) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"strict-transport-security") {
            if edits.hsts.is_some_and(|hsts| hsts.force_replace_backend) {
                continue;
            }
            has_hsts = true;
        }
        kept.add(header.line(), buf, out);
    }
    kept.flush(buf, out);
    if let Some(hsts) = edits.hsts.filter(|hsts| hsts.enabled && !has_hsts) {
        let _ = write!(
            out,
            "Strict-Transport-Security: max-age={}",
            hsts.max_age.as_secs()
        );
        if hsts.include_subdomains {
            out.extend_from_slice(b"; includeSubDomains");
        }
        if hsts.preload {
            out.extend_from_slice(b"; preload");
        }
        out.extend_from_slice(b"\r\n");
    }
    if let Some((name, value)) = edits.set_sticky {
        let _ = write!(out, "Set-Cookie: {name}={value}; Path=/\r\n");
    }
    let connection: &[u8] = if edits.upgrade {
        b"upgrade"
    } else if edits.close {
        b"close"
    } else if edits.client_http10 {
        b"keep-alive"
    } else {
        b""
    };
    write_tail(
        out,
        edits.request_id_header,
        edits.request_id,
        edits.rules,
        HeaderPosition::Response,
        connection,
    );
}

/// Finds the value of cookie `name` in the Cookie fields of a request.
pub fn find_cookie<'b>(buf: &'b [u8], headers: &[Header], name: &str) -> Option<&'b [u8]> {
    headers
        .iter()
        .filter(|header| header.kind == HeaderKind::Cookie)
        .flat_map(|header| header.value.slice(buf).split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (key, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
            (key.trim_ascii() == name.as_bytes())
                .then(|| value.get(1..).unwrap_or_default().trim_ascii())
        })
}

#[cfg(test)]
mod tests;
