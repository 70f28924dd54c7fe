//! Which protocol upgrades (RFC 9110 §7.8) the proxy lets through: WebSocket only.
//!
//! An upgraded connection is a byte pipe the proxy can no longer read, so it is opened only
//! for a protocol the proxy knows to be point-to-point between a client and one backend:
//! WebSocket (RFC 6455), offered in a `GET` without a body. Every other `Upgrade` is removed
//! from the request, and the backend answers it as plain HTTP/1.1, as a server that ignores
//! `Upgrade` does (RFC 9110 §7.8 lets it):
//! - `h2c` (RFC 7540 §3.2) until the proxy speaks HTTP/2: after the switch, the backend would
//!   take requests from a client the proxy no longer sees, routes or limits;
//! - `TLS/1.x` (RFC 2817) and any other token: the proxy could not tell what the connection
//!   carries after the switch.
//!
//! A `101` then switches to a pipe only when it answers a WebSocket offer and names WebSocket
//! alone in its `Upgrade` field; any other `101` is the backend's fault (502).
//!
//! `CONNECT` is not an upgrade and never reaches a backend: it is answered 405 (see
//! [`crate::protocol::http::route`]).

/// The protocol name of WebSocket in `Upgrade` (RFC 6455 §4.1), compared case-insensitively.
const WEBSOCKET: &[u8] = b"websocket";

/// The protocols of an `Upgrade` value: `protocol-name ["/" protocol-version]` items of a
/// comma list, without surrounding whitespace, empty items skipped.
fn protocols(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&byte| byte == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|protocol| !protocol.is_empty())
}

fn is_websocket(protocol: &[u8]) -> bool {
    protocol.eq_ignore_ascii_case(WEBSOCKET)
}

/// The WebSocket protocol a request's `Upgrade` value offers, as the client wrote it: what
/// the proxy offers the backend. `None` when WebSocket is not offered.
pub fn offered_websocket(value: &[u8]) -> Option<&[u8]> {
    protocols(value).find(|protocol| is_websocket(protocol))
}

/// Whether a 101's `Upgrade` value switches to WebSocket and nothing else.
pub fn switches_to_websocket(value: &[u8]) -> bool {
    let mut switched = protocols(value);
    switched.next().is_some_and(is_websocket) && switched.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_is_found_among_the_offered_protocols() {
        assert_eq!(offered_websocket(b"websocket"), Some(&b"websocket"[..]));
        assert_eq!(
            offered_websocket(b"h2c, WebSocket ,foo/2"),
            Some(&b"WebSocket"[..])
        );
        assert_eq!(offered_websocket(b"h2c"), None);
        assert_eq!(offered_websocket(b"TLS/1.2, websocket/13"), None);
        assert_eq!(offered_websocket(b" , "), None);
    }

    #[test]
    fn a_101_must_switch_to_websocket_alone() {
        assert!(switches_to_websocket(b"websocket"));
        assert!(switches_to_websocket(b" WebSocket "));
        assert!(!switches_to_websocket(b"h2c"));
        assert!(!switches_to_websocket(b"websocket, h2c"));
        assert!(!switches_to_websocket(b""));
    }
}
