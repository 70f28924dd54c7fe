//! One test per case of the routing policy, on parsed heads and a listener built in memory.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use sozu_command_lib::request::{
    Cluster, FixedAnswer, Hsts, HttpFrontend, HttpListenerConfig, RedirectPolicy, RedirectScheme,
    TlsListenerConfig,
};

use super::*;
use crate::{
    https::HttpsSettings,
    protocol::http::{
        answers::Answers,
        parser::{Limits, Parsed, parse_request_head},
    },
    router::Router,
};

const ADDRESS: &str = "127.0.0.1:8080";
/// `sha256("secret")`.
const SECRET: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

/// What a test routes with.
struct Setup {
    listener: HttpListener,
    clusters: BTreeMap<String, Cluster>,
    authorized: FxHashMap<String, Authorized>,
}

impl Setup {
    fn http() -> Setup {
        Setup::with_tls(None)
    }

    fn https(strict_sni_binding: bool) -> Setup {
        let tls = TlsListenerConfig {
            strict_sni_binding,
            ..TlsListenerConfig::default()
        };
        Setup::with_tls(Some(HttpsSettings::new(&tls).unwrap()))
    }

    fn with_tls(tls: Option<HttpsSettings>) -> Setup {
        Setup {
            listener: HttpListener {
                config: HttpListenerConfig::new(ADDRESS.parse().unwrap()),
                router: Router::new(),
                answers: Answers::new(&BTreeMap::new()).unwrap(),
                tls,
                hsts: None,
                limits: Limits::default(),
                spares: Default::default(),
            },
            clusters: BTreeMap::new(),
            authorized: FxHashMap::default(),
        }
    }

    fn cluster(&mut self, cluster: Cluster) {
        self.authorized.insert(
            cluster.cluster_id.clone(),
            Authorized::parse(&cluster.authorized_hashes),
        );
        self.clusters.insert(cluster.cluster_id.clone(), cluster);
    }

    /// A frontend for `hostname` to `cluster`, changed by `edit`.
    fn frontend(
        &mut self,
        cluster: Option<&str>,
        hostname: &str,
        edit: impl FnOnce(&mut HttpFrontend),
    ) {
        let mut frontend = HttpFrontend::new(
            cluster.map(str::to_string),
            ADDRESS.parse().unwrap(),
            hostname,
        );
        edit(&mut frontend);
        self.listener.router.add(frontend).unwrap();
    }

    /// Routes `request`, a head, as a client that sent `server_name` in its TLS hello.
    fn decide_with_sni(
        &self,
        request: &str,
        server_name: Option<&str>,
        check: impl FnOnce(RouteDecision<'_>),
    ) {
        let mut headers = Vec::new();
        let buf = request.as_bytes();
        let Ok(Parsed::Complete(head)) =
            parse_request_head(buf, &self.listener.limits, b"", &mut headers)
        else {
            panic!("not a complete head: {request:?}");
        };
        let request = Request {
            buf,
            head: &head,
            headers: &headers,
            server_name,
        };
        check(decide(
            &self.listener,
            &self.clusters,
            &self.authorized,
            request,
        ));
    }

    fn decide(&self, request: &str, check: impl FnOnce(RouteDecision<'_>)) {
        self.decide_with_sni(request, None, check);
    }
}

fn get(host: &str, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

#[track_caller]
fn assert_answer(decision: RouteDecision<'_>, expected: u16, expected_close: Close) {
    match decision {
        RouteDecision::Answer { status, close, .. } => {
            assert_eq!((status, close), (expected, expected_close));
        }
        other => panic!("expected a {expected} answer, got {other:?}"),
    }
}

#[track_caller]
fn assert_redirect(decision: RouteDecision<'_>, expected_status: u16, expected_location: &str) {
    match decision {
        RouteDecision::Redirect {
            status, location, ..
        } => assert_eq!(
            (status, location.as_str()),
            (expected_status, expected_location)
        ),
        other => panic!("expected a redirection, got {other:?}"),
    }
}

#[track_caller]
fn forwarded(decision: RouteDecision<'_>) -> Forward<'_> {
    match decision {
        RouteDecision::Forward(forward) => forward,
        other => panic!("expected a forward, got {other:?}"),
    }
}

#[test]
fn connect_is_refused_with_405_and_the_connection_closes() {
    let mut setup = Setup::http();
    setup.cluster(Cluster::new("api"));
    setup.frontend(Some("api"), "example.com", |_| {});
    setup.decide(
        "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        |decision| assert_answer(decision, 405, Close::AfterAnswer),
    );
}

#[test]
fn strict_sni_binding_answers_421_to_a_host_other_than_the_server_name() {
    let mut setup = Setup::https(true);
    setup.cluster(Cluster::new("api"));
    setup.frontend(Some("api"), "example.com", |_| {});
    setup.frontend(Some("api"), "other.com", |_| {});
    let request = get("other.com", "/");
    setup.decide_with_sni(&request, Some("example.com"), |decision| {
        assert_answer(decision, 421, Close::KeepAlive)
    });
    setup.decide_with_sni(&request, None, |decision| {
        assert_answer(decision, 421, Close::KeepAlive)
    });
    // The same name, whatever its case or a final dot, goes through.
    let request = get("Example.com.", "/");
    setup.decide_with_sni(&request, Some("example.com"), |decision| {
        forwarded(decision);
    });
}

#[test]
fn without_strict_sni_binding_any_host_is_routed() {
    let mut setup = Setup::https(false);
    setup.cluster(Cluster::new("api"));
    setup.frontend(Some("api"), "other.com", |_| {});
    setup.decide_with_sni(&get("other.com", "/"), Some("example.com"), |decision| {
        forwarded(decision);
    });
}

#[test]
fn no_frontend_is_404_and_a_request_body_closes_the_connection() {
    let setup = Setup::http();
    setup.decide(&get("nowhere.com", "/"), |decision| {
        assert_answer(decision, 404, Close::KeepAlive)
    });
    setup.decide(
        "POST / HTTP/1.1\r\nHost: nowhere.com\r\nContent-Length: 3\r\n\r\n",
        |decision| assert_answer(decision, 404, Close::AfterAnswer),
    );
    setup.decide(
        "GET / HTTP/1.1\r\nHost: nowhere.com\r\nConnection: close\r\n\r\n",
        |decision| assert_answer(decision, 404, Close::AfterAnswer),
    );
}

#[test]
fn answer_frontend_gives_its_fixed_response() {
    let mut setup = Setup::http();
    setup.frontend(None, "fixed.com", |frontend| {
        frontend.answer = Some(FixedAnswer {
            status: 200,
            headers: Vec::new(),
            body: "fixed".to_string(),
        });
    });
    setup.decide(&get("fixed.com", "/x"), |decision| match decision {
        RouteDecision::Fixed { answer, close } => {
            assert_eq!((answer.status, close), (200, Close::KeepAlive));
        }
        other => panic!("expected the fixed answer, got {other:?}"),
    });
}

#[test]
fn redirects_keep_host_and_path_with_the_frontend_scheme() {
    let mut setup = Setup::http();
    setup.cluster(Cluster::new("api"));
    setup.frontend(Some("api"), "moved.com", |frontend| {
        frontend.redirect = RedirectPolicy::Permanent;
    });
    setup.frontend(Some("api"), "found.com", |frontend| {
        frontend.redirect = RedirectPolicy::Found;
        frontend.redirect_scheme = RedirectScheme::UseHttps;
    });
    setup.frontend(None, "kept.com", |frontend| {
        frontend.redirect = RedirectPolicy::PermanentRedirect;
    });
    setup.decide(&get("moved.com", "/a?b=1"), |decision| {
        assert_redirect(decision, 301, "http://moved.com/a?b=1")
    });
    setup.decide(&get("found.com:8080", "/a"), |decision| {
        assert_redirect(decision, 302, "https://found.com:8080/a")
    });
    setup.decide(&get("kept.com", "/"), |decision| match decision {
        RouteDecision::Redirect {
            status, cluster, ..
        } => assert_eq!((status, cluster), (308, None)),
        other => panic!("expected a redirection, got {other:?}"),
    });
    // The cluster is named: its own answers apply.
    setup.decide(&get("moved.com", "/"), |decision| match decision {
        RouteDecision::Redirect { cluster, .. } => assert_eq!(cluster, Some("api")),
        other => panic!("expected a redirection, got {other:?}"),
    });
}

#[test]
/// Issue 11: `redirect_template` is Sōzu's whole answer, not the Location: the location stays
/// the request's (or the rewritten) target, and the template comes with the decision.
fn redirect_template_is_the_answer_and_the_location_stays_the_target() {
    let mut setup = Setup::https(false);
    setup.frontend(None, "old.com", |frontend| {
        frontend.redirect = RedirectPolicy::Permanent;
        frontend.redirect_template =
            Some("HTTP/1.1 301 Moved\r\nLocation: %REDIRECT_LOCATION\r\n\r\n".to_string());
    });
    setup.decide(&get("old.com", "/a/b?c=d"), |decision| match decision {
        RouteDecision::Redirect {
            status,
            location,
            template: Some(template),
            ..
        } => {
            assert_eq!(
                (status, location.as_str()),
                (301, "https://old.com/a/b?c=d")
            );
            assert_eq!(template.status, 301);
        }
        other => panic!("expected a templated redirection, got {other:?}"),
    });
}

#[test]
fn deny_frontend_is_401_with_the_cluster_realm_or_sozu() {
    let mut setup = Setup::http();
    setup.cluster(Cluster {
        www_authenticate: Some("admins".to_string()),
        ..Cluster::new("api")
    });
    setup.frontend(Some("api"), "denied.com", |frontend| {
        frontend.redirect = RedirectPolicy::Unauthorized;
    });
    setup.frontend(None, "nobody.com", |frontend| {
        frontend.redirect = RedirectPolicy::Unauthorized;
    });
    setup.decide(&get("denied.com", "/"), |decision| match decision {
        RouteDecision::Unauthorized { realm, cluster, .. } => {
            assert_eq!((realm, cluster), ("admins", Some("api")));
        }
        other => panic!("expected a 401, got {other:?}"),
    });
    setup.decide(&get("nobody.com", "/"), |decision| match decision {
        RouteDecision::Unauthorized { realm, cluster, .. } => {
            assert_eq!((realm, cluster), ("sozu", None));
        }
        other => panic!("expected a 401, got {other:?}"),
    });
}

#[test]
fn a_frontend_whose_cluster_does_not_exist_is_503() {
    let mut setup = Setup::http();
    setup.frontend(Some("gone"), "example.com", |_| {});
    setup.decide(&get("example.com", "/"), |decision| {
        assert_answer(decision, 503, Close::KeepAlive)
    });
}

#[test]
fn https_redirect_of_a_cluster_sends_plain_http_to_https() {
    let mut setup = Setup::http();
    setup.cluster(Cluster {
        https_redirect: true,
        https_redirect_port: Some(8443),
        ..Cluster::new("secure")
    });
    setup.cluster(Cluster {
        https_redirect: true,
        https_redirect_port: Some(443),
        ..Cluster::new("default-port")
    });
    setup.frontend(Some("secure"), "secure.com", |_| {});
    setup.frontend(Some("default-port"), "plain.com", |_| {});
    setup.decide(&get("secure.com:80", "/a?b"), |decision| {
        assert_redirect(decision, 301, "https://secure.com:8443/a?b")
    });
    setup.decide(&get("plain.com", "/"), |decision| {
        assert_redirect(decision, 301, "https://plain.com/")
    });
}

#[test]
fn https_redirect_does_not_apply_on_https() {
    let mut setup = Setup::https(false);
    setup.cluster(Cluster {
        https_redirect: true,
        ..Cluster::new("secure")
    });
    setup.frontend(Some("secure"), "secure.com", |_| {});
    setup.decide(&get("secure.com", "/"), |decision| {
        forwarded(decision);
    });
}

#[test]
fn required_auth_forwards_listed_credentials_and_challenges_others() {
    let mut setup = Setup::http();
    setup.cluster(Cluster {
        authorized_hashes: vec![format!("admin:{SECRET}")],
        ..Cluster::new("private")
    });
    setup.frontend(Some("private"), "private.com", |frontend| {
        frontend.required_auth = true;
    });
    // "admin:secret" and "admin:guess" in base64.
    let request = |credentials: &str| {
        format!("GET / HTTP/1.1\r\nHost: private.com\r\nAuthorization: Basic {credentials}\r\n\r\n")
    };
    setup.decide(&request("YWRtaW46c2VjcmV0"), |decision| {
        assert_eq!(forwarded(decision).cluster.cluster_id, "private");
    });
    setup.decide(&request("YWRtaW46Z3Vlc3M="), |decision| match decision {
        RouteDecision::Unauthorized { realm, cluster, .. } => {
            assert_eq!((realm, cluster), ("sozu", Some("private")));
        }
        other => panic!("expected a 401, got {other:?}"),
    });
    setup.decide(&get("private.com", "/"), |decision| {
        assert!(matches!(decision, RouteDecision::Unauthorized { .. }));
    });
}

#[test]
fn rewrites_of_the_frontend_come_with_the_forward() {
    let mut setup = Setup::http();
    setup.cluster(Cluster::new("api"));
    setup.frontend(Some("api"), "example.com", |frontend| {
        frontend.rewrite_host = Some("backend.internal".to_string());
        frontend.rewrite_path = Some("/v2%PATH".to_string());
        frontend.rewrite_port = Some(9000);
    });
    setup.decide(&get("example.com", "/users?id=1"), |decision| {
        let rewrite = forwarded(decision).rewrite.unwrap();
        assert_eq!(rewrite.host.as_deref(), Some(&b"backend.internal"[..]));
        assert_eq!(rewrite.path.as_deref(), Some(&b"/v2/users?id=1"[..]));
        assert_eq!(rewrite.port, Some(9000));
    });
}

#[test]
fn sticky_cluster_reads_the_sticky_cookie() {
    let mut setup = Setup::http();
    setup.cluster(Cluster {
        sticky_session: true,
        ..Cluster::new("sticky")
    });
    setup.cluster(Cluster::new("plain"));
    setup.frontend(Some("sticky"), "sticky.com", |_| {});
    setup.frontend(Some("plain"), "plain.com", |_| {});
    setup.decide(
        "GET / HTTP/1.1\r\nHost: sticky.com\r\nCookie: a=1; SOZUBALANCEID=backend-2\r\n\r\n",
        |decision| {
            let forward = forwarded(decision);
            assert_eq!(forward.sticky_cookie, Some("SOZUBALANCEID"));
            assert_eq!(forward.sticky_id.as_deref(), Some("backend-2"));
        },
    );
    setup.decide(&get("sticky.com", "/"), |decision| {
        let forward = forwarded(decision);
        assert_eq!(forward.sticky_cookie, Some("SOZUBALANCEID"));
        assert_eq!(forward.sticky_id, None);
    });
    setup.decide(
        "GET / HTTP/1.1\r\nHost: plain.com\r\nCookie: SOZUBALANCEID=backend-2\r\n\r\n",
        |decision| {
            let forward = forwarded(decision);
            assert_eq!((forward.sticky_cookie, forward.sticky_id), (None, None));
        },
    );
}

#[test]
fn only_idempotent_requests_without_body_may_be_retried() {
    let mut setup = Setup::http();
    setup.cluster(Cluster::new("api"));
    setup.frontend(Some("api"), "example.com", |_| {});
    setup.decide(&get("example.com", "/"), |decision| {
        assert_eq!(forwarded(decision).retry, Retry::Once);
    });
    setup.decide(
        "POST / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n",
        |decision| assert_eq!(forwarded(decision).retry, Retry::Never),
    );
    setup.decide(
        "PUT / HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\n\r\n",
        |decision| assert_eq!(forwarded(decision).retry, Retry::Never),
    );
}

#[test]
fn hsts_of_the_frontend_or_listener_applies_on_https_only() {
    let hsts = Hsts {
        enabled: true,
        max_age: std::time::Duration::from_secs(60),
        include_subdomains: false,
        preload: false,
        force_replace_backend: false,
    };
    let mut setup = Setup::https(false);
    setup.listener.hsts = Some(hsts.clone());
    setup.cluster(Cluster::new("api"));
    setup.frontend(Some("api"), "example.com", |_| {});
    setup.decide(&get("example.com", "/"), |decision| {
        assert_eq!(forwarded(decision).hsts, Some(&hsts));
    });

    let mut setup = Setup::http();
    setup.cluster(Cluster::new("api"));
    setup.frontend(Some("api"), "example.com", |frontend| {
        frontend.hsts = Some(hsts.clone());
    });
    setup.decide(&get("example.com", "/"), |decision| {
        assert_eq!(forwarded(decision).hsts, None);
    });
}
