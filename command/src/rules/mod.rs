//! The rules every value of an order obeys: the range of each number and duration, and the
//! bytes each text may hold. One set of rules for both doors: the configuration loader applies
//! them to the keys of the file (naming the key and its line) and [`check_order`] to every
//! order that changes the routing state (naming the field), so the file and the command socket
//! accept exactly the same values, and no order can put on the wire a byte the file refuses.
//!
//! The ranges keep every figure far from the limits of the arithmetic done with it: timeouts
//! end below 2^31 milliseconds (about 24.8 days, HAProxy's ceiling), so an `Instant` plus a
//! timeout never overflows; texts sent in a message head hold no control character, so no
//! order can end a header line early (header injection) or change the framing of a message.
//! `doc/configure.md` and `doc/protocol.md` list the ranges.

use std::fmt;

mod order;

pub use order::{FieldsChecked, InvalidField, check_frontend, check_order};

/// The unit a number is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A duration in whole seconds.
    Seconds,
    /// A duration in milliseconds.
    Milliseconds,
    /// A duration in microseconds.
    Microseconds,
    /// A size in bytes.
    Bytes,
    /// A plain count, or a code.
    None,
}

/// The closed range a number must fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
    /// The unit the value is written in, for messages.
    pub unit: Unit,
}

impl Bounds {
    const fn new(min: u64, max: u64, unit: Unit) -> Self {
        Bounds { min, max, unit }
    }

    /// Whether `value` is within the range, ends included.
    pub fn contains(&self, value: u64) -> bool {
        (self.min..=self.max).contains(&value)
    }

    /// The range in words, as messages show it: `1 to 2147483 seconds`.
    pub fn expected(&self) -> String {
        let unit = match self.unit {
            Unit::Seconds => " seconds",
            Unit::Milliseconds => " milliseconds",
            Unit::Microseconds => " microseconds",
            Unit::Bytes => " bytes",
            Unit::None => "",
        };
        format!("{} to {}{unit}", self.min, self.max)
    }
}

/// Longest timeout, in seconds: just under 2^31 milliseconds.
const MAX_TIMEOUT_SECONDS: u64 = 2_147_483;

/// Every timeout: listeners' `front_timeout`, `back_timeout`, `connect_timeout` and
/// `request_timeout`, `worker_timeout`, and a health check's `interval` and `timeout`.
pub const TIMEOUT: Bounds = Bounds::new(1, MAX_TIMEOUT_SECONDS, Unit::Seconds);
/// Seconds sent to clients in a header (`Retry-After`, HSTS `max-age`): a delta-seconds that
/// every cache can represent (RFC 9111 §1.2.2).
pub const HEADER_SECONDS: Bounds = Bounds::new(0, 2_147_483_647, Unit::Seconds);
/// How long the command line waits for an answer; 0 waits without limit.
pub const CTL_COMMAND_TIMEOUT: Bounds = Bounds::new(0, 2_147_483_647, Unit::Milliseconds);
/// Probes in a row that move a backend in or out.
pub const HEALTH_THRESHOLD: Bounds = Bounds::new(1, 1_000, Unit::None);
/// A backend's share of traffic; 0 sends it nothing.
pub const WEIGHT: Bounds = Bounds::new(0, 1_000_000, Unit::None);
/// Connections from one client address to one cluster; 0 is no cap.
pub const MAX_CONNECTIONS_PER_IP: Bounds = Bounds::new(0, 1_048_576, Unit::None);
/// How long a cluster holds connections while it has no backend; 0 does not hold.
pub const HOLD_TIMEOUT: Bounds = Bounds::new(0, MAX_TIMEOUT_SECONDS, Unit::Seconds);
/// Connections and requests held at once for one cluster in one worker.
pub const MAX_HELD: Bounds = Bounds::new(0, 1_048_576, Unit::None);
/// A TCP port a client is sent to (`https_redirect_port`, `rewrite_port`).
pub const PORT: Bounds = Bounds::new(1, 65_535, Unit::None);
/// TLS 1.3 session tickets sent after a handshake.
pub const TLS13_TICKETS: Bounds = Bounds::new(0, 16, Unit::None);
/// The status of an answer frontend: a final status.
pub const ANSWER_STATUS: Bounds = Bounds::new(200, 599, Unit::None);
/// The status a healthy backend answers (0 takes any 2xx).
pub const EXPECTED_STATUS: Bounds = Bounds::new(100, 599, Unit::None);
/// Workers of a proxy.
pub const WORKER_COUNT: Bounds = Bounds::new(1, 1_024, Unit::None);
/// Sessions of a worker.
pub const MAX_CONNECTIONS: Bounds = Bounds::new(1, 1_048_576, Unit::None);
/// Buffers of a worker's pool.
pub const MAX_BUFFERS: Bounds = Bounds::new(1, 1_048_576, Unit::None);
/// One buffer of a session: a request head must fit in it.
pub const BUFFER_SIZE: Bounds = Bounds::new(1_024, 1_048_576, Unit::Bytes);
/// One read of the command channel.
pub const COMMAND_BUFFER_SIZE: Bounds = Bounds::new(1_024, 16_777_216, Unit::Bytes);
/// The largest message of the command channel.
pub const MAX_COMMAND_BUFFER_SIZE: Bounds = Bounds::new(1_024, 268_435_456, Unit::Bytes);
/// `h2_graceful_shutdown_deadline_seconds`: zero means no deadline.
pub const H2_SHUTDOWN_DEADLINE: Bounds = Bounds::new(0, MAX_TIMEOUT_SECONDS, Unit::Seconds);

/// The range of a numeric `h2_*` key ([`crate::request::H2_NUMBER_KEYS`]).
pub fn h2_bounds(key: &str) -> Bounds {
    match key {
        "h2_max_continuation_frames" => Bounds::new(0, 10_000, Unit::None),
        "h2_max_glitch_count"
        | "h2_max_rst_stream_lifetime"
        | "h2_max_rst_stream_abusive_lifetime"
        | "h2_max_rst_stream_emitted_lifetime" => Bounds::new(1, 1_000_000_000, Unit::None),
        // At least the default window of RFC 9113 §6.9.2, at most 2^31-1.
        "h2_initial_connection_window" => Bounds::new(65_535, 2_147_483_647, Unit::Bytes),
        "h2_max_concurrent_streams" => Bounds::new(1, 100_000, Unit::None),
        "h2_stream_shrink_ratio" => Bounds::new(2, 64, Unit::None),
        "h2_max_header_list_size" => Bounds::new(1_024, 16_777_216, Unit::Bytes),
        "h2_max_header_table_size" => Bounds::new(0, 1_048_576, Unit::Bytes),
        "h2_max_header_fields" => Bounds::new(1, 10_000, Unit::None),
        // The per-window caps.
        _ => Bounds::new(1, 1_000_000, Unit::None),
    }
}

/// The capacity of a splice pipe, in bytes; 0 keeps the kernel's.
pub const SPLICE_PIPE_CAPACITY: Bounds = Bounds::new(0, 268_435_456, Unit::Bytes);
/// The least HTTP/1 body left after its head that is spliced, in bytes; 0 splices none.
pub const SPLICE_MIN_BODY: Bounds = Bounds::new(0, 1 << 40, Unit::Bytes);
/// How many first bytes of a TCP connection content routing inspects (the session's buffer
/// bounds it too).
pub const INSPECT_BYTES: Bounds = Bounds::new(1, 1_048_576, Unit::Bytes);
/// The longest routing script's source, in bytes.
const MAX_SCRIPT: usize = 1_048_576;

/// The lease of a fault: at most a week, so that a forgotten fault ends by itself.
pub const FAULT_TTL: Bounds = Bounds::new(1, 604_800, Unit::Seconds);
/// The delays and timeouts of a fault: below 2^31 milliseconds, as every timeout.
pub const FAULT_MILLISECONDS: Bounds = Bounds::new(0, 2_147_483_647, Unit::Milliseconds);
/// The delay between the slices of a `slicer` fault.
pub const FAULT_MICROSECONDS: Bounds = Bounds::new(0, 2_147_483_647, Unit::Microseconds);
/// The rate of a `bandwidth` fault, in kilobytes per second (up to 100 GB/s).
pub const FAULT_RATE: Bounds = Bounds::new(1, 100_000_000, Unit::None);
/// The average slice of a `slicer` fault.
pub const FAULT_SLICE: Bounds = Bounds::new(1, 16_777_216, Unit::Bytes);
/// The bytes a `limit_data` fault lets through (up to 1 PB).
pub const FAULT_BYTES: Bounds = Bounds::new(0, 1_000_000_000_000_000, Unit::Bytes);
/// The failures of a `transient` fault.
pub const FAULT_COUNT: Bounds = Bounds::new(1, 1_000_000_000, Unit::None);

/// Which bytes a text may hold, and how long it may be.
#[derive(Debug, Clone, Copy)]
pub struct TextRule {
    /// The shortest text accepted, in bytes.
    pub min_len: usize,
    /// The longest text accepted, in bytes.
    pub max_len: usize,
    allowed: fn(u8) -> bool,
    /// The first byte, when it is fixed.
    first: Option<u8>,
    /// What the text must be, in words.
    pub expected: &'static str,
}

impl TextRule {
    /// `Ok` when `text` obeys the rule, otherwise what the text must be, in words.
    pub fn check(&self, text: &str) -> Result<(), &'static str> {
        let fits = (self.min_len..=self.max_len).contains(&text.len())
            && text.bytes().all(self.allowed)
            && self
                .first
                .is_none_or(|first| text.as_bytes().first() == Some(&first));
        if fits { Ok(()) } else { Err(self.expected) }
    }
}

/// A `tchar` of RFC 9110 §5.6.2.
pub fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A byte of a field value (RFC 9110 §5.5): visible characters, space, tab and obs-text.
pub fn is_field_value_byte(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || byte.is_ascii_graphic() || byte >= 0x80
}

fn is_not_control(byte: u8) -> bool {
    !byte.is_ascii_control()
}

fn is_visible_ascii(byte: u8) -> bool {
    byte.is_ascii_graphic()
}

/// A `cookie-octet` of RFC 6265 §4.1.1.
fn is_cookie_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && !matches!(byte, b'"' | b',' | b';' | b'\\')
}

/// A `qdtext` of RFC 9110 §5.6.4: what a quoted string holds without escapes.
fn is_quoted_text_byte(byte: u8) -> bool {
    is_field_value_byte(byte) && !matches!(byte, b'"' | b'\\')
}

/// A byte of a request target in origin form, fragment excluded.
fn is_target_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && byte != b'#'
}

/// Cluster and backend ids.
pub const IDENTIFIER: TextRule = TextRule {
    min_len: 1,
    max_len: 255,
    allowed: is_not_control,
    first: None,
    expected: "1 to 255 bytes without control characters",
};
/// Header names, methods and cookie names.
pub const TOKEN: TextRule = TextRule {
    min_len: 1,
    max_len: 255,
    allowed: is_token_byte,
    first: None,
    expected: "a name of 1 to 255 letters, digits and !#$%&'*+-.^_`|~",
};
/// A header value set by an order; an empty value deletes the header.
pub const HEADER_VALUE: TextRule = TextRule {
    min_len: 0,
    max_len: 8_192,
    allowed: is_field_value_byte,
    first: None,
    expected: "at most 8192 bytes of visible characters, spaces and tabs (no CR, LF, NUL nor \
               other control character)",
};
/// The value of a sticky cookie.
pub const COOKIE_VALUE: TextRule = TextRule {
    min_len: 1,
    max_len: 255,
    allowed: is_cookie_byte,
    first: None,
    expected: "1 to 255 visible characters other than \" , ; \\",
};
/// The realm of a `WWW-Authenticate` header, sent in a quoted string.
pub const REALM: TextRule = TextRule {
    min_len: 0,
    max_len: 255,
    allowed: is_quoted_text_byte,
    first: None,
    expected: "at most 255 visible characters, spaces and tabs, other than \" and \\",
};
/// The path a health check requests.
pub const HEALTH_CHECK_URI: TextRule = TextRule {
    min_len: 1,
    max_len: 2_048,
    allowed: is_target_byte,
    first: Some(b'/'),
    expected: "a path starting with /, at most 2048 visible characters without #",
};
/// `rewrite_host` and `rewrite_path`: sent in a request line, a Host or a Location.
pub const TEMPLATE: TextRule = TextRule {
    min_len: 1,
    max_len: 2_048,
    allowed: is_visible_ascii,
    first: None,
    expected: "1 to 2048 visible ASCII characters (no space nor control character)",
};
/// The value of a path rule.
pub const PATH_RULE: TextRule = TextRule {
    min_len: 0,
    max_len: 2_048,
    allowed: is_not_control,
    first: None,
    expected: "at most 2048 bytes without control characters",
};
/// Tags, and the names a certificate is served for.
pub const LABEL: TextRule = TextRule {
    min_len: 0,
    max_len: 1_024,
    allowed: is_not_control,
    first: None,
    expected: "at most 1024 bytes without control characters",
};
/// The longest custom answer or answer body, in bytes.
pub const MAX_ANSWER: usize = 1 << 20;

/// Fields the proxy writes itself to frame a message and run its connections: header rules
/// and the request id header cannot set them.
const PROXY_FIELDS: [&str; 7] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// A header name an order may set on forwarded messages: a token the proxy does not write
/// itself.
pub fn check_edited_header_name(name: &str) -> Result<(), &'static str> {
    TOKEN.check(name)?;
    if PROXY_FIELDS
        .iter()
        .any(|field| field.eq_ignore_ascii_case(name))
    {
        return Err(
            "a header name other than Connection, Content-Length, Keep-Alive, \
                    Proxy-Connection, TE, Transfer-Encoding and Upgrade, which the proxy \
                    writes itself",
        );
    }
    Ok(())
}

/// An ALPN protocol offered by an HTTPS listener: `h2` or `http/1.1`.
pub fn check_alpn_protocol(protocol: &str) -> Result<(), &'static str> {
    match protocol {
        "h2" | "http/1.1" => Ok(()),
        _ => Err("protocols among \"h2\" and \"http/1.1\""),
    }
}

/// An `authorized_hashes` entry: `user:` then a SHA-256 in 64 hexadecimal digits.
pub fn check_authorized_hash(entry: &str) -> Result<(), &'static str> {
    let valid = entry.split_once(':').is_some_and(|(user, hash)| {
        IDENTIFIER.check(user).is_ok()
            && hash.len() == 64
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if valid {
        Ok(())
    } else {
        Err("\"user:sha256hex\" with a user of 1 to 255 bytes and 64 hexadecimal digits")
    }
}

impl fmt::Display for Bounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rules_cannot_reframe_a_message() {
        for name in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Upgrade",
        ] {
            assert!(check_edited_header_name(name).is_err(), "{name}");
        }
        assert!(check_edited_header_name("X-Forwarded-Host").is_ok());
    }
}
