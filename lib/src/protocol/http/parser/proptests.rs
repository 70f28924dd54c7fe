use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

const REQUEST_ID: &[u8] = b"Sozu-Id";

/// Field names the generator leaves to the framing and Host it adds itself.
const SPECIAL_NAMES: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "expect",
    "sozu-id",
    "te",
];

#[derive(Clone, Debug)]
enum GeneratedBody {
    None,
    ContentLength(Vec<u8>),
    Chunked(Vec<Vec<u8>>),
}

#[derive(Clone, Debug)]
struct GeneratedRequest {
    empty_lines: usize,
    method: String,
    target: String,
    host: String,
    host_index: usize,
    /// Name, whitespace before the value, value, whitespace after it.
    fields: Vec<(String, String, String, String)>,
    body: GeneratedBody,
}

/// The request's bytes, and where its head ends.
struct Encoded {
    bytes: Vec<u8>,
    head_len: usize,
}

impl GeneratedRequest {
    fn encode(&self) -> Encoded {
        let mut head = "\r\n".repeat(self.empty_lines);
        head.push_str(&format!("{} {} HTTP/1.1\r\n", self.method, self.target));
        for (index, (name, before, value, after)) in self.fields.iter().enumerate() {
            if index == self.host_index {
                head.push_str(&format!("Host: {}\r\n", self.host));
            }
            head.push_str(&format!("{name}:{before}{value}{after}\r\n"));
        }
        if self.host_index >= self.fields.len() {
            head.push_str(&format!("Host: {}\r\n", self.host));
        }
        let mut body = Vec::new();
        match &self.body {
            GeneratedBody::None => {}
            GeneratedBody::ContentLength(data) => {
                head.push_str(&format!("Content-Length: {}\r\n", data.len()));
                body.extend_from_slice(data);
            }
            GeneratedBody::Chunked(chunks) => {
                head.push_str("Transfer-Encoding: chunked\r\n");
                for chunk in chunks {
                    body.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    body.extend_from_slice(chunk);
                    body.extend_from_slice(b"\r\n");
                }
                body.extend_from_slice(b"0\r\n\r\n");
            }
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        let head_len = bytes.len();
        bytes.extend_from_slice(&body);
        Encoded { bytes, head_len }
    }

    fn framing(&self) -> BodyFraming {
        match &self.body {
            GeneratedBody::None => BodyFraming::None,
            GeneratedBody::ContentLength(data) => BodyFraming::ContentLength(data.len() as u64),
            GeneratedBody::Chunked(_) => BodyFraming::Chunked,
        }
    }
}

fn field() -> impl Strategy<Value = (String, String, String, String)> {
    (
        "[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,20}"
            .prop_filter("special names are generated apart", |name| {
                !SPECIAL_NAMES.contains(&name.to_ascii_lowercase().as_str())
            }),
        "[ \t]{0,2}",
        "([!-~]([ -~\t]{0,60}[!-~])?)?",
        "[ \t]{0,2}",
    )
}

fn body() -> impl Strategy<Value = GeneratedBody> {
    prop_oneof![
        Just(GeneratedBody::None),
        vec(any::<u8>(), 0..64).prop_map(GeneratedBody::ContentLength),
        vec(vec(any::<u8>(), 1..40), 0..4).prop_map(GeneratedBody::Chunked),
    ]
}

fn generated_request() -> impl Strategy<Value = GeneratedRequest> {
    (
        0..3usize,
        "[A-Z]{1,10}".prop_filter("CONNECT takes an authority", |method| method != "CONNECT"),
        "/[A-Za-z0-9._~!$&'()*+,;=:@%/-]{0,40}(\\?[A-Za-z0-9=&%/?-]{0,30})?",
        "[a-z0-9]{1,10}(\\.[a-z0-9-]{1,10}){0,3}(:[0-9]{1,4})?",
        0..12usize,
        vec(field(), 0..12),
        body(),
    )
        .prop_map(
            |(empty_lines, method, target, host, host_index, fields, body)| GeneratedRequest {
                empty_lines,
                method,
                target,
                host,
                host_index,
                fields,
                body,
            },
        )
}

fn parse(buf: &[u8], headers: &mut Vec<Header>) -> Result<Parsed<RequestHead>, ParseError> {
    parse_request_head(buf, &Limits::default(), REQUEST_ID, headers)
}

/// Feeds `body` to a tracker of `framing` in pieces of `piece` bytes; returns the
/// length of the body, if it ends.
fn body_len(
    framing: BodyFraming,
    body: &[u8],
    piece: usize,
) -> Result<Option<usize>, ChunkedError> {
    let mut chunked = ChunkedBody::new(&Limits::default());
    let mut content_length = match framing {
        BodyFraming::ContentLength(length) => ContentLengthBody::new(length),
        _ => ContentLengthBody::new(0),
    };
    let mut fed = 0;
    for slice in body.chunks(piece.max(1)) {
        let progress = match framing {
            BodyFraming::Chunked => chunked.feed(slice)?,
            _ => content_length.feed(slice),
        };
        match progress {
            BodyProgress::Partial => fed += slice.len(),
            BodyProgress::Complete { len } => return Ok(Some(fed + len)),
        }
    }
    Ok(None)
}

/// The head re-emitted from the recorded positions: request line, field lines, CRLF.
fn reemit(buf: &[u8], head: &RequestHead, headers: &[Header]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(head.method_span.slice(buf));
    out.push(b' ');
    out.extend_from_slice(head.target.slice(buf));
    out.push(b' ');
    out.extend_from_slice(head.version.as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in headers {
        out.extend_from_slice(header.line().slice(buf));
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// The head rebuilt from names and values only, with `: ` between them.
fn normalise(buf: &[u8], head: &RequestHead, headers: &[Header]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(head.method_span.slice(buf));
    out.push(b' ');
    out.extend_from_slice(head.target.slice(buf));
    out.push(b' ');
    out.extend_from_slice(head.version.as_bytes());
    out.extend_from_slice(b"\r\n");
    for header in headers {
        out.extend_from_slice(header.name.slice(buf));
        out.extend_from_slice(b": ");
        out.extend_from_slice(header.value.slice(buf));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Whatever parses completely re-parses the same from its recorded positions.
fn check_reparse(buf: &[u8]) -> Result<(), TestCaseError> {
    let mut headers = Vec::new();
    let Ok(Parsed::Complete(head)) = parse(buf, &mut headers) else {
        return Ok(());
    };
    prop_assert!(head.start <= head.head_len && head.head_len <= buf.len());
    // A complete head can only complete at its empty line: any shorter prefix waits.
    let mut prefix_headers = Vec::new();
    for end in 0..head.head_len {
        let prefix = buf.get(..end).unwrap_or_default();
        prop_assert_eq!(
            parse(prefix, &mut prefix_headers),
            Ok(Parsed::Partial),
            "prefix of {} bytes",
            end
        );
    }
    let reemitted = reemit(buf, &head, &headers);
    prop_assert_eq!(Some(&reemitted[..]), buf.get(head.start..head.head_len));

    for rebuilt in [reemitted, normalise(buf, &head, &headers)] {
        let mut again_headers = Vec::new();
        let again = parse(&rebuilt, &mut again_headers);
        let Ok(Parsed::Complete(again)) = again else {
            return Err(TestCaseError::fail(format!(
                "rebuilt head did not parse: {again:?}"
            )));
        };
        prop_assert_eq!(again.head_len, rebuilt.len());
        prop_assert_eq!(again.body, head.body);
        prop_assert_eq!(again.persistence, head.persistence);
        prop_assert_eq!(again.method, head.method);
        prop_assert_eq!(again.target_form, head.target_form);
        prop_assert_eq!(
            again
                .authority
                .map(|authority| authority.span.slice(&rebuilt)),
            head.authority.map(|authority| authority.span.slice(buf))
        );
        prop_assert_eq!(again_headers.len(), headers.len());
        for (first, second) in headers.iter().zip(&again_headers) {
            prop_assert_eq!(first.kind, second.kind);
            prop_assert_eq!(first.value.slice(buf), second.value.slice(&rebuilt));
        }
    }
    prop_assert_eq!(
        reemit(buf, &head, &headers).len(),
        head.head_len - head.start
    );
    Ok(())
}

/// Parses `buf` as a response and a chunked body: nothing may panic, and a complete
/// response re-parses the same from its recorded positions.
fn check_response_and_chunked(buf: &[u8]) -> Result<(), TestCaseError> {
    for method in [Method::Get, Method::Head, Method::Connect] {
        let mut headers = Vec::new();
        if let Ok(Parsed::Complete(head)) =
            parse_response_head(buf, &Limits::default(), method, &mut headers)
        {
            let first_field = headers
                .first()
                .map_or(head.head_len - 2, |header| header.name.start);
            let mut rebuilt = format!(
                "{} {} ",
                String::from_utf8_lossy(head.version.as_bytes()),
                head.status
            )
            .into_bytes();
            rebuilt.extend_from_slice(head.reason.slice(buf));
            rebuilt.extend_from_slice(b"\r\n");
            rebuilt.extend_from_slice(buf.get(first_field..head.head_len).unwrap_or_default());
            let mut again_headers = Vec::new();
            let again =
                parse_response_head(&rebuilt, &Limits::default(), method, &mut again_headers);
            let Ok(Parsed::Complete(again)) = again else {
                return Err(TestCaseError::fail(format!(
                    "rebuilt response did not parse: {again:?}"
                )));
            };
            prop_assert_eq!(again.status, head.status);
            prop_assert_eq!(again.body, head.body);
            prop_assert_eq!(again.persistence, head.persistence);
            prop_assert_eq!(
                again.head_len - (again.reason.end + 2),
                head.head_len - first_field
            );
        }
    }
    let whole = ChunkedBody::new(&Limits::default()).feed(buf);
    let bytewise = body_len(BodyFraming::Chunked, buf, 1);
    match (whole, bytewise) {
        (Ok(BodyProgress::Complete { len }), Ok(Some(bytewise))) => prop_assert_eq!(len, bytewise),
        (Ok(BodyProgress::Partial), Ok(None)) | (Err(_), Err(_)) => {}
        (whole, bytewise) => {
            return Err(TestCaseError::fail(format!(
                "whole {whole:?} but byte by byte {bytewise:?}"
            )));
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let byte = prop_oneof![
        4 => prop::sample::select(&b"\r\n \t:,;\"\\0aA\x00\x7f\xff-/?#@[]"[..]),
        1 => any::<u8>(),
    ]
    .boxed();
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| Mutation::Replace(at, byte)),
        (any::<usize>(), byte).prop_map(|(at, byte)| Mutation::Insert(at, byte)),
        any::<usize>().prop_map(Mutation::Delete),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        if bytes.is_empty() {
            return;
        }
        match *mutation {
            Mutation::Replace(at, byte) => {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            Mutation::Insert(at, byte) => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Delete(at) => {
                bytes.remove(at % bytes.len());
            }
        }
    }
}

proptest! {
    #[test]
    fn generated_requests_parse_to_their_parts(request in generated_request()) {
        let encoded = request.encode();
        let buf = &encoded.bytes;
        let mut headers = Vec::new();
        let parsed = parse(buf, &mut headers);
        let Ok(Parsed::Complete(head)) = parsed else {
            return Err(TestCaseError::fail(format!("did not parse: {parsed:?}")));
        };
        prop_assert_eq!(head.head_len, encoded.head_len);
        prop_assert_eq!(head.start, 2 * request.empty_lines);
        prop_assert_eq!(head.method_span.slice(buf), request.method.as_bytes());
        prop_assert_eq!(head.target.slice(buf), request.target.as_bytes());
        prop_assert_eq!(head.path.slice(buf), request.target.as_bytes());
        prop_assert_eq!(head.body, request.framing());
        prop_assert_eq!(head.persistence, Persistence::KeepAlive);
        let authority = head.authority.map(|authority| authority.span.slice(buf));
        prop_assert_eq!(authority, Some(request.host.as_bytes()));

        let generated: Vec<_> = headers
            .iter()
            .filter(|header| header.kind != HeaderKind::Host && header.kind != HeaderKind::ContentLength
                && header.kind != HeaderKind::TransferEncoding)
            .collect();
        prop_assert_eq!(generated.len(), request.fields.len());
        for (header, (name, _, value, _)) in generated.iter().zip(&request.fields) {
            prop_assert_eq!(header.name.slice(buf), name.as_bytes());
            prop_assert_eq!(header.value.slice(buf), value.as_bytes());
        }

        // The body ends where it was generated to, whatever the pieces it comes in.
        let mut rest = buf.get(head.head_len..).unwrap_or_default().to_vec();
        let body_len_expected = rest.len();
        rest.extend_from_slice(b"GET / HTTP/1.1\r\n");
        if head.body != BodyFraming::None {
            for piece in [1, 7, rest.len()] {
                prop_assert_eq!(body_len(head.body, &rest, piece), Ok(Some(body_len_expected)));
            }
        }
    }

    #[test]
    fn prefixes_of_generated_requests_are_partial(request in generated_request()) {
        let encoded = request.encode();
        let mut headers = Vec::new();
        for end in 0..encoded.head_len {
            let prefix = encoded.bytes.get(..end).unwrap_or_default();
            prop_assert_eq!(parse(prefix, &mut headers), Ok(Parsed::Partial), "prefix of {} bytes", end);
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        check_reparse(&bytes)?;
        check_response_and_chunked(&bytes)?;
    }

    #[test]
    fn mutated_requests_never_panic_and_reparse(
        request in generated_request(),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut bytes = request.encode().bytes;
        mutate(&mut bytes, &mutations);
        check_reparse(&bytes)?;
        check_response_and_chunked(&bytes)?;
    }

    #[test]
    fn mutated_responses_never_panic_and_reparse(
        status in 100u16..600,
        fields in vec(field(), 0..8),
        chunks in vec(vec(any::<u8>(), 1..20), 0..3),
        mutations in vec(mutation(), 0..4),
    ) {
        let mut bytes = format!("HTTP/1.1 {status} Reason phrase\r\n").into_bytes();
        for (name, before, value, after) in &fields {
            bytes.extend_from_slice(format!("{name}:{before}{value}{after}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for chunk in &chunks {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        mutate(&mut bytes, &mutations);
        check_response_and_chunked(&bytes)?;
    }
}
