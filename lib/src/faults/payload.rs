//! The errors of the `error` fault: a well-formed error message of the protocol the backend
//! speaks, answered by the proxy before it closes the connection (Vaurien's protocol-aware
//! errors).

use sozu_command_lib::request::ErrorProtocol;

/// The bytes an `error` fault of `protocol` answers with.
pub fn error_payload(protocol: ErrorProtocol) -> &'static [u8] {
    match protocol {
        ErrorProtocol::Http => {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 15\r\nConnection: close\r\n\r\ninjected fault\n"
        }
        // RESP simple error (the `-ERR` prefix is the generic error kind).
        ErrorProtocol::Redis => b"-ERR injected fault\r\n",
        // Memcached text protocol: the server could not carry out the command.
        ErrorProtocol::Memcache => b"SERVER_ERROR injected fault\r\n",
        // An ERR packet in place of the server's greeting, as MySQL sends when it refuses a
        // connection: 3-byte little-endian length, sequence 0, 0xFF, error 1040
        // (ER_CON_COUNT_ERROR) little-endian, `#` and SQL state 08004, the message.
        ErrorProtocol::Mysql => MYSQL_ERROR,
        // The greeting of a server that is not available (RFC 5321 §3.8).
        ErrorProtocol::Smtp => b"421 4.3.2 injected fault, closing transmission channel\r\n",
    }
}

const MYSQL_ERROR: &[u8] = b"\x1d\x00\x00\x00\xff\x10\x04#08004Too many connections";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_http_error_is_a_complete_response() {
        let payload = error_payload(ErrorProtocol::Http);
        let text = std::str::from_utf8(payload).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn the_mysql_error_packet_has_the_length_it_announces() {
        let payload = error_payload(ErrorProtocol::Mysql);
        let length =
            usize::from(payload[0]) | usize::from(payload[1]) << 8 | usize::from(payload[2]) << 16;
        assert_eq!(length, payload.len() - 4);
        assert_eq!(payload[3], 0, "the first packet of a connection");
        assert_eq!(payload[4], 0xFF, "an ERR packet");
        assert_eq!(u16::from_le_bytes([payload[5], payload[6]]), 1040);
        assert_eq!(&payload[7..13], b"#08004");
    }

    #[test]
    fn text_protocols_end_their_line() {
        for protocol in [
            ErrorProtocol::Redis,
            ErrorProtocol::Memcache,
            ErrorProtocol::Smtp,
        ] {
            let payload = error_payload(protocol);
            assert!(payload.ends_with(b"\r\n"));
            assert_eq!(payload.iter().filter(|&&b| b == b'\n').count(), 1);
        }
        assert!(error_payload(ErrorProtocol::Redis).starts_with(b"-ERR "));
        assert!(error_payload(ErrorProtocol::Smtp).starts_with(b"421 "));
    }
}
