//! Frontends: which requests (HTTP, HTTPS) or connections (TCP) of a listener go to which
//! cluster, and what is done to them on the way.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt,
    net::SocketAddr,
    ops::{Deref, DerefMut},
    time::Duration,
};

use serde::{Deserialize, Serialize, Serializer};

use super::{TcpFrontendFields, TcpRule, seconds};

/// An HTTP or HTTPS frontend: which requests on a listener go to which cluster, and what is
/// done to them on the way.
///
/// A frontend is identified by its listener address, hostname, path rule and method; the
/// remaining fields describe what it does.
///
/// A proxy holds one record per frontend, so most frontends (forward every path of a hostname
/// to a cluster) must stay small: the fields that such a frontend leaves empty live apart, in
/// [`FrontendOptions`], allocated only when one of them is set. They read and write as fields
/// of the frontend (`frontend.headers`, through `Deref`), and the JSON form lists them with
/// the others, in the same order as before.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Hash)]
#[serde(from = "HttpFrontendFields<'static>")]
pub struct HttpFrontend {
    /// The cluster requests go to. A frontend without a cluster redirects, denies or answers.
    pub cluster_id: Option<String>,
    /// The listener the frontend belongs to, by address; its kind (HTTP or HTTPS) follows the
    /// order.
    pub address: SocketAddr,
    /// An exact name, `*.suffix`, or labels between slashes as regular expressions
    /// (`/api[0-9]+/.example.com`).
    pub hostname: String,
    /// Which paths it takes (default: every path).
    pub path: PathRule,
    /// The only request method it takes (`GET`…); `None` takes every method.
    pub method: Option<String>,
    /// When it is tried among the listener's frontends (default `TREE`).
    pub position: RulePosition,
    /// Forward to the cluster (default), redirect, or deny.
    pub redirect: RedirectPolicy,
    /// The scheme of a redirection's target: the request's own (default), `http` or `https`.
    pub redirect_scheme: RedirectScheme,
    /// New port in the Host sent to the backend.
    pub rewrite_port: Option<u16>,
    /// Requests must carry HTTP Basic credentials listed in the cluster's `authorized_hashes`.
    pub required_auth: bool,
    /// Tags, header edits, templates, HSTS and fixed answer: empty for most frontends.
    pub(super) options: Options,
}

/// The fields of an [`HttpFrontend`] that most frontends leave empty, read and written as
/// fields of the frontend.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FrontendOptions {
    /// Free labels (name, value), kept with the frontend and shown in listings; the proxy does
    /// not act on them.
    pub tags: BTreeMap<String, String>,
    /// The target of a redirection, with `%HOST`, `%PATH` and `%PORT` replaced.
    pub redirect_template: Option<String>,
    /// New Host for the backend; `$HOST[n]` and `$PATH[n]` insert captures of the match.
    pub rewrite_host: Option<String>,
    /// New path for the backend; `$HOST[n]` and `$PATH[n]` insert captures of the match.
    pub rewrite_path: Option<String>,
    /// Headers added, replaced or deleted on the way, in order.
    pub headers: Vec<HeaderEdit>,
    /// The `Strict-Transport-Security` policy of this frontend, replacing the listener's.
    pub hsts: Option<Hsts>,
    /// Answer every request with this response, without any backend.
    pub answer: Option<FixedAnswer>,
}

impl FrontendOptions {
    /// Whether no option is set: equal to [`NO_OPTIONS`], told by looking at each field
    /// instead of comparing it with theirs (a frontend's options are built and told empty once
    /// per frontend of a configuration, and the comparison was 2 % of reading 100,000 of
    /// them). The pattern names every field: a field added fails to compile here until it is
    /// told.
    pub fn is_empty(&self) -> bool {
        let FrontendOptions {
            tags,
            redirect_template,
            rewrite_host,
            rewrite_path,
            headers,
            hsts,
            answer,
        } = self;
        tags.is_empty()
            && redirect_template.is_none()
            && rewrite_host.is_none()
            && rewrite_path.is_none()
            && headers.is_empty()
            && hsts.is_none()
            && answer.is_none()
    }
}

/// The options of a frontend without any: what a frontend reads when it has none.
static NO_OPTIONS: FrontendOptions = FrontendOptions {
    tags: BTreeMap::new(),
    redirect_template: None,
    rewrite_host: None,
    rewrite_path: None,
    headers: Vec::new(),
    hsts: None,
    answer: None,
};

/// A frontend's options, allocated when one is set. Compared and hashed by content, so a
/// frontend whose options were set and then emptied equals one that never had any.
#[derive(Debug, Clone, Default)]
pub(super) struct Options(Option<Box<FrontendOptions>>);

impl Options {
    fn new(options: FrontendOptions) -> Self {
        Options((!options.is_empty()).then(|| Box::new(options)))
    }

    fn get(&self) -> &FrontendOptions {
        self.0.as_deref().unwrap_or(&NO_OPTIONS)
    }
}

impl PartialEq for Options {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Options {}

impl std::hash::Hash for Options {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.get().hash(state);
    }
}

impl Deref for HttpFrontend {
    type Target = FrontendOptions;

    fn deref(&self) -> &FrontendOptions {
        self.options.get()
    }
}

impl DerefMut for HttpFrontend {
    /// Allocates the options on their first write.
    fn deref_mut(&mut self) -> &mut FrontendOptions {
        self.options.0.get_or_insert_default()
    }
}

/// The JSON form of an [`HttpFrontend`], its fields in their order: borrowed from a frontend
/// to write it, owned when read.
#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct HttpFrontendFields<'a> {
    #[serde(default, alias = "app_id", skip_serializing_if = "Option::is_none")]
    cluster_id: Option<Cow<'a, str>>,
    address: SocketAddr,
    hostname: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "PathRule::is_any")]
    path: Cow<'a, PathRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    method: Option<Cow<'a, str>>,
    #[serde(default)]
    position: RulePosition,
    #[serde(default, skip_serializing_if = "is_empty_map")]
    tags: Cow<'a, BTreeMap<String, String>>,
    #[serde(default)]
    redirect: RedirectPolicy,
    #[serde(default)]
    redirect_scheme: RedirectScheme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    redirect_template: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rewrite_host: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rewrite_path: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rewrite_port: Option<u16>,
    #[serde(default)]
    required_auth: bool,
    #[serde(default, skip_serializing_if = "is_empty_list")]
    headers: Cow<'a, [HeaderEdit]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hsts: Option<Cow<'a, Hsts>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answer: Option<Cow<'a, FixedAnswer>>,
}

fn is_empty_map(tags: &BTreeMap<String, String>) -> bool {
    tags.is_empty()
}

fn is_empty_list(headers: &[HeaderEdit]) -> bool {
    headers.is_empty()
}

impl From<HttpFrontendFields<'_>> for HttpFrontend {
    fn from(fields: HttpFrontendFields<'_>) -> Self {
        let owned = |text: Cow<'_, str>| text.into_owned();
        HttpFrontend {
            cluster_id: fields.cluster_id.map(owned),
            address: fields.address,
            hostname: fields.hostname.into_owned(),
            path: fields.path.into_owned(),
            method: fields.method.map(owned),
            position: fields.position,
            redirect: fields.redirect,
            redirect_scheme: fields.redirect_scheme,
            rewrite_port: fields.rewrite_port,
            required_auth: fields.required_auth,
            options: Options::new(FrontendOptions {
                tags: fields.tags.into_owned(),
                redirect_template: fields.redirect_template.map(owned),
                rewrite_host: fields.rewrite_host.map(owned),
                rewrite_path: fields.rewrite_path.map(owned),
                headers: fields.headers.into_owned(),
                hsts: fields.hsts.map(Cow::into_owned),
                answer: fields.answer.map(Cow::into_owned),
            }),
        }
    }
}

/// A text field of a frontend, borrowed to be written.
fn borrowed(text: &Option<String>) -> Option<Cow<'_, str>> {
    text.as_deref().map(Cow::Borrowed)
}

impl Serialize for HttpFrontend {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HttpFrontendFields {
            cluster_id: borrowed(&self.cluster_id),
            address: self.address,
            hostname: Cow::Borrowed(&self.hostname),
            path: Cow::Borrowed(&self.path),
            method: borrowed(&self.method),
            position: self.position,
            tags: Cow::Borrowed(&self.tags),
            redirect: self.redirect,
            redirect_scheme: self.redirect_scheme,
            redirect_template: borrowed(&self.redirect_template),
            rewrite_host: borrowed(&self.rewrite_host),
            rewrite_path: borrowed(&self.rewrite_path),
            rewrite_port: self.rewrite_port,
            required_auth: self.required_auth,
            headers: Cow::Borrowed(&self.headers),
            hsts: self.hsts.as_ref().map(Cow::Borrowed),
            answer: self.answer.as_ref().map(Cow::Borrowed),
        }
        .serialize(serializer)
    }
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
            redirect: RedirectPolicy::default(),
            redirect_scheme: RedirectScheme::default(),
            rewrite_port: None,
            required_auth: false,
            options: Options::default(),
        }
    }

    /// Sets every option at once, allocating them only when one is set: writing even an empty
    /// value through a field (`frontend.tags = …`) allocates them, which a reader building
    /// 100,000 frontends avoids this way.
    pub fn set_options(&mut self, options: FrontendOptions) {
        self.options = Options::new(options);
    }

    /// Whether the frontend's options are allocated (see [`HttpFrontend::set_options`]).
    pub fn has_options(&self) -> bool {
        self.options.0.is_some()
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
    /// The listener, by address.
    pub address: SocketAddr,
    /// The hostname, in lower case.
    pub hostname: String,
    /// The path rule.
    pub path: PathRule,
    /// The method, if the frontend takes one only.
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
    /// How `value` is compared with the path.
    pub kind: PathRuleKind,
    /// The prefix, the exact path, or the regular expression.
    pub value: String,
}

impl PathRule {
    /// A rule taking the paths that start with `value`.
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

/// How a path rule compares a request's path, written in `SCREAMING_SNAKE_CASE`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathRuleKind {
    /// The path starts with the value (default).
    #[default]
    Prefix,
    /// The path matches the value as a regular expression.
    Regex,
    /// The path is the value.
    Equals,
}

/// When a frontend is tried: PRE rules one by one before the hostname tree, TREE rules by the
/// most specific match, POST rules one by one after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RulePosition {
    /// Tried one by one, in order, before the hostname tree.
    Pre,
    /// Tried by the most specific hostname and path (default).
    #[default]
    Tree,
    /// Tried one by one, in order, after the hostname tree.
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

/// The scheme of a redirection's target, written in `SCREAMING_SNAKE_CASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RedirectScheme {
    /// The scheme of the request (default).
    #[default]
    UseSame,
    /// `http`.
    UseHttp,
    /// `https`.
    UseHttps,
}

/// A header added, replaced or deleted on requests, responses or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderEdit {
    /// Which messages the edit applies to.
    pub position: HeaderPosition,
    /// The header's name; not one the proxy writes itself (`Connection`, `Content-Length`…).
    pub key: String,
    /// An empty value deletes the header.
    pub value: String,
}

/// Which messages a header edit applies to, written in `SCREAMING_SNAKE_CASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HeaderPosition {
    /// Requests sent to the backend.
    Request,
    /// Responses sent to the client.
    Response,
    /// Both.
    Both,
}

/// HTTP Strict Transport Security sent on HTTPS answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hsts {
    /// Send the header; `false` lets a frontend turn off its listener's policy.
    pub enabled: bool,
    /// The `max-age` directive, in seconds (default one year, 31536000).
    #[serde(default = "default_hsts_max_age", with = "seconds")]
    pub max_age: Duration,
    /// Add the `includeSubDomains` directive.
    #[serde(default)]
    pub include_subdomains: bool,
    /// Add the `preload` directive.
    #[serde(default)]
    pub preload: bool,
    /// Replace a `Strict-Transport-Security` header sent by the backend.
    #[serde(default)]
    pub force_replace_backend: bool,
}

/// HSTS's default `max-age`: one year (31536000 seconds).
pub fn default_hsts_max_age() -> Duration {
    Duration::from_secs(31_536_000)
}

/// A response sent by a frontend without any backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedAnswer {
    /// The response's status code (200 to 599).
    pub status: u16,
    /// Extra header fields, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The response's body, sent with a `Content-Length`.
    #[serde(default)]
    pub body: String,
}

/// A TCP frontend: the connections of a TCP listener whose first bytes match its rule go to
/// its cluster. A listener holds several; the one without a rule is its default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(try_from = "TcpFrontendFields", into = "TcpFrontendFields")]
pub struct TcpFrontend {
    /// The cluster the connections go to.
    pub cluster_id: String,
    /// The TCP listener, by address.
    pub address: SocketAddr,
    /// Free labels (name, value), kept with the frontend and shown in listings; the proxy does
    /// not act on them.
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
