//! The path a request is routed by: its path normalised as RFC 3986 §6.2.2 says, so that
//! `//admin`, `/./admin`, `/%61dmin` and `/x/../admin` are all `/admin` to path rules. The
//! request itself is forwarded as received; only routing (and the templates of the frontend
//! it takes) sees the normalised path.
//!
//! In order, per segment then over segments:
//!
//! 1. percent-encoding: a triplet that encodes an unreserved character (`A-Z a-z 0-9 - . _ ~`,
//!    §2.3) is decoded (§6.2.2.2); any other triplet is kept with upper-case hexadecimal digits
//!    (§6.2.2.1), so `%2f` becomes `%2F` and is never decoded: `/` is reserved, and `/a%2Fb` is
//!    one segment to a backend that decodes after splitting, two to one that decodes before;
//!    a `%` not followed by two hexadecimal digits stands for itself and is read as `%25` (so
//!    that `%%34%31` cannot turn into `%41`, and normalising twice changes nothing);
//! 2. repeated slashes are merged (`//` is `/`), as nginx does (`merge_slashes`) and as most
//!    backends resolve files;
//! 3. dot segments are removed (§5.2.4): `.` is dropped, `..` drops the segment before it and
//!    never goes above the root; a path ending in `/.` or `/..` keeps its final `/`.
//!
//! Only a path starting with `/` is normalised; any other target (`*`, an authority) is left
//! as it is. The result is idempotent. A path already normal, the common case, is checked in
//! one pass and borrowed: nothing is allocated.

use std::borrow::Cow;

/// The path to route by: `path` (without query) normalised, borrowed when already normal.
pub(crate) fn normalize(path: &[u8]) -> Cow<'_, [u8]> {
    let Some(segments) = path.strip_prefix(b"/") else {
        return Cow::Borrowed(path);
    };
    if is_normal(path) {
        return Cow::Borrowed(path);
    }
    let mut out = Vec::with_capacity(path.len());
    out.push(b'/');
    // Invariant: `out` is `/`, or `/` followed by segments each ended by `/`, or that followed
    // by the last segment of the path.
    let mut segments = segments.split(|&b| b == b'/').peekable();
    while let Some(raw) = segments.next() {
        let start = out.len();
        push_percent_normalized(raw, &mut out);
        match out.get(start..) {
            Some(b"") => {}
            Some(b".") => out.truncate(start),
            Some(b"..") => {
                out.truncate(start);
                pop_segment(&mut out);
            }
            _ => {
                if segments.peek().is_some() {
                    out.push(b'/');
                }
            }
        }
    }
    Cow::Owned(out)
}

/// Normalises the percent-encoding of `value` only (step 1): for the values of PREFIX and
/// EQUALS rules, which are compared with normalised paths. Borrowed when nothing changes.
pub(crate) fn normalize_percent_encoding(value: &[u8]) -> Cow<'_, [u8]> {
    if !value.contains(&b'%') {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    push_percent_normalized(value, &mut out);
    if out == value {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(out)
    }
}

/// Whether `path` (starting with `/`) is its own normal form.
fn is_normal(path: &[u8]) -> bool {
    let mut index = 0;
    while let Some(&byte) = path.get(index) {
        match byte {
            b'/' => {
                let next = path.get(index + 1..).unwrap_or_default();
                let ends_segment = |rest: &[u8]| rest.is_empty() || rest.first() == Some(&b'/');
                if next.first() == Some(&b'/')
                    || next.strip_prefix(b".").is_some_and(ends_segment)
                    || next.strip_prefix(b"..").is_some_and(ends_segment)
                {
                    return false;
                }
            }
            b'%' => {
                let triplet = path.get(index..index + 3).and_then(percent_triplet);
                if triplet.is_none_or(|(_, changes)| changes) {
                    return false;
                }
            }
            _ => {}
        }
        index += 1;
    }
    true
}

/// Appends `raw` to `out` with its percent-encoding normalised.
fn push_percent_normalized(raw: &[u8], out: &mut Vec<u8>) {
    let mut index = 0;
    while let Some(&byte) = raw.get(index) {
        let triplet = raw.get(index..index + 3).and_then(percent_triplet);
        match (byte, triplet) {
            (b'%', Some((decoded, _))) => {
                if is_unreserved(decoded) {
                    out.push(decoded);
                } else {
                    let [high, low] = hex_upper(decoded);
                    out.extend_from_slice(&[b'%', high, low]);
                }
                index += 3;
            }
            (b'%', None) => {
                out.extend_from_slice(b"%25");
                index += 1;
            }
            _ => {
                out.push(byte);
                index += 1;
            }
        }
    }
}

/// Drops the last segment of `out` (which ends with `/`), keeping the root.
fn pop_segment(out: &mut Vec<u8>) {
    if out.len() <= 1 {
        return;
    }
    out.pop();
    let cut = out
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(1, |slash| slash + 1);
    out.truncate(cut);
}

/// The byte a `%XX` triplet encodes, and whether normalising changes the triplet (it encodes
/// an unreserved character, or has a lower-case digit); `None` if it is no valid triplet.
fn percent_triplet(triplet: &[u8]) -> Option<(u8, bool)> {
    let [b'%', high, low] = *triplet else {
        return None;
    };
    let value = (hex_value(high)? << 4) | hex_value(low)?;
    let changes = is_unreserved(value) || high.is_ascii_lowercase() || low.is_ascii_lowercase();
    Some((value, changes))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn hex_upper(value: u8) -> [u8; 2] {
    let digit = |nibble: u8| match nibble {
        0..=9 => b'0' + nibble,
        _ => b'A' + (nibble - 10),
    };
    [digit(value >> 4), digit(value & 0xf)]
}

/// RFC 3986 §2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn normal(path: &str) -> String {
        String::from_utf8(normalize(path.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn equivalent_spellings_of_a_path_are_one_path() {
        for path in [
            "/admin",
            "//admin",
            "///admin",
            "/./admin",
            "/%61dmin",
            "/%61%64%6D%69%6e",
            "/x/../admin",
            "/x/y/../../admin",
            "/../admin",
            "/x/%2E%2E/admin",
            "/x/%2e./admin",
            "/.//./admin",
        ] {
            assert_eq!(normal(path), "/admin", "{path}");
        }
    }

    #[test]
    fn dot_segments_follow_rfc_3986() {
        assert_eq!(normal("/a/b/c/./../../g"), "/a/g");
        assert_eq!(normal("/mid/content=5/../6"), "/mid/6");
        assert_eq!(normal("/a/b/.."), "/a/");
        assert_eq!(normal("/a/b/."), "/a/b/");
        assert_eq!(normal("/.."), "/");
        assert_eq!(normal("/."), "/");
        assert_eq!(normal("/a/.b/..c/..."), "/a/.b/..c/...");
        assert_eq!(normal("/a/b/"), "/a/b/");
        assert_eq!(normal("/a//b//"), "/a/b/");
        assert_eq!(normal("/"), "/");
    }

    #[test]
    fn reserved_characters_stay_encoded_with_upper_case_digits() {
        assert_eq!(normal("/a%2fb"), "/a%2Fb");
        assert_eq!(normal("/a%2F..%2Fadmin"), "/a%2F..%2Fadmin");
        assert_eq!(normal("/%7euser"), "/~user");
        assert_eq!(normal("/%3f%20"), "/%3F%20");
        assert_eq!(normal("/%25%32%66"), "/%252f");
        assert_eq!(normal("/%zz/%4/%"), "/%25zz/%254/%25");
        assert_eq!(normal("/%%34%31"), "/%2541");
    }

    #[test]
    fn only_paths_are_normalised() {
        assert_eq!(normal("*"), "*");
        assert_eq!(normal(""), "");
        assert_eq!(normal("a/../b"), "a/../b");
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/admin",
            "/a/b/",
            "/a%2Fb",
            "/.well-known/x",
            "/a..b",
            "/%25zz",
        ] {
            assert!(
                matches!(normalize(path.as_bytes()), Cow::Borrowed(_)),
                "{path}"
            );
        }
    }

    #[test]
    fn rule_values_only_get_their_percent_encoding_normalised() {
        let value =
            |v: &str| String::from_utf8(normalize_percent_encoding(v.as_bytes()).into_owned());
        assert_eq!(value("/%7euser/%2f/./%").unwrap(), "/~user/%2F/./%25");
        assert!(matches!(
            normalize_percent_encoding(b"/api/%2F"),
            Cow::Borrowed(_)
        ));
    }

    /// A segment in normal form: unreserved and allowed sub-delimiters, or an encoded
    /// reserved character, never `.` or `..` alone.
    fn normal_segment() -> impl Strategy<Value = String> {
        "([A-Za-z0-9_~!$&'()*+,;=:@-]|%2F|%3F|%25|%20|\\.){1,8}"
            .prop_filter("not a dot segment", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn normalising_never_panics_and_is_idempotent(path in proptest::collection::vec(any::<u8>(), 0..64)) {
            let once = normalize(&path).into_owned();
            let twice = normalize(&once).into_owned();
            prop_assert_eq!(&once, &twice);
            prop_assert!(matches!(normalize(&once), Cow::Borrowed(_)));
        }

        #[test]
        fn normalising_path_like_bytes_is_idempotent(path in "/([a-c./]|%2[eEfF]|%6[1-3]|%[0-9a-fA-F]{0,2}){0,24}") {
            let once = normalize(path.as_bytes()).into_owned();
            prop_assert_eq!(normalize(&once).into_owned(), once.clone());
            prop_assert!(once.starts_with(b"/"));
            prop_assert!(!once.windows(2).any(|w| w == b"//"), "{:?}", String::from_utf8_lossy(&once));
        }

        #[test]
        fn a_normal_path_is_unchanged(segments in proptest::collection::vec(normal_segment(), 0..6), trailing in any::<bool>()) {
            let mut path = format!("/{}", segments.join("/"));
            if trailing && !segments.is_empty() {
                path.push('/');
            }
            prop_assert!(matches!(normalize(path.as_bytes()), Cow::Borrowed(_)), "{}", path);
        }

        #[test]
        fn slashes_dots_and_encoded_unreserved_characters_do_not_change_the_route(
            segments in proptest::collection::vec(normal_segment(), 1..6),
            noise in proptest::collection::vec(0..4u8, 1..6),
        ) {
            let plain = format!("/{}", segments.join("/"));
            let mut noisy = String::new();
            for (segment, noise) in segments.iter().zip(noise.iter().cycle()) {
                match noise {
                    0 => noisy.push_str("//"),
                    1 => noisy.push_str("/./"),
                    2 => noisy.push_str("/detour/../"),
                    _ => noisy.push('/'),
                }
                noisy.push_str(&segment.replace('~', "%7e").replace('_', "%5F"));
            }
            prop_assert_eq!(normal(&noisy), plain);
        }
    }
}
