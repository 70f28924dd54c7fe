//! The routing policy of a request: what the proxy does with a parsed head, decided without
//! any I/O.
//!
//! [`decide`] reads the head, the listener's routes and the clusters, and returns one
//! [`RouteDecision`]: forward to a cluster (with the frontend's rewrites, header rules, sticky
//! cookie and HSTS), or answer by the proxy itself (an error page, a frontend's fixed response,
//! a redirection, an authentication challenge). The HTTP stage acts on it.

use std::{collections::BTreeMap, fmt::Write as _};

use rustc_hash::FxHashMap;
use sozu_command_lib::request::{Cluster, Hsts, HttpFrontend, RedirectPolicy, RedirectScheme};

use crate::{
    protocol::http::{
        answers::Template,
        auth::Authorized,
        editor,
        listener::HttpListener,
        parser::{BodyFraming, Header, Method, Persistence, RequestHead},
    },
    router::Rewrite,
};

/// A parsed request as the routing policy sees it.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The bytes the head's spans point into.
    pub buf: &'a [u8],
    pub head: &'a RequestHead,
    pub headers: &'a [Header],
    /// The TLS server name the client sent, on an HTTPS connection.
    pub server_name: Option<&'a str>,
}

/// What the proxy does with a request.
#[derive(Debug)]
pub enum RouteDecision<'a> {
    /// Send the request to a backend of a cluster.
    Forward(Forward<'a>),
    /// Answer with the listener's (or cluster's) page for `status`.
    Answer {
        status: u16,
        details: &'static str,
        cluster: Option<&'a str>,
        close: Close,
    },
    /// Answer with the frontend's fixed response.
    Fixed { answer: &'a Template, close: Close },
    /// Redirect the client to `location`, with the frontend's `redirect_template` when it has
    /// one, else the page for `status`.
    Redirect {
        status: u16,
        location: String,
        template: Option<&'a Template>,
        details: &'static str,
        cluster: Option<&'a str>,
        close: Close,
    },
    /// Answer 401 with a challenge for `realm`.
    Unauthorized {
        realm: &'a str,
        details: &'static str,
        cluster: Option<&'a str>,
        close: Close,
    },
}

/// Whether the client connection ends after the proxy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The connection reads the next request after the answer.
    KeepAlive,
    /// The connection closes after the answer (the client asked, or the request has a body
    /// the proxy does not read).
    AfterAnswer,
}

/// Whether the connection stays open after the proxy answers `head` by itself: a request
/// with a body that the proxy answers is not read, so the connection closes after it.
pub fn answer_close(head: &RequestHead) -> Close {
    if head.persistence == Persistence::Close || head.body != BodyFraming::None {
        Close::AfterAnswer
    } else {
        Close::KeepAlive
    }
}

/// A request to forward, and what changes on its way.
#[derive(Debug)]
pub struct Forward<'a> {
    pub cluster: &'a Cluster,
    pub frontend: &'a HttpFrontend,
    pub rewrite: Option<Rewrite>,
    /// The sticky cookie's name, when the cluster is sticky.
    pub sticky_cookie: Option<&'a str>,
    /// The backend the request's sticky cookie names.
    pub sticky_id: Option<String>,
    /// The HSTS policy of the response, on an HTTPS listener.
    pub hsts: Option<&'a Hsts>,
    /// A request that failed on a reused backend connection may be sent again, once.
    pub retry: Retry,
}

/// Whether a request may be sent again after its backend connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retry {
    /// An idempotent request without a body, not retried yet.
    Once,
    #[default]
    Never,
}

/// Decides what to do with a request that `listener` received.
pub fn decide<'a>(
    listener: &'a HttpListener,
    clusters: &'a BTreeMap<String, Cluster>,
    authorized: &'a FxHashMap<String, Authorized>,
    request: Request<'_>,
) -> RouteDecision<'a> {
    let Request {
        buf, head, headers, ..
    } = request;
    if head.method == Method::Connect {
        // The proxy opens no tunnel (as nginx): CONNECT is never routed, and the connection
        // closes, since a client may send tunnel bytes right after its request.
        return RouteDecision::Answer {
            status: 405,
            details: "the CONNECT method is not supported",
            cluster: None,
            close: Close::AfterAnswer,
        };
    }
    let close = answer_close(head);
    let host = head
        .authority
        .map(|a| a.span.slice(buf))
        .unwrap_or_default();
    let host_only = head
        .authority
        .map(|a| a.host.slice(buf))
        .unwrap_or_default();
    let path = head.path.slice(buf);
    if listener
        .tls
        .as_ref()
        .is_some_and(|tls| tls.strict_sni_binding)
    {
        let host_only = host_only.strip_suffix(b".").unwrap_or(host_only);
        // A client that sent no SNI bound its connection to no name: it reaches none.
        let server_name = request.server_name;
        if !server_name.is_some_and(|name| host_only.eq_ignore_ascii_case(name.as_bytes())) {
            let details = match server_name {
                Some(_) => "the Host differs from the TLS server name",
                None => "the client sent no TLS server name",
            };
            return RouteDecision::Answer {
                status: 421,
                details,
                cluster: None,
                close,
            };
        }
    }

    let Some(found) = listener
        .router
        .lookup(host, path, head.method_span.slice(buf))
    else {
        return RouteDecision::Answer {
            status: 404,
            details: "no frontend matches",
            cluster: None,
            close,
        };
    };
    let frontend = found.frontend();
    let public = listener.public_address();
    if let Some(answer) = found.route().fixed_answer() {
        return RouteDecision::Fixed { answer, close };
    }
    let cluster = frontend
        .cluster_id
        .as_deref()
        .and_then(|id| clusters.get(id));
    let cluster_id = cluster.map(|cluster| cluster.cluster_id.as_str());
    if frontend.redirect == RedirectPolicy::Unauthorized {
        return RouteDecision::Unauthorized {
            realm: realm(cluster),
            details: "denied by the frontend",
            cluster: cluster_id,
            close,
        };
    }
    if let Some(status) = frontend.redirect.redirect_status() {
        let scheme = match frontend.redirect_scheme {
            RedirectScheme::UseHttp => "http",
            RedirectScheme::UseHttps => "https",
            RedirectScheme::UseSame if listener.tls.is_some() => "https",
            RedirectScheme::UseSame => "http",
        };
        let location = match found.rewritten_redirect(host, path, public.port()) {
            Some(target) => format!("{scheme}://{target}"),
            None => format!(
                "{scheme}://{}{}",
                String::from_utf8_lossy(host),
                origin_path(&String::from_utf8_lossy(path))
            ),
        };
        return RouteDecision::Redirect {
            status,
            location,
            template: found.route().redirect_template(),
            details: "redirected by the frontend",
            cluster: cluster_id,
            close,
        };
    }
    let Some(cluster) = cluster else {
        return RouteDecision::Answer {
            status: 503,
            details: "the frontend's cluster does not exist",
            cluster: None,
            close,
        };
    };
    if cluster.https_redirect && listener.tls.is_none() {
        let mut location = format!("https://{}", String::from_utf8_lossy(host_only));
        if let Some(port) = cluster.https_redirect_port.filter(|port| *port != 443) {
            let _ = write!(location, ":{port}");
        }
        location.push_str(origin_path(&String::from_utf8_lossy(path)));
        return RouteDecision::Redirect {
            status: 301,
            location,
            template: None,
            details: "HTTPS required",
            cluster: cluster_id,
            close,
        };
    }
    let admitted = || {
        authorized
            .get(&cluster.cluster_id)
            .is_some_and(|authorized| authorized.admits(buf, headers))
    };
    if frontend.required_auth && !admitted() {
        return RouteDecision::Unauthorized {
            realm: realm(Some(cluster)),
            details: "authentication required",
            cluster: cluster_id,
            close,
        };
    }

    let sticky_cookie = cluster
        .sticky_session
        .then_some(listener.config.sticky_name.as_str());
    let sticky_id = sticky_cookie
        .and_then(|name| editor::find_cookie(buf, headers, name))
        .map(|value| String::from_utf8_lossy(value).into_owned());
    let hsts = if listener.tls.is_some() {
        frontend.hsts.as_ref().or(listener.hsts.as_ref())
    } else {
        None
    };
    let retry = if head.body == BodyFraming::None && is_idempotent(head.method) {
        Retry::Once
    } else {
        Retry::Never
    };
    RouteDecision::Forward(Forward {
        cluster,
        frontend,
        rewrite: found.rewrite(host, path, public.port()),
        sticky_cookie,
        sticky_id,
        hsts,
        retry,
    })
}

/// The realm of a 401: the cluster's, or `sozu` when it names none.
fn realm(cluster: Option<&Cluster>) -> &str {
    cluster
        .and_then(|c| c.www_authenticate.as_deref())
        .unwrap_or("sozu")
}

/// The path of a redirection target: the request's path, or `/` for an empty one.
fn origin_path(path: &str) -> &str {
    if path.starts_with('/') { path } else { "/" }
}

fn is_idempotent(method: Method) -> bool {
    matches!(
        method,
        Method::Get | Method::Head | Method::Options | Method::Trace | Method::Put | Method::Delete
    )
}

#[cfg(test)]
mod tests;
