//! Request-targets (RFC 9112 §3.2) and the authorities in them and in Host
//! (RFC 3986 §3.2).

use super::{ALPHANUMERIC, Authority, ByteClass, Method, Span, TargetForm, Violation, union};

/// `unreserved` and `sub-delims` (RFC 3986 §2): the bytes of a `reg-name` besides
/// percent-encodings.
const REG_NAME: ByteClass = union(ALPHANUMERIC, b"-._~!$&'()*+,;=");

/// What the request-target says, besides its bytes.
pub(super) struct Target {
    pub(super) form: TargetForm,
    pub(super) path: Span,
    pub(super) authority: Option<Authority>,
}

/// Finds the form of the target at `target` in `buf`, whose bytes the request line
/// already checked, and validates what that form requires.
pub(super) fn classify(buf: &[u8], target: Span, method: Method) -> Result<Target, Violation> {
    let bytes = target.slice(buf);
    match (method, bytes) {
        // RFC 9112 §3.2.3: CONNECT takes `uri-host ":" port` and nothing else.
        (Method::Connect, _) => {
            let authority = authority(bytes, target.start)
                .filter(|authority| authority.port.is_some())
                .ok_or(Violation::InvalidTarget)?;
            Ok(Target {
                form: TargetForm::Authority,
                path: Span {
                    start: target.end,
                    end: target.end,
                },
                authority: Some(authority),
            })
        }
        (_, [b'/', ..]) => Ok(Target {
            form: TargetForm::Origin,
            path: target,
            authority: None,
        }),
        (Method::Options, b"*") => Ok(Target {
            form: TargetForm::Asterisk,
            path: target,
            authority: None,
        }),
        _ => absolute(bytes, target.start).ok_or(Violation::InvalidTarget),
    }
}

/// Parses an absolute-form target at `offset`: `http` or `https`, then `://`, a valid
/// authority without userinfo (RFC 9110 §4.2.4), and an optional path and query.
fn absolute(bytes: &[u8], offset: usize) -> Option<Target> {
    let scheme_len = [&b"http://"[..], b"https://"]
        .into_iter()
        .find(|scheme| {
            bytes
                .get(..scheme.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
        })?
        .len();
    let rest = bytes.get(scheme_len..)?;
    let authority_len = rest
        .iter()
        .position(|&byte| matches!(byte, b'/' | b'?'))
        .unwrap_or(rest.len());
    let authority = authority(rest.get(..authority_len)?, offset + scheme_len)?;
    Some(Target {
        form: TargetForm::Absolute,
        path: Span {
            start: authority.span.end,
            end: offset + bytes.len(),
        },
        authority: Some(authority),
    })
}

/// Parses `uri-host [":" port]` found at `offset`: an IPv6 literal in brackets or a
/// non-empty `reg-name` (IPv4 addresses are reg-names), and a port of 1 to 5 digits up
/// to 65535.
pub(super) fn authority(bytes: &[u8], offset: usize) -> Option<Authority> {
    let host_len = match bytes {
        [b'[', literal @ ..] => {
            let close = literal.iter().position(|&byte| byte == b']')?;
            let address = literal.get(..close)?;
            let is_ipv6 = address.contains(&b':')
                && address
                    .iter()
                    .all(|byte| byte.is_ascii_hexdigit() || matches!(byte, b':' | b'.'));
            if !is_ipv6 {
                return None;
            }
            close + 2
        }
        _ => reg_name_len(bytes)?,
    };
    let port = match bytes.get(host_len..)? {
        [] => None,
        [b':', digits @ ..] => Some(port(digits)?),
        _ => return None,
    };
    Some(Authority {
        span: Span {
            start: offset,
            end: offset + bytes.len(),
        },
        host: Span {
            start: offset,
            end: offset + host_len,
        },
        port,
    })
}

/// The length of the non-empty `reg-name` at the start of `bytes`, which must end there
/// or at a `:`.
fn reg_name_len(bytes: &[u8]) -> Option<usize> {
    let mut len = 0;
    loop {
        match bytes.get(len..)? {
            [b'%', high, low, ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                len += 3
            }
            [byte, ..] if REG_NAME[usize::from(*byte)] => len += 1,
            [] | [b':', ..] if len > 0 => return Some(len),
            _ => return None,
        }
    }
}

fn port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    let port = digits.iter().try_fold(0u32, |port, &digit| {
        let digit = char::from(digit).to_digit(10)?;
        Some(port * 10 + digit)
    })?;
    u16::try_from(port).ok()
}
