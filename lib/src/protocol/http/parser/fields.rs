//! The header section: field line syntax, and what the fields mean for routing, framing
//! and persistence, gathered in [`Fields`] during the one scan.

use super::target;
use super::{
    Authority, BodyFraming, Header, HeaderKind, Limits, Method, Persistence, Span, Stop, Version,
    Violation, is_tchar, is_token, partial, trim_ows,
};

/// Which kind of head the fields belong to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Message {
    Request,
    Response,
}

/// What the field lines of a head said, as far as the proxy cares.
pub(super) struct Fields {
    message: Message,
    pub(super) host: Option<Authority>,
    content_length: Option<u64>,
    has_transfer_encoding: bool,
    is_chunked_seen: bool,
    is_chunked_last: bool,
    has_close: bool,
    has_keep_alive: bool,
    pub(super) is_connection_upgrade: bool,
    pub(super) has_connection_options: bool,
    pub(super) upgrade: Option<Span>,
    pub(super) expects_continue: bool,
}

/// Scans the field lines from `pos` to the empty line that ends the head, pushing each
/// to `headers` and recording it in `fields`. Returns the head length.
pub(super) fn scan(
    buf: &[u8],
    mut pos: usize,
    limits: &Limits,
    request_id_header: &[u8],
    fields: &mut Fields,
    headers: &mut Vec<Header>,
) -> Result<usize, Stop> {
    loop {
        match buf.get(pos..).unwrap_or_default() {
            [b'\r', b'\n', ..] if pos + 2 > limits.max_header_section => {
                return Err(Violation::HeaderSectionTooLarge.into());
            }
            [b'\r', b'\n', ..] => return Ok(pos + 2),
            [] | [b'\r'] => return Err(partial(buf, limits)),
            [b'\r', ..] => return Err(Violation::BareCr.into()),
            [b'\n', ..] => return Err(Violation::BareLf.into()),
            // RFC 9112 §5.2 (obs-fold) and §2.2 (whitespace before the first field line).
            [b' ' | b'\t', ..] => return Err(Violation::ObsFold.into()),
            _ => {}
        }
        if headers.len() >= limits.max_headers {
            return Err(Violation::TooManyHeaders.into());
        }
        let header = match field_line(buf, pos, request_id_header) {
            Err(Stop::Partial) => return Err(partial(buf, limits)),
            line => line?,
        };
        fields.record(buf, &header)?;
        headers.push(header);
        pos = header.line_end;
        if pos > limits.max_header_section {
            return Err(Violation::HeaderSectionTooLarge.into());
        }
    }
}

/// Parses the field line at `start`, which is neither empty nor starting with whitespace.
fn field_line(buf: &[u8], start: usize, request_id_header: &[u8]) -> Result<Header, Stop> {
    let line = buf.get(start..).unwrap_or_default();
    let name_len = field_name_len(line);
    match line.get(name_len..).unwrap_or_default() {
        [b':', ..] if name_len > 0 => {}
        [] => return Err(Stop::Partial),
        [b' ' | b'\t', ..] => return Err(Violation::WhitespaceBeforeColon.into()),
        _ => return Err(Violation::InvalidFieldName.into()),
    }
    let value_start = start + name_len + 1;
    let rest = buf.get(value_start..).unwrap_or_default();
    let raw_len = field_value_len(rest);
    let line_end = match rest.get(raw_len..).unwrap_or_default() {
        [b'\r', b'\n', ..] => value_start + raw_len + 2,
        [] | [b'\r'] => return Err(Stop::Partial),
        [b'\r', ..] => return Err(Violation::BareCr.into()),
        [b'\n', ..] => return Err(Violation::BareLf.into()),
        _ => return Err(Violation::InvalidFieldValue.into()),
    };
    let raw = rest.get(..raw_len).unwrap_or_default();
    let is_ows = |byte: &u8| matches!(byte, b' ' | b'\t');
    let leading = raw.iter().position(|byte| !is_ows(byte)).unwrap_or(raw_len);
    let trimmed_len = raw
        .iter()
        .rposition(|byte| !is_ows(byte))
        .map_or(leading, |last| last + 1);
    let name = Span {
        start,
        end: start + name_len,
    };
    Ok(Header {
        name,
        value: Span {
            start: value_start + leading,
            end: value_start + trimmed_len,
        },
        line_end,
        kind: classify(name.slice(buf), request_id_header),
        is_connection_option: false,
    })
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// The length of the run of `tchar` bytes at the start of `bytes`: it ends at the colon of a
/// field line, at another byte that is not a `tchar` or at the end of `bytes`. Letters, digits
/// and `-`, all the bytes of almost every name, are passed over eight at a time; another byte
/// is looked up in the table.
fn field_name_len(bytes: &[u8]) -> usize {
    run_len(bytes, not_alphanumeric_or_dash, is_tchar)
}

/// The length of the run at the start of `bytes` of the bytes `marks` leaves unmarked in a
/// word and of the marked ones `passes` lets through, read eight bytes at a time: a word
/// without a marked byte is passed over without a branch per byte. `marks` gives the high bit
/// of the bytes to look at, exact for the lowest one at least.
#[inline(always)]
fn run_len(bytes: &[u8], marks: impl Fn(u64) -> u64, passes: impl Fn(u8) -> bool) -> usize {
    let mut len = 0;
    loop {
        let rest = bytes.get(len..).unwrap_or_default();
        let (word, available) = padded_word(rest);
        let marked = marks(word);
        if marked == 0 {
            // Eight bytes of the run (the zero padding is always marked).
            len += 8;
            continue;
        }
        let first = (marked.trailing_zeros() / 8) as usize;
        if first >= available {
            return len + available;
        }
        len += first;
        if !rest.get(first).is_some_and(|&byte| passes(byte)) {
            return len;
        }
        len += 1;
    }
}

/// The first eight bytes of `bytes` as a little-endian word, zero padded, and how many of them
/// are bytes of `bytes`. A zero byte is neither a `tchar` nor a field value byte: a scan stops
/// at the padding.
fn padded_word(bytes: &[u8]) -> (u64, usize) {
    match bytes.first_chunk::<8>() {
        Some(chunk) => (u64::from_le_bytes(*chunk), 8),
        None => {
            let mut word = [0; 8];
            for (padded, &byte) in word.iter_mut().zip(bytes) {
                *padded = byte;
            }
            (u64::from_le_bytes(word), bytes.len())
        }
    }
}

/// The high bit of each byte of `word` that is not an ASCII letter, digit or `-`, exactly: the
/// sums are made on the seven low bits of each byte, which never carry into the next byte.
fn not_alphanumeric_or_dash(word: u64) -> u64 {
    let low = word & !HIGH_BITS;
    // The high bit of each byte of `low` at least `floor`, or above `ceiling`.
    let at_least = |bytes: u64, floor: u8| bytes + ONES * u64::from(0x80 - floor);
    let above = |bytes: u64, ceiling: u8| bytes + ONES * u64::from(0x7f - ceiling);
    let lower = low | (ONES * 0x20);
    let letters = at_least(lower, b'a') & !above(lower, b'z');
    let digits = at_least(low, b'0') & !above(low, b'9');
    let dashes = !above(low ^ (ONES * u64::from(b'-')), 0);
    (!(letters | digits | dashes) & HIGH_BITS) | (word & HIGH_BITS)
}

/// The length of the run of field value bytes (HTAB, SP, VCHAR, obs-text) at the start of
/// `bytes`: it ends at the CR of the line, at an invalid byte or at the end of `bytes`. The
/// lowest control byte of a word is found without a branch per byte; the rare HTAB resumes
/// the scan just after it.
fn field_value_len(bytes: &[u8]) -> usize {
    run_len(bytes, control_bytes, |byte| byte == b'\t')
}

/// The high bit of each byte of `word` below 0x20 or equal to 0x7f (the "has less than"
/// and "has zero" bit tricks). Only the lowest marked byte is exact: a borrow can mark a
/// byte above a matching one, never below.
fn control_bytes(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let del = word ^ (ONES * 0x7f);
    let is_del = del.wrapping_sub(ONES) & !del;
    (below_space | is_del) & HIGH_BITS
}

/// The kind of a field name (a token), compared by length first, then case-insensitively.
fn classify(name: &[u8], request_id_header: &[u8]) -> HeaderKind {
    let is = |known: &[u8]| is_known_name(name, known);
    let kind = match name.len() {
        2 if is(b"te") => HeaderKind::Te,
        4 if is(b"host") => HeaderKind::Host,
        6 if is(b"cookie") => HeaderKind::Cookie,
        6 if is(b"expect") => HeaderKind::Expect,
        7 if is(b"upgrade") => HeaderKind::Upgrade,
        9 if is(b"forwarded") => HeaderKind::Forwarded,
        9 if is(b"x-real-ip") => HeaderKind::XRealIp,
        10 if is(b"connection") => HeaderKind::Connection,
        10 if is(b"keep-alive") => HeaderKind::KeepAlive,
        13 if is(b"authorization") => HeaderKind::Authorization,
        14 if is(b"content-length") => HeaderKind::ContentLength,
        15 if is(b"x-forwarded-for") => HeaderKind::XForwardedFor,
        16 if is(b"proxy-connection") => HeaderKind::ProxyConnection,
        16 if is(b"x-forwarded-port") => HeaderKind::XForwardedPort,
        16 if is(b"x-forwarded-host") => HeaderKind::XForwardedHost,
        17 if is(b"transfer-encoding") => HeaderKind::TransferEncoding,
        17 if is(b"x-forwarded-proto") => HeaderKind::XForwardedProto,
        _ => HeaderKind::Other,
    };
    if kind == HeaderKind::Other && name.eq_ignore_ascii_case(request_id_header) {
        HeaderKind::RequestId
    } else {
        kind
    }
}

/// Whether the token `name` is `known` (lowercase letters and `-`, of the same length) in any
/// case, compared eight bytes at a time: setting bit 5 of each byte lowercases a letter, leaves
/// `-` as it is, and makes no other `tchar` a lowercase letter or `-`.
fn is_known_name(name: &[u8], known: &[u8]) -> bool {
    const LOWERCASE: u64 = ONES * 0x20;
    let (mut name, mut known) = (name, known);
    loop {
        let (name_word, available) = padded_word(name);
        let (known_word, _) = padded_word(known);
        if (name_word | LOWERCASE) != (known_word | LOWERCASE) {
            return false;
        }
        if available < 8 {
            return true;
        }
        name = name.get(8..).unwrap_or_default();
        known = known.get(8..).unwrap_or_default();
    }
}

impl Fields {
    pub(super) fn new(message: Message) -> Self {
        Self {
            message,
            host: None,
            content_length: None,
            has_transfer_encoding: false,
            is_chunked_seen: false,
            is_chunked_last: false,
            has_close: false,
            has_keep_alive: false,
            is_connection_upgrade: false,
            has_connection_options: false,
            upgrade: None,
            expects_continue: false,
        }
    }

    /// Takes note of one field line of a request or a response.
    fn record(&mut self, buf: &[u8], header: &Header) -> Result<(), Violation> {
        let value = header.value.slice(buf);
        match header.kind {
            // Host means nothing in a response.
            HeaderKind::Host if self.message == Message::Response => {}
            HeaderKind::Host if self.host.is_some() => return Err(Violation::DuplicateHost),
            HeaderKind::Host => {
                let host = target::authority(value, header.value.start);
                self.host = Some(host.ok_or(Violation::InvalidHost)?);
            }
            HeaderKind::ContentLength => {
                let length = content_length(value)?;
                if self.content_length.is_some_and(|seen| seen != length) {
                    return Err(Violation::ConflictingContentLength);
                }
                self.content_length = Some(length);
            }
            HeaderKind::TransferEncoding => self.transfer_codings(value)?,
            HeaderKind::Connection => self.connection_options(value)?,
            HeaderKind::Upgrade => {
                self.upgrade.get_or_insert(header.value);
            }
            HeaderKind::Expect => {
                self.expects_continue |= value.eq_ignore_ascii_case(b"100-continue")
            }
            _ => {}
        }
        Ok(())
    }

    fn transfer_codings(&mut self, value: &[u8]) -> Result<(), Violation> {
        self.has_transfer_encoding = true;
        for element in value.split(|&byte| byte == b',') {
            let coding = trim_ows(element);
            if !is_token(coding) {
                return Err(Violation::InvalidTransferEncoding);
            }
            let is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if is_chunked && self.is_chunked_seen {
                return Err(Violation::ChunkedTwice);
            }
            self.is_chunked_seen |= is_chunked;
            self.is_chunked_last = is_chunked;
        }
        Ok(())
    }

    fn connection_options(&mut self, value: &[u8]) -> Result<(), Violation> {
        for element in value.split(|&byte| byte == b',') {
            let option = trim_ows(element);
            if option.is_empty() {
                continue;
            }
            if !is_token(option) {
                return Err(Violation::InvalidConnection);
            }
            match ConnectionOption::of(option) {
                ConnectionOption::Close => self.has_close = true,
                ConnectionOption::KeepAlive => self.has_keep_alive = true,
                ConnectionOption::Upgrade => self.is_connection_upgrade = true,
                ConnectionOption::Other => self.has_connection_options = true,
            }
        }
        Ok(())
    }

    /// The framing of a request body (RFC 9112 §6.3), refusing any doubt.
    pub(super) fn request_framing(&self, version: Version) -> Result<BodyFraming, Violation> {
        match (self.has_transfer_encoding, self.content_length) {
            (false, None) => Ok(BodyFraming::None),
            (false, Some(length)) => Ok(BodyFraming::ContentLength(length)),
            (true, _) if version == Version::Http10 => Err(Violation::TransferEncodingInHttp10),
            (true, Some(_)) => Err(Violation::ContentLengthWithTransferEncoding),
            (true, None) if self.is_chunked_last => Ok(BodyFraming::Chunked),
            (true, None) => Err(Violation::TransferEncodingNotChunked),
        }
    }

    /// The framing of a response body (RFC 9112 §6.3), refusing any doubt.
    pub(super) fn response_framing(
        &self,
        version: Version,
        status: u16,
        request_method: Method,
    ) -> Result<BodyFraming, Violation> {
        if self.has_transfer_encoding {
            if version == Version::Http10 {
                return Err(Violation::TransferEncodingInHttp10);
            }
            if self.content_length.is_some() {
                return Err(Violation::ContentLengthWithTransferEncoding);
            }
        }
        let has_no_body = request_method == Method::Head
            || matches!(status, 100..=199 | 204 | 304)
            // A 2xx to CONNECT turns the connection into a tunnel.
            || (request_method == Method::Connect && matches!(status, 200..=299));
        Ok(match self.content_length {
            _ if has_no_body => BodyFraming::None,
            _ if self.has_transfer_encoding && self.is_chunked_last => BodyFraming::Chunked,
            _ if self.has_transfer_encoding => BodyFraming::UntilClose,
            Some(length) => BodyFraming::ContentLength(length),
            None => BodyFraming::UntilClose,
        })
    }

    /// Persistence by version and Connection options (RFC 9112 §9.3).
    pub(super) fn persistence(&self, version: Version) -> Persistence {
        let is_kept = match version {
            Version::Http11 => !self.has_close,
            Version::Http10 => self.has_keep_alive && !self.has_close,
        };
        if is_kept {
            Persistence::KeepAlive
        } else {
            Persistence::Close
        }
    }
}

/// A Connection option, as the proxy reads it.
enum ConnectionOption {
    Close,
    KeepAlive,
    Upgrade,
    /// Names a hop-by-hop field.
    Other,
}

impl ConnectionOption {
    fn of(option: &[u8]) -> Self {
        if option.eq_ignore_ascii_case(b"close") {
            Self::Close
        } else if option.eq_ignore_ascii_case(b"keep-alive") {
            Self::KeepAlive
        } else if option.eq_ignore_ascii_case(b"upgrade") {
            Self::Upgrade
        } else {
            Self::Other
        }
    }
}

/// Parses a Content-Length value: a comma list of identical decimal numbers.
fn content_length(value: &[u8]) -> Result<u64, Violation> {
    let mut length = None;
    for element in value.split(|&byte| byte == b',') {
        let digits = trim_ows(element);
        if digits.is_empty() {
            return Err(Violation::InvalidContentLength);
        }
        let element_length = digits
            .iter()
            .try_fold(0u64, |sum, &digit| {
                let digit = char::from(digit).to_digit(10)?;
                sum.checked_mul(10)?.checked_add(u64::from(digit))
            })
            .ok_or(Violation::InvalidContentLength)?;
        if length.is_some_and(|seen| seen != element_length) {
            return Err(Violation::ConflictingContentLength);
        }
        length = Some(element_length);
    }
    length.ok_or(Violation::InvalidContentLength)
}

/// Marks the fields named by Connection options as hop-by-hop (RFC 9110 §7.6.1). Only
/// called when some option is not close, keep-alive or upgrade, which is rare.
pub(super) fn mark_connection_options(buf: &[u8], headers: &mut [Header]) {
    for index in 0..headers.len() {
        let Some(connection) = headers
            .get(index)
            .copied()
            .filter(|header| header.kind == HeaderKind::Connection)
        else {
            continue;
        };
        let options = connection.value.slice(buf);
        for option in options.split(|&byte| byte == b',').map(trim_ows) {
            if option.is_empty() || !matches!(ConnectionOption::of(option), ConnectionOption::Other)
            {
                continue;
            }
            for header in headers.iter_mut() {
                let is_protected = matches!(
                    header.kind,
                    HeaderKind::Host
                        | HeaderKind::ContentLength
                        | HeaderKind::TransferEncoding
                        | HeaderKind::Connection
                );
                if !is_protected && header.name.slice(buf).eq_ignore_ascii_case(option) {
                    header.is_connection_option = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::super::{is_tchar, is_text_byte};
    use super::{field_name_len, field_value_len, is_known_name};

    /// The names `classify` knows, all lowercase letters and `-`.
    const KNOWN: [&[u8]; 17] = [
        b"te",
        b"host",
        b"cookie",
        b"expect",
        b"upgrade",
        b"forwarded",
        b"x-real-ip",
        b"connection",
        b"keep-alive",
        b"authorization",
        b"content-length",
        b"x-forwarded-for",
        b"proxy-connection",
        b"x-forwarded-port",
        b"x-forwarded-host",
        b"transfer-encoding",
        b"x-forwarded-proto",
    ];

    #[test]
    fn known_names_compare_as_ignoring_ascii_case_does() {
        for known in KNOWN {
            assert!(
                known
                    .iter()
                    .all(|&byte| byte == b'-' || byte.is_ascii_lowercase())
            );
            for place in 0..known.len() {
                for byte in (0..=u8::MAX).filter(|&byte| is_tchar(byte)) {
                    let mut name = known.to_vec();
                    name[place] = byte;
                    assert_eq!(
                        is_known_name(&name, known),
                        name.eq_ignore_ascii_case(known),
                        "{:?} against {:?}",
                        String::from_utf8_lossy(&name),
                        String::from_utf8_lossy(known),
                    );
                }
            }
            assert!(is_known_name(&known.to_ascii_uppercase(), known));
        }
    }

    #[test]
    fn name_scan_classifies_every_byte_at_every_place_of_a_word() {
        for byte in 0..=u8::MAX {
            for place in 0..10 {
                let mut name = vec![b'N'; place];
                name.push(byte);
                name.extend_from_slice(b"-z9");
                let expected = if is_tchar(byte) { name.len() } else { place };
                assert_eq!(
                    field_name_len(&name),
                    expected,
                    "byte {byte:#04x} at {place}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn word_name_scan_matches_byte_scan_anywhere(
            bytes in vec(prop_oneof![
                b'a'..=b'z', b'A'..=b'Z', b'0'..=b'9', Just(b'-'), Just(b':'), Just(b'_'),
                Just(b'@'), Just(b'`'), Just(b'{'), Just(b'/'), Just(0x7f), any::<u8>(),
            ], 0..40),
        ) {
            let expected = bytes.iter().position(|&byte| !is_tchar(byte)).unwrap_or(bytes.len());
            prop_assert_eq!(field_name_len(&bytes), expected);
        }


        #[test]
        fn word_scan_matches_byte_scan(
            bytes in vec(prop_oneof![0x20..0x7fu8, Just(b'\t'), Just(b'\r'), Just(0x7f), any::<u8>()], 0..40),
        ) {
            let expected = bytes.iter().position(|&byte| !is_text_byte(byte)).unwrap_or(bytes.len());
            prop_assert_eq!(field_value_len(&bytes), expected);
        }
    }
}
