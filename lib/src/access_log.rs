//! Access logs: one line per request and per TCP connection, human-readable or JSON, to
//! stdout, a file, or a UDP, TCP or Unix datagram address — or, without a target of their own,
//! through the process's logger at `info` with the target `access`.
//!
//! Lines are formatted into one buffer and written when 32 KiB wait or every 100 ms
//! ([`AccessLog::flush_if_due`]), so logging costs a system call per many requests, not per
//! request. A sink that cannot take more (a full socket) drops lines rather than block the
//! worker.
//!
//! Formatting is on every request's path, so it works on bytes: texts are copied whole when
//! they need no escape (checked eight bytes at a time), numbers are written without the
//! formatting machinery, and what consecutive lines repeat (the time of the current
//! millisecond, the text of each IP address) is kept rather than written again.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    net::SocketAddr,
    ops::Range,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sozu_command_lib::config::{AccessLogFormat, LogTarget};

use crate::{log_socket::LogSocket, metrics::RequestRecord};

/// Where lines go.
enum Sink {
    Logger,
    Stdout(io::Stdout),
    File(File),
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
    /// Formatted lines waiting for the next flush, each ending with a newline. UTF-8: every
    /// text in them comes from a `&str`, cut only around ASCII bytes.
    pending: Vec<u8>,
    last_flush: Instant,
    texts: Texts,
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
            Some(LogTarget::File(path)) => {
                Sink::File(OpenOptions::new().create(true).append(true).open(path)?)
            }
            Some(target) => match LogSocket::connect(target)? {
                Some(socket) => Sink::Socket(socket),
                None => Sink::Stdout(io::stdout()),
            },
        };
        Ok(AccessLog {
            format,
            palette: if colored { &COLORED } else { &PLAIN },
            sink,
            pending: Vec::with_capacity(2 * FLUSH_SIZE),
            last_flush: Instant::now(),
            texts: Texts::default(),
        })
    }

    /// Whether a line logged now is written: always, but through the process's logger, which
    /// may leave out the `access` target.
    pub fn writes_lines(&self) -> bool {
        match self.sink {
            Sink::Logger => log::log_enabled!(target: "access", log::Level::Info),
            Sink::Stdout(_) | Sink::File(_) | Sink::Socket(_) => true,
        }
    }

    /// Formats the line of a request.
    pub fn log(&mut self, record: &RequestRecord<'_>) {
        if !self.writes_lines() {
            return;
        }
        let start = self.pending.len();
        let now = SystemTime::now();
        match self.format {
            AccessLogFormat::Ascii => {
                write_ascii(
                    &mut self.pending,
                    &mut self.texts,
                    now,
                    record,
                    self.palette,
                );
            }
            AccessLogFormat::Json => write_json(&mut self.pending, &mut self.texts, now, record),
        }
        if let Sink::Logger = self.sink {
            let line = self.pending.get(start..).unwrap_or_default();
            log::info!(target: "access", "{}", String::from_utf8_lossy(line).trim_end());
            self.pending.truncate(start);
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
            Sink::Stdout(stdout) => stdout.lock().write_all(&self.pending),
            Sink::File(file) => file.write_all(&self.pending),
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

/// What consecutive lines repeat, kept between them: the time of the current millisecond
/// and the text of the last IP address of each address field.
#[derive(Default)]
struct Texts {
    clock: Clock,
    client: IpText,
    listener: IpText,
    backend: IpText,
}

/// The text line of `record`, logged at `now`.
fn write_ascii(
    out: &mut Vec<u8>,
    texts: &mut Texts,
    now: SystemTime,
    record: &RequestRecord<'_>,
    palette: &Palette,
) {
    let bold = palette.bold.as_bytes();
    let dim = palette.dim.as_bytes();
    let reset = palette.reset.as_bytes();
    texts.clock.write(out, now);
    out.push(b' ');
    out.extend_from_slice(bold);
    out.extend_from_slice(record.request_id.as_bytes());
    out.extend_from_slice(reset);
    out.push(b' ');
    texts.client.write(out, record.client);
    out.extend_from_slice(b" -> ");
    texts.listener.write(out, record.listener);
    out.push(b' ');
    out.extend_from_slice(bold);
    out.extend_from_slice(record.protocol.as_bytes());
    out.push(b' ');
    out.extend_from_slice(record.cluster_id.unwrap_or("-").as_bytes());
    out.push(b'/');
    out.extend_from_slice(record.backend_id.unwrap_or("-").as_bytes());
    if record.method.is_empty() {
        out.extend_from_slice(b" -");
    } else {
        out.extend_from_slice(b" \"");
        out.extend_from_slice(record.method.as_bytes());
        out.push(b' ');
        push_escaped(out, record.host);
        push_escaped(out, record.path);
        out.push(b'"');
    }
    match record.status {
        Some(status) => {
            out.push(b' ');
            out.extend_from_slice(palette.status(status).as_bytes());
            push_number(out, u64::from(status));
            out.extend_from_slice(reset);
        }
        None => {
            out.extend_from_slice(b" -");
            out.extend_from_slice(reset);
        }
    }
    out.extend_from_slice(b" in=");
    push_number(out, record.bytes_in);
    out.extend_from_slice(b" out=");
    push_number(out, record.bytes_out);
    out.extend_from_slice(b" total=");
    push_millis(out, record.total_time);
    if let Some(connect) = record.connect_time {
        out.extend_from_slice(b" connect=");
        push_millis(out, connect);
    }
    if let Some(first_byte) = record.first_byte_time {
        out.extend_from_slice(b" response=");
        push_millis(out, first_byte);
    }
    if !record.user_agent.is_empty() {
        out.push(b' ');
        out.extend_from_slice(dim);
        out.push(b'"');
        push_escaped(out, record.user_agent);
        out.push(b'"');
        out.extend_from_slice(reset);
    }
    if !record.faults.is_empty() {
        out.extend_from_slice(b" fault=\"");
        for_each_fault(record.faults, |name| push_escaped(out, name));
        out.push(b'"');
    }
    if let Some(decider) = record.decided_by {
        out.extend_from_slice(b" decided_by=\"");
        push_escaped(out, decider);
        out.push(b'"');
    }
    if let Some(protocol) = record.backend_protocol {
        out.extend_from_slice(b" backend_protocol=");
        out.extend_from_slice(protocol.as_bytes());
    }
    out.push(b'\n');
}

/// Calls `write` with the name of each fault that acted, and with the commas between them.
fn for_each_fault(faults: &[std::rc::Rc<str>], mut write: impl FnMut(&str)) {
    for (index, name) in faults.iter().enumerate() {
        if index > 0 {
            write(",");
        }
        write(name);
    }
}

/// A duration in milliseconds with microsecond precision: `1.500ms`. Written as the count
/// of microseconds, of four digits at least, whose last three then move after the point.
fn push_millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    push_padded(out, micros, 4);
    let [a, b, c] = out.last_chunk().copied().unwrap_or([b'0'; 3]);
    out.truncate(out.len().saturating_sub(3));
    out.extend_from_slice(&[b'.', a, b, c, b'm', b's']);
}

/// Request text as printable ASCII: quotes, backslashes and other bytes escaped as
/// [`std::ascii::escape_default`] does. Text that needs no escape (most) is copied as it is
/// checked.
#[inline(always)]
fn push_escaped(out: &mut Vec<u8>, text: &str) {
    if !copy_if_plain::<b'\''>(out, text.as_bytes()) {
        push_ascii_escapes(out, text.as_bytes());
    }
}

/// `bytes`, each as [`std::ascii::escape_default`] writes it.
#[cold]
fn push_ascii_escapes(out: &mut Vec<u8>, bytes: &[u8]) {
    for &byte in bytes {
        if needs_ascii_escape(byte) {
            out.extend(std::ascii::escape_default(byte));
        } else {
            out.push(byte);
        }
    }
}

/// Whether [`std::ascii::escape_default`] changes `byte`.
fn needs_ascii_escape(byte: u8) -> bool {
    !(0x20..0x7f).contains(&byte) || matches!(byte, b'"' | b'\'' | b'\\')
}

/// Copies `bytes` to the end of `out` when none of them is a byte that either format may
/// escape ([`word_to_escape`], with `ALSO`), and says whether it did; `out` is left as it was
/// otherwise. Eight bytes at a time: a text of eight bytes or more ends with a word that
/// overlaps the one before it (written again, over the same bytes), a shorter one is one
/// word padded with a plain byte, so no text costs a call to `memcpy`.
#[inline(always)]
fn copy_if_plain<const ALSO: u8>(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    let start = out.len();
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        if word_to_escape::<ALSO>(word) {
            out.truncate(start);
            return false;
        }
        out.extend_from_slice(&word);
    }
    let tail = chunks.remainder();
    if tail.is_empty() {
        return true;
    }
    // The last word: the text's last eight bytes, of which those before the tail are
    // written already (and are written again, over themselves); or the whole short text,
    // padded with a plain byte that is then dropped (gathered in a number, in the order of
    // the bytes in memory, since a loop of byte copies would become a call to `memcpy`).
    let padding = 8 - tail.len();
    let (word, rewind, excess) = match bytes.last_chunk::<8>() {
        Some(last) => (*last, padding, 0),
        None => {
            let padded = tail
                .iter()
                .rev()
                .fold(u64::from_le_bytes([b'a'; 8]), |word, &byte| {
                    (word << 8) | u64::from(byte)
                });
            (padded.to_le_bytes(), 0, padding)
        }
    };
    if word_to_escape::<ALSO>(word) {
        out.truncate(start);
        return false;
    }
    out.truncate(out.len().saturating_sub(rewind));
    out.extend_from_slice(&word);
    out.truncate(out.len().saturating_sub(excess));
    true
}

/// Whether `word` holds a byte that either format may escape: a control (below 0x20 or DEL),
/// a quote, a backslash, `ALSO`, or any byte of a multi-byte character. With the bit tricks
/// of "Bit Twiddling Hacks", each giving a high bit in a byte where it holds (or only
/// after one where it holds, through a carry or a borrow): `x + 1` sets it from 0x7f up,
/// `x - 0x20` borrows into it below 0x20, `x ^ c` is zero where a byte is `c`.
fn word_to_escape<const ALSO: u8>(word: [u8; 8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let word = u64::from_ne_bytes(word);
    let zero_in = |word: u64| word.wrapping_sub(ONES) & !word;
    let found = (word | word.wrapping_add(ONES))
        | (word.wrapping_sub(ONES * 0x20) & !word)
        | zero_in(word ^ (ONES * u64::from(b'"')))
        | zero_in(word ^ (ONES * u64::from(b'\\')))
        | zero_in(word ^ (ONES * u64::from(ALSO)));
    found & HIGHS != 0
}

/// The JSON object of `record`, logged at `now`, written field by field into `out` (no
/// intermediate values).
fn write_json(out: &mut Vec<u8>, texts: &mut Texts, now: SystemTime, record: &RequestRecord<'_>) {
    let micros = |duration: Duration| u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    out.extend_from_slice(b"{\"time\":\"");
    texts.clock.write(out, now);
    out.push(b'"');
    json_string(out, b",\"request_id\":\"", Some(record.request_id));
    out.extend_from_slice(b",\"client\":\"");
    texts.client.write(out, record.client);
    out.extend_from_slice(b"\",\"listener\":\"");
    texts.listener.write(out, record.listener);
    out.push(b'"');
    json_string(out, b",\"protocol\":\"", Some(record.protocol));
    json_string(out, b",\"cluster\":\"", record.cluster_id);
    json_string(out, b",\"backend\":\"", record.backend_id);
    match record.backend_address {
        Some(address) => {
            out.extend_from_slice(b",\"backend_address\":\"");
            texts.backend.write(out, address);
            out.push(b'"');
        }
        None => out.extend_from_slice(b",\"backend_address\":null"),
    }
    json_string(out, b",\"method\":\"", non_empty(record.method));
    json_string(out, b",\"host\":\"", non_empty(record.host));
    json_string(out, b",\"path\":\"", non_empty(record.path));
    json_number(out, b",\"status\":", record.status.map(u64::from));
    out.extend_from_slice(if record.answered_by_proxy {
        b",\"answered_by_proxy\":true"
    } else {
        b",\"answered_by_proxy\":false"
    });
    json_number(out, b",\"bytes_in\":", Some(record.bytes_in));
    json_number(out, b",\"bytes_out\":", Some(record.bytes_out));
    json_number(out, b",\"total_us\":", Some(micros(record.total_time)));
    json_number(out, b",\"connect_us\":", record.connect_time.map(micros));
    json_number(
        out,
        b",\"response_us\":",
        record.first_byte_time.map(micros),
    );
    json_string(out, b",\"user_agent\":\"", non_empty(record.user_agent));
    if !record.faults.is_empty() {
        out.extend_from_slice(b",\"fault\":\"");
        for_each_fault(record.faults, |name| push_json_escaped(out, name));
        out.push(b'"');
    }
    if record.decided_by.is_some() {
        json_string(out, b",\"decided_by\":\"", record.decided_by);
    }
    if record.backend_protocol.is_some() {
        json_string(out, b",\"backend_protocol\":\"", record.backend_protocol);
    }
    out.extend_from_slice(b"}\n");
}

/// `text`, or `None` when it is empty (`null` in JSON lines).
fn non_empty(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

/// `name` with the opening quote of its value (`,"name":"`) and the value, escaped, or the
/// name and `null`.
#[inline(always)]
fn json_string(out: &mut Vec<u8>, name: &[u8], value: Option<&str>) {
    let Some(value) = value else {
        out.extend_from_slice(name.split_last().map_or(name, |(_, name)| name));
        out.extend_from_slice(b"null");
        return;
    };
    out.extend_from_slice(name);
    push_json_escaped(out, value);
    out.push(b'"');
}

/// `value` inside a JSON string: quotes, backslashes and controls (C0, DEL and C1) escaped.
#[inline(always)]
fn push_json_escaped(out: &mut Vec<u8>, value: &str) {
    // Most values need no escape: a scan of the bytes finds them without decoding characters.
    if !copy_if_plain::<b'"'>(out, value.as_bytes()) {
        push_json_escapes(out, value);
    }
}

/// `value` inside a JSON string, escaping what needs it, character by character.
#[cold]
fn push_json_escapes(out: &mut Vec<u8>, value: &str) {
    let mut plain_from = 0;
    for (at, character) in value.char_indices() {
        let escape: &[u8] = match character {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\n' => b"\\n",
            '\r' => b"\\r",
            '\t' => b"\\t",
            control if control.is_control() => b"",
            _ => continue,
        };
        // Both ends are character boundaries: `char_indices` gave them.
        out.extend_from_slice(value.as_bytes().get(plain_from..at).unwrap_or_default());
        plain_from = at + character.len_utf8();
        if escape.is_empty() {
            out.extend_from_slice(b"\\u");
            push_digits::<16>(out, u64::from(u32::from(character)), 4);
        } else {
            out.extend_from_slice(escape);
        }
    }
    out.extend_from_slice(value.as_bytes().get(plain_from..).unwrap_or_default());
}

/// `name` (`,"name":`) and the value, or `null`.
#[inline(always)]
fn json_number(out: &mut Vec<u8>, name: &[u8], value: Option<u64>) {
    out.extend_from_slice(name);
    match value {
        Some(value) => push_number(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// `time` in RFC 3339, UTC, with milliseconds: `2025-11-30T20:30:00.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let mut out = Vec::with_capacity(24);
    Clock::default().write(&mut out, time);
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3339 UTC times with milliseconds. The text of the last millisecond is kept, since a
/// busy worker logs many lines in one (a time within it is then only compared with its
/// bounds); only its last digits change within a second.
#[derive(Default)]
struct Clock {
    /// Milliseconds since the epoch of `text`.
    millis: u64,
    /// The times within that millisecond; `None` before the first use.
    within: Option<Range<SystemTime>>,
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` of `millis`, empty before the first use.
    text: Vec<u8>,
}

impl Clock {
    fn write(&mut self, out: &mut Vec<u8>, time: SystemTime) {
        if !self
            .within
            .as_ref()
            .is_some_and(|within| within.contains(&time))
        {
            self.set(time);
        }
        out.extend_from_slice(&self.text);
    }

    fn set(&mut self, time: SystemTime) {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let millis = u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX);
        let new_second = self.text.is_empty() || millis / 1000 != self.millis / 1000;
        if new_second {
            let seconds = millis / 1000;
            let (year, month, day) = civil_from_days(i64::try_from(seconds / 86_400).unwrap_or(0));
            let of_day = seconds % 86_400;
            let text = &mut self.text;
            text.clear();
            push_padded(text, u64::try_from(year).unwrap_or(0), 4);
            for (separator, value) in [
                (b'-', u64::from(month)),
                (b'-', u64::from(day)),
                (b'T', of_day / 3600),
                (b':', of_day / 60 % 60),
                (b':', of_day % 60),
            ] {
                text.push(separator);
                push_padded(text, value, 2);
            }
            text.extend_from_slice(b".000Z");
        }
        // The milliseconds are the three digits before the final `Z`.
        let end = self.text.len().saturating_sub(1);
        self.text.truncate(end.saturating_sub(3));
        push_padded(&mut self.text, millis % 1000, 3);
        self.text.push(b'Z');
        self.millis = millis;
        let start = UNIX_EPOCH.checked_add(Duration::from_millis(millis));
        let end = start.and_then(|start| start.checked_add(Duration::from_millis(1)));
        self.within = start.zip(end).map(|(start, end)| start..end);
    }
}

/// The text of the last address of one field of the lines (IPv6 in brackets, with its
/// scope), kept since consecutive lines mostly repeat it, or repeat its IP address with
/// another port: only the port is then written anew.
#[derive(Default)]
struct IpText {
    /// `text`'s address; `None` before the first use.
    address: Option<SocketAddr>,
    /// The address as its `Display` writes it: `a.b.c.d:port` or `[..]:port`.
    text: Vec<u8>,
    /// The length of the IP part of `text`, up to its colon.
    ip_len: usize,
}

impl IpText {
    #[inline(always)]
    fn write(&mut self, out: &mut Vec<u8>, address: SocketAddr) {
        if self.address != Some(address) {
            self.set(address);
        }
        out.extend_from_slice(&self.text);
    }

    #[inline(never)]
    fn set(&mut self, address: SocketAddr) {
        let same_ip = self.address.is_some_and(|mut kept| {
            kept.set_port(address.port());
            kept == address
        });
        if !same_ip {
            self.text.clear();
            match address {
                SocketAddr::V4(v4) => {
                    for (index, octet) in v4.ip().octets().iter().enumerate() {
                        if index > 0 {
                            self.text.push(b'.');
                        }
                        push_number(&mut self.text, u64::from(*octet));
                    }
                }
                // Writing into a `Vec` cannot fail.
                SocketAddr::V6(v6) => {
                    let _ = match v6.scope_id() {
                        0 => write!(self.text, "[{}]", v6.ip()),
                        scope => write!(self.text, "[{}%{scope}]", v6.ip()),
                    };
                }
            }
            self.text.push(b':');
            self.ip_len = self.text.len();
        }
        self.text.truncate(self.ip_len);
        push_number(&mut self.text, u64::from(address.port()));
        self.address = Some(address);
    }
}

/// `value` in decimal.
#[inline(always)]
fn push_number(out: &mut Vec<u8>, value: u64) {
    push_padded(out, value, 1);
}

/// `value` in decimal, with leading zeros up to `width` digits (at most 20). Two digits at a
/// time, into twenty bytes added at once and then cut to the digits (no call to `memcpy`).
#[inline(always)]
fn push_padded(out: &mut Vec<u8>, mut value: u64, width: usize) {
    let count = (value.checked_ilog10().unwrap_or(0) as usize + 1)
        .max(width)
        .min(20);
    let start = out.len();
    out.extend_from_slice(&[b'0'; 20]);
    let digits = out.get_mut(start..).unwrap_or_default();
    let mut end = count;
    while value >= 10 {
        // Below 100: a pair of `DIGIT_PAIRS`.
        let pair = DIGIT_PAIRS
            .get((value % 100) as usize)
            .unwrap_or(&[b'0'; 2]);
        end = end.saturating_sub(2);
        if let Some(slot) = digits.get_mut(end..end + 2) {
            slot.copy_from_slice(pair);
        }
        value /= 100;
    }
    if value > 0 {
        end = end.saturating_sub(1);
        if let Some(slot) = digits.get_mut(end) {
            // Below 10.
            *slot = b'0' + value as u8;
        }
    }
    out.truncate(start + count);
}

/// The decimal digits of 0 to 99.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[b'0'; 2]; 100];
    let mut value = 0;
    while value < 100 {
        pairs[value] = [b'0' + (value / 10) as u8, b'0' + (value % 10) as u8];
        value += 1;
    }
    pairs
};

/// `value` in lowercase hexadecimal, with leading zeros up to `width` digits (at most 16): the
/// request id's three numbers. The sixteen digits are computed eight at a time ([`hex_word`])
/// and added with one copy: one char at a time, a request id cost about a thousand
/// instructions (issue 17).
pub(crate) fn push_hex(out: &mut Vec<u8>, value: u64, width: usize) {
    let significant = (u64::BITS - value.leading_zeros()).div_ceil(4) as usize;
    let count = significant.max(width).clamp(1, 16);
    let high = hex_word((value >> 32) as u32);
    let low = hex_word(value as u32);
    let mut digits = [0u8; 16];
    let (high_digits, low_digits) = digits.split_at_mut(8);
    high_digits.copy_from_slice(&high.to_be_bytes());
    low_digits.copy_from_slice(&low.to_be_bytes());
    out.extend_from_slice(digits.get(16 - count..).unwrap_or_default());
}

/// The eight lowercase hexadecimal digits of `value`, most significant first in big-endian
/// byte order: each nibble is spread to a byte of its own, then made a digit in all eight
/// bytes at once (`'0' + nibble`, plus `'a' - '0' - 10` for the nibbles from 10).
fn hex_word(value: u32) -> u64 {
    const NIBBLES: u64 = 0x0f0f_0f0f_0f0f_0f0f;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let spread = u64::from(value);
    let spread = (spread | (spread << 16)) & 0x0000_ffff_0000_ffff;
    let spread = (spread | (spread << 8)) & 0x00ff_00ff_00ff_00ff;
    let nibbles = (spread | (spread << 4)) & NIBBLES;
    // A byte's nibble plus 6 reaches 16 (no carry out of the byte) when it is 10 or more.
    let letters = ((nibbles + ONES * 6) >> 4) & ONES;
    nibbles + ONES * u64::from(b'0') + letters * u64::from(b'a' - b'0' - 10)
}

/// `value` in `RADIX`, with leading zeros up to `width` digits.
fn push_digits<const RADIX: u64>(out: &mut Vec<u8>, value: u64, width: usize) {
    let (digits, start) = digits::<RADIX>(value, width);
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// The digits of `value` in `RADIX` (at most 16), with leading zeros up to `width` digits (at
/// most 20), and where they start in the array. The radix is a constant so that the
/// divisions compile to multiplications.
fn digits<const RADIX: u64>(mut value: u64, width: usize) -> ([u8; 20], usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    for slot in digits.iter_mut().rev() {
        if value == 0 && start + width.max(1) <= 20 {
            break;
        }
        // The remainder is below `RADIX`, at most 16: it indexes `DIGITS`.
        *slot = DIGITS
            .get((value % RADIX) as usize)
            .copied()
            .unwrap_or(b'0');
        value /= RADIX;
        start -= 1;
    }
    (digits, start)
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
mod tests;
