//! Sōzu's answer templates, end to end (issue 11): every variable a Sōzu template may hold is
//! replaced in the answers the proxy writes, and a frontend's `redirect_template` is the whole
//! redirection answer, with `%REDIRECT_LOCATION` standing for its target.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use sozu_command_lib::request::{
    Cluster, HttpFrontend, HttpListenerConfig, Order, RedirectPolicy, RedirectScheme,
};
use sozu_e2e::{
    Worker, free_address,
    http_backend::{HttpBackend, Reply},
    http_client::{Client, Response},
};
use sozu_lib::server::ServerConfig;

const HOST: &str = "example.com";

/// A body naming every variable of Sōzu's answer templates, one per line.
const EVERY_VARIABLE: &str = "message=%MESSAGE\nphase=%PHASE\nduration=%DURATION\n\
capacity=%CAPACITY\ntemplate=%TEMPLATE_NAME\nsuccessfully=%SUCCESSFULLY_PARSED\n\
partially=%PARTIALLY_PARSED\ninvalid=%INVALID\nroute=%ROUTE\nrequest=%REQUEST_ID\n\
cluster=%CLUSTER_ID\nbackend=%BACKEND_ID\nlocation=%REDIRECT_LOCATION\n\
realm=%WWW_AUTHENTICATE\nretry=%RETRY_AFTER\n";

/// The value a line of an [`EVERY_VARIABLE`] answer gave `name`.
fn value<'r>(body: &'r str, name: &str) -> &'r str {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Sōzu's dump of `bytes`: two hex digits per byte, between quotes.
fn hex(bytes: &[u8]) -> String {
    let digits: Vec<String> = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("\"{}\"", digits.join(" "))
}

/// A proxy whose listener answers 400, 408, 502 and 504 with [`EVERY_VARIABLE`], with
/// one-second request and backend timeouts, in front of `backend`.
fn proxy(backend: &HttpBackend) -> (Worker, SocketAddr) {
    let mut listener = HttpListenerConfig::new(free_address());
    listener.request_timeout = Duration::from_secs(1);
    listener.back_timeout = Duration::from_secs(1);
    listener.answers = [400, 408, 502, 504]
        .into_iter()
        .map(|status| (status, EVERY_VARIABLE.to_string()))
        .collect::<BTreeMap<_, _>>();
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_proxy_with(listener, HOST, Cluster::new("app"), &[backend.address]);
    (worker, address)
}

#[track_caller]
fn assert_no_variable_left(response: &Response) {
    let body = response.text();
    assert_eq!(body.lines().count(), 15, "{body}");
    assert!(
        !body.contains('%'),
        "a variable was sent as written: {body}"
    );
}

#[test]
fn an_invalid_request_head_gets_sozus_parse_diagnostic() {
    let backend = HttpBackend::ok("ok");
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let response = client.exchange("GET", b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n");
    assert_eq!(response.status, 400);
    assert_no_variable_left(&response);
    let body = response.text();
    assert_eq!(
        value(&body, "message"),
        "whitespace between a field name and its colon"
    );
    assert_eq!(value(&body, "phase"), "Headers");
    assert_eq!(value(&body, "template"), "400");
    assert_eq!(
        value(&body, "capacity"),
        ServerConfig::default().buffer_size.to_string()
    );
    assert_eq!(
        value(&body, "successfully"),
        hex(b"GET / HTTP/1.1\r\nHost: a\r\n")
    );
    assert_eq!(value(&body, "partially"), hex(b"Bad"));
    assert_eq!(value(&body, "invalid"), hex(b" Name: x\r\n\r\n"));
    assert_eq!(value(&body, "duration"), "");
    assert_eq!(value(&body, "location"), "");
    let request_id = response.header("sozu-id").expect("a request id");
    assert_eq!(value(&body, "request"), request_id);
}

#[test]
fn an_invalid_response_head_gets_sozus_parse_diagnostic() {
    let backend = HttpBackend::start(|_| {
        Reply::SendAndClose(b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\n\r\n".to_vec())
    });
    let (_worker, address) = proxy(&backend);
    let mut client = Client::connect(address);
    let response = client.get(HOST, "/");
    assert_eq!(response.status, 502);
    assert_no_variable_left(&response);
    let body = response.text();
    assert_eq!(value(&body, "phase"), "Headers");
    assert_eq!(value(&body, "template"), "502");
    assert_eq!(value(&body, "cluster"), "app");
    assert_eq!(
        value(&body, "successfully"),
        hex(b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n")
    );
    assert_eq!(value(&body, "partially"), "\"\"");
    assert_eq!(value(&body, "invalid"), hex(b" b\r\n\r\n"));
}

#[test]
fn timeouts_name_their_duration() {
    let backend = HttpBackend::start(|_| Reply::Hang);
    let (_worker, address) = proxy(&backend);

    let mut client = Client::connect(address);
    let response = client.get(HOST, "/slow");
    assert_eq!(response.status, 504);
    assert_no_variable_left(&response);
    let body = response.text();
    assert_eq!(value(&body, "duration"), "1s");
    assert_eq!(value(&body, "template"), "504");
    assert_eq!(value(&body, "successfully"), "null");

    let mut client = Client::connect(address);
    client.send(b"GET / HTTP/1.1\r\nHost: exa");
    let response = client.response("GET");
    assert_eq!(response.status, 408);
    assert_no_variable_left(&response);
    assert_eq!(value(&response.text(), "duration"), "1s");
}

/// Issue 11: `redirect_template` was taken for the Location; in Sōzu it is the whole answer.
#[test]
fn a_redirect_template_is_the_whole_answer_around_the_computed_location() {
    let mut worker = Worker::start(ServerConfig::default());
    let address = worker.http_listener(HttpListenerConfig::new(free_address()));
    let mut frontend = HttpFrontend::new(None, address, "old.test");
    frontend.redirect = RedirectPolicy::Permanent;
    frontend.redirect_scheme = RedirectScheme::UseHttps;
    frontend.rewrite_host = Some("www.test".to_string());
    frontend.redirect_template = Some(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: %REDIRECT_LOCATION\r\nX-Id: %REQUEST_ID\r\n\
         \r\n<a href=\"%REDIRECT_LOCATION\">moved</a> by template %TEMPLATE_NAME"
            .to_string(),
    );
    worker.ok(Order::AddHttpFrontend(frontend));

    let mut client = Client::connect(address);
    let response = client.get("old.test", "/a?b=1");
    assert_eq!(response.head.start_line, "HTTP/1.1 301 Moved Permanently");
    assert_eq!(response.header("location"), Some("https://www.test/a?b=1"));
    assert_eq!(response.header("x-id"), response.header("sozu-id"));
    assert_eq!(
        response.text(),
        "<a href=\"https://www.test/a?b=1\">moved</a> by template 301"
    );

    let mut refused = HttpFrontend::new(None, address, "found.test");
    refused.redirect = RedirectPolicy::Found;
    refused.redirect_template = Some("HTTP/1.1 301 Moved Permanently\r\n\r\n".to_string());
    let answer = worker.order(Order::AddHttpFrontend(refused));
    assert!(answer.message.contains("redirects with 302"), "{answer:?}");
}
