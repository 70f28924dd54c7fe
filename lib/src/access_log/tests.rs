use std::net::{Ipv6Addr, SocketAddrV6};

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

/// What was written, as text (it must be UTF-8).
fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap()
}

/// The line of `record` in `format`, at `time`, from fresh kept texts.
fn line(format: AccessLogFormat, time: SystemTime, record: &RequestRecord<'_>) -> String {
    let mut out = Vec::new();
    match format {
        AccessLogFormat::Ascii => {
            write_ascii(&mut out, &mut Texts::default(), time, record, &PLAIN)
        }
        AccessLogFormat::Json => write_json(&mut out, &mut Texts::default(), time, record),
    }
    text(out)
}

#[test]
fn dates_are_civil() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_723), (2024, 1, 1));
    assert_eq!(civil_from_days(20_422), (2025, 11, 30));
    let mut out = Vec::new();
    let mut clock = Clock::default();
    for millis in [
        1_764_460_800_123,
        1_764_460_800_123,
        1_764_460_800_999,
        1_764_460_801_004,
        1_764_460_861_000,
        1_764_460_861_000,
        1_764_460_800_999,
    ] {
        clock.write(&mut out, UNIX_EPOCH + Duration::from_millis(millis));
    }
    // Within a millisecond, and at the first instant of the next one.
    for micros in [1_764_460_800_999_999, 1_764_460_801_000_000] {
        clock.write(&mut out, UNIX_EPOCH + Duration::from_micros(micros));
    }
    assert_eq!(
        text(out),
        "2025-11-30T00:00:00.123Z2025-11-30T00:00:00.123Z2025-11-30T00:00:00.999Z\
             2025-11-30T00:00:01.004Z2025-11-30T00:01:01.000Z2025-11-30T00:01:01.000Z\
             2025-11-30T00:00:00.999Z2025-11-30T00:00:00.999Z2025-11-30T00:00:01.000Z"
    );
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
}

#[test]
fn addresses_are_written_like_display() {
    let scoped = SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::LOCALHOST, 80, 0, 7));
    let mut kept = IpText::default();
    for address in [
        "0.0.0.0:0",
        "203.0.113.5:40000",
        "203.0.113.5:40001",
        "255.255.255.255:65535",
        "[::1]:8080",
        "[::1]:8081",
        "127.0.0.1:80",
    ]
    .map(|address| address.parse::<SocketAddr>().unwrap())
    .into_iter()
    .chain([scoped])
    {
        let mut out = Vec::new();
        kept.write(&mut out, address);
        assert_eq!(text(out), address.to_string());
    }
}

#[test]
fn ascii_line_has_every_field() {
    let line = line(AccessLogFormat::Ascii, SystemTime::now(), &record());
    assert_eq!(
        line.split_once(' ').unwrap().1,
        "req-1 203.0.113.5:40000 -> 127.0.0.1:8080 HTTP api/api-1 \"GET example.com/a\\\"b\" 200 in=120 out=4567 total=1.500ms connect=0.250ms response=1.200ms \"curl/8.0\"\n"
    );
}

#[test]
fn colored_line_has_sozus_escapes() {
    let mut record = record();
    let mut lines = Vec::new();
    for status in [Some(200), Some(302), Some(404), Some(503), None] {
        record.status = status;
        let mut out = Vec::new();
        write_ascii(
            &mut out,
            &mut Texts::default(),
            SystemTime::now(),
            &record,
            &COLORED,
        );
        lines.push(text(out).split_once(' ').unwrap().1.to_string());
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
    let line = line(AccessLogFormat::Ascii, SystemTime::now(), &record);
    assert!(!line.contains('\x1b'), "{line:?}");
}

#[test]
fn json_line_parses() {
    let line = line(AccessLogFormat::Json, SystemTime::now(), &record());
    let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
    assert_eq!(value["status"], 200);
    assert_eq!(value["path"], "/a\"b");
    assert_eq!(value["cluster"], "api");
    assert_eq!(value["connect_us"], 250);
    assert!(value["time"].as_str().unwrap().ends_with('Z'));
}

/// Texts with every kind of byte the escapes handle: quotes, backslashes, C0 and C1
/// controls, DEL, multi-byte characters at both ends and between escapes, and each of
/// them past the first eight bytes (the scan's word) and at the end (its remainder).
const AWKWARD: [&str; 13] = [
    "",
    "plain/path?q=1",
    "\"quoted\" \\ back'slash",
    "\u{0}\t\r\n\u{1f}\u{7f}",
    "é/ü\u{85}\u{9f}x",
    "日本\"語",
    "a\u{1}b\u{2028}c😀",
    "/eight-by/tes-pla/in-words/and-then\"",
    "/eight-by/tes-pla/in-words/and-then\\",
    "/eight-by/tes-pla/in-words/and-then'",
    "/eight-by/tes-pla/in-words/and-then\u{7f}",
    "/eight-by\u{1}tes-pla/in-words",
    "/eight-by/tes-pla/\u{e9}n-words/and-then",
];

#[test]
fn ascii_escapes_are_those_of_escape_default() {
    for text in AWKWARD {
        let mut out = Vec::new();
        push_escaped(&mut out, text);
        let expected: Vec<u8> = text.bytes().flat_map(std::ascii::escape_default).collect();
        assert_eq!(out, expected, "{text:?}");
    }
}

#[test]
fn json_strings_round_trip_and_escape_controls() {
    for text in AWKWARD {
        let mut out = b"{\"x\":0".to_vec();
        json_string(&mut out, b",\"text\":\"", Some(text));
        out.push(b'}');
        let out = super::tests::text(out);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["text"], text, "{out}");
        assert!(!out.chars().any(char::is_control), "{out:?}");
    }
    let mut out = Vec::new();
    json_string(&mut out, b",\"c1\":\"", Some("\u{85}"));
    assert_eq!(text(out), ",\"c1\":\"\\u0085\"");
}

/// Every byte alone, at each place of a word, in texts of every length up to two words and a
/// half (a short text, whole words, and words with a tail): the scan says a text needs an
/// escape exactly when one of its bytes does, copies the text whole when none does, and
/// leaves what was written before as it was when one does.
#[test]
fn the_scan_finds_every_byte_to_escape() {
    for byte in 0..=u8::MAX {
        let escaped = !(0x20..0x7f).contains(&byte) || matches!(byte, b'"' | b'\\' | b'\'');
        for len in 1..=20 {
            for at in 0..len {
                let mut bytes: Vec<u8> = (0..len).map(|index| b'a' + index as u8).collect();
                bytes[at] = byte;
                let mut out = b"before".to_vec();
                let copied = copy_if_plain::<b'\''>(&mut out, &bytes);
                assert_eq!(copied, !escaped, "{byte:#x} at {at} of {len}");
                let mut expected = b"before".to_vec();
                if copied {
                    expected.extend_from_slice(&bytes);
                }
                assert_eq!(out, expected, "{byte:#x} at {at} of {len}");
            }
        }
    }
    let mut out = Vec::new();
    assert!(copy_if_plain::<b'\''>(&mut out, b""));
    assert!(out.is_empty());
}

/// A record of every kind of field text a client can send: quotes, backslashes, controls,
/// DEL, C1 controls, and bytes that are not UTF-8 (the session decodes them lossily).
fn hostile_record<'a>(path: &'a str, faults: &'a [std::rc::Rc<str>]) -> RequestRecord<'a> {
    RequestRecord {
        listener: "[::1]:8443".parse().unwrap(),
        client: "[2001:db8::5]:40000".parse().unwrap(),
        protocol: "HTTPS",
        host: "ex\"ample\\.com",
        path,
        user_agent: "agent\n\u{1b}[31m\u{7f}\u{85}é",
        status: Some(404),
        answered_by_proxy: true,
        connect_time: None,
        faults,
        decided_by: Some("rule \"1\""),
        backend_protocol: Some("HTTP/2"),
        ..record()
    }
}

/// The exact lines of both formats, at a fixed time, for hostile texts and for a record
/// without routing, backend or answer: the formats of doc/metrics.md, byte for byte (the
/// lines the formatter wrote before it worked on bytes).
#[test]
fn lines_are_exactly_the_documented_formats() {
    let time = UNIX_EPOCH + Duration::from_millis(1_764_534_600_123);
    let path = String::from_utf8_lossy(b"/a\"b\\c\x00\x1f\xff\xfe'd?q=%22");
    let faults: [std::rc::Rc<str>; 2] = ["slow".into(), "drop\"x".into()];
    let hostile = hostile_record(&path, &faults);
    let bare = RequestRecord {
        cluster_id: None,
        backend_id: None,
        backend_address: None,
        method: "",
        host: "",
        path: "",
        status: None,
        connect_time: None,
        first_byte_time: None,
        user_agent: "",
        protocol: "TCP",
        ..record()
    };
    let mut lines = Vec::new();
    for record in [&record(), &hostile, &bare] {
        for format in [AccessLogFormat::Ascii, AccessLogFormat::Json] {
            lines.push(line(format, time, record));
        }
    }
    let mut out = Vec::new();
    write_ascii(&mut out, &mut Texts::default(), time, &hostile, &COLORED);
    lines.push(text(out));
    let expected = [
        "2025-11-30T20:30:00.123Z req-1 203.0.113.5:40000 -> 127.0.0.1:8080 HTTP api/api-1 \"GET example.com/a\\\"b\" 200 in=120 out=4567 total=1.500ms connect=0.250ms response=1.200ms \"curl/8.0\"",
        "{\"time\":\"2025-11-30T20:30:00.123Z\",\"request_id\":\"req-1\",\"client\":\"203.0.113.5:40000\",\"listener\":\"127.0.0.1:8080\",\"protocol\":\"HTTP\",\"cluster\":\"api\",\"backend\":\"api-1\",\"backend_address\":\"127.0.0.1:9000\",\"method\":\"GET\",\"host\":\"example.com\",\"path\":\"/a\\\"b\",\"status\":200,\"answered_by_proxy\":false,\"bytes_in\":120,\"bytes_out\":4567,\"total_us\":1500,\"connect_us\":250,\"response_us\":1200,\"user_agent\":\"curl/8.0\"}",
        "2025-11-30T20:30:00.123Z req-1 [2001:db8::5]:40000 -> [::1]:8443 HTTPS api/api-1 \"GET ex\\\"ample\\\\.com/a\\\"b\\\\c\\x00\\x1f\\xef\\xbf\\xbd\\xef\\xbf\\xbd\\'d?q=%22\" 404 in=120 out=4567 total=1.500ms response=1.200ms \"agent\\n\\x1b[31m\\x7f\\xc2\\x85\\xc3\\xa9\" fault=\"slow,drop\\\"x\" decided_by=\"rule \\\"1\\\"\" backend_protocol=HTTP/2",
        "{\"time\":\"2025-11-30T20:30:00.123Z\",\"request_id\":\"req-1\",\"client\":\"[2001:db8::5]:40000\",\"listener\":\"[::1]:8443\",\"protocol\":\"HTTPS\",\"cluster\":\"api\",\"backend\":\"api-1\",\"backend_address\":\"127.0.0.1:9000\",\"method\":\"GET\",\"host\":\"ex\\\"ample\\\\.com\",\"path\":\"/a\\\"b\\\\c\\u0000\\u001f��'d?q=%22\",\"status\":404,\"answered_by_proxy\":true,\"bytes_in\":120,\"bytes_out\":4567,\"total_us\":1500,\"connect_us\":null,\"response_us\":1200,\"user_agent\":\"agent\\n\\u001b[31m\\u007f\\u0085é\",\"fault\":\"slow,drop\\\"x\",\"decided_by\":\"rule \\\"1\\\"\",\"backend_protocol\":\"HTTP/2\"}",
        "2025-11-30T20:30:00.123Z req-1 203.0.113.5:40000 -> 127.0.0.1:8080 TCP -/- - - in=120 out=4567 total=1.500ms",
        "{\"time\":\"2025-11-30T20:30:00.123Z\",\"request_id\":\"req-1\",\"client\":\"203.0.113.5:40000\",\"listener\":\"127.0.0.1:8080\",\"protocol\":\"TCP\",\"cluster\":null,\"backend\":null,\"backend_address\":null,\"method\":null,\"host\":null,\"path\":null,\"status\":null,\"answered_by_proxy\":false,\"bytes_in\":120,\"bytes_out\":4567,\"total_us\":1500,\"connect_us\":null,\"response_us\":null,\"user_agent\":null}",
        "2025-11-30T20:30:00.123Z \u{1b}[;1mreq-1\u{1b}[m [2001:db8::5]:40000 -> [::1]:8443 \u{1b}[;1mHTTPS api/api-1 \"GET ex\\\"ample\\\\.com/a\\\"b\\\\c\\x00\\x1f\\xef\\xbf\\xbd\\xef\\xbf\\xbd\\'d?q=%22\" \u{1b}[33m404\u{1b}[m in=120 out=4567 total=1.500ms response=1.200ms \u{1b}[2m\"agent\\n\\x1b[31m\\x7f\\xc2\\x85\\xc3\\xa9\"\u{1b}[m fault=\"slow,drop\\\"x\" decided_by=\"rule \\\"1\\\"\" backend_protocol=HTTP/2",
    ];
    assert_eq!(lines.len(), expected.len());
    for (line, expected) in lines.iter().zip(expected) {
        assert_eq!(line.strip_suffix('\n'), Some(expected));
    }
    // The hostile texts come back whole from the JSON line.
    let value: serde_json::Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(value["path"], *path);
    assert_eq!(value["host"], hostile.host);
    assert_eq!(value["user_agent"], hostile.user_agent);
    assert_eq!(value["fault"], "slow,drop\"x");
    for line in [&lines[1], &lines[5]] {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

/// Lines written one after the other share the kept texts (time, addresses) and stay
/// exact when they change.
#[test]
fn kept_texts_follow_each_line() {
    let mut texts = Texts::default();
    let mut out = Vec::new();
    let mut expected = String::new();
    let start = UNIX_EPOCH + Duration::from_millis(1_764_534_600_123);
    for (step, client) in ["203.0.113.5:1", "203.0.113.5:2", "[::1]:3", "10.0.0.1:4"]
        .iter()
        .enumerate()
    {
        let record = RequestRecord {
            client: client.parse().unwrap(),
            ..record()
        };
        let time = start + Duration::from_millis(step as u64 * 700);
        write_json(&mut out, &mut texts, time, &record);
        expected.push_str(&line(AccessLogFormat::Json, time, &record));
    }
    assert_eq!(text(out), expected);
}

#[test]
fn numbers_are_written_like_display() {
    for value in [0, 7, 10, 999, 1000, 65_535, u64::MAX] {
        let mut out = Vec::new();
        push_number(&mut out, value);
        assert_eq!(text(out), value.to_string());
        let mut out = Vec::new();
        push_padded(&mut out, value, 3);
        assert_eq!(text(out), format!("{value:03}"));
        let mut out = Vec::new();
        push_hex(&mut out, value, 8);
        assert_eq!(text(out), format!("{value:08x}"));
    }
    for (value, width) in [
        (0, 1),
        (0, 16),
        (0x9, 1),
        (0xa, 1),
        (0xf0, 1),
        (0x1234_5678, 8),
        (0xdead_beef, 8),
        (0x1_0000_0000, 8),
        (0x0123_4567_89ab_cdef, 8),
        (u64::MAX, 8),
        (0xabc, 5),
    ] {
        let mut out = b"id:".to_vec();
        push_hex(&mut out, value, width);
        assert_eq!(text(out), format!("id:{value:0width$x}"));
    }
    for (micros, expected) in [
        (0, "0.000ms"),
        (5, "0.005ms"),
        (999, "0.999ms"),
        (1000, "1.000ms"),
        (1_002_030, "1002.030ms"),
        (u64::MAX, "18446744073709551.615ms"),
    ] {
        let mut out = b"before ".to_vec();
        push_millis(&mut out, Duration::from_micros(micros));
        assert_eq!(text(out), format!("before {expected}"));
    }
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
