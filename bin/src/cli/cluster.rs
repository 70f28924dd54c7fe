//! `cluster list|add|remove|h2|health-check`.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use sozu_command_lib::{
    request::{
        Cluster, ClusterId, ClustersOfWorkers, DomainFilter, HealthCheckConfig, HealthCheckFilter,
        LoadBalancingAlgorithm, Order, ProxyProtocolConfig, SetHealthCheck,
    },
    response::{ClusterInformation, ResponseContent},
};

use super::{
    JsonFormat,
    client::{Client, content},
    table,
};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Clusters with their hashes, or one cluster in detail (-i), or those of a domain (-d).
    List {
        #[arg(short, long, value_name = "ID")]
        id: Option<String>,
        #[arg(short, long, value_name = "DOMAIN")]
        domain: Option<String>,
    },
    /// Add a cluster, or change the settings of an existing one.
    Add {
        #[arg(short, long, value_name = "ID")]
        id: String,
        /// round_robin, random, least_loaded, power_of_two, hrw or maglev.
        #[arg(long, value_name = "POLICY", default_value = "round_robin")]
        load_balancing_policy: LoadBalancingAlgorithm,
        #[arg(short, long)]
        sticky_session: bool,
        #[arg(short = 'r', long)]
        https_redirect: bool,
        #[arg(long, value_name = "PORT")]
        https_redirect_port: Option<u16>,
        /// Send a PROXY protocol header to the backends (TCP).
        #[arg(long)]
        send_proxy: bool,
        /// Read a PROXY protocol header from clients (TCP).
        #[arg(long)]
        expect_proxy: bool,
        /// Talk HTTP/2 to the backends.
        #[arg(long)]
        http2: bool,
        #[arg(long, value_name = "REALM")]
        www_authenticate: Option<String>,
        /// `user:sha256hex`, repeatable.
        #[arg(long, value_name = "USER:HASH")]
        authorized_hash: Vec<String>,
        /// `CODE=BODY` or `CODE=file://PATH`, repeatable.
        #[arg(long, value_name = "CODE=ANSWER")]
        answer: Vec<String>,
        /// Seconds a connection or request waits while the cluster has no available backend
        /// (0: fail at once).
        #[arg(long, value_name = "SECONDS")]
        hold_timeout: Option<u64>,
        /// Connections and requests held at once per worker (default 1000).
        #[arg(long, value_name = "COUNT")]
        max_held: Option<u64>,
    },
    /// Remove a cluster with its frontends and backends.
    Remove {
        #[arg(short, long, value_name = "ID")]
        id: String,
    },
    /// Switch HTTP/2 towards the backends.
    H2 {
        #[command(subcommand)]
        command: H2Command,
    },
    /// Active health checks of a cluster's backends.
    HealthCheck {
        #[command(subcommand)]
        command: HealthCheckCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum H2Command {
    Enable {
        #[arg(short, long, value_name = "ID")]
        id: String,
    },
    Disable {
        #[arg(short, long, value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum HealthCheckCommand {
    /// Set a cluster's health check. `--timeout S` (seconds, default 5) is read by the global
    /// `-t/--timeout` flag here.
    Set {
        #[arg(short, long, value_name = "ID")]
        id: String,
        #[arg(short, long, value_name = "URI")]
        uri: String,
        /// Seconds between checks.
        #[arg(long, default_value_t = 10)]
        interval: u64,
        #[arg(long, default_value_t = 3)]
        healthy_threshold: u32,
        #[arg(long, default_value_t = 3)]
        unhealthy_threshold: u32,
        /// The expected status; 0 accepts any 2xx.
        #[arg(long, default_value_t = 0)]
        expected_status: u16,
    },
    Remove {
        #[arg(short, long, value_name = "ID")]
        id: String,
    },
    List {
        #[arg(short, long, value_name = "ID")]
        id: Option<String>,
    },
}

pub fn run(
    client: &mut Client,
    command: &ClusterCommand,
    timeout_flag: Option<Duration>,
) -> anyhow::Result<()> {
    match command {
        ClusterCommand::List { id, domain } => list(client, id.as_deref(), domain.as_deref()),
        ClusterCommand::Add {
            id,
            load_balancing_policy,
            sticky_session,
            https_redirect,
            https_redirect_port,
            send_proxy,
            expect_proxy,
            http2,
            www_authenticate,
            authorized_hash,
            answer,
            hold_timeout,
            max_held,
        } => {
            let mut cluster = Cluster::new(id.clone());
            cluster.load_balancing = *load_balancing_policy;
            cluster.sticky_session = *sticky_session;
            cluster.https_redirect = *https_redirect;
            cluster.https_redirect_port = *https_redirect_port;
            cluster.proxy_protocol = match (send_proxy, expect_proxy) {
                (true, true) => Some(ProxyProtocolConfig::RelayHeader),
                (true, false) => Some(ProxyProtocolConfig::SendHeader),
                (false, true) => Some(ProxyProtocolConfig::ExpandHeader),
                (false, false) => None,
            };
            cluster.http2 = *http2;
            cluster.www_authenticate = www_authenticate.clone();
            cluster.authorized_hashes = authorized_hash.clone();
            cluster.answers = answers(answer)?;
            cluster.hold_timeout = hold_timeout.map(Duration::from_secs);
            cluster.max_held = *max_held;
            client.order_and_print(Order::AddCluster(cluster))
        }
        ClusterCommand::Remove { id } => client.order_and_print(Order::RemoveCluster(ClusterId {
            cluster_id: id.clone(),
        })),
        ClusterCommand::H2 { command } => {
            let (id, enable) = match command {
                H2Command::Enable { id } => (id, true),
                H2Command::Disable { id } => (id, false),
            };
            let mut cluster = query(client, id)?.cluster;
            cluster.http2 = enable;
            client.order_and_print(Order::AddCluster(cluster))
        }
        ClusterCommand::HealthCheck { command } => health_check(client, command, timeout_flag),
    }
}

/// Answers by status code, each an inline body or `file://PATH`.
fn answers(entries: &[String]) -> anyhow::Result<BTreeMap<u16, String>> {
    let mut answers = BTreeMap::new();
    for entry in entries {
        let (code, answer) = entry
            .split_once('=')
            .ok_or_else(|| anyhow!("--answer {entry:?}: expected CODE=BODY or CODE=file://PATH"))?;
        let code: u16 = code
            .trim()
            .parse()
            .with_context(|| format!("--answer {entry:?}: the status code is not a number"))?;
        let answer = match answer.strip_prefix("file://") {
            Some(path) => std::fs::read_to_string(Path::new(path))
                .with_context(|| format!("cannot read the answer file {path}"))?,
            None => answer.to_string(),
        };
        answers.insert(code, answer);
    }
    Ok(answers)
}

/// One cluster as the proxy knows it, with its backends' figures.
fn query(client: &mut Client, id: &str) -> anyhow::Result<ClusterInformation> {
    let response = client.order(Order::QueryClusterById(ClusterId {
        cluster_id: id.to_string(),
    }))?;
    match content(response)? {
        ResponseContent::Clusters(clusters) => clusters
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no cluster `{id}`")),
        _ => bail!("unexpected answer to QUERY_CLUSTER_BY_ID"),
    }
}

fn list(client: &mut Client, id: Option<&str>, domain: Option<&str>) -> anyhow::Result<()> {
    let filter = domain.map(|domain| {
        let (hostname, path) = match domain.split_once('/') {
            Some((hostname, path)) => (hostname, Some(format!("/{path}"))),
            None => (domain, None),
        };
        DomainFilter {
            hostname: hostname.to_string(),
            path,
        }
    });
    let query = ClustersOfWorkers {
        cluster_id: id.map(str::to_string),
        domain: filter,
    };
    // Sōzu's shapes hold each worker's answer beside the main process's.
    let order = if client.json == Some(JsonFormat::Sozu) {
        Order::QueryClustersOfWorkers(query)
    } else {
        query.query()
    };
    let response = client.order(order)?;
    if client.printed_as_json(&response)? {
        return Ok(());
    }
    match content(response)? {
        ResponseContent::ClusterHashes(hashes) => {
            let rows: Vec<Vec<String>> = hashes
                .iter()
                .map(|(id, hash)| vec![id.clone(), format!("{hash:016x}")])
                .collect();
            table::print(&["CLUSTER", "HASH"], &rows)?;
        }
        ResponseContent::Clusters(clusters) if clusters.is_empty() => {
            // Sōzu answers with empty tables and exit 0: a sentence says the same.
            if let Some(domain) = domain {
                println!("no cluster has a frontend for `{domain}`");
            }
        }
        ResponseContent::Clusters(clusters) => {
            for (index, cluster) in clusters.iter().enumerate() {
                if index > 0 {
                    println!();
                }
                print_cluster(cluster)?;
            }
        }
        _ => bail!("unexpected answer"),
    }
    Ok(())
}

fn print_cluster(information: &ClusterInformation) -> anyhow::Result<()> {
    let cluster = &information.cluster;
    println!(
        "cluster {}: {}{}{}{}",
        cluster.cluster_id,
        cluster.load_balancing.name(),
        if cluster.sticky_session {
            ", sticky sessions"
        } else {
            ""
        },
        if cluster.https_redirect {
            ", HTTPS redirect"
        } else {
            ""
        },
        if cluster.http2 {
            ", HTTP/2 to backends"
        } else {
            ""
        },
    );
    let mut frontends: Vec<Vec<String>> = Vec::new();
    for (kind, list) in [
        ("http", &information.http_frontends),
        ("https", &information.https_frontends),
    ] {
        for frontend in list {
            frontends.push(vec![
                kind.to_string(),
                frontend.address.to_string(),
                frontend.hostname.clone(),
                frontend.path.to_string(),
            ]);
        }
    }
    for frontend in &information.tcp_frontends {
        frontends.push(vec![
            "tcp".to_string(),
            frontend.address.to_string(),
            String::new(),
            String::new(),
        ]);
    }
    if !frontends.is_empty() {
        println!();
        table::print(&["FRONTEND", "ADDRESS", "HOSTNAME", "PATH"], &frontends)?;
    }
    let backends: Vec<Vec<String>> = information
        .backends
        .iter()
        .map(|backend| {
            let runtime = backend.runtime.as_ref();
            vec![
                backend.backend.backend_id.clone(),
                backend.backend.address.to_string(),
                backend.backend.weight.to_string(),
                if backend.backend.backup { "yes" } else { "no" }.to_string(),
                runtime.map_or("-".to_string(), |r| r.status.to_string()),
                runtime.map_or("-".to_string(), |r| r.active_connections.to_string()),
            ]
        })
        .collect();
    if !backends.is_empty() {
        println!();
        table::print(
            &[
                "BACKEND",
                "ADDRESS",
                "WEIGHT",
                "BACKUP",
                "STATUS",
                "CONNECTIONS",
            ],
            &backends,
        )?;
    }
    Ok(())
}

fn health_check(
    client: &mut Client,
    command: &HealthCheckCommand,
    timeout_flag: Option<Duration>,
) -> anyhow::Result<()> {
    match command {
        HealthCheckCommand::Set {
            id,
            uri,
            interval,
            healthy_threshold,
            unhealthy_threshold,
            expected_status,
        } => {
            let mut check = HealthCheckConfig::new(uri.clone());
            check.interval = Duration::from_secs(*interval);
            // The global flag parses milliseconds; Sōzu's `--timeout` here is in seconds.
            if let Some(timeout) = timeout_flag {
                check.timeout = Duration::from_secs(u64::try_from(timeout.as_millis())?);
            }
            check.healthy_threshold = *healthy_threshold;
            check.unhealthy_threshold = *unhealthy_threshold;
            check.expected_status = *expected_status;
            client.order_and_print(Order::SetHealthCheck(SetHealthCheck {
                cluster_id: id.clone(),
                health_check: check,
            }))
        }
        HealthCheckCommand::Remove { id } => {
            client.order_and_print(Order::RemoveHealthCheck(ClusterId {
                cluster_id: id.clone(),
            }))
        }
        HealthCheckCommand::List { id } => {
            let response = client.order(Order::QueryHealthChecks(HealthCheckFilter {
                cluster_id: id.clone(),
            }))?;
            if client.printed_as_json(&response)? {
                return Ok(());
            }
            let ResponseContent::HealthChecks(checks) = content(response)? else {
                bail!("unexpected answer to QUERY_HEALTH_CHECKS");
            };
            let rows: Vec<Vec<String>> = checks
                .iter()
                .map(|(cluster, check)| {
                    vec![
                        cluster.clone(),
                        check.uri.clone(),
                        format!("{}s", check.interval.as_secs()),
                        format!("{}s", check.timeout.as_secs()),
                        check.healthy_threshold.to_string(),
                        check.unhealthy_threshold.to_string(),
                        check.expected_status.to_string(),
                    ]
                })
                .collect();
            table::print(
                &[
                    "CLUSTER",
                    "URI",
                    "INTERVAL",
                    "TIMEOUT",
                    "HEALTHY",
                    "UNHEALTHY",
                    "STATUS",
                ],
                &rows,
            )?;
            Ok(())
        }
    }
}
