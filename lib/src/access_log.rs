//! Access logs: one line per request and per TCP connection, human-readable or JSON, to
//! stdout, a file, or a UDP, TCP or Unix datagram address — or, without a target of their own,
//! through the process's logger at `info` with the target `access`.
//!
//! Lines are formatted into one buffer and written when 32 KiB wait or every 100 ms
//! ([`AccessLog::flush_if_due`]), so logging costs a system call per many requests, not per
//! request. A sink that cannot take more (a full socket) drops lines rather than block the
//! worker.

use std::{
    fmt::Write as _,
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    net::SocketAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sozu_command_lib::config::{AccessLogFormat, LogTarget};

use crate::{log_socket::LogSocket, metrics::RequestRecord};

/// Where lines go.
enum Sink {
    Logger,
    Stdout(io::Stdout),
    File(BufWriter<File>),
    Socket(LogSocket),
}

/// Writes one line per request or TCP connection, in the configured format, to the configured
/// target (the logger, stdout, a file or a socket). Lines are batched and written at most
/// [`FLUSH_INTERVAL`] after they were formatted.
pub struct AccessLog {
    format: AccessLogFormat,
    /// The escapes of text lines: [`COLORED`] or [`PLAIN`].
    palette: &'static Palette,
    sink: Sink,
    /// Formatted lines waiting for the next flush, each ending with a newline.
    pending: String,
    last_flush: Instant,
    clock: Clock,
}

/// Lines wait at most this long before they are written…
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// …or until this many bytes are waiting.
const FLUSH_SIZE: usize = 32 * 1024;

impl AccessLog {
    /// Opens the target (`None`: the process's logger); `colored` text lines carry ANSI
    /// escapes ([`COLORED`]).
    pub fn new(
        target: Option<&LogTarget>,
        format: AccessLogFormat,
        colored: bool,
    ) -> io::Result<AccessLog> {
        let sink = match target {
            None => Sink::Logger,
            Some(LogTarget::Stdout) => Sink::Stdout(io::stdout()),
            Some(LogTarget::File(path)) => Sink::File(BufWriter::new(
                OpenOptions::new().create(true).append(true).open(path)?,
            )),
            Some(target) => match LogSocket::connect(target)? {
                Some(socket) => Sink::Socket(socket),
                None => Sink::Stdout(io::stdout()),
            },
        };
        Ok(AccessLog {
            format,
            palette: if colored { &COLORED } else { &PLAIN },
            sink,
            pending: String::with_capacity(2 * FLUSH_SIZE),
            last_flush: Instant::now(),
            clock: Clock::default(),
        })
    }

    /// Formats the line of a request.
    pub fn log(&mut self, record: &RequestRecord<'_>) {
        if let Sink::Logger = self.sink {
            if !log::log_enabled!(target: "access", log::Level::Info) {
                return;
            }
        }
        let start = self.pending.len();
        match self.format {
            AccessLogFormat::Ascii => {
                write_ascii(&mut self.pending, &mut self.clock, record, self.palette);
            }
            AccessLogFormat::Json => write_json(&mut self.pending, &mut self.clock, record),
        }
        if let Sink::Logger = self.sink {
            let line = self.pending.split_off(start);
            log::info!(target: "access", "{}", line.trim_end());
        }
    }

    /// Writes the waiting lines when enough of them wait, or for long enough.
    pub fn flush_if_due(&mut self, now: Instant) {
        if self.pending.len() >= FLUSH_SIZE
            || now.saturating_duration_since(self.last_flush) >= FLUSH_INTERVAL
        {
            self.flush();
        }
    }

    /// When waiting lines must be written, if any wait.
    pub fn next_flush(&self) -> Option<Instant> {
        (!self.pending.is_empty()).then_some(self.last_flush + FLUSH_INTERVAL)
    }

    /// Writes the lines formatted since the last flush.
    pub fn flush(&mut self) {
        self.last_flush = Instant::now();
        if self.pending.is_empty() {
            return;
        }
        let result = match &mut self.sink {
            Sink::Logger => Ok(()),
            Sink::Stdout(stdout) => stdout.lock().write_all(self.pending.as_bytes()),
            Sink::File(file) => file
                .write_all(self.pending.as_bytes())
                .and_then(|()| file.flush()),
            Sink::Socket(socket) => socket.send_lines(&self.pending),
        };
        if let Err(error) = result {
            log::debug!("access log lines dropped: {error}");
        }
        self.pending.clear();
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The ANSI escapes of a text line.
struct Palette {
    /// Starts bold text.
    bold: &'static str,
    /// Starts dim text.
    dim: &'static str,
    /// Ends bold, dim and colour.
    reset: &'static str,
}

/// No escapes.
const PLAIN: Palette = Palette {
    bold: "",
    dim: "",
    reset: "",
};

/// Sōzu's colours: ids bold, the protocol and request bold with the status in its class's
/// colour, the user agent dim.
const COLORED: Palette = Palette {
    bold: "\x1b[;1m",
    dim: "\x1b[2m",
    reset: "\x1b[m",
};

impl Palette {
    /// The colour of `status` (Sōzu's: 2xx green, 3xx blue, 4xx yellow, 5xx red).
    fn status(&self, status: u16) -> &'static str {
        if self.reset.is_empty() {
            return "";
        }
        match status {
            200..=299 => "\x1b[32m",
            300..=399 => "\x1b[34m",
            400..=499 => "\x1b[33m",
            500..=599 => "\x1b[31m",
            _ => "",
        }
    }
}

/// One datagram per line.
fn write_ascii(out: &mut String, clock: &mut Clock, record: &RequestRecord<'_>, palette: &Palette) {
    let Palette { bold, dim, reset } = palette;
    clock.write(out, SystemTime::now());
    out.push(' ');
    out.push_str(bold);
    out.push_str(record.request_id);
    out.push_str(reset);
    out.push(' ');
    push_address(out, record.client);
    out.push_str(" -> ");
    push_address(out, record.listener);
    out.push(' ');
    out.push_str(bold);
    out.push_str(record.protocol);
    out.push(' ');
    out.push_str(record.cluster_id.unwrap_or("-"));
    out.push('/');
    out.push_str(record.backend_id.unwrap_or("-"));
    if record.method.is_empty() {
        out.push_str(" -");
    } else {
        out.push_str(" \"");
        out.push_str(record.method);
        out.push(' ');
        push_escaped(out, record.host);
        push_escaped(out, record.path);
        out.push('"');
    }
    match record.status {
        Some(status) => {
            out.push(' ');
            out.push_str(palette.status(status));
            push_number(out, u64::from(status));
            out.push_str(reset);
        }
        None => {
            out.push_str(" -");
            out.push_str(reset);
        }
    }
    out.push_str(" in=");
    push_number(out, record.bytes_in);
    out.push_str(" out=");
    push_number(out, record.bytes_out);
    out.push_str(" total=");
    push_millis(out, record.total_time);
    if let Some(connect) = record.connect_time {
        out.push_str(" connect=");
        push_millis(out, connect);
    }
    if let Some(first_byte) = record.first_byte_time {
        out.push_str(" response=");
        push_millis(out, first_byte);
    }
    if !record.user_agent.is_empty() {
        out.push(' ');
        out.push_str(dim);
        out.push('"');
        push_escaped(out, record.user_agent);
        out.push('"');
        out.push_str(reset);
    }
    if !record.faults.is_empty() {
        out.push_str(" fault=\"");
        push_escaped(out, &fault_names(record.faults));
        out.push('"');
    }
    if let Some(decider) = record.decided_by {
        out.push_str(" decided_by=\"");
        push_escaped(out, decider);
        out.push('"');
    }
    if let Some(protocol) = record.backend_protocol {
        let _ = write!(out, " backend_protocol={protocol}");
    }
    out.push('\n');
}

/// A duration in milliseconds with microsecond precision: `1.500ms`.
fn push_millis(out: &mut String, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    push_number(out, micros / 1000);
    out.push('.');
    push_padded(out, micros % 1000, 3);
    out.push_str("ms");
}

/// Request text as printable ASCII: quotes, backslashes and other bytes escaped as
/// [`std::ascii::escape_default`] does. Runs of bytes that need no escape are copied at once.
fn push_escaped(out: &mut String, text: &str) {
    let mut plain_from = 0;
    for (at, byte) in text.bytes().enumerate() {
        if !needs_ascii_escape(byte) {
            continue;
        }
        // A run holds printable ASCII only, so both its ends are character boundaries (an
        // empty run may start inside a character: `get` then gives nothing, as it should).
        out.push_str(text.get(plain_from..at).unwrap_or_default());
        out.extend(std::ascii::escape_default(byte).map(char::from));
        plain_from = at + 1;
    }
    out.push_str(text.get(plain_from..).unwrap_or_default());
}

/// Whether [`std::ascii::escape_default`] changes `byte`.
fn needs_ascii_escape(byte: u8) -> bool {
    !(0x20..0x7f).contains(&byte) || matches!(byte, b'"' | b'\'' | b'\\')
}

/// One JSON object, written field by field into `out` (no intermediate values).
fn write_json(out: &mut String, clock: &mut Clock, record: &RequestRecord<'_>) {
    let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    out.push_str("{\"time\":\"");
    clock.write(out, SystemTime::now());
    out.push('"');
    json_string(out, "request_id", Some(record.request_id));
    out.push_str(",\"client\":\"");
    push_address(out, record.client);
    out.push_str("\",\"listener\":\"");
    push_address(out, record.listener);
    out.push('"');
    json_string(out, "protocol", Some(record.protocol));
    json_string(out, "cluster", record.cluster_id);
    json_string(out, "backend", record.backend_id);
    match record.backend_address {
        Some(address) => {
            out.push_str(",\"backend_address\":\"");
            push_address(out, address);
            out.push('"');
        }
        None => out.push_str(",\"backend_address\":null"),
    }
    json_string(out, "method", Some(record.method).filter(|m| !m.is_empty()));
    json_string(out, "host", Some(record.host).filter(|h| !h.is_empty()));
    json_string(out, "path", Some(record.path).filter(|p| !p.is_empty()));
    json_number(out, "status", record.status.map(u64::from));
    out.push_str(if record.answered_by_proxy {
        ",\"answered_by_proxy\":true"
    } else {
        ",\"answered_by_proxy\":false"
    });
    json_number(out, "bytes_in", Some(record.bytes_in));
    json_number(out, "bytes_out", Some(record.bytes_out));
    json_number(out, "total_us", Some(micros(record.total_time)));
    json_number(out, "connect_us", record.connect_time.map(micros));
    json_number(out, "response_us", record.first_byte_time.map(micros));
    json_string(
        out,
        "user_agent",
        Some(record.user_agent).filter(|a| !a.is_empty()),
    );
    if !record.faults.is_empty() {
        json_string(out, "fault", Some(&fault_names(record.faults)));
    }
    if record.decided_by.is_some() {
        json_string(out, "decided_by", record.decided_by);
    }
    if record.backend_protocol.is_some() {
        json_string(out, "backend_protocol", record.backend_protocol);
    }
    out.push_str("}\n");
}

/// The names of the faults that acted, separated by commas.
fn fault_names(faults: &[std::rc::Rc<str>]) -> String {
    faults
        .iter()
        .map(|name| &**name)
        .collect::<Vec<&str>>()
        .join(",")
}

/// `,"name":"value"` with the value escaped, or `,"name":null`.
fn json_string(out: &mut String, name: &str, value: Option<&str>) {
    json_name(out, name);
    let Some(value) = value else {
        out.push_str("null");
        return;
    };
    out.push('"');
    // Most values need no escape: a byte scan finds them without decoding characters (0xc2
    // leads the C1 controls, U+0080 to U+009F).
    if !value
        .bytes()
        .any(|byte| byte < 0x20 || matches!(byte, b'"' | b'\\' | 0x7f | 0xc2))
    {
        out.push_str(value);
        out.push('"');
        return;
    }
    let mut plain_from = 0;
    for (at, character) in value.char_indices() {
        let escape = match character {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            control if control.is_control() => "",
            _ => continue,
        };
        out.push_str(value.get(plain_from..at).unwrap_or_default());
        plain_from = at + character.len_utf8();
        if escape.is_empty() {
            out.push_str("\\u");
            push_hex(out, u64::from(u32::from(character)), 4);
        } else {
            out.push_str(escape);
        }
    }
    out.push_str(value.get(plain_from..).unwrap_or_default());
    out.push('"');
}

/// `,"name":value`, or `,"name":null`.
fn json_number(out: &mut String, name: &str, value: Option<u64>) {
    json_name(out, name);
    match value {
        Some(value) => push_number(out, value),
        None => out.push_str("null"),
    }
}

/// `,"name":`.
fn json_name(out: &mut String, name: &str) {
    out.push_str(",\"");
    out.push_str(name);
    out.push_str("\":");
}

/// `time` in RFC 3339, UTC, with milliseconds: `2025-11-30T20:30:00.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let mut out = String::with_capacity(24);
    Clock::default().write(&mut out, time);
    out
}

/// RFC 3339 UTC times with milliseconds; the text of the current second is kept, since a
/// busy worker logs many lines in one.
#[derive(Default)]
struct Clock {
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`, empty before the first use.
    text: String,
}

impl Clock {
    fn write(&mut self, out: &mut String, time: SystemTime) {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let seconds = since_epoch.as_secs();
        if self.text.is_empty() || seconds != self.second {
            let days = i64::try_from(seconds / 86_400).unwrap_or(0);
            let (year, month, day) = civil_from_days(days);
            let of_day = seconds % 86_400;
            self.text.clear();
            let _ = write!(
                self.text,
                "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
                of_day / 3600,
                of_day / 60 % 60,
                of_day % 60,
            );
            self.second = seconds;
        }
        out.push_str(&self.text);
        out.push('.');
        push_padded(out, u64::from(since_epoch.subsec_millis()), 3);
        out.push('Z');
    }
}

/// An address as `a.b.c.d:port` (IPv6 as `[..]:port`), without the formatting machinery on
/// the common IPv4 path.
fn push_address(out: &mut String, address: SocketAddr) {
    match address {
        SocketAddr::V4(address) => {
            for (index, octet) in address.ip().octets().iter().enumerate() {
                if index > 0 {
                    out.push('.');
                }
                push_number(out, u64::from(*octet));
            }
            out.push(':');
            push_number(out, u64::from(address.port()));
        }
        SocketAddr::V6(address) => {
            let _ = write!(out, "{address}");
        }
    }
}

fn push_number(out: &mut String, value: u64) {
    push_padded(out, value, 1);
}

/// `value` in decimal, with leading zeros up to `width` digits.
fn push_padded(out: &mut String, value: u64, width: usize) {
    push_digits::<10>(out, value, width);
}

/// `value` in lowercase hexadecimal, with leading zeros up to `width` digits.
pub(crate) fn push_hex(out: &mut String, value: u64, width: usize) {
    push_digits::<16>(out, value, width);
}

/// `value` in `RADIX` (at most 16), with leading zeros up to `width` digits (at most 20). The
/// radix is a constant so that the divisions compile to multiplications.
fn push_digits<const RADIX: u64>(out: &mut String, mut value: u64, width: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    while start > 0 && (value > 0 || digits.len() - start < width.max(1)) {
        start -= 1;
        // The remainder is below `RADIX`, at most 16: it indexes `DIGITS`.
        if let (Some(slot), Some(&digit)) =
            (digits.get_mut(start), DIGITS.get((value % RADIX) as usize))
        {
            *slot = digit;
        }
        value /= RADIX;
    }
    // Only ASCII digits were written.
    out.push_str(std::str::from_utf8(digits.get(start..).unwrap_or_default()).unwrap_or_default());
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RequestRecord<'static> {
        RequestRecord {
            listener: "127.0.0.1:8080".parse().unwrap(),
            client: "203.0.113.5:40000".parse().unwrap(),
            protocol: "HTTP",
            cluster_id: Some("api"),
            backend_id: Some("api-1"),
            backend_address: Some("127.0.0.1:9000".parse().unwrap()),
            method: "GET",
            host: "example.com",
            path: "/a\"b",
            status: Some(200),
            answered_by_proxy: false,
            bytes_in: 120,
            bytes_out: 4567,
            connect_time: Some(Duration::from_micros(250)),
            first_byte_time: Some(Duration::from_micros(1200)),
            total_time: Duration::from_micros(1500),
            user_agent: "curl/8.0",
            request_id: "req-1",
            faults: &[],
            decided_by: None,
            backend_protocol: None,
        }
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_422), (2025, 11, 30));
        let mut out = String::new();
        let mut clock = Clock::default();
        clock.write(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_764_460_800_123),
        );
        clock.write(
            &mut out,
            UNIX_EPOCH + Duration::from_millis(1_764_460_801_004),
        );
        assert_eq!(out, "2025-11-30T00:00:00.123Z2025-11-30T00:00:01.004Z");
    }

    #[test]
    fn addresses_are_written_like_display() {
        for address in [
            "0.0.0.0:0",
            "203.0.113.5:40000",
            "255.255.255.255:65535",
            "[::1]:8080",
        ] {
            let address: SocketAddr = address.parse().unwrap();
            let mut out = String::new();
            push_address(&mut out, address);
            assert_eq!(out, address.to_string());
        }
    }

    #[test]
    fn ascii_line_has_every_field() {
        let mut out = String::new();
        write_ascii(&mut out, &mut Clock::default(), &record(), &PLAIN);
        let line = out.split_once(' ').unwrap().1;
        assert_eq!(
            line,
            "req-1 203.0.113.5:40000 -> 127.0.0.1:8080 HTTP api/api-1 \"GET example.com/a\\\"b\" 200 in=120 out=4567 total=1.500ms connect=0.250ms response=1.200ms \"curl/8.0\"\n"
        );
    }

    #[test]
    fn colored_line_has_sozus_escapes() {
        let mut record = record();
        let mut lines = Vec::new();
        for status in [Some(200), Some(302), Some(404), Some(503), None] {
            record.status = status;
            let mut out = String::new();
            write_ascii(&mut out, &mut Clock::default(), &record, &COLORED);
            lines.push(out.split_once(' ').unwrap().1.to_string());
        }
        assert_eq!(
            lines[0],
            "\x1b[;1mreq-1\x1b[m 203.0.113.5:40000 -> 127.0.0.1:8080 \x1b[;1mHTTP api/api-1 \"GET example.com/a\\\"b\" \x1b[32m200\x1b[m in=120 out=4567 total=1.500ms connect=0.250ms response=1.200ms \x1b[2m\"curl/8.0\"\x1b[m\n"
        );
        for (line, status) in lines[1..].iter().zip([
            "\x1b[34m302\x1b[m",
            "\x1b[33m404\x1b[m",
            "\x1b[31m503\x1b[m",
            "\" -\x1b[m",
        ]) {
            assert!(line.contains(status), "{line:?}");
        }
        // Without colours, the same line has no escape at all.
        let mut out = String::new();
        write_ascii(&mut out, &mut Clock::default(), &record, &PLAIN);
        assert!(!out.contains('\x1b'), "{out:?}");
    }

    #[test]
    fn json_line_parses() {
        let mut out = String::new();
        write_json(&mut out, &mut Clock::default(), &record());
        let value: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(value["status"], 200);
        assert_eq!(value["path"], "/a\"b");
        assert_eq!(value["cluster"], "api");
        assert_eq!(value["connect_us"], 250);
        assert!(value["time"].as_str().unwrap().ends_with('Z'));
    }

    /// Texts with every kind of byte the escapes handle: quotes, backslashes, C0 and C1
    /// controls, DEL, multi-byte characters at both ends and between escapes.
    const AWKWARD: [&str; 7] = [
        "",
        "plain/path?q=1",
        "\"quoted\" \\ back'slash",
        "\u{0}\t\r\n\u{1f}\u{7f}",
        "é/ü\u{85}\u{9f}x",
        "日本\"語",
        "a\u{1}b\u{2028}c😀",
    ];

    #[test]
    fn ascii_escapes_are_those_of_escape_default() {
        for text in AWKWARD {
            let mut out = String::new();
            push_escaped(&mut out, text);
            let expected: String = text
                .bytes()
                .flat_map(std::ascii::escape_default)
                .map(char::from)
                .collect();
            assert_eq!(out, expected, "{text:?}");
        }
    }

    #[test]
    fn json_strings_round_trip_and_escape_controls() {
        for text in AWKWARD {
            let mut out = String::from("{\"x\":0");
            json_string(&mut out, "text", Some(text));
            out.push('}');
            let value: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(value["text"], text, "{out}");
            assert!(!out.chars().any(char::is_control), "{out:?}");
        }
        let mut out = String::new();
        json_string(&mut out, "c1", Some("\u{85}"));
        assert_eq!(out, ",\"c1\":\"\\u0085\"");
    }

    #[test]
    fn numbers_are_written_like_display() {
        for value in [0, 7, 10, 999, 1000, 65_535, u64::MAX] {
            let mut out = String::new();
            push_number(&mut out, value);
            assert_eq!(out, value.to_string());
            out.clear();
            push_padded(&mut out, value, 3);
            assert_eq!(out, format!("{value:03}"));
            out.clear();
            push_hex(&mut out, value, 8);
            assert_eq!(out, format!("{value:08x}"));
        }
        let mut out = String::new();
        push_millis(&mut out, Duration::from_micros(1_002_030));
        assert_eq!(out, "1002.030ms");
    }

    #[test]
    fn file_sink_writes_at_flush() {
        let directory = std::env::temp_dir().join(format!("sozu-access-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join("access.log");
        let mut log = AccessLog::new(
            Some(&LogTarget::File(path.clone())),
            AccessLogFormat::Json,
            false,
        )
        .unwrap();
        log.log(&record());
        log.log(&record());
        assert_eq!(std::fs::read_to_string(&path).unwrap_or_default(), "");
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        std::fs::remove_dir_all(directory).unwrap();
    }
}
