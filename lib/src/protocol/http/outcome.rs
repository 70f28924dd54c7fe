//! What the proxy does with a request it routed, for both HTTP codecs: the routing decision
//! ([`route::decide`]) and, for a request to forward, the faults drawn on it
//! ([`faults::draw`]), mapped to one [`Outcome`]: forward the request, or answer it by the
//! proxy itself with an [`Answer`] to render. HTTP/1 renders the answer into its response
//! buffer, HTTP/2 as the stream's response.
//!
//! [`route::decide`]: super::route::decide

use crate::{
    faults::RequestAnswer,
    protocol::http::{
        answers::Template,
        connection::{AnswerExtra, Rendered},
        faults::{self, Draw, Verdict},
        route::{self, Close, Forward, RouteDecision},
    },
};

/// What the proxy does with a routed request.
pub(super) enum Outcome<'a> {
    /// Send it to a backend of the cluster (through the write budget the faults installed).
    Forward(Forward<'a>),
    /// Answer it by the proxy itself.
    Answer(Answer<'a>),
}

/// An answer of the proxy's own, ready to render.
pub(super) struct Answer<'a> {
    /// The cluster the request was routed to, when known, for its record and error pages.
    pub cluster: Option<&'a str>,
    /// Whether an HTTP/1 connection ends after the answer.
    pub close: Close,
    page: Page<'a>,
    extra: Extra<'a>,
}

/// Which page an answer renders.
enum Page<'a> {
    /// The listener's (or cluster's) page for a status, with details.
    Status(u16, &'a str),
    /// A frontend's own answer: its fixed response, or its redirect template.
    Own(&'a Template, &'a str),
    /// A fault's `http_error` answer.
    Fault(Template),
}

/// What a routing decision adds to the proxy's answer.
enum Extra<'a> {
    None,
    Location(String),
    Realm(&'a str),
}

impl Answer<'_> {
    /// The answer as the renderer takes it.
    pub(super) fn rendered(&self) -> Rendered<'_> {
        let extra = match &self.extra {
            Extra::None => AnswerExtra::default(),
            Extra::Location(location) => AnswerExtra {
                location: Some(location),
                ..AnswerExtra::default()
            },
            Extra::Realm(realm) => AnswerExtra {
                www_authenticate: Some(realm),
                ..AnswerExtra::default()
            },
        };
        match &self.page {
            Page::Status(status, details) => Rendered::Page(*status, details, extra),
            Page::Own(template, details) => Rendered::Own(template, details, extra),
            Page::Fault(template) => Rendered::Own(template, "", extra),
        }
    }
}

/// Maps a routing decision to what the proxy does; a request to forward first goes through
/// the faults of `draw`, which may answer it instead.
pub(super) fn outcome<'a>(decision: RouteDecision<'a>, draw: Draw<'_>) -> Outcome<'a> {
    let answer = |cluster, close, page, extra| {
        Outcome::Answer(Answer {
            cluster,
            close,
            page,
            extra,
        })
    };
    match decision {
        RouteDecision::Forward(forward) => {
            let close = route::answer_close(draw.request.head);
            match faults::draw(draw, &forward.cluster.cluster_id) {
                Verdict::Forward => Outcome::Forward(forward),
                Verdict::Answer(fault) => {
                    Outcome::Answer(fault_answer(&forward.cluster.cluster_id, fault, close))
                }
            }
        }
        RouteDecision::Fixed { answer: own, close } => {
            answer(None, close, Page::Own(own, ""), Extra::None)
        }
        RouteDecision::Answer {
            status,
            details,
            cluster,
            close,
        } => answer(cluster, close, Page::Status(status, details), Extra::None),
        RouteDecision::Redirect {
            status,
            location,
            template,
            details,
            cluster,
            close,
        } => {
            let page = match template {
                Some(template) => Page::Own(template, details),
                None => Page::Status(status, details),
            };
            answer(cluster, close, page, Extra::Location(location))
        }
        RouteDecision::Unauthorized {
            realm,
            details,
            cluster,
            close,
        } => answer(
            cluster,
            close,
            Page::Status(401, details),
            Extra::Realm(realm),
        ),
    }
}

/// The answer a fault gives to a request routed to `cluster`: its `http_error`, or the 503 of
/// a cluster with no backend up (after which an HTTP/1 connection closes). `close` says
/// whether the connection may stay after an `http_error`.
pub(super) fn fault_answer(cluster: &str, fault: RequestAnswer, close: Close) -> Answer<'_> {
    let (close, page) = match fault {
        RequestAnswer::Fixed(fixed) => (close, Page::Fault(Template::fixed(&fixed))),
        RequestAnswer::NoBackend => (
            Close::AfterAnswer,
            Page::Status(503, "no backend available"),
        ),
    };
    Answer {
        cluster: Some(cluster),
        close,
        page,
        extra: Extra::None,
    }
}
