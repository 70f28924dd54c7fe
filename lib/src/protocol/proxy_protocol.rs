//! The PROXY protocol (versions 1 and 2): reading the header a load balancer in front of us
//! sends, and writing one to backends so they learn the real client address.
//!
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>. Version 1 is a
//! text line of at most 107 bytes; version 2 a binary header with a 12-byte signature.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The version 2 signature.
const SIGNATURE_V2: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest version 1 line, CRLF included.
const MAX_V1_LENGTH: usize = 107;
/// Version 2 headers longer than this are refused (TLVs are skipped, but bounded).
const MAX_V2_LENGTH: usize = 16 + 4096;

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyAddresses {
    /// A proxied connection: the real client and the address it connected to.
    Proxied {
        /// The client's address.
        source: SocketAddr,
        /// The address the client connected to (the sender's listener).
        destination: SocketAddr,
    },
    /// A connection of the sender itself (health check), or of an unknown family: keep the
    /// socket's own addresses.
    Local,
}

/// A parsed header and its length in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// What the header says about the connection.
    pub addresses: ProxyAddresses,
    /// The header's length in bytes: the connection's own bytes start at this offset.
    pub length: usize,
}

/// Why bytes are not a PROXY header the proxy accepts. The connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyProtocolError {
    /// The input starts with neither the v1 `PROXY ` nor the v2 signature.
    #[error("not a PROXY protocol header")]
    NoSignature,
    /// No CRLF within the 107 bytes a v1 line may have.
    #[error("PROXY v1 line longer than 107 bytes")]
    V1TooLong,
    /// A v1 line with a bad protocol, address or port.
    #[error("malformed PROXY v1 line")]
    V1Malformed,
    /// A v2 header whose version is not 2 or whose command is neither LOCAL nor PROXY; holds the
    /// byte.
    #[error("unsupported PROXY v2 version or command byte {0:#04x}")]
    V2Command(u8),
    /// A v2 header whose length is too short for the addresses of its family.
    #[error("PROXY v2 address block too short for its family")]
    V2Truncated,
    /// A v2 header longer than 16 + 4096 bytes (TLVs included), more than the proxy accepts.
    #[error("PROXY v2 header longer than the allowed {MAX_V2_LENGTH} bytes")]
    V2TooLong,
}

/// Parses a header at the start of `input`. `Ok(None)` means more bytes are needed.
pub fn parse(input: &[u8]) -> Result<Option<ProxyHeader>, ProxyProtocolError> {
    let signature_part = input.len().min(SIGNATURE_V2.len());
    if input.get(..signature_part) == SIGNATURE_V2.get(..signature_part) {
        return parse_v2(input);
    }
    let v1_part = input.len().min(6);
    if input.get(..v1_part) == b"PROXY ".get(..v1_part) {
        return parse_v1(input);
    }
    Err(ProxyProtocolError::NoSignature)
}

fn parse_v1(input: &[u8]) -> Result<Option<ProxyHeader>, ProxyProtocolError> {
    let window = input.get(..input.len().min(MAX_V1_LENGTH)).unwrap_or(input);
    let Some(end) = memchr::memmem::find(window, b"\r\n") else {
        return if input.len() >= MAX_V1_LENGTH {
            Err(ProxyProtocolError::V1TooLong)
        } else {
            Ok(None)
        };
    };
    let line = window.get(..end).ok_or(ProxyProtocolError::V1Malformed)?;
    let line = std::str::from_utf8(line).map_err(|_| ProxyProtocolError::V1Malformed)?;
    let mut fields = line.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(ProxyProtocolError::V1Malformed);
    }
    let family = fields.next().ok_or(ProxyProtocolError::V1Malformed)?;
    let addresses = match family {
        "UNKNOWN" => ProxyAddresses::Local,
        "TCP4" | "TCP6" => {
            let mut next = || fields.next().ok_or(ProxyProtocolError::V1Malformed);
            let source_ip = parse_v1_ip(next()?, family)?;
            let destination_ip = parse_v1_ip(next()?, family)?;
            let source_port = parse_v1_port(next()?)?;
            let destination_port = parse_v1_port(next()?)?;
            if fields.next().is_some() {
                return Err(ProxyProtocolError::V1Malformed);
            }
            ProxyAddresses::Proxied {
                source: SocketAddr::new(source_ip, source_port),
                destination: SocketAddr::new(destination_ip, destination_port),
            }
        }
        _ => return Err(ProxyProtocolError::V1Malformed),
    };
    Ok(Some(ProxyHeader {
        addresses,
        length: end + 2,
    }))
}

fn parse_v1_ip(text: &str, family: &str) -> Result<IpAddr, ProxyProtocolError> {
    let ip: IpAddr = text.parse().map_err(|_| ProxyProtocolError::V1Malformed)?;
    match (family, ip) {
        ("TCP4", IpAddr::V4(_)) | ("TCP6", IpAddr::V6(_)) => Ok(ip),
        _ => Err(ProxyProtocolError::V1Malformed),
    }
}

/// A port in decimal without leading zeros, as the specification requires.
fn parse_v1_port(text: &str) -> Result<u16, ProxyProtocolError> {
    if text.is_empty()
        || (text.len() > 1 && text.starts_with('0'))
        || !text.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ProxyProtocolError::V1Malformed);
    }
    text.parse().map_err(|_| ProxyProtocolError::V1Malformed)
}

fn parse_v2(input: &[u8]) -> Result<Option<ProxyHeader>, ProxyProtocolError> {
    let Some(&[version_command, family, high, low]) = input.get(12..16) else {
        return Ok(None);
    };
    let length = 16 + usize::from(u16::from_be_bytes([high, low]));
    if length > MAX_V2_LENGTH {
        return Err(ProxyProtocolError::V2TooLong);
    }
    let Some(block) = input.get(16..length) else {
        return Ok(None);
    };
    let addresses = match version_command {
        0x20 => ProxyAddresses::Local,
        0x21 => match family >> 4 {
            0x1 => {
                let bytes: &[u8; 12] = block
                    .get(..12)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(ProxyProtocolError::V2Truncated)?;
                let [a, b, c, d, e, f, g, h, sp0, sp1, dp0, dp1] = *bytes;
                ProxyAddresses::Proxied {
                    source: SocketAddr::new(
                        Ipv4Addr::new(a, b, c, d).into(),
                        u16::from_be_bytes([sp0, sp1]),
                    ),
                    destination: SocketAddr::new(
                        Ipv4Addr::new(e, f, g, h).into(),
                        u16::from_be_bytes([dp0, dp1]),
                    ),
                }
            }
            0x2 => {
                let bytes: &[u8; 36] = block
                    .get(..36)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(ProxyProtocolError::V2Truncated)?;
                let ip = |range: std::ops::Range<usize>| {
                    let octets: [u8; 16] = bytes
                        .get(range)
                        .and_then(|b| b.try_into().ok())
                        .unwrap_or_default();
                    IpAddr::V6(Ipv6Addr::from(octets))
                };
                let port = |i: usize| {
                    let pair = bytes
                        .get(i..i + 2)
                        .and_then(|p| <[u8; 2]>::try_from(p).ok());
                    u16::from_be_bytes(pair.unwrap_or_default())
                };
                ProxyAddresses::Proxied {
                    source: SocketAddr::new(ip(0..16), port(32)),
                    destination: SocketAddr::new(ip(16..32), port(34)),
                }
            }
            // AF_UNSPEC and AF_UNIX: nothing usable, keep the socket's addresses.
            _ => ProxyAddresses::Local,
        },
        other => return Err(ProxyProtocolError::V2Command(other)),
    };
    Ok(Some(ProxyHeader { addresses, length }))
}

/// Writes a version 2 header for a connection from `source` to `destination`. Mixed families
/// (an IPv4 client on an IPv6 listener) are written as IPv6 with mapped addresses.
pub fn write_v2(source: SocketAddr, destination: SocketAddr, out: &mut Vec<u8>) {
    out.extend_from_slice(&SIGNATURE_V2);
    out.push(0x21);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(source_ip), IpAddr::V4(destination_ip)) => {
            out.extend_from_slice(&[0x11, 0, 12]);
            out.extend_from_slice(&source_ip.octets());
            out.extend_from_slice(&destination_ip.octets());
        }
        (source_ip, destination_ip) => {
            out.extend_from_slice(&[0x21, 0, 36]);
            out.extend_from_slice(&to_v6(source_ip).octets());
            out.extend_from_slice(&to_v6(destination_ip).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn v1_tcp4() {
        let input = b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\nGET /";
        let header = parse(input).unwrap().unwrap();
        assert_eq!(header.length, input.len() - 5);
        assert_eq!(
            header.addresses,
            ProxyAddresses::Proxied {
                source: addr("192.168.0.1:56324"),
                destination: addr("10.0.0.2:443"),
            }
        );
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let header = parse(b"PROXY TCP6 ::1 fe80::2 1 2\r\n").unwrap().unwrap();
        assert_eq!(
            header.addresses,
            ProxyAddresses::Proxied {
                source: addr("[::1]:1"),
                destination: addr("[fe80::2]:2"),
            }
        );
        let header = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!(header.addresses, ProxyAddresses::Local);
    }

    #[test]
    fn v1_incomplete_then_complete() {
        let full = b"PROXY TCP4 1.2.3.4 5.6.7.8 1000 2000\r\n";
        for end in 0..full.len() {
            assert_eq!(parse(&full[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(parse(full).unwrap().is_some());
    }

    #[test]
    fn v1_malformed_lines_are_refused() {
        for line in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 1000\r\n"[..],
            b"PROXY TCP4 ::1 5.6.7.8 1000 2000\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01000 2000\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2000\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        ] {
            assert_eq!(
                parse(line),
                Err(ProxyProtocolError::V1Malformed),
                "{line:?}"
            );
        }
        assert_eq!(parse(&[b'P'; 2][..]), Err(ProxyProtocolError::NoSignature));
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(parse(&long), Err(ProxyProtocolError::V1TooLong));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\n"),
            Err(ProxyProtocolError::NoSignature)
        );
    }

    #[test]
    fn v2_round_trips_ipv4_and_ipv6() {
        for (source, destination) in [
            (addr("10.1.2.3:4567"), addr("127.0.0.1:80")),
            (addr("[2001:db8::1]:4567"), addr("[::1]:443")),
        ] {
            let mut out = Vec::new();
            write_v2(source, destination, &mut out);
            out.extend_from_slice(b"payload");
            let header = parse(&out).unwrap().unwrap();
            assert_eq!(&out[header.length..], b"payload");
            assert_eq!(
                header.addresses,
                ProxyAddresses::Proxied {
                    source,
                    destination
                }
            );
            for end in 0..header.length {
                assert_eq!(parse(&out[..end]), Ok(None));
            }
        }
    }

    #[test]
    fn v2_bytes_are_exact() {
        let mut out = Vec::new();
        write_v2(addr("1.2.3.4:256"), addr("5.6.7.8:80"), &mut out);
        let mut expected = SIGNATURE_V2.to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 80]);
        assert_eq!(out, expected);
    }

    #[test]
    fn v2_local_skips_tlvs_and_bad_commands_are_refused() {
        let mut local = SIGNATURE_V2.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 3, 9, 9, 9]);
        let header = parse(&local).unwrap().unwrap();
        assert_eq!(
            (header.addresses, header.length),
            (ProxyAddresses::Local, 19)
        );
        let mut bad = SIGNATURE_V2.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0, 0]);
        assert_eq!(parse(&bad), Err(ProxyProtocolError::V2Command(0x31)));
        let mut short = SIGNATURE_V2.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert_eq!(parse(&short), Err(ProxyProtocolError::V2Truncated));
    }
}
