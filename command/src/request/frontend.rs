//! Frontends: which requests (HTTP, HTTPS) or connections (TCP) of a listener go to which
//! cluster, and what is done to them on the way.

use std::{collections::BTreeMap, fmt, net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

use super::{TcpFrontendFields, TcpRule, seconds};

/// An HTTP or HTTPS frontend: which requests on a listener go to which cluster, and what is
/// done to them on the way.
///
/// A frontend is identified by its listener address, hostname, path rule and method; the
/// remaining fields describe what it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields)]
pub struct HttpFrontend {
    /// The cluster requests go to. A frontend without a cluster redirects, denies or answers.
    #[serde(default, alias = "app_id", skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    pub address: SocketAddr,
    /// An exact name, `*.suffix`, or labels between slashes as regular expressions
    /// (`/api[0-9]+/.example.com`).
    pub hostname: String,
    #[serde(default, skip_serializing_if = "PathRule::is_any")]
    pub path: PathRule,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default)]
    pub position: RulePosition,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub redirect: RedirectPolicy,
    #[serde(default)]
    pub redirect_scheme: RedirectScheme,
    /// The target of a redirection, with `%HOST`, `%PATH` and `%PORT` replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_template: Option<String>,
    /// New Host for the backend; `$HOST[n]` and `$PATH[n]` insert captures of the match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_port: Option<u16>,
    /// Requests must carry HTTP Basic credentials listed in the cluster's `authorized_hashes`.
    #[serde(default)]
    pub required_auth: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderEdit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsts: Option<Hsts>,
    /// Answer every request with this response, without any backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<FixedAnswer>,
}

impl HttpFrontend {
    /// A frontend forwarding every path of `hostname` on `address` to `cluster_id`.
    pub fn new(
        cluster_id: Option<String>,
        address: SocketAddr,
        hostname: impl Into<String>,
    ) -> Self {
        HttpFrontend {
            cluster_id,
            address,
            hostname: hostname.into(),
            path: PathRule::default(),
            method: None,
            position: RulePosition::default(),
            tags: BTreeMap::new(),
            redirect: RedirectPolicy::default(),
            redirect_scheme: RedirectScheme::default(),
            redirect_template: None,
            rewrite_host: None,
            rewrite_path: None,
            rewrite_port: None,
            required_auth: false,
            headers: Vec::new(),
            hsts: None,
            answer: None,
        }
    }

    /// What identifies the frontend among those of its listener.
    pub fn key(&self) -> FrontendKey {
        FrontendKey {
            address: self.address,
            hostname: self.hostname.to_ascii_lowercase(),
            path: self.path.clone(),
            method: self.method.clone(),
        }
    }
}

/// Identity of an HTTP or HTTPS frontend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FrontendKey {
    pub address: SocketAddr,
    pub hostname: String,
    pub path: PathRule,
    pub method: Option<String>,
}

impl fmt::Display for FrontendKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}{}", self.address, self.hostname, self.path)?;
        if let Some(method) = &self.method {
            write!(f, " {method}")?;
        }
        Ok(())
    }
}

/// Which paths of a hostname a frontend takes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRule {
    pub kind: PathRuleKind,
    pub value: String,
}

impl PathRule {
    pub fn prefix(value: impl Into<String>) -> Self {
        PathRule {
            kind: PathRuleKind::Prefix,
            value: value.into(),
        }
    }

    /// The empty prefix, which every path has.
    pub fn is_any(&self) -> bool {
        self.kind == PathRuleKind::Prefix && self.value.is_empty()
    }
}

impl Default for PathRule {
    fn default() -> Self {
        PathRule::prefix("")
    }
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            PathRuleKind::Prefix => write!(f, "{}", self.value),
            PathRuleKind::Equals => write!(f, "={}", self.value),
            PathRuleKind::Regex => write!(f, "~{}", self.value),
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathRuleKind {
    #[default]
    Prefix,
    Regex,
    Equals,
}

/// When a frontend is tried: PRE rules one by one before the hostname tree, TREE rules by the
/// most specific match, POST rules one by one after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RulePosition {
    Pre,
    #[default]
    Tree,
    Post,
}

/// What an HTTP frontend does with the requests it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectPolicy {
    /// Forward to the cluster.
    #[default]
    Forward,
    /// Answer 301 Moved Permanently.
    Permanent,
    /// Answer 302 Found.
    Found,
    /// Answer 308 Permanent Redirect.
    PermanentRedirect,
    /// Answer 401 Unauthorized (a `deny` frontend).
    Unauthorized,
}

impl RedirectPolicy {
    /// The status of the redirection this policy answers, or `None` when it does not redirect
    /// (`Forward`, `Unauthorized`).
    pub fn redirect_status(self) -> Option<u16> {
        match self {
            Self::Permanent => Some(301),
            Self::Found => Some(302),
            Self::PermanentRedirect => Some(308),
            Self::Forward | Self::Unauthorized => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectScheme {
    #[default]
    UseSame,
    UseHttp,
    UseHttps,
}

/// A header added, replaced or deleted on requests, responses or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdit {
    pub position: HeaderPosition,
    pub key: String,
    /// An empty value deletes the header.
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HeaderPosition {
    Request,
    Response,
    Both,
}

/// HTTP Strict Transport Security sent on HTTPS answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    pub enabled: bool,
    #[serde(default = "default_hsts_max_age", with = "seconds")]
    pub max_age: Duration,
    #[serde(default)]
    pub include_subdomains: bool,
    #[serde(default)]
    pub preload: bool,
    /// Replace a `Strict-Transport-Security` header sent by the backend.
    #[serde(default)]
    pub force_replace_backend: bool,
}

pub fn default_hsts_max_age() -> Duration {
    Duration::from_secs(31_536_000)
}

/// A response sent by a frontend without any backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedAnswer {
    pub status: u16,
    /// Extra header fields, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default)]
    pub body: String,
}

/// A TCP frontend: the connections of a TCP listener whose first bytes match its rule go to
/// its cluster. A listener holds several; the one without a rule is its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(try_from = "TcpFrontendFields", into = "TcpFrontendFields")]
pub struct TcpFrontend {
    pub cluster_id: String,
    pub address: SocketAddr,
    pub tags: BTreeMap<String, String>,
    /// What the first bytes must match; `None` makes the listener's default frontend.
    pub rule: Option<TcpRule>,
}

impl TcpFrontend {
    /// The default frontend of the listener on `address`.
    pub fn new(cluster_id: impl Into<String>, address: SocketAddr) -> Self {
        TcpFrontend {
            cluster_id: cluster_id.into(),
            address,
            tags: BTreeMap::new(),
            rule: None,
        }
    }

    /// Whether `other` takes the same connections: same listener, same rule.
    pub fn is_same_rule(&self, other: &TcpFrontend) -> bool {
        self.address == other.address
            && match (&self.rule, &other.rule) {
                (None, None) => true,
                (Some(a), Some(b)) => a.is_same(b),
                _ => false,
            }
    }
}
