//! `sozu fleet export`: what the prefix holds, printed as a configuration file that
//! `sozu config check` accepts and that turns into the same orders.
//!
//! The configuration format names certificate files and attaches each SNI certificate to an
//! HTTPS frontend of its listener, so certificates and their keys are written as files in the
//! folder given with `--files`, each named by its fingerprint, and each one is attached to a
//! frontend of its listener. What the format cannot say (a certificate with explicit names or
//! allowed to be expired, a certificate on a listener without HTTPS frontends, a cluster
//! talking HTTP/2 to its backends, a TCP cluster relaying a PROXY header its listener does not
//! expect) is refused with the key it comes from, rather than printed differently. Keys a
//! node would refuse are left out with a warning, as the nodes leave them out.

use std::{collections::BTreeMap, fs, path::Path};

use anyhow::{Context, bail};
use sozu_command_lib::{
    config::EtcdProvider,
    request::{
        AddBackend, AddCertificate, Cluster, FixedAnswer, HeaderEdit, HeaderPosition,
        HealthCheckConfig, Hsts, HttpFrontend, HttpListenerConfig, Order, PathRuleKind,
        ProxyProtocolConfig, RedirectPolicy, RedirectScheme, RulePosition, TcpFrontend,
    },
};
use toml::{Table, Value};

use crate::provider::etcd::layout::{self, KeyClass};

/// The objects of the prefix, each with its key.
#[derive(Default)]
struct Objects {
    listeners: Vec<(String, Order)>,
    clusters: BTreeMap<String, (String, Cluster)>,
    backends: Vec<(String, AddBackend)>,
    certificates: Vec<(String, AddCertificate)>,
    frontends: Vec<(String, Order)>,
}

/// Prints the configuration on standard output; certificate files go to `files`.
pub fn print(
    settings: &EtcdProvider,
    entries: &[(String, Vec<u8>)],
    files: Option<&Path>,
) -> anyhow::Result<()> {
    let objects = collect(settings, entries);
    let text = render(&objects, files)?;
    print!("{text}");
    Ok(())
}

fn collect(settings: &EtcdProvider, entries: &[(String, Vec<u8>)]) -> Objects {
    let mut objects = Objects::default();
    for (key, value) in entries {
        let order = match layout::classify(key) {
            KeyClass::Record => continue,
            KeyClass::Routing(kind, id) => layout::parse(kind, id, value),
            KeyClass::Unknown => Err(layout::ValueError::UnknownFolder),
        };
        let full = format!("{}{key}", settings.prefix);
        match order {
            Ok(Order::AddCluster(cluster)) => {
                objects
                    .clusters
                    .insert(cluster.cluster_id.clone(), (full, cluster));
            }
            Ok(Order::AddBackend(backend)) => objects.backends.push((full, backend)),
            Ok(Order::AddCertificate(add)) => objects.certificates.push((full, add)),
            Ok(
                order @ (Order::AddHttpListener(_)
                | Order::AddHttpsListener(_)
                | Order::AddTcpListener(_)),
            ) => objects.listeners.push((full, order)),
            Ok(order) => objects.frontends.push((full, order)),
            Err(error) => eprintln!("warning: {full} left out: {}", super::with_causes(&error)),
        }
    }
    objects
}

/// The configuration file of `objects`.
fn render(objects: &Objects, files: Option<&Path>) -> anyhow::Result<String> {
    let mut root = Table::new();
    let listeners: Vec<Value> = objects
        .listeners
        .iter()
        .map(|(key, order)| listener(key, order, files).map(Value::Table))
        .collect::<anyhow::Result<_>>()?;
    if !listeners.is_empty() {
        root.insert("listeners".into(), Value::Array(listeners));
    }
    let expect_proxy = |address| {
        objects.listeners.iter().any(|(_, order)| match order {
            Order::AddTcpListener(config) => config.address == address && config.expect_proxy,
            _ => false,
        })
    };
    let mut clusters: BTreeMap<String, Table> = BTreeMap::new();
    for (id, (key, cluster)) in &objects.clusters {
        let tcp_addresses: Vec<_> = objects
            .frontends
            .iter()
            .filter_map(|(_, order)| match order {
                Order::AddTcpFrontend(frontend) if &frontend.cluster_id == id => {
                    Some(frontend.address)
                }
                _ => None,
            })
            .collect();
        let is_tcp = !tcp_addresses.is_empty() || cluster.proxy_protocol.is_some();
        let expects = tcp_addresses.iter().any(|address| expect_proxy(*address));
        clusters.insert(id.clone(), cluster_table(key, cluster, is_tcp, expects)?);
    }
    for (key, backend) in &objects.backends {
        let Some(cluster) = clusters.get_mut(&backend.cluster_id) else {
            bail!(
                "{key}: cluster `{}` is not in the prefix",
                backend.cluster_id
            );
        };
        push(cluster, "backends", Value::Table(backend_table(backend)));
    }
    let mut carried = certificates(objects, files)?;
    let mut top_frontends = Vec::new();
    for (key, order) in &objects.frontends {
        let (table, cluster_id) = match order {
            Order::AddHttpFrontend(frontend) => (http_frontend(frontend), &frontend.cluster_id),
            Order::AddHttpsFrontend(frontend) => {
                let mut table = http_frontend(frontend);
                if let Some(certificate) = carried.remove(&frontend.address) {
                    table.extend(certificate);
                }
                (table, &frontend.cluster_id)
            }
            Order::AddTcpFrontend(frontend) => {
                let table = tcp_frontend(frontend);
                let cluster = clusters.get_mut(&frontend.cluster_id).with_context(|| {
                    format!(
                        "{key}: cluster `{}` is not in the prefix",
                        frontend.cluster_id
                    )
                })?;
                push(cluster, "frontends", Value::Table(table));
                continue;
            }
            _ => continue,
        };
        match cluster_id {
            Some(id) => {
                let cluster = clusters
                    .get_mut(id)
                    .with_context(|| format!("{key}: cluster `{id}` is not in the prefix"))?;
                push(cluster, "frontends", Value::Table(table));
            }
            None => top_frontends.push(Value::Table(table)),
        }
    }
    if let Some((address, _)) = carried.into_iter().next() {
        bail!(
            "a certificate of {address} has no HTTPS frontend on {address} to carry it: a \
             configuration file attaches each certificate to a frontend"
        );
    }
    if !clusters.is_empty() {
        let clusters: Table = clusters
            .into_iter()
            .map(|(id, table)| (id, Value::Table(table)))
            .collect();
        root.insert("clusters".into(), Value::Table(clusters));
    }
    if !top_frontends.is_empty() {
        root.insert("frontends".into(), Value::Array(top_frontends));
    }
    Ok(toml::to_string(&root)?)
}

fn push(table: &mut Table, key: &str, value: Value) {
    if let Value::Array(items) = table.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        items.push(value);
    }
}

fn string(text: impl Into<String>) -> Value {
    Value::String(text.into())
}

fn integer(value: impl TryInto<i64>) -> Value {
    Value::Integer(value.try_into().unwrap_or(i64::MAX))
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::String).collect())
}

fn seconds(duration: std::time::Duration) -> Value {
    integer(duration.as_secs())
}

fn listener(key: &str, order: &Order, files: Option<&Path>) -> anyhow::Result<Table> {
    let mut table = Table::new();
    match order {
        Order::AddHttpListener(config) => {
            table.insert("protocol".into(), string("http"));
            http_listener(&mut table, config);
            if config.h2c {
                table.insert("h2c".into(), Value::Boolean(true));
            }
        }
        Order::AddHttpsListener(config) => {
            table.insert("protocol".into(), string("https"));
            http_listener(&mut table, &config.http);
            let tls = &config.tls;
            let versions: Vec<String> = tls.versions.iter().map(|v| v.name().into()).collect();
            table.insert("tls_versions".into(), strings(&versions));
            let suites: Vec<String> = tls
                .cipher_list
                .iter()
                .chain(&tls.cipher_suites)
                .cloned()
                .collect();
            if !suites.is_empty() {
                table.insert("cipher_list".into(), strings(&suites));
            }
            if !tls.groups_list.is_empty() {
                table.insert("groups_list".into(), strings(&tls.groups_list));
            }
            table.insert("send_tls13_tickets".into(), integer(tls.send_tls13_tickets));
            table.insert("alpn_protocols".into(), strings(&tls.alpn_protocols));
            table.insert(
                "strict_sni_binding".into(),
                Value::Boolean(tls.strict_sni_binding),
            );
            if tls.disable_http11 {
                table.insert("disable_http11".into(), Value::Boolean(true));
            }
            if let Some(hsts) = &tls.hsts {
                table.insert("hsts".into(), Value::Table(hsts_table(hsts)));
            }
            if let Some(certificate) = &tls.certificate {
                let name =
                    format!("listener-{}", config.http.address).replace([':', '[', ']'], "_");
                table.extend(certificate_files(key, &name, certificate, files)?);
            }
        }
        Order::AddTcpListener(config) => {
            table.insert("protocol".into(), string("tcp"));
            table.insert("address".into(), string(config.address.to_string()));
            if let Some(public) = config.public_address {
                table.insert("public_address".into(), string(public.to_string()));
            }
            table.insert("expect_proxy".into(), Value::Boolean(config.expect_proxy));
            table.insert("front_timeout".into(), seconds(config.front_timeout));
            table.insert("back_timeout".into(), seconds(config.back_timeout));
            table.insert("connect_timeout".into(), seconds(config.connect_timeout));
            table.insert("splice".into(), Value::Boolean(config.splice));
        }
        _ => {}
    }
    Ok(table)
}

fn http_listener(table: &mut Table, config: &HttpListenerConfig) {
    table.insert("address".into(), string(config.address.to_string()));
    if let Some(public) = config.public_address {
        table.insert("public_address".into(), string(public.to_string()));
    }
    table.insert("expect_proxy".into(), Value::Boolean(config.expect_proxy));
    table.insert("sticky_name".into(), string(&config.sticky_name));
    table.insert("sozu_id_header".into(), string(&config.sozu_id_header));
    table.insert("front_timeout".into(), seconds(config.front_timeout));
    table.insert("back_timeout".into(), seconds(config.back_timeout));
    table.insert("connect_timeout".into(), seconds(config.connect_timeout));
    table.insert("request_timeout".into(), seconds(config.request_timeout));
    if !config.answers.is_empty() {
        table.insert("answers".into(), Value::Table(answers(&config.answers)));
    }
    table.insert(
        "send_x_real_ip".into(),
        Value::Boolean(config.send_x_real_ip),
    );
    table.insert(
        "elide_x_real_ip".into(),
        Value::Boolean(config.elide_x_real_ip),
    );
    let h2 = &config.h2;
    for (key, value) in h2.numbers() {
        table.insert(key.into(), integer(value));
    }
    if let Some(timeout) = h2.stream_idle_timeout {
        table.insert("h2_stream_idle_timeout_seconds".into(), seconds(timeout));
    }
    table.insert(
        "h2_graceful_shutdown_deadline_seconds".into(),
        seconds(h2.graceful_shutdown_deadline),
    );
}

/// Custom answers inline: a value not starting with `file://` is the answer itself.
fn answers(answers: &BTreeMap<u16, String>) -> Table {
    answers
        .iter()
        .map(|(code, text)| (code.to_string(), string(text)))
        .collect()
}

fn hsts_table(hsts: &Hsts) -> Table {
    let mut table = Table::new();
    table.insert("enabled".into(), Value::Boolean(hsts.enabled));
    table.insert("max_age".into(), seconds(hsts.max_age));
    table.insert(
        "include_subdomains".into(),
        Value::Boolean(hsts.include_subdomains),
    );
    table.insert("preload".into(), Value::Boolean(hsts.preload));
    table.insert(
        "force_replace_backend".into(),
        Value::Boolean(hsts.force_replace_backend),
    );
    table
}

fn cluster_table(
    key: &str,
    cluster: &Cluster,
    is_tcp: bool,
    expects_proxy: bool,
) -> anyhow::Result<Table> {
    let mut table = Table::new();
    table.insert(
        "protocol".into(),
        string(if is_tcp { "tcp" } else { "http" }),
    );
    table.insert(
        "load_balancing".into(),
        string(cluster.load_balancing.name()),
    );
    if let Some(metric) = cluster.load_metric {
        table.insert("load_metric".into(), string(metric.name()));
    }
    if let Some(limit) = cluster.max_connections_per_ip {
        table.insert("max_connections_per_ip".into(), integer(limit));
    }
    if let Some(retry_after) = cluster.retry_after {
        table.insert("retry_after".into(), seconds(retry_after));
    }
    if let Some(hold_timeout) = cluster.hold_timeout {
        table.insert("hold_timeout".into(), seconds(hold_timeout));
    }
    if let Some(max_held) = cluster.max_held {
        table.insert("max_held".into(), integer(max_held));
    }
    if let Some(check) = &cluster.health_check {
        table.insert("health_check".into(), Value::Table(health_check(check)));
    }
    if cluster.http2 {
        table.insert("http2".into(), Value::Boolean(true));
    }
    if is_tcp {
        let send_proxy = match (cluster.proxy_protocol, expects_proxy) {
            (None, false) => false,
            (Some(ProxyProtocolConfig::SendHeader), false) => true,
            (Some(ProxyProtocolConfig::RelayHeader), true) => true,
            (Some(ProxyProtocolConfig::ExpandHeader), true) => false,
            _ => bail!(
                "{key}: its proxy_protocol does not match whether its listeners expect a \
                 PROXY header, which a configuration file cannot say otherwise"
            ),
        };
        table.insert("send_proxy".into(), Value::Boolean(send_proxy));
        return Ok(table);
    }
    table.insert(
        "sticky_session".into(),
        Value::Boolean(cluster.sticky_session),
    );
    table.insert(
        "https_redirect".into(),
        Value::Boolean(cluster.https_redirect),
    );
    if let Some(port) = cluster.https_redirect_port {
        table.insert("https_redirect_port".into(), integer(port));
    }
    if !cluster.answers.is_empty() {
        table.insert("answers".into(), Value::Table(answers(&cluster.answers)));
    }
    if let Some(realm) = &cluster.www_authenticate {
        table.insert("www_authenticate".into(), string(realm));
    }
    if !cluster.authorized_hashes.is_empty() {
        table.insert(
            "authorized_hashes".into(),
            strings(&cluster.authorized_hashes),
        );
    }
    Ok(table)
}

fn health_check(check: &HealthCheckConfig) -> Table {
    let mut table = Table::new();
    table.insert("uri".into(), string(&check.uri));
    table.insert("interval".into(), seconds(check.interval));
    table.insert("timeout".into(), seconds(check.timeout));
    table.insert("healthy_threshold".into(), integer(check.healthy_threshold));
    table.insert(
        "unhealthy_threshold".into(),
        integer(check.unhealthy_threshold),
    );
    table.insert("expected_status".into(), integer(check.expected_status));
    table
}

fn backend_table(backend: &AddBackend) -> Table {
    let mut table = Table::new();
    table.insert("address".into(), string(backend.address.to_string()));
    table.insert("backend_id".into(), string(&backend.backend_id));
    if let Some(sticky_id) = &backend.sticky_id {
        table.insert("sticky_id".into(), string(sticky_id));
    }
    table.insert("weight".into(), integer(backend.weight));
    table.insert("backup".into(), Value::Boolean(backend.backup));
    table
}

fn tags(tags: &BTreeMap<String, String>) -> Table {
    tags.iter()
        .map(|(key, value)| (key.clone(), string(value)))
        .collect()
}

fn http_frontend(frontend: &HttpFrontend) -> Table {
    let mut table = Table::new();
    table.insert("address".into(), string(frontend.address.to_string()));
    table.insert("hostname".into(), string(&frontend.hostname));
    if !frontend.path.is_any() {
        table.insert("path".into(), string(&frontend.path.value));
        let kind = match frontend.path.kind {
            PathRuleKind::Prefix => "PREFIX",
            PathRuleKind::Regex => "REGEX",
            PathRuleKind::Equals => "EQUALS",
        };
        table.insert("path_type".into(), string(kind));
    }
    if let Some(method) = &frontend.method {
        table.insert("method".into(), string(method));
    }
    let position = match frontend.position {
        RulePosition::Pre => "PRE",
        RulePosition::Tree => "TREE",
        RulePosition::Post => "POST",
    };
    table.insert("position".into(), string(position));
    if !frontend.tags.is_empty() {
        table.insert("tags".into(), Value::Table(tags(&frontend.tags)));
    }
    let redirect = match frontend.redirect {
        RedirectPolicy::Forward => "forward",
        RedirectPolicy::Permanent => "permanent",
        RedirectPolicy::Found => "found",
        RedirectPolicy::PermanentRedirect => "permanent_redirect",
        RedirectPolicy::Unauthorized => "unauthorized",
    };
    table.insert("redirect".into(), string(redirect));
    let scheme = match frontend.redirect_scheme {
        RedirectScheme::UseSame => "use-same",
        RedirectScheme::UseHttp => "use-http",
        RedirectScheme::UseHttps => "use-https",
    };
    table.insert("redirect_scheme".into(), string(scheme));
    for (key, value) in [
        ("redirect_template", &frontend.redirect_template),
        ("rewrite_host", &frontend.rewrite_host),
        ("rewrite_path", &frontend.rewrite_path),
    ] {
        if let Some(value) = value {
            table.insert(key.into(), string(value));
        }
    }
    if let Some(port) = frontend.rewrite_port {
        table.insert("rewrite_port".into(), integer(port));
    }
    table.insert(
        "required_auth".into(),
        Value::Boolean(frontend.required_auth),
    );
    if !frontend.headers.is_empty() {
        let edits = frontend.headers.iter().map(header_edit).collect();
        table.insert("headers".into(), Value::Array(edits));
    }
    if let Some(hsts) = &frontend.hsts {
        table.insert("hsts".into(), Value::Table(hsts_table(hsts)));
    }
    if let Some(answer) = &frontend.answer {
        table.insert("answer".into(), Value::Table(fixed_answer(answer)));
    }
    table
}

fn header_edit(edit: &HeaderEdit) -> Value {
    let position = match edit.position {
        HeaderPosition::Request => "request",
        HeaderPosition::Response => "response",
        HeaderPosition::Both => "both",
    };
    let mut table = Table::new();
    table.insert("position".into(), string(position));
    table.insert("key".into(), string(&edit.key));
    table.insert("value".into(), string(&edit.value));
    Value::Table(table)
}

fn fixed_answer(answer: &FixedAnswer) -> Table {
    let mut table = Table::new();
    table.insert("status".into(), integer(answer.status));
    if !answer.headers.is_empty() {
        let headers = answer
            .headers
            .iter()
            .map(|(name, value)| Value::Array(vec![string(name), string(value)]))
            .collect();
        table.insert("headers".into(), Value::Array(headers));
    }
    table.insert("body".into(), string(&answer.body));
    table
}

fn tcp_frontend(frontend: &TcpFrontend) -> Table {
    let mut table = Table::new();
    table.insert("address".into(), string(frontend.address.to_string()));
    if !frontend.tags.is_empty() {
        table.insert("tags".into(), Value::Table(tags(&frontend.tags)));
    }
    if let Some(rule) = &frontend.rule {
        table.insert(rule.key().into(), string(rule.value()));
    }
    table
}

/// Writes each certificate's files into `files` and returns, by listener address, the keys
/// that attach it to a frontend. A listener with several certificates is refused: a
/// configuration file attaches one certificate to one frontend, and this export uses one
/// frontend per listener.
fn certificates(
    objects: &Objects,
    files: Option<&Path>,
) -> anyhow::Result<BTreeMap<std::net::SocketAddr, Table>> {
    let mut carried = BTreeMap::new();
    for (key, add) in &objects.certificates {
        let certificate = &add.certificate;
        if add.allow_expired || !certificate.names.is_empty() {
            bail!(
                "{key}: allow_expired and explicit names cannot be written in a configuration file"
            );
        }
        if carried.contains_key(&add.address) {
            bail!(
                "{key}: {} has several certificates; this export writes one per listener",
                add.address
            );
        }
        let fingerprint = key.rsplit('/').next().unwrap_or(key);
        let mut table = certificate_files(key, fingerprint, certificate, files)?;
        if !certificate.versions.is_empty() {
            let versions: Vec<String> = certificate
                .versions
                .iter()
                .map(|v| v.name().into())
                .collect();
            table.insert("tls_versions".into(), strings(&versions));
        }
        carried.insert(add.address, table);
    }
    Ok(carried)
}

/// Writes a certificate, its key and its chain as `<name>.pem`, `<name>.key` and
/// `<name>.chain.pem` in `files`; returns the keys that name them.
fn certificate_files(
    key: &str,
    name: &str,
    certificate: &sozu_command_lib::request::CertificateAndKey,
    files: Option<&Path>,
) -> anyhow::Result<Table> {
    let Some(folder) = files else {
        bail!("{key}: the prefix holds certificates: pass --files DIR to write them");
    };
    let write = |extension: &str, contents: &str| -> anyhow::Result<Value> {
        let path = folder.join(format!("{name}.{extension}"));
        fs::write(&path, contents).with_context(|| format!("cannot write {}", path.display()))?;
        let path = std::path::absolute(&path).unwrap_or(path);
        Ok(string(path.display().to_string()))
    };
    let mut table = Table::new();
    table.insert(
        "certificate".into(),
        write("pem", &certificate.certificate)?,
    );
    table.insert("key".into(), write("key", &certificate.key)?);
    if !certificate.certificate_chain.is_empty() {
        let chain = certificate.certificate_chain.join("\n");
        table.insert("certificate_chain".into(), write("chain.pem", &chain)?);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::{config::Config, state::ConfigState};

    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");

    /// A file with most of what each kind of object can say.
    const CONFIG: &str = r#"
[[listeners]]
protocol = "http"
address = "127.0.0.1:8080"
sticky_name = "STICKY"
front_timeout = 12
answers = { 404 = "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope" }
send_x_real_ip = true
h2c = true
h2_max_ping_per_window = 7
h2_stream_idle_timeout_seconds = 12

[[listeners]]
protocol = "https"
address = "127.0.0.1:8443"
tls_versions = ["TLS_V13"]
alpn_protocols = ["http/1.1"]
strict_sni_binding = false
hsts = { enabled = true, max_age = 600, preload = true }

[[listeners]]
protocol = "tcp"
address = "127.0.0.1:5432"
expect_proxy = true
splice = true

[clusters.web]
protocol = "http"
load_balancing = "LEAST_LOADED"
load_metric = "REQUESTS"
sticky_session = true
http2 = true
https_redirect = true
https_redirect_port = 8443
max_connections_per_ip = 7
retry_after = 30
www_authenticate = "web"
authorized_hashes = ["admin:0000000000000000000000000000000000000000000000000000000000000000"]
answers = { 503 = "busy" }
health_check = { uri = "/health", interval = 3, expected_status = 204 }
frontends = [
  { address = "127.0.0.1:8080", hostname = "www.example.com", path = "^/api/[0-9]+", path_type = "REGEX", method = "GET", position = "PRE", tags = { team = "a" }, rewrite_host = "api.internal", required_auth = true, headers = [{ position = "request", key = "X-From", value = "edge" }] },
  { address = "127.0.0.1:8443", hostname = "*.example.com", certificate = "example.pem", key = "example.key", tls_versions = ["TLS_V12", "TLS_V13"] },
]
backends = [
  { address = "127.0.0.1:9000", backend_id = "one", sticky_id = "s1", weight = 10 },
  { address = "127.0.0.1:9001", backup = true },
]

[clusters.db]
protocol = "tcp"
send_proxy = true
frontends = [{ address = "127.0.0.1:5432", tags = { kind = "sql" } }]
backends = [{ address = "127.0.0.1:5433" }]

[[frontends]]
address = "127.0.0.1:8080"
hostname = "old.example.com"
redirect = "permanent"
redirect_scheme = "use-https"
rewrite_host = "new.example.com"

[[frontends]]
address = "127.0.0.1:8080"
hostname = "teapot.example.com"
answer = { status = 418, headers = [["Content-Type", "text/plain"]], body = "short and stout" }
"#;

    fn state(config: &Config) -> ConfigState {
        let mut state = ConfigState::new();
        for order in config.orders() {
            state.apply(&order).unwrap();
        }
        state
    }

    fn settings() -> EtcdProvider {
        let text =
            "[provider.etcd]\nendpoints = [\"http://a:1\"]\nprefix = \"/s/\"\nnode = \"n\"\n";
        Config::parse(text, Path::new(FIXTURES))
            .unwrap()
            .0
            .etcd
            .unwrap()
    }

    /// The keys `fleet import` writes for `config`.
    fn entries(config: &Config) -> Vec<(String, Vec<u8>)> {
        config
            .orders()
            .iter()
            .filter_map(|order| {
                let key = layout::key_of(order).unwrap()?;
                Some((key, serde_json::to_vec(order).unwrap()))
            })
            .collect()
    }

    #[test]
    fn an_imported_configuration_exports_to_the_same_routing_state() {
        let (config, _) = Config::parse(CONFIG, Path::new(FIXTURES)).unwrap();
        let files = tempfile::tempdir().unwrap();
        let objects = collect(&settings(), &entries(&config));
        let text = render(&objects, Some(files.path())).unwrap();
        let exported = Config::parse(&text, files.path())
            .unwrap_or_else(|errors| panic!("{errors}\n{text}"))
            .0;
        assert_eq!(state(&exported), state(&config), "{text}");
    }

    #[test]
    fn certificates_need_a_folder_and_a_frontend() {
        let (config, _) = Config::parse(CONFIG, Path::new(FIXTURES)).unwrap();
        let objects = collect(&settings(), &entries(&config));
        let error = render(&objects, None).unwrap_err().to_string();
        assert!(error.contains("--files"), "{error}");

        let mut entries = entries(&config);
        entries.retain(|(key, value)| {
            !(key.starts_with("frontends/") && String::from_utf8_lossy(value).contains("8443"))
        });
        let files = tempfile::tempdir().unwrap();
        let objects = collect(&settings(), &entries);
        let error = render(&objects, Some(files.path()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no HTTPS frontend"), "{error}");
    }
}
