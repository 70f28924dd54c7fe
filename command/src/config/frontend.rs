//! Frontends: the `frontends` of each `[clusters.<id>]`, and our extension, top-level
//! `frontends` without a cluster (answer, redirect and deny frontends). A frontend is HTTP,
//! HTTPS or TCP by the kind of listener at its `address`.
//!
//! [`Routing`] gathers the frontends of the whole file: it refuses duplicates and adds each
//! SNI certificate once per listener, however many frontends name its files.

use std::{
    collections::BTreeMap,
    hash::{BuildHasher, Hasher},
    net::SocketAddr,
    path::PathBuf,
};

use hashbrown::{HashTable, hash_table::Entry};
use rustc_hash::{FxBuildHasher, FxHashSet};

use super::{
    Config, Loader, answers, content,
    document::{Field, Table},
    error::ConfigError,
    listener::{Listener, Listeners},
    tls::{self, CertificateFiles},
};
use crate::{
    answer, hostname,
    request::{
        AddCertificate, FrontendOptions, HeaderEdit, HeaderPosition, HttpFrontend, ListenerType,
        Order, PathRule, PathRuleKind, RedirectPolicy, RedirectScheme, RulePosition, TcpFrontend,
        TlsVersion,
    },
    rules,
};

/// A frontend of the configuration, as its `Add…Frontend` order carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frontend {
    /// A frontend of an HTTP cluster on an HTTP listener.
    Http(HttpFrontend),
    /// A frontend of an HTTP cluster on an HTTPS listener.
    Https(HttpFrontend),
    /// A frontend of a TCP cluster.
    Tcp(TcpFrontend),
}

impl Frontend {
    /// The frontend of an HTTP or HTTPS listener; `None` for TCP.
    fn http(&self) -> Option<&HttpFrontend> {
        match self {
            Frontend::Http(frontend) | Frontend::Https(frontend) => Some(frontend),
            Frontend::Tcp(_) => None,
        }
    }

    /// The order that adds the frontend.
    pub fn into_order(self) -> Order {
        match self {
            Frontend::Http(frontend) => Order::AddHttpFrontend(frontend),
            Frontend::Https(frontend) => Order::AddHttpsFrontend(frontend),
            Frontend::Tcp(frontend) => Order::AddTcpFrontend(frontend),
        }
    }
}

const KEYS: &[&str] = &[
    "address",
    "hostname",
    "path",
    "path_type",
    "method",
    "position",
    "tags",
    "certificate",
    "key",
    "certificate_chain",
    "tls_versions",
    "redirect",
    "redirect_scheme",
    "redirect_template",
    "rewrite_host",
    "rewrite_path",
    "rewrite_port",
    "required_auth",
    "headers",
    "hsts",
    "answer",
];

/// The keys of a frontend's SNI certificate.
const CERTIFICATE_KEYS: [&str; 4] = ["certificate", "key", "certificate_chain", "tls_versions"];

const HEADER_EDIT_KEYS: &[&str] = &["position", "key", "value"];

/// What a cluster's frontends carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClusterProtocol {
    /// HTTP and HTTPS frontends.
    Http,
    Tcp,
}

/// The cluster a frontend is written in.
pub(super) struct Owner<'a> {
    pub id: &'a str,
    pub protocol: ClusterProtocol,
}

/// A frontend read from the file, before the checks across frontends.
struct ReadFrontend {
    /// Where the frontend starts in the file, to keep file order and to count its line when a
    /// message names it.
    offset: usize,
    frontend: Frontend,
    certificate: Option<(CertificateFiles, Vec<TlsVersion>)>,
}

/// The files and versions that make one SNI certificate of one listener.
type CertificateSource = (
    SocketAddr,
    PathBuf,
    PathBuf,
    Option<PathBuf>,
    Vec<TlsVersion>,
);

/// Every frontend and SNI certificate of the file.
pub(super) struct Routing<'l> {
    /// Grows by the listeners created for frontends whose address has none.
    listeners: &'l mut Listeners,
    /// The defaults of created listeners.
    settings: &'l Config,
    /// With their offset in the file.
    frontends: Vec<(usize, Frontend)>,
    certificates: Vec<(usize, AddCertificate)>,
    /// Each HTTP and HTTPS frontend by its key, as the hash of its key and its place in
    /// `frontends` (whose offset gives its line to a duplicate's message): 16 bytes a
    /// frontend, where a map keyed by [`crate::request::FrontendKey`]s took 120 and a copy of
    /// each hostname, and growing it was a tenth of the page faults of a start at 100,000
    /// frontends. The sets of this struct hash with FxHash: their keys come from the
    /// operator's file, one or more per frontend, and SipHash was a tenth of reading 100,000
    /// frontends.
    http_keys: HashTable<(u64, usize)>,
    /// Each TCP frontend, by address, with its rule, and its offset in the file.
    tcp_rules: Vec<(TcpFrontend, usize)>,
    certificate_sources: FxHashSet<CertificateSource>,
}

impl<'l> Routing<'l> {
    pub fn new(listeners: &'l mut Listeners, settings: &'l Config) -> Self {
        Routing {
            listeners,
            settings,
            frontends: Vec::new(),
            certificates: Vec::new(),
            http_keys: HashTable::new(),
            tcp_rules: Vec::new(),
            certificate_sources: FxHashSet::default(),
        }
    }

    /// Reads the frontend `item` of `owner` (or of no cluster) and adds it; errors are recorded.
    /// Returns the address of the frontend once added.
    pub fn add(
        &mut self,
        loader: &mut Loader,
        item: Field<'_, '_>,
        name: &str,
        owner: Option<&Owner<'_>>,
    ) -> Option<SocketAddr> {
        let read = read(loader, item, name, owner, self.listeners, self.settings);
        let read = loader.keep(read)?;
        let inserted = self.insert(read, item);
        loader.keep(inserted)
    }

    /// Keeps the frontend `read` from `item`, or refuses it as a duplicate: the lines of both
    /// are counted then, for the message only.
    fn insert(
        &mut self,
        read: ReadFrontend,
        item: Field<'_, '_>,
    ) -> Result<SocketAddr, ConfigError> {
        let address = match &read.frontend {
            Frontend::Http(frontend) | Frontend::Https(frontend) => {
                let hash = key_hash(frontend);
                let frontends = &self.frontends;
                let is_first = |&(first_hash, index): &(u64, usize)| {
                    first_hash == hash
                        && frontends
                            .get(index)
                            .and_then(|(_, first)| first.http())
                            .is_some_and(|first| first.has_same_key(frontend))
                };
                match self.http_keys.entry(hash, is_first, |&(hash, _)| hash) {
                    Entry::Occupied(first) => {
                        let first_offset = frontends
                            .get(first.get().1)
                            .map_or(read.offset, |(offset, _)| *offset);
                        return Err(ConfigError::Duplicate {
                            what: "frontend",
                            name: frontend.key().to_string(),
                            key: "frontends",
                            line: item.line(),
                            first_line: item.line_at(first_offset),
                        });
                    }
                    Entry::Vacant(entry) => {
                        entry.insert((hash, self.frontends.len()));
                    }
                };
                frontend.address
            }
            Frontend::Tcp(frontend) => {
                let first = self
                    .tcp_rules
                    .iter()
                    .find(|(f, _)| f.is_same_rule(frontend));
                if let Some(&(_, first_offset)) = first {
                    let rule = crate::state::TcpRuleName(frontend.rule.clone());
                    return Err(ConfigError::Duplicate {
                        what: "tcp frontend",
                        name: format!("{} {rule}", frontend.address),
                        key: "address",
                        line: item.line(),
                        first_line: item.line_at(first_offset),
                    });
                }
                self.tcp_rules.push((frontend.clone(), read.offset));
                frontend.address
            }
        };
        if let Some((files, versions)) = read.certificate {
            let source = (
                address,
                files.certificate.0.clone(),
                files.key.0.clone(),
                files.chain.as_ref().map(|(path, _)| path.clone()),
                versions.clone(),
            );
            if self.certificate_sources.insert(source) {
                let certificate = AddCertificate {
                    address,
                    certificate: files.contents(versions),
                    allow_expired: false,
                };
                self.certificates.push((read.offset, certificate));
            }
        }
        self.frontends.push((read.offset, read.frontend));
        Ok(address)
    }

    /// Whether the listener at `address` reads a PROXY protocol header.
    pub fn expects_proxy(&self, address: SocketAddr) -> bool {
        self.listeners.expects_proxy(address)
    }

    /// The certificates and frontends, in file order.
    pub fn finish(mut self) -> (Vec<AddCertificate>, Vec<Frontend>) {
        self.certificates.sort_by_key(|(offset, _)| *offset);
        self.frontends.sort_by_key(|(offset, _)| *offset);
        (
            self.certificates.into_iter().map(|(_, c)| c).collect(),
            self.frontends.into_iter().map(|(_, f)| f).collect(),
        )
    }
}

/// The hash of a frontend's key (see [`HttpFrontend::hash_key`]).
fn key_hash(frontend: &HttpFrontend) -> u64 {
    let mut hasher = FxBuildHasher.build_hasher();
    frontend.hash_key(&mut hasher);
    hasher.finish()
}

/// Top-level `frontends`: frontends of no cluster, which answer, redirect or deny.
pub(super) fn read_top_level(
    loader: &mut Loader,
    top: &mut Table<'_, '_>,
    routing: &mut Routing<'_>,
) {
    let Some(field) = top.field("frontends") else {
        return;
    };
    let Some(items) = loader.keep(field.items()) else {
        return;
    };
    for item in items {
        routing.add(loader, item, "a top-level frontend", None);
    }
}

fn read(
    loader: &mut Loader,
    item: Field<'_, '_>,
    name: &str,
    owner: Option<&Owner<'_>>,
    listeners: &mut Listeners,
    settings: &Config,
) -> Result<ReadFrontend, ConfigError> {
    let mut table = item.table(name)?;
    loader.check_keys(&mut table, &[KEYS, content::RULE_KEYS]);
    let address_field = table.required("address")?;
    let address = address_field.address()?;
    // The listener Sōzu creates for an address that has none: TCP for a TCP cluster, else
    // HTTPS when the frontend brings a certificate.
    let wanted = match owner {
        Some(owner) if owner.protocol == ClusterProtocol::Tcp => ListenerType::Tcp,
        _ if table.has("certificate") => ListenerType::Https,
        _ => ListenerType::Http,
    };
    let listener = listeners.find_or_create(
        address,
        wanted,
        settings,
        address_field,
        &mut loader.warnings,
    )?;
    let mismatch = |listener: &'static str, frontend: String| ConfigError::ListenerKind {
        address,
        line: address_field.line(),
        listener,
        frontend,
    };
    let (frontend, certificate) = match (owner, listener) {
        (Some(owner), Listener::Tcp(_)) if owner.protocol == ClusterProtocol::Tcp => {
            let tags = table.with("tags", tags)?.unwrap_or_default();
            let frontend = TcpFrontend {
                cluster_id: owner.id.to_string(),
                address,
                tags,
                rule: content::tcp_rule(&mut table)?,
            };
            (Frontend::Tcp(frontend), None)
        }
        (Some(owner), Listener::Http(_) | Listener::Https(_))
            if owner.protocol == ClusterProtocol::Tcp =>
        {
            let listener = match listener {
                Listener::Https(_) => "an https",
                _ => "an http",
            };
            return Err(mismatch(
                listener,
                format!("frontends of tcp cluster `{}`", owner.id),
            ));
        }
        (_, Listener::Tcp(_)) => {
            return Err(mismatch(
                "a tcp",
                "http frontends: put the frontend in a cluster with protocol = \"tcp\"".to_string(),
            ));
        }
        (_, Listener::Http(_)) => {
            let frontend = http(loader, &mut table, address, owner, item, false)?;
            ignore_certificate(loader, &mut table);
            (Frontend::Http(frontend), None)
        }
        (_, Listener::Https(_)) => {
            let frontend = http(loader, &mut table, address, owner, item, true)?;
            let certificate = certificate(loader, &mut table)?;
            (Frontend::Https(frontend), certificate)
        }
    };
    table.unused()?;
    Ok(ReadFrontend {
        offset: item.offset(),
        frontend,
        certificate,
    })
}

/// An HTTP or HTTPS frontend.
fn http(
    loader: &mut Loader,
    table: &mut Table<'_, '_>,
    address: SocketAddr,
    owner: Option<&Owner<'_>>,
    item: Field<'_, '_>,
    is_https: bool,
) -> Result<HttpFrontend, ConfigError> {
    let hostname_field = table.required("hostname")?;
    let hostname = hostname_field.string()?;
    if let Err(error) = hostname::check_pattern(hostname) {
        return Err(hostname_field.invalid(format!("a hostname pattern ({error})")));
    }
    let cluster_id = owner.map(|owner| owner.id.to_string());
    let mut frontend = HttpFrontend::new(cluster_id, address, hostname);
    let kind = table
        .choice(
            "path_type",
            &[
                ("PREFIX", PathRuleKind::Prefix),
                ("REGEX", PathRuleKind::Regex),
                ("EQUALS", PathRuleKind::Equals),
            ],
        )?
        .unwrap_or_default();
    let path = table
        .with("path", |field| {
            let path = field.text(&rules::PATH_RULE)?;
            if kind == PathRuleKind::Regex {
                regex::Regex::new(path).map_err(|error| {
                    // The parser's message draws the pattern over several lines; its last line
                    // says what is wrong.
                    let message = error.to_string();
                    let reason = message
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    field.invalid(format!("a regular expression ({reason})"))
                })?;
            }
            Ok(path.to_string())
        })?
        .unwrap_or_default();
    frontend.path = PathRule { kind, value: path };
    frontend.method = table.text("method", &rules::TOKEN)?;
    frontend.position = table
        .choice(
            "position",
            &[
                ("TREE", RulePosition::Tree),
                ("PRE", RulePosition::Pre),
                ("POST", RulePosition::Post),
            ],
        )?
        .unwrap_or_default();
    // The options are set at once at the end: written one by one, even empty, they would be
    // allocated for every frontend.
    let mut options = FrontendOptions {
        tags: table.with("tags", tags)?.unwrap_or_default(),
        ..FrontendOptions::default()
    };
    frontend.redirect = table
        .choice(
            "redirect",
            &[
                ("forward", RedirectPolicy::Forward),
                ("permanent", RedirectPolicy::Permanent),
                ("found", RedirectPolicy::Found),
                ("permanent_redirect", RedirectPolicy::PermanentRedirect),
                ("unauthorized", RedirectPolicy::Unauthorized),
            ],
        )?
        .unwrap_or_default();
    frontend.redirect_scheme = table
        .choice(
            "redirect_scheme",
            &[
                ("use-same", RedirectScheme::UseSame),
                ("use-http", RedirectScheme::UseHttp),
                ("use-https", RedirectScheme::UseHttps),
            ],
        )?
        .unwrap_or_default();
    let redirect_status = frontend.redirect.redirect_status();
    options.redirect_template = table.with("redirect_template", |field| {
        let text = field.string()?;
        answer::check_redirect_template(redirect_status, text)
            .map_err(|error| field.invalid(format!("a redirection answer: {error}")))?;
        Ok(text.to_string())
    })?;
    options.rewrite_host = table.text("rewrite_host", &rules::TEMPLATE)?;
    options.rewrite_path = table.text("rewrite_path", &rules::TEMPLATE)?;
    frontend.rewrite_port = table.number("rewrite_port", &rules::PORT)?;
    frontend.required_auth = table.bool("required_auth")?.unwrap_or(false);
    if let Some(field) = table.field("headers") {
        options.headers = header_edits(loader, field)?;
    }
    if is_https {
        options.hsts = table
            .field("hsts")
            .map(|field| tls::hsts(loader, field))
            .transpose()?;
    } else {
        let warning = table.ignore(
            "hsts",
            "accepted and ignored: HSTS is sent over https only, and this frontend's listener is http",
        );
        loader.warn(warning);
    }
    if let Some(field) = table.field("answer") {
        options.answer = Some(answers::fixed_answer(loader, field)?);
    }
    if owner.is_none() && options.answer.is_none() && frontend.redirect == RedirectPolicy::Forward {
        return Err(item.requires(
            "`answer`, or a `redirect` other than forward: a frontend outside [clusters.<id>] \
             has no cluster to forward to",
        ));
    }
    frontend.set_options(options);
    Ok(frontend)
}

/// The SNI certificate of an HTTPS frontend, with the versions it is offered with.
fn certificate(
    loader: &mut Loader,
    table: &mut Table<'_, '_>,
) -> Result<Option<(CertificateFiles, Vec<TlsVersion>)>, ConfigError> {
    let versions = match table.field("tls_versions") {
        Some(field) => tls::versions(field, &mut loader.warnings)?,
        None => Vec::new(),
    };
    let files = CertificateFiles::read(loader, table)?;
    Ok(files.map(|files| (files, versions)))
}

/// Certificate keys on a frontend of an HTTP listener are accepted and ignored, as Sōzu does.
fn ignore_certificate(loader: &mut Loader, table: &mut Table<'_, '_>) {
    for key in CERTIFICATE_KEYS {
        let warning = table.ignore(
            key,
            "accepted and ignored: the listener at this frontend's address is http, not https",
        );
        loader.warn(warning);
    }
}

/// `tags = { key = "value", … }`.
fn tags(field: Field<'_, '_>) -> Result<BTreeMap<String, String>, ConfigError> {
    let table = field.table("`tags`")?;
    table
        .entries()
        .into_iter()
        .map(|(key, value)| {
            rules::LABEL
                .check(key)
                .map_err(|expected| value.invalid(format!("a tag name of {expected}")))?;
            Ok((key.to_string(), value.text(&rules::LABEL)?.to_string()))
        })
        .collect()
}

/// `headers = [{ position = "request", key = "X-Name", value = "…" }, …]`; an empty or
/// absent value deletes the header.
fn header_edits(loader: &mut Loader, field: Field<'_, '_>) -> Result<Vec<HeaderEdit>, ConfigError> {
    let mut edits = Vec::new();
    for item in field.items()? {
        let mut table = item.table("a header edit")?;
        loader.check_keys(&mut table, &[HEADER_EDIT_KEYS]);
        let position = table.required("position")?.choice(&[
            ("request", HeaderPosition::Request),
            ("response", HeaderPosition::Response),
            ("both", HeaderPosition::Both),
        ])?;
        let key = table
            .required("key")?
            .checked(rules::check_edited_header_name)?;
        let value = table
            .text("value", &rules::HEADER_VALUE)?
            .unwrap_or_default();
        table.unused()?;
        edits.push(HeaderEdit {
            position,
            key: key.to_string(),
            value,
        });
    }
    Ok(edits)
}
