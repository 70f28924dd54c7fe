//! `[clusters.<id>]`: a cluster's settings, its `backends`, its `health_check`, and its
//! `frontends` (read by [`super::frontend`]). UDP clusters are refused: they are not built,
//! and ignoring one would drop its traffic.

use std::{collections::HashMap, net::SocketAddr};

use super::{
    Loader, answers,
    document::{Field, Table},
    error::ConfigError,
    frontend::{ClusterProtocol, Owner, Routing},
};
use crate::{
    request::{
        AddBackend, Cluster, DEFAULT_BACKEND_WEIGHT, HealthCheckConfig, ProxyProtocolConfig,
    },
    rules,
};

const KEYS: &[&str] = &[
    "protocol",
    "load_balancing",
    "load_metric",
    "sticky_session",
    "https_redirect",
    "https_redirect_port",
    "send_proxy",
    "http2",
    "answer_503",
    "answers",
    "www_authenticate",
    "authorized_hashes",
    "max_connections_per_ip",
    "retry_after",
    "hold_timeout",
    "max_held",
    "health_check",
    "udp",
    "frontends",
    "backends",
];

/// Keys that only HTTP clusters use.
const HTTP_KEYS: &[&str] = &[
    "sticky_session",
    "http2",
    "https_redirect",
    "https_redirect_port",
    "answer_503",
    "answers",
    "www_authenticate",
    "authorized_hashes",
];

/// `expected_status` is 0 (any 2xx) or a status of [`rules::EXPECTED_STATUS`].
const ANY_STATUS: rules::Bounds = rules::Bounds {
    min: 0,
    max: 599,
    unit: rules::Unit::None,
};

const BACKEND_KEYS: &[&str] = &["address", "backend_id", "weight", "sticky_id", "backup"];

const HEALTH_CHECK_KEYS: &[&str] = &[
    "uri",
    "interval",
    "timeout",
    "healthy_threshold",
    "unhealthy_threshold",
    "expected_status",
];

/// Every cluster of `[clusters]` in file order, with their backends; their frontends go to
/// `routing`.
pub(super) fn read_all(
    loader: &mut Loader,
    top: &mut Table<'_, '_>,
    routing: &mut Routing<'_>,
) -> (Vec<Cluster>, Vec<AddBackend>) {
    let mut clusters = Vec::new();
    let mut backends = Vec::new();
    let Some(field) = top.field("clusters") else {
        return (clusters, backends);
    };
    let Some(table) = loader.keep(field.table("[clusters]")) else {
        return (clusters, backends);
    };
    for (id, field) in table.entries() {
        let read = read(loader, id, field, routing);
        if let Some((cluster, cluster_backends)) = loader.keep(read).flatten() {
            clusters.push(cluster);
            backends.extend(cluster_backends);
        }
    }
    (clusters, backends)
}

/// One cluster and its backends; its frontends are added to `routing`. `None` when the errors
/// found are recorded already.
fn read(
    loader: &mut Loader,
    id: &str,
    field: Field<'_, '_>,
    routing: &mut Routing<'_>,
) -> Result<Option<(Cluster, Vec<AddBackend>)>, ConfigError> {
    let name = format!("[clusters.{id}]");
    let mut table = field.table(&name)?;
    loader.check_keys(&mut table, &[KEYS]);
    if let Err(expected) = rules::IDENTIFIER.check(id) {
        return Err(field.invalid(format!(
            "a table named by a cluster id of {expected}, like [clusters.web]"
        )));
    }
    if let Some(udp) = table.field("udp") {
        return Err(udp.refused(
            "UDP clusters are not built yet, and ignoring the section would drop their traffic",
        ));
    }
    let protocol_field = table.required("protocol")?;
    let protocol = protocol_field.choice(&[
        ("http", Some(ClusterProtocol::Http)),
        ("tcp", Some(ClusterProtocol::Tcp)),
        ("udp", None),
    ])?;
    let Some(protocol) = protocol else {
        return Err(protocol_field.refused(
            "UDP clusters are not built yet, and ignoring the cluster would drop its traffic",
        ));
    };

    // A mistake in the settings still lets the backends and frontends be checked.
    let settings = settings(loader, &mut table, id, protocol, &name);
    let settings = loader.keep(settings);

    let backends = table
        .field("backends")
        .map(|field| read_backends(loader, field, id))
        .transpose()?
        .unwrap_or_default();

    let owner = Owner { id, protocol };
    let frontend_name = match protocol {
        ClusterProtocol::Http => format!("a frontend of cluster `{id}`"),
        ClusterProtocol::Tcp => format!("a frontend of tcp cluster `{id}`"),
    };
    let mut addresses = Vec::new();
    if let Some(field) = table.field("frontends") {
        for item in field.items()? {
            addresses.extend(routing.add(loader, item, &frontend_name, Some(&owner)));
        }
    }
    // Keys left unread after a mistake in the settings are not reported as misplaced.
    let Some((mut cluster, send_proxy)) = settings else {
        return Ok(None);
    };
    table.unused()?;
    if protocol == ClusterProtocol::Tcp {
        let frontends_line = table.field("frontends").map_or(table.line(), |f| f.line());
        cluster.proxy_protocol =
            proxy_protocol(frontends_line, id, &addresses, routing, send_proxy)?;
    }
    Ok(Some((cluster, backends)))
}

/// The settings of a cluster, and whether it sends a PROXY protocol header (`send_proxy`).
fn settings(
    loader: &mut Loader,
    table: &mut Table<'_, '_>,
    id: &str,
    protocol: ClusterProtocol,
    name: &str,
) -> Result<(Cluster, bool), ConfigError> {
    let mut cluster = Cluster::new(id);
    cluster.load_balancing = table
        .with("load_balancing", Field::named)?
        .unwrap_or_default();
    cluster.load_metric = table.with("load_metric", Field::named)?;
    cluster.max_connections_per_ip =
        table.number("max_connections_per_ip", &rules::MAX_CONNECTIONS_PER_IP)?;
    cluster.retry_after = table.seconds("retry_after", &rules::HEADER_SECONDS)?;
    cluster.hold_timeout = table.seconds("hold_timeout", &rules::HOLD_TIMEOUT)?;
    cluster.max_held = table.number("max_held", &rules::MAX_HELD)?;
    cluster.health_check = table
        .field("health_check")
        .map(|field| health_check(loader, field, name))
        .transpose()?;
    let send_proxy = match protocol {
        ClusterProtocol::Http => {
            http_settings(loader, table, &mut cluster)?;
            let warning = table.ignore(
                "send_proxy",
                "accepted and ignored: it applies to tcp clusters",
            );
            loader.warn(warning);
            false
        }
        ClusterProtocol::Tcp => {
            for &key in HTTP_KEYS {
                let warning =
                    table.ignore(key, "accepted and ignored: it applies to http clusters");
                loader.warn(warning);
            }
            table.bool("send_proxy")?.unwrap_or(false)
        }
    };

    Ok((cluster, send_proxy))
}

/// The settings only HTTP clusters have.
fn http_settings(
    loader: &mut Loader,
    table: &mut Table<'_, '_>,
    cluster: &mut Cluster,
) -> Result<(), ConfigError> {
    cluster.sticky_session = table.bool("sticky_session")?.unwrap_or(false);
    cluster.http2 = table.bool("http2")?.unwrap_or(false);
    cluster.https_redirect = table.bool("https_redirect")?.unwrap_or(false);
    cluster.https_redirect_port = table.number("https_redirect_port", &rules::PORT)?;
    cluster.answers = answers::custom_answers(loader, table, answers::CLUSTER_LEGACY_KEYS)?;
    cluster.www_authenticate = table.text("www_authenticate", &rules::REALM)?;
    cluster.authorized_hashes = table
        .with("authorized_hashes", authorized_hashes)?
        .unwrap_or_default();
    Ok(())
}

/// `user:sha256hex` entries.
fn authorized_hashes(field: Field<'_, '_>) -> Result<Vec<String>, ConfigError> {
    field
        .items()?
        .into_iter()
        .map(|item| {
            item.checked(rules::check_authorized_hash)
                .map(str::to_string)
        })
        .collect()
}

/// How a TCP cluster uses the PROXY protocol, as Sōzu decides it: from `send_proxy` and
/// whether its frontends' listeners expect a header.
fn proxy_protocol(
    frontends_line: usize,
    id: &str,
    addresses: &[SocketAddr],
    routing: &Routing<'_>,
    send_proxy: bool,
) -> Result<Option<ProxyProtocolConfig>, ConfigError> {
    let expect_proxy = addresses
        .iter()
        .map(|&address| routing.expects_proxy(address))
        .collect::<Vec<_>>();
    let any_expect = expect_proxy.iter().any(|&expects| expects);
    if any_expect && !expect_proxy.iter().all(|&expects| expects) {
        return Err(ConfigError::MixedExpectProxy {
            cluster: id.to_string(),
            line: frontends_line,
        });
    }
    Ok(match (any_expect, send_proxy) {
        (true, true) => Some(ProxyProtocolConfig::RelayHeader),
        (true, false) => Some(ProxyProtocolConfig::ExpandHeader),
        (false, true) => Some(ProxyProtocolConfig::SendHeader),
        (false, false) => None,
    })
}

/// The `backends` of cluster `id`, refusing two with the same `backend_id`.
fn read_backends(
    loader: &mut Loader,
    field: Field<'_, '_>,
    id: &str,
) -> Result<Vec<AddBackend>, ConfigError> {
    let name = format!("a backend of cluster `{id}`");
    let mut backends = Vec::new();
    let mut lines: HashMap<String, usize> = HashMap::new();
    for (index, item) in field.items()?.into_iter().enumerate() {
        let read = backend(loader, item, &name, id, index);
        let Some((backend, line)) = loader.keep(read) else {
            continue;
        };
        if let Some(&first_line) = lines.get(&backend.backend_id) {
            loader.errors.push(ConfigError::Duplicate {
                what: "backend",
                name: backend.backend_id,
                key: "backend_id",
                line,
                first_line,
            });
            continue;
        }
        lines.insert(backend.backend_id.clone(), line);
        backends.push(backend);
    }
    Ok(backends)
}

/// One backend, with its line; its id defaults to Sōzu's `<cluster>-<index>-<address>`.
fn backend(
    loader: &mut Loader,
    item: Field<'_, '_>,
    name: &str,
    cluster_id: &str,
    index: usize,
) -> Result<(AddBackend, usize), ConfigError> {
    let mut table = item.table(name)?;
    loader.check_keys(&mut table, &[BACKEND_KEYS]);
    let address = table.required("address")?.address()?;
    let backend_id = table
        .text("backend_id", &rules::IDENTIFIER)?
        .unwrap_or_else(|| format!("{cluster_id}-{index}-{address}"));
    let backend = AddBackend {
        cluster_id: cluster_id.to_string(),
        backend_id,
        address,
        sticky_id: table.text("sticky_id", &rules::COOKIE_VALUE)?,
        weight: table
            .number("weight", &rules::WEIGHT)?
            .unwrap_or(DEFAULT_BACKEND_WEIGHT),
        backup: table.bool("backup")?.unwrap_or(false),
    };
    table.unused()?;
    Ok((backend, item.line()))
}

/// `[clusters.<id>.health_check]`: `uri` is required.
fn health_check(
    loader: &mut Loader,
    field: Field<'_, '_>,
    cluster_name: &str,
) -> Result<HealthCheckConfig, ConfigError> {
    let name = format!("{}.health_check]", cluster_name.trim_end_matches(']'));
    let mut table = field.table(&name)?;
    loader.check_keys(&mut table, &[HEALTH_CHECK_KEYS]);
    let uri = table.required("uri")?.text(&rules::HEALTH_CHECK_URI)?;
    let mut config = HealthCheckConfig::new(uri);
    if let Some(interval) = table.seconds("interval", &rules::TIMEOUT)? {
        config.interval = interval;
    }
    if let Some(timeout) = table.seconds("timeout", &rules::TIMEOUT)? {
        config.timeout = timeout;
    }
    if let Some(threshold) = table.number("healthy_threshold", &rules::HEALTH_THRESHOLD)? {
        config.healthy_threshold = threshold;
    }
    if let Some(threshold) = table.number("unhealthy_threshold", &rules::HEALTH_THRESHOLD)? {
        config.unhealthy_threshold = threshold;
    }
    config.expected_status = table
        .with("expected_status", |field| {
            let status: u16 = field.number(&ANY_STATUS)?;
            if status != 0 && !rules::EXPECTED_STATUS.contains(status.into()) {
                return Err(field.invalid("0 (any 2xx), or a status from 100 to 599"));
            }
            Ok(status)
        })?
        .unwrap_or(0);
    table.unused()?;
    Ok(config)
}
