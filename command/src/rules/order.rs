//! Checking an order against the rules: every field of an order that changes the routing state,
//! named by its path in the order's JSON when it breaks its rule.

use std::time::Duration;

use super::*;
use crate::{
    answer,
    hostname::{self, HostnameError},
    request::{
        AddBackend, AddCertificate, CertificateAndKey, Cluster, Effect, Fault, FaultTarget,
        FixedAnswer, H2Config, H2Patch, HeaderEdit, HealthCheckConfig, Hsts, HttpFrontend,
        HttpListenerConfig, HttpListenerPatch, HttpsListenerConfig, Order, PathRuleKind,
        RedirectPolicy, RemoveBackend, ReplaceCertificate, TcpFrontend, TcpListenerConfig,
        TcpScript, TlsListenerConfig, TlsListenerPatch, UpdateTcpListener,
    },
};

/// A field of an order that breaks its rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}` {value}: expected {expected}")]
pub struct InvalidField {
    /// The field's path in the order, as in its JSON (`health_check.interval`).
    pub field: String,
    /// The value given, shortened when long.
    pub value: String,
    /// What the rule expects, in words (`1 to 2147483 seconds`).
    pub expected: String,
}

/// The value as messages show it: quoted, escaped, at most 64 characters.
fn excerpt(value: &str) -> String {
    const SHOWN: usize = 64;
    let mut shown: String = value.chars().take(SHOWN).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    format!("{shown:?} ({} bytes)", value.len())
}

/// Checks field after field, naming each by its path.
///
/// The path is a chain of the structures being checked, on the stack: building it as a
/// `String` allocated one per frontend (its `path.`) in the main process and in every worker.
struct Checker<'p> {
    /// The structure being checked and the checker of the one holding it; `None` for the
    /// order itself.
    within: Option<(&'p Checker<'p>, &'static str)>,
}

impl Checker<'_> {
    fn new() -> Self {
        Checker { within: None }
    }

    /// The path of the structure being checked, with a trailing dot (`health_check.`).
    fn prefix(&self) -> String {
        match self.within {
            Some((outer, name)) => format!("{}{name}.", outer.prefix()),
            None => String::new(),
        }
    }

    fn invalid(&self, field: &str, value: String, expected: impl Into<String>) -> InvalidField {
        InvalidField {
            field: format!("{}{field}", self.prefix()),
            value,
            expected: expected.into(),
        }
    }

    /// Checks the fields of `name` with the path extended by it.
    fn within<T>(
        &self,
        name: &'static str,
        check: impl FnOnce(&Checker<'_>) -> Result<T, InvalidField>,
    ) -> Result<T, InvalidField> {
        check(&Checker {
            within: Some((self, name)),
        })
    }

    fn number(&self, field: &str, value: u64, bounds: &Bounds) -> Result<(), InvalidField> {
        if bounds.contains(value) {
            Ok(())
        } else {
            Err(self.invalid(field, value.to_string(), bounds.expected()))
        }
    }

    fn seconds(&self, field: &str, value: Duration, bounds: &Bounds) -> Result<(), InvalidField> {
        self.number(field, value.as_secs(), bounds)
    }

    fn text(&self, field: &str, value: &str, rule: &TextRule) -> Result<(), InvalidField> {
        rule.check(value)
            .map_err(|expected| self.invalid(field, excerpt(value), expected))
    }

    fn with(
        &self,
        field: &str,
        value: &str,
        rule: fn(&str) -> Result<(), &'static str>,
    ) -> Result<(), InvalidField> {
        rule(value).map_err(|expected| self.invalid(field, excerpt(value), expected))
    }

    fn texts<'a>(
        &self,
        field: &str,
        values: impl IntoIterator<Item = &'a String>,
        rule: &TextRule,
    ) -> Result<(), InvalidField> {
        values
            .into_iter()
            .try_for_each(|value| self.text(field, value, rule))
    }

    fn tags<'a>(
        &self,
        tags: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<(), InvalidField> {
        for (key, value) in tags {
            self.text("tags", key, &LABEL)?;
            self.text("tags", value, &LABEL)?;
        }
        Ok(())
    }

    fn answers<'a>(
        &self,
        answers: impl IntoIterator<Item = (&'a u16, &'a String)>,
        empty_restores: bool,
    ) -> Result<(), InvalidField> {
        for (&status, text) in answers {
            let field = format!("answers.{status}");
            if !answer::CUSTOM_STATUSES.contains(&status) {
                let expected = format!(
                    "a status among {}",
                    answer::CUSTOM_STATUSES.map(|s| s.to_string()).join(", ")
                );
                return Err(self.invalid("answers", status.to_string(), expected));
            }
            if empty_restores && text.is_empty() {
                continue;
            }
            answer::parse(status, text)
                .map_err(|error| self.invalid(&field, excerpt(text), error.to_string()))?;
        }
        Ok(())
    }

    fn cluster(&self, cluster: &Cluster) -> Result<(), InvalidField> {
        self.text("cluster_id", &cluster.cluster_id, &IDENTIFIER)?;
        if let Some(port) = cluster.https_redirect_port {
            self.number("https_redirect_port", port.into(), &PORT)?;
        }
        self.answers(&cluster.answers, false)?;
        for entry in &cluster.authorized_hashes {
            self.with("authorized_hashes", entry, check_authorized_hash)?;
        }
        if let Some(realm) = &cluster.www_authenticate {
            self.text("www_authenticate", realm, &REALM)?;
        }
        if let Some(limit) = cluster.max_connections_per_ip {
            self.number("max_connections_per_ip", limit, &MAX_CONNECTIONS_PER_IP)?;
        }
        if let Some(retry_after) = cluster.retry_after {
            self.seconds("retry_after", retry_after, &HEADER_SECONDS)?;
        }
        if let Some(hold_timeout) = cluster.hold_timeout {
            self.seconds("hold_timeout", hold_timeout, &HOLD_TIMEOUT)?;
        }
        if let Some(max_held) = cluster.max_held {
            self.number("max_held", max_held, &MAX_HELD)?;
        }
        if let Some(check) = &cluster.health_check {
            self.within("health_check", |c| c.health_check(check))?;
        }
        Ok(())
    }

    fn health_check(&self, check: &HealthCheckConfig) -> Result<(), InvalidField> {
        self.text("uri", &check.uri, &HEALTH_CHECK_URI)?;
        self.seconds("interval", check.interval, &TIMEOUT)?;
        self.seconds("timeout", check.timeout, &TIMEOUT)?;
        self.number(
            "healthy_threshold",
            check.healthy_threshold.into(),
            &HEALTH_THRESHOLD,
        )?;
        self.number(
            "unhealthy_threshold",
            check.unhealthy_threshold.into(),
            &HEALTH_THRESHOLD,
        )?;
        if check.expected_status != 0 {
            self.number(
                "expected_status",
                check.expected_status.into(),
                &EXPECTED_STATUS,
            )?;
        }
        Ok(())
    }

    fn backend(&self, backend: &AddBackend) -> Result<(), InvalidField> {
        self.text("cluster_id", &backend.cluster_id, &IDENTIFIER)?;
        self.text("backend_id", &backend.backend_id, &IDENTIFIER)?;
        if let Some(sticky_id) = &backend.sticky_id {
            self.text("sticky_id", sticky_id, &COOKIE_VALUE)?;
        }
        self.number("weight", backend.weight.into(), &WEIGHT)
    }

    fn http_frontend(&self, frontend: &HttpFrontend) -> Result<(), InvalidField> {
        if let Some(cluster_id) = &frontend.cluster_id {
            self.text("cluster_id", cluster_id, &IDENTIFIER)?;
        }
        hostname::check_pattern(&frontend.hostname).map_err(|error| {
            self.invalid(
                "hostname",
                excerpt(&frontend.hostname),
                hostname_rule(&error),
            )
        })?;
        self.within("path", |c| {
            c.text("value", &frontend.path.value, &PATH_RULE)?;
            if frontend.path.kind == PathRuleKind::Regex {
                regex::Regex::new(&frontend.path.value).map_err(|error| {
                    let reason = error.to_string();
                    let reason = reason.lines().last().unwrap_or_default().trim();
                    c.invalid(
                        "value",
                        excerpt(&frontend.path.value),
                        format!("a regular expression ({reason})"),
                    )
                })?;
            }
            Ok(())
        })?;
        if let Some(method) = &frontend.method {
            self.text("method", method, &TOKEN)?;
        }
        self.tags(&frontend.tags)?;
        if let Some(template) = &frontend.redirect_template {
            answer::check_redirect_template(frontend.redirect.redirect_status(), template)
                .map_err(|error| {
                    self.invalid("redirect_template", excerpt(template), error.to_string())
                })?;
        }
        for (field, template) in [
            ("rewrite_host", &frontend.rewrite_host),
            ("rewrite_path", &frontend.rewrite_path),
        ] {
            if let Some(template) = template {
                self.text(field, template, &TEMPLATE)?;
            }
        }
        if let Some(port) = frontend.rewrite_port {
            self.number("rewrite_port", port.into(), &PORT)?;
        }
        for edit in &frontend.headers {
            self.within("headers", |c| c.header_edit(edit))?;
        }
        if let Some(hsts) = &frontend.hsts {
            self.within("hsts", |c| c.hsts(hsts))?;
        }
        if let Some(fixed) = &frontend.answer {
            self.within("answer", |c| c.fixed_answer(fixed))?;
        }
        if frontend.cluster_id.is_none()
            && frontend.answer.is_none()
            && frontend.redirect == RedirectPolicy::Forward
        {
            return Err(self.invalid(
                "cluster_id",
                "null".to_string(),
                "a cluster, or else an `answer` or a `redirect` other than FORWARD",
            ));
        }
        Ok(())
    }

    fn header_edit(&self, edit: &HeaderEdit) -> Result<(), InvalidField> {
        self.with("key", &edit.key, check_edited_header_name)?;
        self.text("value", &edit.value, &HEADER_VALUE)
    }

    fn hsts(&self, hsts: &Hsts) -> Result<(), InvalidField> {
        self.seconds("max_age", hsts.max_age, &HEADER_SECONDS)
    }

    fn fixed_answer(&self, fixed: &FixedAnswer) -> Result<(), InvalidField> {
        self.number("status", fixed.status.into(), &ANSWER_STATUS)?;
        for (name, value) in &fixed.headers {
            self.with("headers", name, answer::check_header_name)?;
            self.text("headers", value, &HEADER_VALUE)?;
        }
        if fixed.body.len() > MAX_ANSWER {
            return Err(self.invalid(
                "body",
                excerpt(&fixed.body),
                format!("at most {MAX_ANSWER} bytes"),
            ));
        }
        Ok(())
    }

    fn fault(&self, fault: &Fault) -> Result<(), InvalidField> {
        self.text("name", &fault.name, &IDENTIFIER)?;
        match &fault.target {
            FaultTarget::Cluster { cluster_id } => {
                self.text("cluster_id", cluster_id, &IDENTIFIER)?;
            }
            FaultTarget::Backend {
                cluster_id,
                backend_id,
            } => {
                self.text("cluster_id", cluster_id, &IDENTIFIER)?;
                self.text("backend_id", backend_id, &IDENTIFIER)?;
            }
            FaultTarget::Frontend { hostname, .. } => {
                if let Some(hostname) = hostname {
                    hostname::check_pattern(hostname).map_err(|error| {
                        self.invalid("hostname", excerpt(hostname), hostname_rule(&error))
                    })?;
                }
            }
        }
        let probability = fault.probability.0;
        if !(0.0..=1.0).contains(&probability) {
            return Err(self.invalid(
                "probability",
                probability.to_string(),
                "a number from 0 to 1",
            ));
        }
        if let Some(ttl) = fault.ttl {
            self.seconds("ttl", ttl, &FAULT_TTL)?;
        }
        if let Some(prefix) = &fault.selector.path_prefix {
            self.text("path_prefix", prefix, &PATH_RULE)?;
        }
        if let Some(header) = &fault.selector.header {
            self.text("header", &header.name, &TOKEN)?;
            self.text("header", &header.value, &HEADER_VALUE)?;
        }
        self.effect(&fault.effect)
    }

    fn effect(&self, effect: &Effect) -> Result<(), InvalidField> {
        let millis = |field, duration: &Duration| {
            let value = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
            self.number(field, value, &FAULT_MILLISECONDS)
        };
        match effect {
            Effect::Latency { latency, jitter } => {
                millis("latency", latency)?;
                millis("jitter", jitter)
            }
            Effect::Bandwidth { rate } => self.number("rate", *rate, &FAULT_RATE),
            Effect::SlowClose { delay } | Effect::HttpDelay { delay } => millis("delay", delay),
            Effect::Timeout { timeout } | Effect::ResetPeer { timeout } => {
                millis("timeout", timeout)
            }
            Effect::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                self.number("average_size", *average_size, &FAULT_SLICE)?;
                if size_variation >= average_size {
                    return Err(self.invalid(
                        "size_variation",
                        size_variation.to_string(),
                        format!("less than average_size ({average_size})"),
                    ));
                }
                let delay = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
                self.number("delay", delay, &FAULT_MICROSECONDS)
            }
            Effect::LimitData { bytes } => self.number("bytes", *bytes, &FAULT_BYTES),
            Effect::Transient { count } => self.number("count", *count, &FAULT_COUNT),
            Effect::HttpError(answer) => self.fixed_answer(answer),
            Effect::Blackout | Effect::Down | Effect::Error { .. } => Ok(()),
        }
    }

    fn tcp_frontend(&self, frontend: &TcpFrontend) -> Result<(), InvalidField> {
        self.text("cluster_id", &frontend.cluster_id, &IDENTIFIER)?;
        self.tags(&frontend.tags)?;
        match &frontend.rule {
            Some(rule) => rule.check().map_err(|error| {
                self.invalid(rule.key(), excerpt(rule.value()), error.to_string())
            }),
            None => Ok(()),
        }
    }

    fn script(&self, script: &TcpScript) -> Result<(), InvalidField> {
        if script.source.len() > MAX_SCRIPT {
            return Err(self.invalid(
                "script",
                excerpt(&script.name),
                format!("a script of at most {MAX_SCRIPT} bytes"),
            ));
        }
        Ok(())
    }

    fn certificate(&self, certificate: &CertificateAndKey) -> Result<(), InvalidField> {
        self.texts("names", &certificate.names, &LABEL)
    }

    fn http_listener(&self, config: &HttpListenerConfig) -> Result<(), InvalidField> {
        self.text("sticky_name", &config.sticky_name, &TOKEN)?;
        if !config.sozu_id_header.is_empty() {
            self.with(
                "sozu_id_header",
                &config.sozu_id_header,
                check_edited_header_name,
            )?;
        }
        for (field, timeout) in [
            ("front_timeout", config.front_timeout),
            ("back_timeout", config.back_timeout),
            ("connect_timeout", config.connect_timeout),
            ("request_timeout", config.request_timeout),
        ] {
            self.seconds(field, timeout, &TIMEOUT)?;
        }
        self.within("h2", |c| c.h2(&config.h2))?;
        self.answers(&config.answers, false)
    }

    /// Order fields are the configuration keys without `h2_` (and `_seconds`).
    fn h2(&self, config: &H2Config) -> Result<(), InvalidField> {
        for (key, value) in config.numbers() {
            let field = key.trim_start_matches("h2_");
            self.number(field, value.into(), &h2_bounds(key))?;
        }
        if let Some(timeout) = config.stream_idle_timeout {
            self.seconds("stream_idle_timeout", timeout, &TIMEOUT)?;
        }
        self.seconds(
            "graceful_shutdown_deadline",
            config.graceful_shutdown_deadline,
            &H2_SHUTDOWN_DEADLINE,
        )
    }

    fn h2_patch(&self, patch: &H2Patch) -> Result<(), InvalidField> {
        for (key, value) in patch.numbers() {
            if let Some(value) = value {
                self.number(key.trim_start_matches("h2_"), value.into(), &h2_bounds(key))?;
            }
        }
        if let Some(timeout) = patch.stream_idle_timeout {
            self.seconds("stream_idle_timeout", timeout, &TIMEOUT)?;
        }
        if let Some(deadline) = patch.graceful_shutdown_deadline {
            self.seconds(
                "graceful_shutdown_deadline",
                deadline,
                &H2_SHUTDOWN_DEADLINE,
            )?;
        }
        Ok(())
    }

    fn http_patch(&self, patch: &HttpListenerPatch) -> Result<(), InvalidField> {
        if let Some(sticky_name) = &patch.sticky_name {
            self.text("sticky_name", sticky_name, &TOKEN)?;
        }
        if let Some(header) = patch.sozu_id_header.as_ref().filter(|h| !h.is_empty()) {
            self.with("sozu_id_header", header, check_edited_header_name)?;
        }
        for (field, timeout) in [
            ("front_timeout", patch.front_timeout),
            ("back_timeout", patch.back_timeout),
            ("connect_timeout", patch.connect_timeout),
            ("request_timeout", patch.request_timeout),
        ] {
            if let Some(timeout) = timeout {
                self.seconds(field, timeout, &TIMEOUT)?;
            }
        }
        self.within("h2", |c| c.h2_patch(&patch.h2))?;
        self.answers(&patch.answers, true)
    }

    fn tls(&self, tls: &TlsListenerConfig) -> Result<(), InvalidField> {
        if let Some(certificate) = &tls.certificate {
            self.within("certificate", |c| c.certificate(certificate))?;
        }
        self.number(
            "send_tls13_tickets",
            tls.send_tls13_tickets.into(),
            &TLS13_TICKETS,
        )?;
        for protocol in &tls.alpn_protocols {
            self.with("alpn_protocols", protocol, check_alpn_protocol)?;
        }
        if let Some(hsts) = &tls.hsts {
            self.within("hsts", |c| c.hsts(hsts))?;
        }
        Ok(())
    }

    fn tls_patch(&self, patch: &TlsListenerPatch) -> Result<(), InvalidField> {
        if let Some(Some(certificate)) = &patch.certificate {
            self.within("certificate", |c| c.certificate(certificate))?;
        }
        if let Some(tickets) = patch.send_tls13_tickets {
            self.number("send_tls13_tickets", tickets.into(), &TLS13_TICKETS)?;
        }
        for protocol in patch.alpn_protocols.iter().flatten() {
            self.with("alpn_protocols", protocol, check_alpn_protocol)?;
        }
        if let Some(Some(hsts)) = &patch.hsts {
            self.within("hsts", |c| c.hsts(hsts))?;
        }
        Ok(())
    }

    fn https_listener(&self, config: &HttpsListenerConfig) -> Result<(), InvalidField> {
        self.within("http", |c| c.http_listener(&config.http))?;
        self.within("tls", |c| c.tls(&config.tls))
    }

    fn tcp_listener(&self, config: &TcpListenerConfig) -> Result<(), InvalidField> {
        for (field, timeout) in [
            ("front_timeout", config.front_timeout),
            ("back_timeout", config.back_timeout),
            ("connect_timeout", config.connect_timeout),
        ] {
            self.seconds(field, timeout, &TIMEOUT)?;
        }
        self.number("inspect_bytes", config.inspect_bytes, &INSPECT_BYTES)?;
        self.seconds("inspect_timeout", config.inspect_timeout, &TIMEOUT)?;
        config.script.as_ref().map_or(Ok(()), |s| self.script(s))
    }

    fn tcp_patch(&self, update: &UpdateTcpListener) -> Result<(), InvalidField> {
        for (field, timeout) in [
            ("front_timeout", update.front_timeout),
            ("back_timeout", update.back_timeout),
            ("connect_timeout", update.connect_timeout),
            ("inspect_timeout", update.inspect_timeout),
        ] {
            if let Some(timeout) = timeout {
                self.seconds(field, timeout, &TIMEOUT)?;
            }
        }
        if let Some(bytes) = update.inspect_bytes {
            self.number("inspect_bytes", bytes, &INSPECT_BYTES)?;
        }
        match &update.script {
            Some(Some(script)) => self.script(script),
            _ => Ok(()),
        }
    }

    fn remove_backend(&self, backend: &RemoveBackend) -> Result<(), InvalidField> {
        self.text("cluster_id", &backend.cluster_id, &IDENTIFIER)?;
        self.text("backend_id", &backend.backend_id, &IDENTIFIER)
    }

    fn order(&self, order: &Order) -> Result<(), InvalidField> {
        match order {
            Order::AddCluster(cluster) => self.cluster(cluster),
            Order::RemoveCluster(id) | Order::RemoveHealthCheck(id) => {
                self.text("cluster_id", &id.cluster_id, &IDENTIFIER)
            }
            Order::AddBackend(backend) => self.backend(backend),
            Order::RemoveBackend(backend) => self.remove_backend(backend),
            Order::AddHttpFrontend(frontend) | Order::AddHttpsFrontend(frontend) => {
                self.http_frontend(frontend)
            }
            Order::AddTcpFrontend(frontend) => self.tcp_frontend(frontend),
            Order::AddCertificate(AddCertificate { certificate, .. })
            | Order::ReplaceCertificate(ReplaceCertificate {
                new_certificate: certificate,
                ..
            }) => self.certificate(certificate),
            Order::AddHttpListener(config) => self.http_listener(config),
            Order::AddHttpsListener(config) => self.https_listener(config),
            Order::AddTcpListener(config) => self.tcp_listener(config),
            Order::UpdateHttpListenerConfig(update) => {
                self.within("http", |c| c.http_patch(&update.http))
            }
            Order::UpdateHttpsListenerConfig(update) => {
                self.within("http", |c| c.http_patch(&update.http))?;
                self.within("tls", |c| c.tls_patch(&update.tls))
            }
            Order::UpdateTcpListenerConfig(update) => self.tcp_patch(update),
            Order::SetMaxConnectionsPerIp(limit) => self.number(
                "max_connections_per_ip",
                limit.max_connections_per_ip,
                &MAX_CONNECTIONS_PER_IP,
            ),
            Order::SetHealthCheck(set) => {
                self.text("cluster_id", &set.cluster_id, &IDENTIFIER)?;
                self.within("health_check", |c| c.health_check(&set.health_check))
            }
            Order::AddFault(add) | Order::UpdateFault(add) => {
                self.within("fault", |c| c.fault(&add.fault))
            }
            // Removals name what exists: the state refuses what it lacks.
            _ => Ok(()),
        }
    }
}

/// What a hostname pattern must be, after `error`.
fn hostname_rule(error: &HostnameError) -> String {
    format!("a hostname pattern ({error})")
}

/// Checks every field of an order against its rule. Orders that change nothing and removals
/// of frontends and certificates have nothing to check here: the state refuses what it lacks.
/// What it gives back proves the check to [`crate::state::ConfigState::apply_checked`], which
/// then does not make it again.
pub fn check_order(order: &Order) -> Result<FieldsChecked, InvalidField> {
    Checker::new().order(order).map(|()| FieldsChecked(()))
}

/// [`check_order`] of an `ADD_HTTP_FRONTEND` or `ADD_HTTPS_FRONTEND` order, given its frontend
/// alone: a caller that takes the frontend out of the order checks it without a copy of it.
pub fn check_frontend(frontend: &HttpFrontend) -> Result<FieldsChecked, InvalidField> {
    Checker::new()
        .http_frontend(frontend)
        .map(|()| FieldsChecked(()))
}

/// The proof that [`check_order`] accepted an order's fields: only it makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldsChecked(());

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::request::{ClusterId, SetHealthCheck};

    fn health_check_with(change: impl FnOnce(&mut HealthCheckConfig)) -> Order {
        let mut health_check = HealthCheckConfig::new("/health");
        change(&mut health_check);
        Order::SetHealthCheck(SetHealthCheck {
            cluster_id: "c".to_string(),
            health_check,
        })
    }

    #[test]
    fn huge_durations_are_refused_with_the_field_and_the_range() {
        let order = health_check_with(|check| check.interval = Duration::from_secs(u64::MAX));
        let error = check_order(&order).unwrap_err();
        assert_eq!(error.field, "health_check.interval");
        assert_eq!(error.value, u64::MAX.to_string());
        assert_eq!(error.expected, "1 to 2147483 seconds");
        let mut listener = HttpListenerConfig::new("127.0.0.1:80".parse().unwrap());
        listener.request_timeout = Duration::from_secs(u64::MAX);
        let error = check_order(&Order::AddHttpListener(listener)).unwrap_err();
        assert_eq!(error.field, "request_timeout");
        let order = health_check_with(|check| check.timeout = Duration::ZERO);
        assert_eq!(
            check_order(&order).unwrap_err().field,
            "health_check.timeout"
        );
    }

    #[test]
    fn h2_limits_out_of_range_are_refused_with_the_field_and_the_range() {
        let mut listener = HttpListenerConfig::new("127.0.0.1:80".parse().unwrap());
        listener.h2.max_concurrent_streams = 0;
        let error = check_order(&Order::AddHttpListener(listener.clone())).unwrap_err();
        assert_eq!(error.field, "h2.max_concurrent_streams");
        assert_eq!(error.expected, "1 to 100000");
        listener.h2 = H2Config {
            initial_connection_window: 1_000,
            ..H2Config::default()
        };
        let error = check_order(&Order::AddHttpListener(listener.clone())).unwrap_err();
        assert_eq!(error.field, "h2.initial_connection_window");
        listener.h2 = H2Config::default();
        assert!(check_order(&Order::AddHttpListener(listener)).is_ok());
        let update = crate::request::UpdateHttpListener {
            address: "127.0.0.1:80".parse().unwrap(),
            http: HttpListenerPatch {
                h2: H2Patch {
                    stream_idle_timeout: Some(Duration::ZERO),
                    ..H2Patch::default()
                },
                ..HttpListenerPatch::default()
            },
        };
        let error = check_order(&Order::UpdateHttpListenerConfig(update)).unwrap_err();
        assert_eq!(error.field, "http.h2.stream_idle_timeout");
    }

    #[test]
    fn bytes_that_would_end_a_header_line_are_refused_everywhere() {
        let order = health_check_with(|check| check.uri = "/\r\nX-Forged: 1".to_string());
        assert!(check_order(&order).is_err());

        let mut frontend = HttpFrontend::new(
            Some("c".to_string()),
            "127.0.0.1:80".parse().unwrap(),
            "example.com",
        );
        frontend.headers.push(HeaderEdit {
            position: crate::request::HeaderPosition::Response,
            key: "X-Ok".to_string(),
            value: "a\r\nSet-Cookie: stolen=1".to_string(),
        });
        let error = check_order(&Order::AddHttpFrontend(frontend)).unwrap_err();
        assert_eq!(error.field, "headers.value");

        let mut listener = HttpListenerConfig::new("127.0.0.1:80".parse().unwrap());
        listener.sozu_id_header = "Id\r\nX".to_string();
        assert_eq!(
            check_order(&Order::AddHttpListener(listener))
                .unwrap_err()
                .field,
            "sozu_id_header"
        );

        let mut cluster = Cluster::new("c");
        cluster.answers = BTreeMap::from([(503, "HTTP/1.1 503 X\r\nA: b\rc\r\n\r\n".to_string())]);
        assert_eq!(
            check_order(&Order::AddCluster(cluster)).unwrap_err().field,
            "answers.503"
        );
    }

    /// Issue 17: a field is named by the path of the structures holding it, and only by
    /// them: after `path.value` is checked, the method is `method`, not `path.method`.
    #[test]
    fn fields_are_named_by_their_path_only_inside_their_structure() {
        let mut frontend = HttpFrontend::new(None, "127.0.0.1:80".parse().unwrap(), "a.test");
        frontend.path = crate::request::PathRule::prefix("/a\r\n");
        let error = check_order(&Order::AddHttpFrontend(frontend.clone())).unwrap_err();
        assert_eq!(error.field, "path.value");
        frontend.path = crate::request::PathRule::prefix("/a");
        frontend.method = Some("G T".to_string());
        let error = check_order(&Order::AddHttpFrontend(frontend)).unwrap_err();
        assert_eq!(error.field, "method");
    }

    #[test]
    fn long_values_are_shown_shortened() {
        let id = "x".repeat(1 << 20);
        let error = check_order(&Order::RemoveCluster(ClusterId { cluster_id: id })).unwrap_err();
        assert!(error.to_string().len() < 300, "{error}");
        assert!(error.to_string().contains("1048576 bytes"), "{error}");
    }
}
