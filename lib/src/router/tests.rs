use std::net::SocketAddr;

use proptest::prelude::*;
use proptest::sample::select;
use sozu_command_lib::request::{
    HttpFrontend, PathRule, PathRuleKind, RedirectPolicy, RulePosition,
};

use super::*;
use crate::protocol::http::answers::AnswerError;

fn address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn frontend(cluster: &str, hostname: &str) -> HttpFrontend {
    HttpFrontend::new(Some(cluster.to_string()), address(), hostname)
}

fn with_path(mut frontend: HttpFrontend, kind: PathRuleKind, value: &str) -> HttpFrontend {
    frontend.path = PathRule {
        kind,
        value: value.to_string(),
    };
    frontend
}

fn with_method(mut frontend: HttpFrontend, method: &str) -> HttpFrontend {
    frontend.method = Some(method.to_string());
    frontend
}

fn at(mut frontend: HttpFrontend, position: RulePosition) -> HttpFrontend {
    frontend.position = position;
    frontend
}

fn router(frontends: impl IntoIterator<Item = HttpFrontend>) -> Router {
    let mut router = Router::new();
    for frontend in frontends {
        if let Err(error) = router.add(frontend.clone()) {
            panic!("{frontend:?} refused: {error}");
        }
    }
    router
}

/// The cluster a GET request goes to.
fn get(router: &Router, host: &str, path: &str) -> Option<String> {
    request(router, host, path, "GET")
}

fn request(router: &Router, host: &str, path: &str, method: &str) -> Option<String> {
    router
        .lookup(host.as_bytes(), path.as_bytes(), method.as_bytes())
        .and_then(|found| found.cluster_id())
        .map(str::to_string)
}

fn cluster(name: &str) -> Option<String> {
    Some(name.to_string())
}

#[test]
fn exact_hostname_matches_only_itself() {
    let router = router([frontend("a", "api.example.com")]);
    assert_eq!(get(&router, "api.example.com", "/"), cluster("a"));
    assert_eq!(get(&router, "example.com", "/"), None);
    assert_eq!(get(&router, "x.api.example.com", "/"), None);
    assert_eq!(get(&router, "api.example.org", "/"), None);
    assert_eq!(get(&router, "", "/"), None);
}

#[test]
fn wildcard_matches_one_label_but_not_the_apex() {
    let router = router([frontend("w", "*.example.com")]);
    assert_eq!(get(&router, "a.example.com", "/"), cluster("w"));
    assert_eq!(get(&router, "example.com", "/"), None);
    // As in Sōzu, `*` stands for exactly one label.
    assert_eq!(get(&router, "a.b.example.com", "/"), None);
    assert_eq!(get(&router, ".example.com", "/"), None);
}

#[test]
fn lone_star_matches_every_hostname_after_the_tree() {
    let router = router([frontend("any", "*"), frontend("a", "a.example.com")]);
    assert_eq!(get(&router, "a.example.com", "/"), cluster("a"));
    assert_eq!(get(&router, "b.example.com", "/"), cluster("any"));
    assert_eq!(get(&router, "localhost", "/"), cluster("any"));
    assert_eq!(get(&router, "", "/"), None);
}

#[test]
fn regex_label_matches_one_whole_label() {
    let router = router([frontend("r", "/api[0-9]+/.example.com")]);
    assert_eq!(get(&router, "api12.example.com", "/"), cluster("r"));
    assert_eq!(get(&router, "API1.example.com", "/"), cluster("r"));
    assert_eq!(get(&router, "api.example.com", "/"), None);
    assert_eq!(get(&router, "xapi1.example.com", "/"), None);
    assert_eq!(get(&router, "api1x.example.com", "/"), None);
    assert_eq!(get(&router, "a.api1.example.com", "/"), None);
}

#[test]
fn hostnames_compare_without_case() {
    let router = router([frontend("a", "Api.Example.COM")]);
    assert_eq!(get(&router, "api.example.com", "/"), cluster("a"));
    assert_eq!(get(&router, "API.EXAMPLE.COM", "/"), cluster("a"));
}

#[test]
fn port_and_trailing_dot_are_ignored() {
    let router = router([frontend("a", "example.com")]);
    assert_eq!(get(&router, "example.com:8080", "/"), cluster("a"));
    assert_eq!(get(&router, "example.com.", "/"), cluster("a"));
    assert_eq!(get(&router, "example.com.:443", "/"), cluster("a"));
    assert_eq!(get(&router, "example.com..", "/"), None);
}

#[test]
fn ipv6_literal_host_is_one_label() {
    let router = router([
        frontend("v6", "[::1]"),
        frontend("mapped", "[::FFFF:1.2.3.4]"),
        frontend("v4", "1.2.3.4"),
    ]);
    assert_eq!(get(&router, "[::1]:8080", "/"), cluster("v6"));
    assert_eq!(get(&router, "[::1]", "/"), cluster("v6"));
    assert_eq!(get(&router, "[::ffff:1.2.3.4]:80", "/"), cluster("mapped"));
    assert_eq!(get(&router, "1.2.3.4:80", "/"), cluster("v4"));
    assert_eq!(get(&router, "[::2]", "/"), None);
}

#[test]
fn exact_label_beats_regex_label_beats_wildcard() {
    let router = router([
        frontend("wildcard", "*.example.com"),
        frontend("regex", "/api[0-9]/.example.com"),
        frontend("exact", "api1.example.com"),
        frontend("second-regex", "/a.*/.example.com"),
    ]);
    assert_eq!(get(&router, "api1.example.com", "/"), cluster("exact"));
    assert_eq!(get(&router, "api2.example.com", "/"), cluster("regex"));
    assert_eq!(
        get(&router, "abc.example.com", "/"),
        cluster("second-regex")
    );
    assert_eq!(get(&router, "www.example.com", "/"), cluster("wildcard"));
}

#[test]
fn labels_are_compared_from_the_right() {
    // At `example`, the exact label goes before the regex one, whatever comes left of it.
    let router = router([
        frontend("regex-then-exact", "www./exa.*/.com"),
        frontend("exact-then-wildcard", "*.example.com"),
    ]);
    assert_eq!(
        get(&router, "www.example.com", "/"),
        cluster("exact-then-wildcard")
    );
    assert_eq!(
        get(&router, "www.exams.com", "/"),
        cluster("regex-then-exact")
    );
}

#[test]
fn path_rules_go_equals_then_regex_then_longest_prefix() {
    let host = "example.com";
    let router = router([
        frontend("root", host),
        with_path(frontend("api", host), PathRuleKind::Prefix, "/api"),
        with_path(frontend("api-v1", host), PathRuleKind::Prefix, "/api/v1"),
        with_path(
            frontend("regex", host),
            PathRuleKind::Regex,
            "^/api/v[0-9]/x",
        ),
        with_path(frontend("equals", host), PathRuleKind::Equals, "/api/v1/x"),
        with_path(frontend("later-regex", host), PathRuleKind::Regex, "x$"),
    ]);
    assert_eq!(get(&router, host, "/"), cluster("root"));
    assert_eq!(get(&router, host, "/apix"), cluster("later-regex"));
    assert_eq!(get(&router, host, "/api/v2"), cluster("api"));
    assert_eq!(get(&router, host, "/api/v1/y"), cluster("api-v1"));
    assert_eq!(get(&router, host, "/api/v1/xy"), cluster("regex"));
    assert_eq!(get(&router, host, "/api/v1/x"), cluster("equals"));
}

#[test]
fn query_is_not_part_of_the_path() {
    let host = "example.com";
    let router = router([
        with_path(frontend("equals", host), PathRuleKind::Equals, "/a"),
        with_path(frontend("regex", host), PathRuleKind::Regex, "b$"),
    ]);
    assert_eq!(get(&router, host, "/a?x=1"), cluster("equals"));
    assert_eq!(get(&router, host, "/b?x=1"), cluster("regex"));
    assert_eq!(get(&router, host, "/c?b"), None);
}

#[test]
fn method_filters_are_case_sensitive() {
    let host = "example.com";
    let router = router([
        with_method(frontend("post", host), "POST"),
        with_path(frontend("get-api", host), PathRuleKind::Prefix, "/api"),
    ]);
    assert_eq!(request(&router, host, "/", "POST"), cluster("post"));
    assert_eq!(request(&router, host, "/", "post"), None);
    assert_eq!(request(&router, host, "/", "GET"), None);
    assert_eq!(request(&router, host, "/api", "GET"), cluster("get-api"));
    assert_eq!(request(&router, host, "/api", "POST"), cluster("get-api"));
}

#[test]
fn rule_with_method_goes_before_the_same_rule_without() {
    let host = "example.com";
    let router = router([
        with_path(frontend("any", host), PathRuleKind::Prefix, "/api"),
        with_method(
            with_path(frontend("delete", host), PathRuleKind::Prefix, "/api"),
            "DELETE",
        ),
        with_path(frontend("equals-any", host), PathRuleKind::Equals, "/x"),
        with_method(
            with_path(frontend("equals-put", host), PathRuleKind::Equals, "/x"),
            "PUT",
        ),
    ]);
    assert_eq!(request(&router, host, "/api", "DELETE"), cluster("delete"));
    assert_eq!(request(&router, host, "/api", "GET"), cluster("any"));
    assert_eq!(request(&router, host, "/x", "PUT"), cluster("equals-put"));
    assert_eq!(request(&router, host, "/x", "GET"), cluster("equals-any"));
}

#[test]
fn pre_rules_come_first_and_post_rules_last() {
    let router = router([
        at(frontend("post-any", "*"), RulePosition::Post),
        frontend("tree", "example.com"),
        at(
            with_path(
                frontend("acme", "*"),
                PathRuleKind::Prefix,
                "/.well-known/acme-challenge/",
            ),
            RulePosition::Pre,
        ),
        at(frontend("post-other", "other.com"), RulePosition::Post),
        at(frontend("pre-wildcard", "*.example.com"), RulePosition::Pre),
    ]);
    assert_eq!(
        get(&router, "example.com", "/.well-known/acme-challenge/t"),
        cluster("acme")
    );
    assert_eq!(get(&router, "example.com", "/"), cluster("tree"));
    assert_eq!(get(&router, "a.example.com", "/"), cluster("pre-wildcard"));
    assert_eq!(get(&router, "a.b.example.com", "/"), cluster("post-any"));
    // POST rules are tried in the order they were added, not by specificity.
    assert_eq!(get(&router, "other.com", "/"), cluster("post-any"));
}

#[test]
fn specific_hostname_without_matching_path_falls_back_to_wildcard() {
    let router = router([
        frontend("wildcard", "*.example.com"),
        with_path(
            frontend("api", "api.example.com"),
            PathRuleKind::Prefix,
            "/v1",
        ),
        with_method(frontend("regex-post", "/ap.*/.example.com"), "POST"),
    ]);
    assert_eq!(get(&router, "api.example.com", "/v1/users"), cluster("api"));
    assert_eq!(get(&router, "api.example.com", "/"), cluster("wildcard"));
    assert_eq!(
        request(&router, "api.example.com", "/", "POST"),
        cluster("regex-post")
    );
}

#[test]
fn duplicate_key_is_refused() {
    let mut router = router([frontend("a", "example.com")]);
    assert!(matches!(
        router.add(frontend("b", "EXAMPLE.com")),
        Err(RouterError::Duplicate(_))
    ));
    // The position is not part of the key.
    assert!(matches!(
        router.add(at(frontend("b", "example.com"), RulePosition::Pre)),
        Err(RouterError::Duplicate(_))
    ));
    assert!(
        router
            .add(with_method(frontend("b", "example.com"), "GET"))
            .is_ok()
    );
    assert_eq!(router.len(), 2);
}

#[test]
fn invalid_frontends_are_refused_and_change_nothing() {
    let mut router = Router::new();
    assert!(matches!(
        router.add(frontend("a", "a..com")),
        Err(RouterError::Hostname(_))
    ));
    assert!(matches!(
        router.add(with_path(frontend("a", "a.com"), PathRuleKind::Regex, "(",)),
        Err(RouterError::PathRegex { .. })
    ));
    let mut rewrite = frontend("a", "a.com");
    rewrite.rewrite_host = Some("$HOST[1].internal".to_string());
    assert!(matches!(
        router.add(rewrite),
        Err(RouterError::Template {
            field: "rewrite_host",
            source: TemplateError::NoSuchCapture { .. },
            ..
        })
    ));
    let mut redirect = frontend("a", "a.com");
    redirect.redirect = RedirectPolicy::Found;
    redirect.redirect_template = Some("HTTP/1.1 301 Moved\r\n\r\n".to_string());
    assert!(matches!(
        router.add(redirect),
        Err(RouterError::RedirectTemplate(AnswerError::RedirectStatus {
            expected: 302,
            found: 301
        }))
    ));
    assert!(router.is_empty());
    assert_eq!(get(&router, "a.com", "/"), None);
}

/// The router finds a TREE frontend's key in the tree and keeps an index of the PRE and POST
/// ones only: adding, removing and removing a cluster keep both, and the count, consistent.
#[test]
fn every_change_keeps_the_keys_and_the_count_consistent() {
    let tree = frontend("a", "api.example.com");
    let wildcard = frontend("a", "*.example.com");
    let regex = frontend("b", "/api[0-9]+/.example.com");
    let pre = at(frontend("a", "pre.com"), RulePosition::Pre);
    let post = at(frontend("b", "post.com"), RulePosition::Post);
    let mut router = router([
        tree.clone(),
        wildcard.clone(),
        regex.clone(),
        pre.clone(),
        post.clone(),
    ]);
    assert_eq!(router.len(), 5);
    // The same key, whatever its position or the case of its hostname, is a duplicate.
    for duplicate in [
        at(tree.clone(), RulePosition::Pre),
        frontend("other", "API.Example.COM"),
        at(pre.clone(), RulePosition::Tree),
        at(post.clone(), RulePosition::Pre),
        wildcard.clone(),
        regex.clone(),
    ] {
        assert!(
            matches!(
                router.add(duplicate.clone()),
                Err(RouterError::Duplicate(_))
            ),
            "{duplicate:?}"
        );
    }
    assert_eq!(router.len(), 5);
    assert_eq!(router.remove_cluster("a"), 3);
    assert_eq!(router.len(), 2);
    for gone in [&tree, &wildcard, &pre] {
        assert!(matches!(
            router.remove(&gone.key()),
            Err(RouterError::NotFound(_))
        ));
    }
    assert_eq!(get(&router, "api7.example.com", "/"), cluster("b"));
    assert_eq!(get(&router, "pre.com", "/"), None);
    // What was removed with its cluster can come back, once.
    assert!(router.add(at(tree.clone(), RulePosition::Post)).is_ok());
    assert!(router.add(pre.clone()).is_ok());
    assert!(matches!(
        router.add(tree.clone()),
        Err(RouterError::Duplicate(_))
    ));
    assert_eq!(router.len(), 4);
    assert_eq!(get(&router, "api.example.com", "/"), cluster("a"));
    assert!(router.remove(&tree.key()).is_ok());
    assert!(router.remove(&post.key()).is_ok());
    assert_eq!(router.len(), 2);
    assert_eq!(get(&router, "api.example.com", "/"), None);
}

#[test]
fn remove_gives_the_frontend_back_and_falls_back() {
    let specific = with_path(
        frontend("api", "api.example.com"),
        PathRuleKind::Prefix,
        "/",
    );
    let regex = frontend("regex", "/api/.example.com");
    let mut router = router([
        frontend("wildcard", "*.example.com"),
        specific.clone(),
        regex.clone(),
        at(frontend("pre", "pre.com"), RulePosition::Pre),
    ]);
    assert_eq!(router.len(), 4);
    assert!(matches!(router.remove(&specific.key()), Ok(f) if *f == specific));
    assert_eq!(get(&router, "api.example.com", "/"), cluster("regex"));
    assert!(matches!(router.remove(&regex.key()), Ok(f) if *f == regex));
    assert_eq!(get(&router, "api.example.com", "/"), cluster("wildcard"));
    assert!(matches!(
        router.remove(&specific.key()),
        Err(RouterError::NotFound(_))
    ));
    assert!(router.remove(&frontend("pre", "pre.com").key()).is_ok());
    assert_eq!(get(&router, "pre.com", "/"), None);
    assert_eq!(router.len(), 1);
    // A removed frontend can come back.
    assert!(router.add(specific).is_ok());
    assert_eq!(get(&router, "api.example.com", "/"), cluster("api"));
}

#[test]
fn remove_cluster_drops_every_route_of_the_cluster() {
    let mut router = router([
        frontend("a", "a.com"),
        with_path(frontend("a", "a.com"), PathRuleKind::Prefix, "/x"),
        frontend("a", "*.b.com"),
        at(frontend("a", "pre.com"), RulePosition::Pre),
        at(frontend("a", "post.com"), RulePosition::Post),
        frontend("b", "x.b.com"),
    ]);
    assert_eq!(router.remove_cluster("a"), 5);
    assert_eq!(router.len(), 1);
    for host in ["a.com", "y.b.com", "pre.com", "post.com"] {
        assert_eq!(get(&router, host, "/x"), None, "{host}");
    }
    assert_eq!(get(&router, "x.b.com", "/"), cluster("b"));
    assert_eq!(router.remove_cluster("a"), 0);
    assert!(router.add(frontend("a", "a.com")).is_ok());
}

#[test]
fn rewrites_use_host_and_path_captures() {
    let mut rewritten = with_path(
        frontend("r", "*./api([0-9]+)/.example.com"),
        PathRuleKind::Regex,
        "^/v([0-9]+)/(.*)$",
    );
    rewritten.rewrite_host = Some("$HOST[1]-v$PATH[1].internal".to_string());
    rewritten.rewrite_path = Some("/api$HOST[2]/$PATH[2]".to_string());
    rewritten.rewrite_port = Some(9000);
    let mut prefixed = with_path(frontend("p", "example.com"), PathRuleKind::Prefix, "/old");
    prefixed.rewrite_path = Some("/new$PATH[1]?from=old".to_string());
    let router = router([rewritten, prefixed, frontend("plain", "plain.com")]);

    let host = b"EU.api7.example.com:8443";
    let target = b"/v2/users/1?page=3";
    let Some(found) = router.lookup(host, target, b"GET") else {
        panic!("no route");
    };
    assert_eq!(
        found.rewrite(host, target, 80),
        Some(Rewrite {
            host: Some(b"EU-v2.internal".to_vec()),
            path: Some(b"/api7/users/1?page=3".to_vec()),
            port: Some(9000),
        })
    );

    let target = b"/old/x?y=1";
    let Some(found) = router.lookup(b"example.com", target, b"GET") else {
        panic!("no route");
    };
    let rewrite = found.rewrite(b"example.com", target, 80);
    assert_eq!(
        rewrite.and_then(|r| r.path),
        Some(b"/new/x?from=old&y=1".to_vec())
    );

    let Some(found) = router.lookup(b"plain.com", b"/", b"GET") else {
        panic!("no route");
    };
    assert_eq!(found.rewrite(b"plain.com", b"/", 80), None);
    assert_eq!(found.rewritten_redirect(b"plain.com", b"/", 80), None);
}

#[test]
fn a_redirect_expands_the_rewrite_templates() {
    let mut redirect = frontend("r", "*.old.com");
    redirect.cluster_id = None;
    redirect.redirect = RedirectPolicy::Permanent;
    redirect.rewrite_host = Some("$HOST[1].new.com".to_string());
    redirect.rewrite_path = Some("/v2%PATH".to_string());
    let router = router([redirect]);
    let Some(found) = router.lookup(b"shop.old.com", b"/cart?id=2", b"GET") else {
        panic!("no route");
    };
    assert_eq!(found.frontend().redirect, RedirectPolicy::Permanent);
    assert_eq!(
        found.rewritten_redirect(b"shop.old.com", b"/cart?id=2", 443),
        Some("shop.new.com/v2/cart?id=2".to_string())
    );
}

/// Issue 10, item 12: a path spelt another way must reach the frontend of the path it names,
/// not fall through to `/`.
#[test]
fn equivalent_spellings_of_a_path_take_its_frontend() {
    let admin = with_path(
        frontend("admin", "example.com"),
        PathRuleKind::Prefix,
        "/admin",
    );
    let exact = with_path(
        frontend("exact", "example.com"),
        PathRuleKind::Equals,
        "/login",
    );
    let regex = with_path(
        frontend("regex", "example.com"),
        PathRuleKind::Regex,
        "^/private$",
    );
    let router = router([admin, exact, regex, frontend("app", "example.com")]);
    for path in [
        "/admin",
        "//admin",
        "/./admin",
        "/%61dmin",
        "/x/../admin",
        "/%2e%2E/admin/",
        "/.//admin/users?x=1",
    ] {
        assert_eq!(
            get(&router, "example.com", path),
            cluster("admin"),
            "{path}"
        );
    }
    for path in ["//login", "/a/../login?next=/", "/%6Cogin"] {
        assert_eq!(
            get(&router, "example.com", path),
            cluster("exact"),
            "{path}"
        );
    }
    assert_eq!(get(&router, "example.com", "//private"), cluster("regex"));
    // An encoded slash is not a separator: `%2F` stays as it is.
    assert_eq!(
        get(&router, "example.com", "/x%2F..%2Fadmin"),
        cluster("app")
    );
    assert_eq!(get(&router, "example.com", "/adm%2Fin"), cluster("app"));
}

#[test]
fn rule_values_match_whatever_the_case_of_their_percent_encoding() {
    let user = with_path(
        frontend("user", "example.com"),
        PathRuleKind::Equals,
        "/%7euser/a%2fb",
    );
    let router = router([user]);
    for path in ["/~user/a%2Fb", "/%7Euser/a%2fb", "/%7euser/a%2Fb"] {
        assert_eq!(get(&router, "example.com", path), cluster("user"), "{path}");
    }
    assert_eq!(get(&router, "example.com", "/~user/a/b"), None);
}

#[test]
fn rewrites_and_redirects_see_the_normalised_path() {
    let mut prefixed = with_path(frontend("p", "example.com"), PathRuleKind::Prefix, "/old");
    prefixed.rewrite_path = Some("/new$PATH[1]".to_string());
    let mut redirect = frontend("r", "old.com");
    redirect.cluster_id = None;
    redirect.redirect = RedirectPolicy::Permanent;
    redirect.rewrite_host = Some("new.com".to_string());
    redirect.rewrite_path = Some("%PATH".to_string());
    let router = router([prefixed, redirect]);

    let target = b"//old/./x/../y?z=1";
    let Some(found) = router.lookup(b"example.com", target, b"GET") else {
        panic!("no route");
    };
    let rewrite = found.rewrite(b"example.com", target, 80);
    assert_eq!(rewrite.and_then(|r| r.path), Some(b"/new/y?z=1".to_vec()));

    let target = b"/a/%2e%2e/%63art?id=2";
    let Some(found) = router.lookup(b"old.com", target, b"GET") else {
        panic!("no route");
    };
    assert_eq!(
        found.rewritten_redirect(b"old.com", target, 443),
        Some("new.com/cart?id=2".to_string())
    );
}

proptest! {
    #[test]
    fn same_bytes_agrees_with_slice_equality(
        a in prop::collection::vec(any::<u8>(), 0..40),
        flip in any::<prop::sample::Index>(),
        shorten in any::<bool>(),
    ) {
        let mut b = a.clone();
        prop_assert!(same_bytes(&a, &b));
        if shorten {
            b.pop();
        } else if !b.is_empty() {
            let at = flip.index(b.len());
            if let Some(byte) = b.get_mut(at) {
                *byte ^= 1;
            }
        }
        prop_assert_eq!(same_bytes(&a, &b), a == b);
    }

    #[test]
    fn inserted_hostname_is_found(host in "[a-z]{1,8}(\\.[a-z]{1,8}){1,3}") {
        let router = router([frontend("c", &host)]);
        prop_assert_eq!(get(&router, &host, "/"), cluster("c"));
        prop_assert_eq!(get(&router, &format!("{}:80", host.to_uppercase()), "/x"), cluster("c"));
        prop_assert_eq!(get(&router, &format!("x.{host}"), "/"), None);
    }

    /// A hostname written in lower case is matched from the frontend's own hostname, one
    /// written otherwise from a lowercase copy: both route, clash and are removed alike.
    #[test]
    fn the_case_a_hostname_is_written_in_does_not_change_routing(
        host in "[a-z]{1,8}(\\.[a-z]{1,8}){1,3}",
        written_upper in prop::collection::vec(any::<bool>(), 36),
        asked_upper in prop::collection::vec(any::<bool>(), 36),
    ) {
        let with_case = |upper: &[bool]| -> String {
            host.chars()
                .zip(upper.iter().chain(std::iter::repeat(&false)))
                .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c })
                .collect()
        };
        let (written, asked) = (with_case(&written_upper), with_case(&asked_upper));
        let mut router = router([frontend("c", &written)]);
        prop_assert_eq!(get(&router, &asked, "/"), cluster("c"));
        prop_assert!(router.add(frontend("d", &asked)).is_err());
        prop_assert!(router.remove(&frontend("c", &asked).key()).is_ok());
        prop_assert_eq!(get(&router, &written, "/"), None);
        prop_assert!(router.add(frontend("d", &asked)).is_ok());
        prop_assert_eq!(get(&router, &written, "/"), cluster("d"));
        prop_assert_eq!(router.len(), 1);
    }

    /// The key property: with any set of frontends, lookup agrees with a linear scan that
    /// applies the precedence rules of the module doc, also after removals.
    #[test]
    fn lookup_agrees_with_linear_reference(
        specs in prop::collection::vec(spec(), 1..40),
        removed in prop::collection::vec(any::<bool>(), 40),
        requests in prop::collection::vec(request_strategy(), 1..30),
    ) {
        let mut router = Router::new();
        let mut inserted = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let added = router.add(spec.frontend(index)).is_ok();
            let is_duplicate = inserted.iter().any(|(_, s): &(usize, Spec)| s.key() == spec.key());
            prop_assert_eq!(added, !is_duplicate);
            if added {
                inserted.push((index, spec.clone()));
            }
        }
        let mut present = Vec::new();
        for (seq, spec) in &inserted {
            if removed.get(*seq).copied().unwrap_or(false) {
                prop_assert!(router.remove(&spec.frontend(*seq).key()).is_ok());
            } else {
                present.push((*seq, spec.clone()));
            }
        }
        prop_assert_eq!(router.len(), present.len());
        for (host, target, method) in requests {
            let expected = reference(&inserted, &present, &host, &target, method)
                .map(|seq| seq.to_string());
            prop_assert_eq!(
                request(&router, &host, &target, method),
                expected,
                "{} {} {}", method, host, target
            );
        }
    }
}

/// A frontend of the property test; its cluster is its index among the generated ones.
#[derive(Debug, Clone)]
struct Spec {
    hostname: String,
    path: (PathRuleKind, &'static str),
    method: Option<&'static str>,
    position: RulePosition,
}

impl Spec {
    fn frontend(&self, index: usize) -> HttpFrontend {
        let mut frontend = with_path(
            frontend(&index.to_string(), &self.hostname),
            self.path.0,
            self.path.1,
        );
        frontend.method = self.method.map(str::to_string);
        at(frontend, self.position)
    }

    fn key(&self) -> FrontendKey {
        self.frontend(0).key()
    }

    fn labels(&self) -> Vec<&str> {
        self.hostname.split('.').collect()
    }
}

fn spec() -> impl Strategy<Value = Spec> {
    let label = select(vec!["a", "b", "c", "/[ab]/", "/b|c/"]);
    let hostname = prop_oneof![
        1 => Just("*".to_string()),
        9 => (any::<bool>(), prop::collection::vec(label, 1..=3)).prop_map(|(wild, labels)| {
            let wildcard = if wild { "*." } else { "" };
            format!("{wildcard}{}", labels.join("."))
        }),
    ];
    let path = select(vec![
        (PathRuleKind::Prefix, ""),
        (PathRuleKind::Prefix, "/"),
        (PathRuleKind::Prefix, "/a"),
        (PathRuleKind::Prefix, "/a/b"),
        (PathRuleKind::Equals, "/"),
        (PathRuleKind::Equals, "/a"),
        (PathRuleKind::Equals, "/a/b"),
        (PathRuleKind::Regex, "^/a"),
        (PathRuleKind::Regex, "b$"),
        (PathRuleKind::Regex, "/a/(b)"),
    ]);
    let method = select(vec![None, Some("GET"), Some("POST")]);
    let position = select(vec![
        RulePosition::Pre,
        RulePosition::Tree,
        RulePosition::Tree,
        RulePosition::Tree,
        RulePosition::Post,
    ]);
    (hostname, path, method, position).prop_map(|(hostname, path, method, position)| Spec {
        hostname,
        path,
        method,
        position,
    })
}

fn request_strategy() -> impl Strategy<Value = (String, String, &'static str)> {
    let label = select(vec!["a", "b", "c", "d", "A", "B"]);
    let suffix = select(vec!["", "", ".", ":8080", ".:80"]);
    let host = (prop::collection::vec(label, 1..=4), suffix)
        .prop_map(|(labels, suffix)| format!("{}{suffix}", labels.join(".")));
    let target = select(vec!["/", "/a", "/a/b", "/a/b?x=1", "/b", "", "/ab", "/a?b"]);
    let method = select(vec!["GET", "POST", "get"]);
    (host, target.prop_map(str::to_string), method)
}

/// Whether a pattern label matches a (lowercase) request label.
fn reference_label_matches(pattern: &str, label: &str) -> bool {
    if label.is_empty() {
        return false;
    }
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('/').and_then(|p| p.strip_suffix('/')) {
        Some(source) => {
            regex::Regex::new(&format!("^(?:{source})$")).is_ok_and(|regex| regex.is_match(label))
        }
        None => pattern == label,
    }
}

fn reference_path_matches(spec: &Spec, path: &str) -> bool {
    let (kind, value) = spec.path;
    match kind {
        PathRuleKind::Prefix => path.starts_with(value),
        PathRuleKind::Equals => path == value,
        PathRuleKind::Regex => regex::Regex::new(value).is_ok_and(|regex| regex.is_match(path)),
    }
}

/// The index of the frontend that should take the request, found by scanning every frontend.
///
/// `inserted` are all frontends ever added, in order (regex labels keep the position of the
/// first frontend that used them); `present` those still in the router.
fn reference(
    inserted: &[(usize, Spec)],
    present: &[(usize, Spec)],
    host: &str,
    target: &str,
    method: &str,
) -> Option<usize> {
    let lowercase = host.to_ascii_lowercase();
    let without_port = lowercase.split(':').next().unwrap_or_default();
    let name = without_port.strip_suffix('.').unwrap_or(without_port);
    let labels: Vec<&str> = name.split('.').collect();
    let path = target.split('?').next().unwrap_or_default();

    let host_matches = |spec: &Spec| {
        if spec.hostname == "*" {
            return !name.is_empty();
        }
        let patterns = spec.labels();
        patterns.len() == labels.len()
            && patterns
                .iter()
                .zip(&labels)
                .all(|(pattern, label)| reference_label_matches(pattern, label))
    };
    let takes = |spec: &Spec| {
        host_matches(spec)
            && reference_path_matches(spec, path)
            && spec.method.is_none_or(|m| m == method)
    };
    let first_at = |position: RulePosition| {
        present
            .iter()
            .find(|(_, spec)| spec.position == position && takes(spec))
            .map(|(seq, _)| *seq)
    };

    // The place of a TREE frontend in the walk: per label from the right, exact (0), regex (1,
    // by the first frontend that went through that regex node) or wildcard (2); then its place
    // among the frontends of its hostname.
    let tree_rank = |seq: usize, spec: &Spec| {
        let mut hostname_rank = Vec::new();
        if spec.hostname == "*" {
            hostname_rank.push((3, 0));
        } else {
            let patterns = spec.labels();
            for from in (0..patterns.len()).rev() {
                let suffix = patterns.get(from..).unwrap_or_default();
                let pattern = patterns.get(from).copied().unwrap_or_default();
                hostname_rank.push(if pattern == "*" {
                    (2, 0)
                } else if pattern.starts_with('/') {
                    let first = inserted
                        .iter()
                        .filter(|(_, other)| {
                            other.position == RulePosition::Tree
                                && other.hostname != "*"
                                && other.labels().ends_with(suffix)
                        })
                        .map(|(seq, _)| *seq)
                        .min()
                        .unwrap_or(seq);
                    (1, first)
                } else {
                    (0, 0)
                });
            }
        }
        let (kind, value) = spec.path;
        let rule_rank = match kind {
            PathRuleKind::Equals => (0, 0, spec.method.is_none(), seq),
            PathRuleKind::Regex => (1, 0, false, seq),
            PathRuleKind::Prefix => (2, usize::MAX - value.len(), spec.method.is_none(), seq),
        };
        (hostname_rank, rule_rank)
    };
    let tree = || {
        let mut candidates: Vec<_> = present
            .iter()
            .filter(|(_, spec)| spec.position == RulePosition::Tree && host_matches(spec))
            .collect();
        candidates.sort_by_key(|(seq, spec)| tree_rank(*seq, spec));
        candidates
            .into_iter()
            .find(|(_, spec)| takes(spec))
            .map(|(seq, _)| *seq)
    };

    first_at(RulePosition::Pre)
        .or_else(tree)
        .or_else(|| first_at(RulePosition::Post))
}

#[test]
fn overlong_hostname_only_matches_the_catch_all() {
    let long_label = "a".repeat(250);
    let host = format!("{long_label}.example.com");
    let patterns = router([
        frontend("wildcard", "*.example.com"),
        at(frontend("pre", "/a+/.example.com"), RulePosition::Pre),
    ]);
    assert_eq!(get(&patterns, &host, "/"), None);
    let catch_all = router([frontend("any", "*"), frontend("wildcard", "*.example.com")]);
    assert_eq!(get(&catch_all, &host, "/"), cluster("any"));
}

/// A layout guard: a worker holds one route per frontend (100,000 and more). A route was
/// about 290 bytes with its templates and answers inline, and the rules of a hostname 72 bytes in
/// each slot of the hostname table.
#[test]
fn routes_and_path_rules_stay_small() {
    assert!(
        std::mem::size_of::<Route>() <= 96,
        "Route is {} bytes",
        std::mem::size_of::<Route>()
    );
    assert!(
        std::mem::size_of::<super::path::PathRules>() <= 24,
        "PathRules is {} bytes",
        std::mem::size_of::<super::path::PathRules>()
    );
}
