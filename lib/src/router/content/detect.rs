//! The built-in protocol detectors: what the first bytes a client sends look like, for each
//! [`TcpProtocol`]. Each detector answers as soon as the bytes allow, and asks for more while
//! they could still belong to its protocol. The signatures are those of the protocols' first
//! client message (the same that sslh and HAProxy probe):
//!
//! | protocol | first bytes |
//! | --- | --- |
//! | `tls` | a handshake record: `16 03 0x` (x ≤ 4) |
//! | `http` | a request line `METHOD SP target SP HTTP/1.x` |
//! | `ssh` | `SSH-` (RFC 4253 §4.2) |
//! | `socks4` | `04 01` or `04 02`, port, address, a user id ending with `00` |
//! | `socks5` | `05`, a method count n ≥ 1, then n known methods (RFC 1928 §3) |
//! | `postgres` | a length, then protocol 3.0 (`00 03 00 00`), or the SSL, GSS or cancel request code |
//! | `redis` | a RESP array `*<n>\r\n$`, or an inline `PING`, `AUTH` or `HELLO` |
//! | `mqtt` | a CONNECT packet (`10`), its remaining length, then `00 04 MQTT` or `00 06 MQIsdp` |
//! | `openvpn` | a length, then a client hard reset (v2 or v3) with key id 0, whole |
//! | `xmpp` | `<?xml` or `<stream:stream`, then `jabber:` |

use sozu_command_lib::request::TcpProtocol;

use super::Judgement;

/// Whether `data` (the first bytes of a connection) is `protocol`.
pub fn detect(protocol: TcpProtocol, data: &[u8]) -> Judgement {
    match protocol {
        TcpProtocol::Tls => tls(data),
        TcpProtocol::Http => http(data),
        TcpProtocol::Ssh => starts_with(data, b"SSH-"),
        TcpProtocol::Socks4 => socks4(data),
        TcpProtocol::Socks5 => socks5(data),
        TcpProtocol::Postgres => postgres(data),
        TcpProtocol::Redis => redis(data),
        TcpProtocol::Mqtt => mqtt(data),
        TcpProtocol::Openvpn => openvpn(data),
        TcpProtocol::Xmpp => xmpp(data),
    }
}

/// `Match` when `data` starts with `prefix`, `NeedMore` while it is a beginning of it.
pub fn starts_with(data: &[u8], prefix: &[u8]) -> Judgement {
    if data.starts_with(prefix) {
        Judgement::Match
    } else if prefix.starts_with(data) {
        Judgement::NeedMore
    } else {
        Judgement::NoMatch
    }
}

/// Like [`starts_with`], without regard to ASCII case.
fn starts_with_ignoring_case(data: &[u8], prefix: &[u8]) -> Judgement {
    let common = data.len().min(prefix.len());
    if !data[..common].eq_ignore_ascii_case(&prefix[..common]) {
        Judgement::NoMatch
    } else if common == prefix.len() {
        Judgement::Match
    } else {
        Judgement::NeedMore
    }
}

fn tls(data: &[u8]) -> Judgement {
    match data {
        [] => Judgement::NeedMore,
        [0x16] | [0x16, 3] => Judgement::NeedMore,
        [0x16, 3, minor, ..] if *minor <= 4 => Judgement::Match,
        _ => Judgement::NoMatch,
    }
}

/// The longest method token taken as the start of an HTTP request line.
const MAX_METHOD: usize = 24;
/// The longest request line waited for before taking the bytes as not HTTP.
pub const MAX_REQUEST_LINE: usize = 8192;

/// Reads the request line of an HTTP/1.x head: `Ok(length)` of the line (its end of line
/// included) once it is whole and valid.
pub fn request_line(data: &[u8]) -> Result<usize, Judgement> {
    let method_end = data
        .iter()
        .take(MAX_METHOD + 1)
        .position(|&byte| byte == b' ');
    let method = match method_end {
        Some(end) => &data[..end],
        None if data.len() > MAX_METHOD => return Err(Judgement::NoMatch),
        None => data,
    };
    if !method
        .iter()
        .all(|byte| byte.is_ascii_uppercase() || *byte == b'-')
    {
        return Err(Judgement::NoMatch);
    }
    let Some(method_end) = method_end else {
        return Err(Judgement::NeedMore);
    };
    if method_end == 0 {
        return Err(Judgement::NoMatch);
    }
    let Some(line_end) = memchr::memchr(b'\n', data) else {
        return Err(if data.len() > MAX_REQUEST_LINE {
            Judgement::NoMatch
        } else {
            Judgement::NeedMore
        });
    };
    let line = &data[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let is_http = line.len() > method_end + 9
        && (line.ends_with(b" HTTP/1.1") || line.ends_with(b" HTTP/1.0"));
    if is_http {
        Ok(line_end + 1)
    } else {
        Err(Judgement::NoMatch)
    }
}

fn http(data: &[u8]) -> Judgement {
    match request_line(data) {
        Ok(_) => Judgement::Match,
        Err(judgement) => judgement,
    }
}

fn socks4(data: &[u8]) -> Judgement {
    match data {
        [] | [4] => Judgement::NeedMore,
        [4, 1 | 2, ..] => {
            // Version, command, port (2), address (4), then a user id ending with a zero.
            match data.get(8..) {
                Some(user) if user.contains(&0) => Judgement::Match,
                _ => Judgement::NeedMore,
            }
        }
        _ => Judgement::NoMatch,
    }
}

fn socks5(data: &[u8]) -> Judgement {
    let (version, count, methods) = match data {
        [] => return Judgement::NeedMore,
        [version] => (*version, None, &[][..]),
        [version, count, methods @ ..] => (*version, Some(*count), methods),
    };
    if version != 5 || count == Some(0) {
        return Judgement::NoMatch;
    }
    // Methods: 00 to 09 are assigned by IANA, 80 to FE are private; FF is "no acceptable".
    let known = |method: &u8| *method <= 0x09 || (0x80..0xff).contains(method);
    let Some(count) = count else {
        return Judgement::NeedMore;
    };
    let offered = methods.get(..usize::from(count)).unwrap_or(methods);
    if !offered.iter().all(known) {
        Judgement::NoMatch
    } else if offered.len() < usize::from(count) {
        Judgement::NeedMore
    } else {
        Judgement::Match
    }
}

fn postgres(data: &[u8]) -> Judgement {
    const PROTOCOL_3: u32 = 0x0003_0000;
    const CANCEL: u32 = 80_877_102;
    const SSL: u32 = 80_877_103;
    const GSS: u32 = 80_877_104;
    let Some(head) = data.get(..8) else {
        // Every message starts with a length below 2^24 in practice: a first byte of zero.
        return if data.first().is_none_or(|&byte| byte == 0) {
            Judgement::NeedMore
        } else {
            Judgement::NoMatch
        };
    };
    let length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let is_postgres = match code {
        SSL | GSS => length == 8,
        CANCEL => length == 16,
        PROTOCOL_3 => (8..=10_000).contains(&length),
        _ => false,
    };
    if is_postgres {
        Judgement::Match
    } else {
        Judgement::NoMatch
    }
}

fn redis(data: &[u8]) -> Judgement {
    if let Some(rest) = data.strip_prefix(b"*") {
        let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
        if digits > 7 {
            return Judgement::NoMatch;
        }
        let after = &rest[digits..];
        if digits == 0 {
            return if after.is_empty() {
                Judgement::NeedMore
            } else {
                Judgement::NoMatch
            };
        }
        return starts_with(after, b"\r\n$");
    }
    [&b"PING\r\n"[..], b"PING\n", b"AUTH ", b"HELLO"]
        .iter()
        .map(|command| starts_with_ignoring_case(data, command))
        .fold(Judgement::NoMatch, Judgement::or)
}

fn mqtt(data: &[u8]) -> Judgement {
    let Some((&kind, rest)) = data.split_first() else {
        return Judgement::NeedMore;
    };
    if kind != 0x10 {
        return Judgement::NoMatch;
    }
    // The remaining length: one to four bytes, seven bits each, the high bit continuing.
    let Some(length_bytes) = rest.iter().take(4).position(|byte| byte & 0x80 == 0) else {
        return if rest.len() < 4 {
            Judgement::NeedMore
        } else {
            Judgement::NoMatch
        };
    };
    let name = &rest[length_bytes + 1..];
    starts_with(name, b"\x00\x04MQTT").or(starts_with(name, b"\x00\x06MQIsdp"))
}

fn openvpn(data: &[u8]) -> Judgement {
    const HARD_RESET_CLIENT_V2: u8 = 7;
    const HARD_RESET_CLIENT_V3: u8 = 10;
    let Some(head) = data.get(..3) else {
        return Judgement::NeedMore;
    };
    let length = usize::from(u16::from_be_bytes([head[0], head[1]]));
    let opcode = head[2] >> 3;
    let key_id = head[2] & 0x07;
    // Opcode and key id (1), session id (8), packet id array length (1), packet id (4).
    if key_id != 0 || !matches!(opcode, HARD_RESET_CLIENT_V2 | HARD_RESET_CLIENT_V3) || length < 14
    {
        return Judgement::NoMatch;
    }
    // The client sends this one packet and waits for the server's reset.
    match data.len().checked_sub(2) {
        Some(received) if received == length => Judgement::Match,
        Some(received) if received < length => Judgement::NeedMore,
        _ => Judgement::NoMatch,
    }
}

fn xmpp(data: &[u8]) -> Judgement {
    const MAX_HEADER: usize = 2048;
    let start = starts_with(data, b"<?xml").or(starts_with(data, b"<stream:stream"));
    if start != Judgement::Match {
        return start;
    }
    if memchr::memmem::find(data, b"jabber:").is_some() {
        Judgement::Match
    } else if data.len() > MAX_HEADER {
        Judgement::NoMatch
    } else {
        Judgement::NeedMore
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn judged(protocol: TcpProtocol, data: &[u8]) -> Judgement {
        detect(protocol, data)
    }

    /// The first bytes of each protocol's client, from real clients where the data folder has
    /// them, else as the protocol's specification writes them.
    fn samples() -> Vec<(TcpProtocol, Vec<u8>)> {
        let mut mqtt = vec![0x10, 0x10, 0x00, 0x04];
        mqtt.extend_from_slice(b"MQTT\x04\x02\x00\x3c\x00\x04test");
        let mut openvpn = vec![0x00, 0x0e, HARD_RESET_V2];
        openvpn.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0]);
        vec![
            (
                TcpProtocol::Tls,
                include_bytes!("data/openssl-b.test-h2.bin").to_vec(),
            ),
            (
                TcpProtocol::Http,
                include_bytes!("data/curl-http-c.test.bin").to_vec(),
            ),
            (
                TcpProtocol::Ssh,
                include_bytes!("data/ssh-banner.bin").to_vec(),
            ),
            (
                TcpProtocol::Socks4,
                include_bytes!("data/curl-socks4.bin").to_vec(),
            ),
            (
                TcpProtocol::Socks5,
                include_bytes!("data/curl-socks5.bin").to_vec(),
            ),
            (
                TcpProtocol::Postgres,
                b"\x00\x00\x00\x08\x04\xd2\x16\x2f".to_vec(),
            ),
            (TcpProtocol::Redis, b"*1\r\n$4\r\nPING\r\n".to_vec()),
            (TcpProtocol::Mqtt, mqtt),
            (TcpProtocol::Openvpn, openvpn),
            (
                TcpProtocol::Xmpp,
                b"<?xml version='1.0'?><stream:stream to='a.test' xmlns='jabber:client'>".to_vec(),
            ),
        ]
    }

    const HARD_RESET_V2: u8 = 7 << 3;

    #[test]
    fn each_detector_recognises_its_protocol_and_no_other() {
        let samples = samples();
        for (protocol, bytes) in &samples {
            assert_eq!(judged(*protocol, bytes), Judgement::Match, "{protocol}");
            for (other, other_bytes) in &samples {
                if other != protocol {
                    assert_eq!(
                        judged(*protocol, other_bytes),
                        Judgement::NoMatch,
                        "{protocol} took {other}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_beginning_asks_for_more() {
        for (protocol, bytes) in samples() {
            assert_eq!(judged(protocol, &[]), Judgement::NeedMore, "{protocol}");
            assert_eq!(
                judged(protocol, &bytes[..1]),
                Judgement::NeedMore,
                "{protocol}"
            );
        }
    }

    #[test]
    fn http_needs_a_whole_request_line_of_version_one() {
        assert_eq!(
            judged(TcpProtocol::Http, b"GET / HTTP/1.1"),
            Judgement::NeedMore
        );
        assert_eq!(
            judged(TcpProtocol::Http, b"GET / HTTP/1.0\n"),
            Judgement::Match
        );
        assert_eq!(
            judged(TcpProtocol::Http, b"GET / HTTP/2.0\r\n"),
            Judgement::NoMatch
        );
        assert_eq!(
            judged(TcpProtocol::Http, b"get / HTTP/1.1\r\n"),
            Judgement::NoMatch
        );
        assert_eq!(
            judged(TcpProtocol::Http, b"GET key\r\n"),
            Judgement::NoMatch
        );
        assert_eq!(
            judged(TcpProtocol::Redis, b"GET key\r\n"),
            Judgement::NoMatch
        );
        assert_eq!(judged(TcpProtocol::Redis, b"ping\r\n"), Judgement::Match);
    }

    #[test]
    fn openvpn_waits_for_its_whole_first_packet() {
        let mut packet = vec![0x00, 0x0e, HARD_RESET_V2];
        packet.extend_from_slice(&[0; 13]);
        assert_eq!(
            judged(TcpProtocol::Openvpn, &packet[..10]),
            Judgement::NeedMore
        );
        packet.push(0);
        assert_eq!(judged(TcpProtocol::Openvpn, &packet), Judgement::NoMatch);
    }

    proptest! {
        #[test]
        fn detectors_never_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
            for protocol in TcpProtocol::ALL {
                let _ = detect(protocol, &data);
            }
        }
    }
}
