//! `ContentRouter::decide` on the listener of issue 13's example.

use std::net::SocketAddr;

use sozu_command_lib::request::{Order, TcpProtocol, TcpScript};

use super::{client_hello::tests::rustls_client_hello, *};

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40000))
}

fn listener() -> TcpListenerConfig {
    TcpListenerConfig::new(SocketAddr::from(([127, 0, 0, 1], 5000)))
}

fn frontend(cluster: &str, rule: Option<TcpRule>) -> TcpFrontend {
    TcpFrontend {
        rule,
        ..TcpFrontend::new(cluster, listener().address)
    }
}

fn sni(name: &str) -> Option<TcpRule> {
    Some(TcpRule::Sni(name.to_string()))
}

/// Issue 13's example: tenants by SNI, a web cluster by Host, SSH by detection, a fallback.
fn example() -> ContentRouter {
    ContentRouter::new(
        &listener(),
        &[
            frontend("tenant-a", sni("a.test")),
            frontend("tenant-b", sni("b.test")),
            frontend("web", Some(TcpRule::HttpHost("c.test".to_string()))),
            frontend("ssh", Some(TcpRule::Protocol(TcpProtocol::Ssh))),
            frontend("fallback", None),
        ],
    )
    .unwrap()
}

fn route(cluster: &str) -> Verdict {
    Verdict::Route(Rc::from(cluster))
}

#[test]
fn the_example_routes_each_client_by_its_first_bytes() {
    let mut router = example();
    let a = rustls_client_hello("a.test", &[b"h2"]);
    assert_eq!(router.decide(&a, peer(), false), route("tenant-a"));
    let b = include_bytes!("data/openssl-b.test-h2.bin");
    assert_eq!(router.decide(b, peer(), false), route("tenant-b"));
    let web = include_bytes!("data/curl-http-c.test.bin");
    assert_eq!(router.decide(web, peer(), false), route("web"));
    let ssh = include_bytes!("data/ssh-banner.bin");
    assert_eq!(router.decide(ssh, peer(), false), route("ssh"));
    let unknown_tenant = include_bytes!("data/curl-c.test.bin");
    assert_eq!(
        router.decide(unknown_tenant, peer(), false),
        route("fallback")
    );
    assert_eq!(
        router.decide(b"\x00garbage", peer(), false),
        route("fallback")
    );
    assert_eq!(router.stats().defaults_by_miss, 2);
    let matches: Vec<(String, u64)> = router
        .rule_matches()
        .map(|(rule, _, matches)| (rule.to_string(), matches))
        .collect();
    assert_eq!(
        matches,
        [
            ("sni = \"a.test\"".to_string(), 1),
            ("sni = \"b.test\"".to_string(), 1),
            ("http_host = \"c.test\"".to_string(), 1),
            ("protocol = \"ssh\"".to_string(), 1),
        ]
    );
}

#[test]
fn a_client_hello_one_byte_at_a_time_waits_until_it_is_whole() {
    let mut router = example();
    let hello = rustls_client_hello("b.test", &[]);
    for end in 0..hello.len() {
        assert_eq!(
            router.decide(&hello[..end], peer(), false),
            Verdict::NeedMore,
            "{end}"
        );
    }
    assert_eq!(router.decide(&hello, peer(), false), route("tenant-b"));
}

#[test]
fn a_silent_client_goes_to_the_default_when_the_wait_ends() {
    let mut router = example();
    assert_eq!(router.decide(b"", peer(), false), Verdict::NeedMore);
    assert_eq!(router.decide(b"", peer(), true), route("fallback"));
    // A ClientHello cut short by the deadline is no match either.
    let hello = rustls_client_hello("a.test", &[]);
    assert_eq!(router.decide(&hello[..40], peer(), true), route("fallback"));
    assert_eq!(router.stats().defaults_by_timeout, 2);
}

#[test]
fn inspection_stops_at_inspect_bytes() {
    let config = TcpListenerConfig {
        inspect_bytes: 64,
        ..listener()
    };
    let mut router = ContentRouter::new(
        &config,
        &[
            frontend("late", Some(TcpRule::Regex("needle".to_string()))),
            frontend("fallback", None),
        ],
    )
    .unwrap();
    let mut data = vec![b'x'; 63];
    assert_eq!(router.decide(&data, peer(), false), Verdict::NeedMore);
    data.extend_from_slice(b"needle");
    data.resize(10 * 1024 * 1024, b'x');
    assert_eq!(router.decide(&data, peer(), false), route("fallback"));
    assert_eq!(router.stats().defaults_by_size, 1);
    assert_eq!(router.stats().bytes_inspected, 64);
}

#[test]
fn specific_rules_win_whatever_the_order_they_were_added_in() {
    let router = ContentRouter::new(
        &listener(),
        &[
            frontend("any-tls", Some(TcpRule::Protocol(TcpProtocol::Tls))),
            frontend("regex", sni("/.*\\.a\\.test/")),
            frontend("wildcard", sni("*.a.test")),
            frontend("exact", sni("api.a.test")),
            frontend("other-exact", sni("www.a.test")),
        ],
    );
    let mut router = router.unwrap();
    let hello = |name| rustls_client_hello(name, &[]);
    assert_eq!(
        router.decide(&hello("api.a.test"), peer(), false),
        route("exact")
    );
    assert_eq!(
        router.decide(&hello("x.a.test"), peer(), false),
        route("wildcard")
    );
    assert_eq!(
        router.decide(&hello("x.y.a.test"), peer(), false),
        route("regex")
    );
    assert_eq!(
        router.decide(&hello("b.test"), peer(), false),
        route("any-tls")
    );
    // The TLS detector knows after three bytes, but the SNI rules hold it until the
    // ClientHello is whole.
    assert_eq!(
        router.decide(&hello("b.test")[..3], peer(), false),
        Verdict::NeedMore
    );
}

#[test]
fn the_order_of_addition_breaks_ties() {
    let mut router = ContentRouter::new(
        &listener(),
        &[
            frontend("first", Some(TcpRule::Prefix("GET ".to_string()))),
            frontend("second", Some(TcpRule::Prefix("GET /".to_string()))),
        ],
    )
    .unwrap();
    assert_eq!(
        router.decide(b"GET / HTTP/1.1\r\n", peer(), false),
        route("first")
    );
}

#[test]
fn a_listener_without_rules_decides_at_once() {
    let mut router = ContentRouter::new(&listener(), &[frontend("only", None)]).unwrap();
    assert_eq!(router.decide(b"", peer(), false), route("only"));
    let mut router = ContentRouter::new(&listener(), &[]).unwrap();
    assert_eq!(router.decide(b"", peer(), false), Verdict::Close);
}

#[test]
fn without_a_default_unmatched_connections_are_closed() {
    let mut router = ContentRouter::new(&listener(), &[frontend("a", sni("a.test"))]).unwrap();
    assert_eq!(
        router.decide(b"SSH-2.0-x\r\n", peer(), false),
        Verdict::Close
    );
}

fn script(source: &str) -> TcpScript {
    TcpScript {
        name: "route.lua".to_string(),
        source: source.to_string(),
    }
}

fn scripted(source: &str, frontends: &[TcpFrontend]) -> ContentRouter {
    let config = TcpListenerConfig {
        script: Some(script(source)),
        ..listener()
    };
    ContentRouter::new(&config, frontends).unwrap()
}

/// ProxyMachine's Git router: `git-upload-pack /<user>/<repo>` goes to the user's cluster.
const GIT_ROUTER: &str = r#"
function route(data, peer)
  local user = data:match("^%x%x%x%xgit%-upload%-pack /(%w+)/")
  if user then return { cluster = "git-" .. user } end
  if #data > 64 then return { close = "unknown repository\n" } end
  return nil
end
"#;

#[test]
fn the_script_decides_what_the_rules_leave() {
    let mut router = scripted(
        GIT_ROUTER,
        &[
            frontend("ssh", Some(TcpRule::Protocol(TcpProtocol::Ssh))),
            frontend("fallback", None),
        ],
    );
    assert_eq!(router.decide(b"SSH-2.0-x\r\n", peer(), false), route("ssh"));
    let request = b"0032git-upload-pack /alice/project.git\0host=git.test\0";
    assert_eq!(
        router.decide(&request[..10], peer(), false),
        Verdict::NeedMore
    );
    assert_eq!(router.decide(request, peer(), false), route("git-alice"));
    assert_eq!(
        router.decide(&[b'z'; 65], peer(), false),
        Verdict::Decision(Decision::Close(b"unknown repository\n".to_vec()))
    );
    assert_eq!(router.decide(b"0032git", peer(), true), route("fallback"));
    assert_eq!(router.stats().script_decisions, 2);
}

#[test]
fn the_script_is_not_asked_before_a_byte_came_unless_inspection_ended() {
    let mut router = scripted(
        "function route(d, p) return { cluster = 'len' .. #d } end",
        &[],
    );
    assert_eq!(router.decide(b"", peer(), false), Verdict::NeedMore);
    assert_eq!(router.stats().script_decisions, 0);
    assert_eq!(router.decide(b"", peer(), true), route("len0"));
    assert_eq!(router.decide(b"ab", peer(), false), route("len2"));
}

/// A SOCKS4 proxy: the request names the backend, the client gets a grant.
const SOCKS4: &str = r#"
function route(data, peer)
  if #data < 9 or data:byte(#data) ~= 0 then return nil end
  local port = data:byte(3) * 256 + data:byte(4)
  local ip = string.format("%d.%d.%d.%d", data:byte(5, 8))
  return { remote = ip .. ":" .. port, data = "", reply = "\0\90\0\0\0\0\0\0" }
end
"#;

#[test]
fn a_socks4_script_connects_to_the_address_the_client_asked() {
    let mut router = scripted(SOCKS4, &[]);
    let request = include_bytes!("data/curl-socks4.bin");
    assert_eq!(
        router.decide(&request[..5], peer(), false),
        Verdict::NeedMore
    );
    assert_eq!(
        router.decide(request, peer(), false),
        Verdict::Decision(Decision::Connect {
            target: Target::Remote("10.1.2.3:8080".to_string()),
            data: Some(Vec::new()),
            reply: Some(b"\0\x5a\0\0\0\0\0\0".to_vec()),
        })
    );
}

#[test]
fn a_failing_script_closes_the_connection_and_is_counted() {
    let mut router = scripted(
        "function route(d, p) error('boom') end",
        &[frontend("f", None)],
    );
    assert_eq!(router.decide(b"x", peer(), false), Verdict::Close);
    let mut looping = scripted("function route(d, p) while true do end end", &[]);
    assert_eq!(looping.decide(b"x", peer(), false), Verdict::Close);
    assert_eq!(looping.decide(b"y", peer(), false), Verdict::Close);
    assert_eq!(router.stats().script_errors, 1);
    assert_eq!(looping.stats().script_errors, 2);
}

#[test]
fn a_script_that_fails_to_load_is_refused_and_the_old_one_stays() {
    let mut router = scripted("function route(d, p) return { cluster = 'old' } end", &[]);
    let broken = TcpListenerConfig {
        script: Some(script("function route(d, p)")),
        ..listener()
    };
    let error = router.set_config(&broken).unwrap_err();
    assert!(
        error.to_string().contains("route.lua does not load"),
        "{error}"
    );
    assert_eq!(router.decide(b"x", peer(), false), route("old"));
    let newer = TcpListenerConfig {
        script: Some(script(
            "function route(d, p) return { cluster = 'new' } end",
        )),
        ..listener()
    };
    router.set_config(&newer).unwrap();
    assert_eq!(router.decide(b"x", peer(), false), route("new"));
}

#[test]
fn bad_rules_are_refused_with_their_frontend() {
    let Err(error) = ContentRouter::new(
        &listener(),
        &[frontend("a", Some(TcpRule::Regex("(".to_string())))],
    ) else {
        panic!("a regex that does not compile was accepted");
    };
    assert_eq!(
        error.to_string(),
        "TCP frontend regex = \"(\" of cluster `a`"
    );
}

#[test]
fn an_order_with_a_script_that_does_not_load_is_refused_naming_the_lua_error() {
    use sozu_command_lib::{request::UpdateTcpListener, state::ConfigState};

    use crate::{protocol::tls::KeyCheck, server::validate};

    let broken = TcpListenerConfig {
        script: Some(script("function route(d, p)\n  return {\n")),
        ..listener()
    };
    let Err(error) = validate(
        &ConfigState::new(),
        &Order::AddTcpListener(broken),
        KeyCheck::Now,
    ) else {
        panic!("a script that does not load was accepted");
    };
    assert_eq!(error.to_string(), "listener 127.0.0.1:5000");
    let script_error = std::error::Error::source(&error).unwrap();
    assert_eq!(script_error.to_string(), "script route.lua does not load");
    let lua_error = script_error.source().unwrap().to_string();
    assert!(lua_error.contains("route.lua:3:"), "{lua_error}");
    let mut state = ConfigState::new();
    state.apply(&Order::AddTcpListener(listener())).unwrap();
    let update = UpdateTcpListener {
        script: Some(Some(script("x = 1"))),
        ..UpdateTcpListener::between(&listener(), &listener())
    };
    let Err(error) = validate(
        &state,
        &Order::UpdateTcpListenerConfig(update),
        KeyCheck::Now,
    ) else {
        panic!("a script without route was accepted");
    };
    let script_error = std::error::Error::source(&error).unwrap().to_string();
    assert!(
        script_error.contains("defines no function `route(data, peer)`"),
        "{script_error}"
    );
    let good = TcpListenerConfig {
        script: Some(script(SOCKS4)),
        ..listener()
    };
    assert!(
        validate(
            &ConfigState::new(),
            &Order::AddTcpListener(good),
            KeyCheck::Now
        )
        .is_ok()
    );
}

#[test]
fn the_script_of_the_content_routing_doc_works() {
    let doc = include_str!("../../../../doc/content-routing.md");
    let source = doc
        .split("```lua\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the doc has a Lua block");
    let mut router = scripted(source, &[frontend("fallback", None)]);
    let git = b"0032git-upload-pack /alice/project.git\0host=git.test\0";
    assert_eq!(router.decide(git, peer(), false), route("git-alice"));
    let socks = include_bytes!("data/curl-socks4.bin");
    let Verdict::Decision(Decision::Connect { target, .. }) = router.decide(socks, peer(), false)
    else {
        panic!("the SOCKS4 request is not proxied");
    };
    assert_eq!(target, Target::Remote("10.1.2.3:8080".to_string()));
    assert_eq!(router.decide(b"hello", peer(), false), Verdict::NeedMore);
    assert_eq!(router.decide(b"hello", peer(), true), route("fallback"));
    assert_eq!(
        router.decide(&[b'?'; 64], peer(), false),
        Verdict::Decision(Decision::Close(b"unknown protocol\n".to_vec()))
    );
    router.proxy_error(peer(), "connection refused");
    assert_eq!(router.stats().script_errors, 0);
}

/// A program's router: `P` goes to the cluster `program`, anything else is closed with a word.
/// The SOCKS4 proxy and ProxyMachine's Git router of issue 13, item 4, registered on a running
/// worker and driven by real clients, are in `e2e/tests/content_clients.rs`.
struct ByFirstByte;

impl TcpRouter for ByFirstByte {
    fn route(&mut self, buffered: &[u8], _peer: SocketAddr) -> Decision {
        match buffered.first() {
            None => Decision::Wait,
            Some(b'P') => Decision::Connect {
                target: Target::Cluster("program".to_string()),
                data: None,
                reply: None,
            },
            Some(_) => Decision::Close(b"no\n".to_vec()),
        }
    }
}

#[test]
fn a_program_decides_after_the_rules_in_place_of_the_script() {
    let mut router = ContentRouter::new(
        &TcpListenerConfig {
            script: Some(TcpScript {
                name: "never.lua".to_string(),
                source: "function route(d, p) return { close = true } end".to_string(),
            }),
            ..listener()
        },
        &[frontend("ssh", Some(TcpRule::Protocol(TcpProtocol::Ssh)))],
    )
    .unwrap();
    router.set_program(Box::new(ByFirstByte));
    assert_eq!(router.decide(b"", peer(), false), Verdict::NeedMore);
    assert_eq!(router.decide(b"P", peer(), false), route("program"));
    assert_eq!(router.decide(b"SSH-2.0-x\r\n", peer(), false), route("ssh"));
    assert_eq!(
        router.decide(b"HTTP", peer(), false),
        Verdict::Decision(Decision::Close(b"no\n".to_vec()))
    );
    assert_eq!(
        router.stats().script_decisions,
        2,
        "the SSH rule decided first"
    );
}

/// The access log names the rule that routed a connection: the label is the router's, shared,
/// not a string made per connection.
#[test]
fn the_deciding_rule_is_named_by_a_label_the_router_shares() {
    let mut router = example();
    let ssh = include_bytes!("data/ssh-banner.bin");
    assert_eq!(router.decide(ssh, peer(), false), route("ssh"));
    let first = router.last_decider().clone();
    assert_eq!(
        first.label(),
        TcpRule::Protocol(TcpProtocol::Ssh).to_string()
    );
    assert_eq!(router.decide(ssh, peer(), false), route("ssh"));
    let (Decider::Rule(first), Decider::Rule(second)) = (first, router.last_decider()) else {
        panic!("a rule decided");
    };
    assert!(Rc::ptr_eq(&first, second));
    assert_eq!(router.decide(b"", peer(), true), route("fallback"));
    assert_eq!(router.last_decider().label(), "default");
}
