//! `frontend http|https|tcp add|remove` and `frontend list`.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use sozu_command_lib::{
    request::{
        FrontendFilters, HeaderEdit, HeaderPosition, Hsts, HttpFrontend, Order, PathRule,
        PathRuleKind, QueryMetrics, RedirectPolicy, RedirectScheme, TcpFrontend,
        default_hsts_max_age,
    },
    response::{FilteredMetric, Response, ResponseContent},
};

use super::{
    client::{Client, content},
    content::TcpRuleArgs,
    table,
};

#[derive(Debug, Subcommand)]
pub enum FrontendCommand {
    /// Frontends of HTTP listeners.
    Http {
        #[command(subcommand)]
        command: HttpFrontendCommand,
    },
    /// Frontends of HTTPS listeners.
    Https {
        #[command(subcommand)]
        command: HttpFrontendCommand,
    },
    /// Frontends of TCP listeners.
    Tcp {
        #[command(subcommand)]
        command: TcpFrontendCommand,
    },
    /// List frontends (every kind unless some are named).
    List {
        #[arg(long)]
        http: bool,
        #[arg(long)]
        https: bool,
        #[arg(long)]
        tcp: bool,
        /// Only hostnames containing this.
        #[arg(short, long, value_name = "DOMAIN")]
        domain: Option<String>,
    },
    /// Sōzu's UDP frontends: refused, they are not built yet.
    Udp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        arguments: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum HttpFrontendCommand {
    /// Add a frontend, then say where it goes: `id <CLUSTER>` or `deny`.
    Add {
        #[command(flatten)]
        frontend: HttpFrontendArgs,
        #[command(subcommand)]
        route: Route,
    },
    /// Remove the frontend with this address, hostname, path and method.
    Remove {
        #[command(flatten)]
        frontend: HttpFrontendArgs,
        #[command(subcommand)]
        route: Option<Route>,
    },
}

/// Where a frontend's requests go.
#[derive(Debug, Clone, Subcommand)]
pub enum Route {
    /// To this cluster.
    Id { id: String },
    /// Nowhere: answer 401.
    Deny,
}

#[derive(Debug, Clone, Args)]
pub struct HttpFrontendArgs {
    #[arg(short, long, value_name = "ADDR")]
    address: SocketAddr,
    /// `--host` too, as Sōzu spells it.
    #[arg(long, visible_alias = "host")]
    hostname: String,
    #[arg(short, long, value_name = "PREFIX", group = "path")]
    path_prefix: Option<String>,
    #[arg(long, value_name = "REGEX", group = "path")]
    path_regex: Option<String>,
    #[arg(long, value_name = "PATH", group = "path")]
    path_equals: Option<String>,
    #[arg(short, long)]
    method: Option<String>,
    /// `key=value,…`
    #[arg(long, value_name = "TAGS")]
    tags: Option<String>,
    /// Any case, `_` or `-` (`Permanent`, `permanent_redirect`), as Sōzu accepts.
    #[arg(long, value_enum, ignore_case = true)]
    redirect: Option<RedirectKind>,
    /// Any case, `_` or `-` (`use_https`, `USE-HTTPS`), as Sōzu accepts.
    #[arg(long, value_enum, ignore_case = true)]
    redirect_scheme: Option<Scheme>,
    /// The whole answer of the redirect (Sōzu's meaning), where `%REDIRECT_LOCATION` is the
    /// target.
    #[arg(long, value_name = "ANSWER")]
    redirect_template: Option<String>,
    #[arg(long, value_name = "TEMPLATE")]
    rewrite_host: Option<String>,
    #[arg(long, value_name = "TEMPLATE")]
    rewrite_path: Option<String>,
    #[arg(long, value_name = "PORT")]
    rewrite_port: Option<u16>,
    /// Requests need HTTP Basic credentials of the cluster's authorized hashes.
    #[arg(long)]
    required_auth: bool,
    /// `request|response|both=NAME=VALUE`, repeatable; an empty value deletes the header.
    #[arg(long, value_name = "POSITION=NAME=VALUE")]
    header: Vec<String>,
    #[arg(long, value_name = "SECONDS")]
    hsts_max_age: Option<u64>,
    #[arg(long)]
    hsts_include_subdomains: bool,
    #[arg(long)]
    hsts_preload: bool,
    #[arg(long)]
    hsts_force_replace_backend: bool,
    /// Send no HSTS header for this frontend, whatever the listener says.
    #[arg(long)]
    hsts_disabled: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RedirectKind {
    Forward,
    Permanent,
    Found,
    #[value(alias = "permanent_redirect")]
    PermanentRedirect,
    Unauthorized,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Scheme {
    #[value(name = "use-same", alias = "use_same")]
    Same,
    #[value(name = "use-http", alias = "use_http")]
    Http,
    #[value(name = "use-https", alias = "use_https")]
    Https,
}

#[derive(Debug, Subcommand)]
pub enum TcpFrontendCommand {
    /// Add a frontend; with a match, it takes the connections whose first bytes match it.
    Add {
        #[arg(short, long, value_name = "CLUSTER")]
        id: String,
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        #[arg(long, value_name = "TAGS")]
        tags: Option<String>,
        #[command(flatten)]
        rule: TcpRuleArgs,
    },
    /// Remove the frontend of this cluster, address and match.
    Remove {
        #[arg(short, long, value_name = "CLUSTER")]
        id: String,
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        #[command(flatten)]
        rule: TcpRuleArgs,
    },
}

pub fn run(client: &mut Client, command: &FrontendCommand) -> anyhow::Result<()> {
    let order = match command {
        FrontendCommand::Http { command } => http_order(command, false)?,
        FrontendCommand::Https { command } => http_order(command, true)?,
        FrontendCommand::Tcp { command } => match command {
            TcpFrontendCommand::Add {
                id,
                address,
                tags,
                rule,
            } => Order::AddTcpFrontend(TcpFrontend {
                tags: parse_tags(tags.as_deref())?,
                rule: rule.rule(),
                ..TcpFrontend::new(id.clone(), *address)
            }),
            TcpFrontendCommand::Remove { id, address, rule } => {
                Order::RemoveTcpFrontend(TcpFrontend {
                    rule: rule.rule(),
                    ..TcpFrontend::new(id.clone(), *address)
                })
            }
        },
        FrontendCommand::Udp { .. } => bail!(super::UDP_NOT_BUILT),
        FrontendCommand::List {
            http,
            https,
            tcp,
            domain,
        } => {
            return list(
                client,
                FrontendFilters {
                    http: *http,
                    https: *https,
                    tcp: *tcp,
                    domain: domain.clone(),
                },
            );
        }
    };
    client.order_and_print(order)
}

fn http_order(command: &HttpFrontendCommand, https: bool) -> anyhow::Result<Order> {
    Ok(match command {
        HttpFrontendCommand::Add { frontend, route } => {
            let frontend = frontend.build(Some(route))?;
            if https {
                Order::AddHttpsFrontend(frontend)
            } else {
                Order::AddHttpFrontend(frontend)
            }
        }
        HttpFrontendCommand::Remove { frontend, route } => {
            let frontend = frontend.build(route.as_ref())?;
            if https {
                Order::RemoveHttpsFrontend(frontend)
            } else {
                Order::RemoveHttpFrontend(frontend)
            }
        }
    })
}

impl HttpFrontendArgs {
    fn build(&self, route: Option<&Route>) -> anyhow::Result<HttpFrontend> {
        let cluster_id = match route {
            Some(Route::Id { id }) => Some(id.clone()),
            Some(Route::Deny) | None => None,
        };
        let mut frontend = HttpFrontend::new(cluster_id, self.address, self.hostname.clone());
        frontend.path = match (&self.path_prefix, &self.path_regex, &self.path_equals) {
            (Some(prefix), _, _) => PathRule::prefix(prefix.clone()),
            (_, Some(regex), _) => PathRule {
                kind: PathRuleKind::Regex,
                value: regex.clone(),
            },
            (_, _, Some(equals)) => PathRule {
                kind: PathRuleKind::Equals,
                value: equals.clone(),
            },
            _ => PathRule::default(),
        };
        frontend.method = self.method.clone();
        frontend.tags = parse_tags(self.tags.as_deref())?;
        frontend.redirect = match (self.redirect, route) {
            (Some(redirect), _) => match redirect {
                RedirectKind::Forward => RedirectPolicy::Forward,
                RedirectKind::Permanent => RedirectPolicy::Permanent,
                RedirectKind::Found => RedirectPolicy::Found,
                RedirectKind::PermanentRedirect => RedirectPolicy::PermanentRedirect,
                RedirectKind::Unauthorized => RedirectPolicy::Unauthorized,
            },
            (None, Some(Route::Deny)) => RedirectPolicy::Unauthorized,
            (None, _) => RedirectPolicy::Forward,
        };
        frontend.redirect_scheme = match self.redirect_scheme {
            Some(Scheme::Http) => RedirectScheme::UseHttp,
            Some(Scheme::Https) => RedirectScheme::UseHttps,
            Some(Scheme::Same) | None => RedirectScheme::UseSame,
        };
        frontend.redirect_template = self.redirect_template.clone();
        frontend.rewrite_host = self.rewrite_host.clone();
        frontend.rewrite_path = self.rewrite_path.clone();
        frontend.rewrite_port = self.rewrite_port;
        frontend.required_auth = self.required_auth;
        frontend.headers = self
            .header
            .iter()
            .map(|header| parse_header(header))
            .collect::<anyhow::Result<_>>()?;
        frontend.hsts = self.hsts();
        Ok(frontend)
    }

    fn hsts(&self) -> Option<Hsts> {
        let enabled = self.hsts_max_age.is_some()
            || self.hsts_include_subdomains
            || self.hsts_preload
            || self.hsts_force_replace_backend;
        if self.hsts_disabled {
            return Some(Hsts {
                enabled: false,
                max_age: default_hsts_max_age(),
                include_subdomains: false,
                preload: false,
                force_replace_backend: false,
            });
        }
        enabled.then(|| Hsts {
            enabled: true,
            max_age: self
                .hsts_max_age
                .map_or_else(default_hsts_max_age, Duration::from_secs),
            include_subdomains: self.hsts_include_subdomains,
            preload: self.hsts_preload,
            force_replace_backend: self.hsts_force_replace_backend,
        })
    }
}

fn parse_tags(tags: Option<&str>) -> anyhow::Result<BTreeMap<String, String>> {
    let Some(tags) = tags else {
        return Ok(BTreeMap::new());
    };
    tags.split(',')
        .filter(|tag| !tag.trim().is_empty())
        .map(|tag| {
            let (key, value) = tag
                .split_once('=')
                .ok_or_else(|| anyhow!("tag {tag:?}: expected key=value"))?;
            Ok((key.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

fn parse_header(header: &str) -> anyhow::Result<HeaderEdit> {
    let mut parts = header.splitn(3, '=');
    let (Some(position), Some(key), Some(value)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("--header {header:?}: expected request|response|both=NAME=VALUE");
    };
    let position = match position {
        "request" => HeaderPosition::Request,
        "response" => HeaderPosition::Response,
        "both" => HeaderPosition::Both,
        other => bail!("--header {header:?}: {other:?} is not request, response or both"),
    };
    Ok(HeaderEdit {
        position,
        key: key.to_string(),
        value: value.to_string(),
    })
}

fn list(client: &mut Client, filters: FrontendFilters) -> anyhow::Result<()> {
    let response = client.order(Order::ListFrontends(filters))?;
    if client.printed_as_json(&response)? {
        return Ok(());
    }
    let ResponseContent::Frontends(frontends) = content(response)? else {
        bail!("unexpected answer to LIST_FRONTENDS");
    };
    let mut rows = Vec::new();
    for (kind, list) in [("http", &frontends.http), ("https", &frontends.https)] {
        for frontend in list {
            rows.push(vec![
                kind.to_string(),
                frontend.address.to_string(),
                frontend.hostname.clone(),
                frontend.path.to_string(),
                frontend.method.clone().unwrap_or_default(),
                target(frontend),
            ]);
        }
    }
    let hits = rule_hits(client, &frontends.tcp);
    for frontend in &frontends.tcp {
        let hit_count = frontend.rule.as_ref().and_then(|rule| {
            hits.get(&frontend.address.to_string())?
                .get(&rule.matches_metric(&frontend.cluster_id))
        });
        let target = match hit_count {
            Some(FilteredMetric::Count(count)) => {
                format!("cluster {} ({count} hits)", frontend.cluster_id)
            }
            _ => format!("cluster {}", frontend.cluster_id),
        };
        rows.push(vec![
            "tcp".to_string(),
            frontend.address.to_string(),
            frontend
                .rule
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            String::new(),
            String::new(),
            target,
        ]);
    }
    table::print(
        &[
            "KIND",
            "ADDRESS",
            "HOSTNAME/RULE",
            "PATH",
            "METHOD",
            "TARGET",
        ],
        &rows,
    )?;
    Ok(())
}

/// The hit counts of the TCP frontends' rules, per listener; empty when there is no rule or
/// the workers' figures cannot be had.
fn rule_hits(
    client: &mut Client,
    frontends: &[TcpFrontend],
) -> BTreeMap<String, BTreeMap<String, FilteredMetric>> {
    let metric_names: Vec<String> = frontends
        .iter()
        .filter_map(|frontend| Some(frontend.rule.as_ref()?.matches_metric(&frontend.cluster_id)))
        .collect();
    if metric_names.is_empty() {
        return BTreeMap::new();
    }
    let query = QueryMetrics {
        metric_names,
        no_clusters: true,
        ..QueryMetrics::default()
    };
    match client.order(Order::QueryMetrics(query)) {
        Ok(Response {
            content: Some(ResponseContent::Metrics(metrics)),
            ..
        }) => metrics.listeners,
        _ => BTreeMap::new(),
    }
}

/// What an HTTP frontend does with the requests it takes.
fn target(frontend: &HttpFrontend) -> String {
    if let Some(answer) = &frontend.answer {
        return format!("answer {}", answer.status);
    }
    match (frontend.redirect, &frontend.cluster_id) {
        (RedirectPolicy::Forward, Some(cluster)) => format!("cluster {cluster}"),
        (RedirectPolicy::Forward, None) => "no cluster".to_string(),
        (RedirectPolicy::Permanent, _) => "redirect 301".to_string(),
        (RedirectPolicy::Found, _) => "redirect 302".to_string(),
        (RedirectPolicy::PermanentRedirect, _) => "redirect 308".to_string(),
        (RedirectPolicy::Unauthorized, _) => "deny 401".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    /// The order `sozu frontend http ARGS` sends.
    fn http_add(args: &[&str]) -> HttpFrontend {
        let command = ["sozu", "frontend", "http"].iter().chain(args);
        let cli = Cli::try_parse_from(command).expect("a valid command line");
        let Command::Frontend {
            command: FrontendCommand::Http { command },
        } = cli.command
        else {
            panic!("not a frontend command");
        };
        match http_order(&command, false).expect("an order") {
            Order::AddHttpFrontend(frontend) => frontend,
            other => panic!("not an added frontend: {other}"),
        }
    }

    // Issue 11, item 7: Sōzu's `--host` and its enum spellings.
    #[test]
    fn host_alias_and_enum_values_in_any_case_with_underscores() {
        let frontend = http_add(&[
            "add",
            "-a",
            "127.0.0.1:8080",
            "--host",
            "old.test",
            "--redirect",
            "Permanent",
            "--redirect-scheme",
            "use_https",
            "id",
            "c",
        ]);
        assert_eq!(frontend.hostname, "old.test");
        assert_eq!(frontend.redirect, RedirectPolicy::Permanent);
        assert_eq!(frontend.redirect_scheme, RedirectScheme::UseHttps);
        let frontend = http_add(&[
            "add",
            "-a",
            "127.0.0.1:8080",
            "--hostname",
            "new.test",
            "--redirect",
            "PERMANENT_REDIRECT",
            "--redirect-scheme",
            "Use-Http",
            "id",
            "c",
        ]);
        assert_eq!(frontend.redirect, RedirectPolicy::PermanentRedirect);
        assert_eq!(frontend.redirect_scheme, RedirectScheme::UseHttp);
    }
}
