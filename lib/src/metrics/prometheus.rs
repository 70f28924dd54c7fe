//! The Prometheus text exposition format (version 0.0.4) of merged figures.
//!
//! Each metric family gets its `# HELP` and `# TYPE` lines once, then its samples. Families
//! are per level, so that each sums over one kind of thing: `sozu_requests_total` for the
//! proxy as a whole, `sozu_listener_requests_total{listener}`,
//! `sozu_cluster_requests_total{cluster}` and `sozu_backend_requests_total{cluster,backend}`.
//! Counters end in `_total`; durations are histograms in seconds with fixed buckets.

use std::{collections::BTreeMap, fmt::Write as _};

use sozu_command_lib::response::{AggregatedMetrics, FilteredMetric, HistogramData};

/// Upper bounds of histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How one of our metric names shows in Prometheus.
struct Family {
    name: String,
    kind: &'static str,
    help: String,
    /// A label the name carries (`class="2xx"`, `code="404"`, `state="up"`).
    label: Option<(&'static str, String)>,
}

/// The family of metric `name` at `level` (empty for the proxy as a whole, else `listener`,
/// `cluster` or `backend`), so that each family sums over one kind of thing.
fn family(prefix: &str, level: &str, name: &str) -> Option<Family> {
    let prefix = if level.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}_{level}")
    };
    let simple = |base: &str, kind: &'static str, help: &str| Family {
        name: format!("{prefix}_{base}"),
        kind,
        help: help.to_string(),
        label: None,
    };
    let labelled =
        |base: &str, kind: &'static str, help: &str, label: &'static str, value: &str| Family {
            name: format!("{prefix}_{base}"),
            kind,
            help: help.to_string(),
            label: Some((label, value.to_string())),
        };
    Some(match name {
        "requests" => simple(
            "requests_total",
            "counter",
            "Requests (and TCP connections) completed.",
        ),
        "connections" => simple(
            "connections_total",
            "counter",
            "Connections accepted from clients or opened to backends.",
        ),
        "active_connections" => simple("active_connections", "gauge", "Connections open now."),
        "bytes_in" => simple("bytes_in_total", "counter", "Bytes received from clients."),
        "bytes_out" => simple("bytes_out_total", "counter", "Bytes sent to clients."),
        "connect_failures" => simple(
            "connect_failures_total",
            "counter",
            "Failed connects to backends.",
        ),
        "retries" => simple(
            "retries_total",
            "counter",
            "Connects retried on another backend.",
        ),
        "tls.handshakes" => simple(
            "tls_handshakes_total",
            "counter",
            "TLS handshakes completed.",
        ),
        "tls.handshake_failures" => simple(
            "tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed.",
        ),
        "http.spliced_bytes" => simple(
            "http_spliced_bytes_total",
            "counter",
            "Bytes of HTTP bodies moved with splice(2).",
        ),
        "descriptors.reclaimed" => simple(
            "descriptors_reclaimed_total",
            "counter",
            "Idle backend connections closed because the worker was out of descriptors.",
        ),
        "descriptors.exhausted" => simple(
            "descriptors_exhausted_total",
            "counter",
            "Times the worker was out of descriptors with no idle backend connection to close.",
        ),
        "h2.connections" => simple(
            "h2_connections_total",
            "counter",
            "HTTP/2 client connections closed.",
        ),
        "h2.streams" => simple(
            "h2_streams_total",
            "counter",
            "HTTP/2 streams opened by clients.",
        ),
        "h2.resets_received" => simple(
            "h2_resets_received_total",
            "counter",
            "HTTP/2 streams reset by clients.",
        ),
        "h2.resets_sent" => simple(
            "h2_resets_sent_total",
            "counter",
            "HTTP/2 streams reset by the proxy.",
        ),
        "h2.streams_refused" => simple(
            "h2_streams_refused_total",
            "counter",
            "HTTP/2 streams refused over the concurrency limit.",
        ),
        "h2.window_stalls" => simple(
            "h2_window_stalls_total",
            "counter",
            "HTTP/2 sends that found a closed flow-control window.",
        ),
        "h2.goaways_sent" => simple(
            "h2_goaways_sent_total",
            "counter",
            "HTTP/2 GOAWAY frames sent.",
        ),
        "h2.backend.connections" => simple(
            "h2_backend_connections_total",
            "counter",
            "HTTP/2 connections to backends closed.",
        ),
        "h2.backend.streams" => simple(
            "h2_backend_streams_total",
            "counter",
            "HTTP/2 streams opened toward backends.",
        ),
        "h2.backend.resets_received" => simple(
            "h2_backend_resets_received_total",
            "counter",
            "HTTP/2 streams reset by backends.",
        ),
        "h2.backend.goaways_received" => simple(
            "h2_backend_goaways_received_total",
            "counter",
            "HTTP/2 GOAWAY frames received from backends.",
        ),
        "h2.backend.streams_refused" => simple(
            "h2_backend_streams_refused_total",
            "counter",
            "HTTP/2 streams toward backends that a GOAWAY said were not processed.",
        ),
        "h2.backend.streams_shared" => simple(
            "h2_backend_streams_shared_total",
            "counter",
            "HTTP/2 streams opened toward backends beside others in flight on their connection.",
        ),
        "h2.backend.ended" => simple(
            "h2_backend_ended_total",
            "counter",
            "HTTP/2 backend connections the proxy ended for the backend's errors or floods.",
        ),
        "fleet.refused_values" => simple(
            "fleet_refused_values_total",
            "counter",
            "Values of the etcd prefix the node refused (each value once).",
        ),
        "fleet.refused_now" => simple(
            "fleet_refused_keys",
            "gauge",
            "Keys of the etcd prefix the node does not apply now.",
        ),
        "fleet.disconnections" => simple(
            "fleet_disconnections_total",
            "counter",
            "Connections to etcd lost.",
        ),
        "fleet.applied_revision" => simple(
            "fleet_applied_revision",
            "gauge",
            "The etcd revision of the routing keys every worker applied.",
        ),
        "up" => simple(
            "up",
            "gauge",
            "Whether a backend takes connections (1) or not (0).",
        ),
        "connect_time" => simple(
            "connect_time_seconds",
            "histogram",
            "Time to connect to a backend.",
        ),
        "first_byte_time" => simple(
            "first_byte_time_seconds",
            "histogram",
            "Time from sending a request to its response head.",
        ),
        "content.matches" => simple(
            "content_matches_total",
            "counter",
            "Connections a content rule of the listener took.",
        ),
        "content.script_decisions" => simple(
            "content_script_decisions_total",
            "counter",
            "Connections the listener's script (or program) decided.",
        ),
        "content.script_errors" => simple(
            "content_script_errors_total",
            "counter",
            "Calls of the listener's script that failed, each closing its connection.",
        ),
        "content.bytes_inspected" => simple(
            "content_bytes_inspected_total",
            "counter",
            "Bytes looked at to decide where connections go.",
        ),
        "content.decision_time" => simple(
            "content_decision_time_seconds",
            "histogram",
            "Time from accepting a connection to deciding where it goes.",
        ),
        "response_time" => simple(
            "response_time_seconds",
            "histogram",
            "Time from a request head to the end of its response.",
        ),
        _ => {
            if let Some(class) = name.strip_prefix("status.").filter(|c| c.ends_with("xx")) {
                labelled(
                    "responses_total",
                    "counter",
                    "Responses by status class.",
                    "class",
                    class,
                )
            } else if let Some(code) = name.strip_prefix("status.") {
                labelled(
                    "error_responses_total",
                    "counter",
                    "Error responses by status code.",
                    "code",
                    code,
                )
            } else if let Some(code) = name.strip_prefix("proxy_answers.") {
                labelled(
                    "proxy_answers_total",
                    "counter",
                    "Answers written by the proxy itself, by status code.",
                    "code",
                    code,
                )
            } else if let Some(reason) = name.strip_prefix("h2.") {
                labelled(
                    "h2_connections_ended_total",
                    "counter",
                    "HTTP/2 connections the proxy ended, by reason.",
                    "reason",
                    reason,
                )
            } else if let Some(reason) = name.strip_prefix("content.defaults_by_") {
                labelled(
                    "content_defaults_total",
                    "counter",
                    "Connections given to the default frontend, by reason.",
                    "reason",
                    reason,
                )
            } else if let Some(rule) = name.strip_prefix("content.rule_matches.") {
                labelled(
                    "content_rule_matches_total",
                    "counter",
                    "Connections each content rule took, by cluster and rule.",
                    "rule",
                    rule,
                )
            } else if let Some(state) = name.strip_prefix("backends.") {
                labelled(
                    "backends",
                    "gauge",
                    "Backends of a cluster by state.",
                    "state",
                    state,
                )
            } else {
                return None;
            }
        }
    })
}

/// One sample before rendering: labels and value.
struct Sample {
    labels: Vec<(&'static str, String)>,
    value: FilteredMetric,
}

/// Renders merged figures. `prefix` starts every metric name (`sozu`).
pub fn render(metrics: &AggregatedMetrics, prefix: &str) -> String {
    let prefix = sanitize(prefix);
    let mut families: BTreeMap<String, (Family, Vec<Sample>)> = BTreeMap::new();
    let mut add =
        |level: &str, name: &str, labels: Vec<(&'static str, String)>, value: &FilteredMetric| {
            let Some(family) = family(&prefix, level, name) else {
                return;
            };
            let mut labels = labels;
            if let Some(label) = family.label.clone() {
                labels.push(label);
            }
            families
                .entry(family.name.clone())
                .or_insert_with(|| (family, Vec::new()))
                .1
                .push(Sample {
                    labels,
                    value: value.clone(),
                });
        };
    for (name, value) in metrics.main.iter().chain(&metrics.proxy) {
        add("", name, Vec::new(), value);
    }
    for (listener, figures) in &metrics.listeners {
        for (name, value) in figures {
            add(
                "listener",
                name,
                vec![("listener", listener.clone())],
                value,
            );
        }
    }
    for (cluster_id, cluster) in &metrics.clusters {
        for (name, value) in &cluster.cluster {
            add(
                "cluster",
                name,
                vec![("cluster", cluster_id.clone())],
                value,
            );
        }
        for (backend_id, figures) in &cluster.backends {
            for (name, value) in figures {
                add(
                    "backend",
                    name,
                    vec![
                        ("cluster", cluster_id.clone()),
                        ("backend", backend_id.clone()),
                    ],
                    value,
                );
            }
        }
    }
    let mut out = String::with_capacity(4096);
    for (name, (family, samples)) in &families {
        let _ = writeln!(out, "# HELP {name} {}", family.help);
        let _ = writeln!(out, "# TYPE {name} {}", family.kind);
        for sample in samples {
            write_sample(&mut out, name, sample);
        }
    }
    out
}

fn write_sample(out: &mut String, name: &str, sample: &Sample) {
    match &sample.value {
        FilteredMetric::Count(value) => {
            let _ = writeln!(out, "{name}{} {value}", labels(&sample.labels, None));
        }
        FilteredMetric::Gauge(value) => {
            let _ = writeln!(out, "{name}{} {value}", labels(&sample.labels, None));
        }
        FilteredMetric::Histogram(data) => write_histogram(out, name, &sample.labels, data),
        FilteredMetric::Percentiles(_) => {}
    }
}

fn write_histogram(
    out: &mut String,
    name: &str,
    sample_labels: &[(&'static str, String)],
    data: &HistogramData,
) {
    let mut cumulative = 0u64;
    let mut values = data.values.iter().peekable();
    for bound in BUCKETS {
        let bound_micros = (bound * 1_000_000.0) as u64;
        while let Some((value, count)) = values.next_if(|(value, _)| *value <= bound_micros) {
            let _ = value;
            cumulative += count;
        }
        let le = format!("{bound}");
        let _ = writeln!(
            out,
            "{name}_bucket{} {cumulative}",
            labels(sample_labels, Some(&le))
        );
    }
    let total: u64 = data.values.iter().map(|(_, count)| count).sum();
    let _ = writeln!(
        out,
        "{name}_bucket{} {total}",
        labels(sample_labels, Some("+Inf"))
    );
    let _ = writeln!(
        out,
        "{name}_sum{} {}",
        labels(sample_labels, None),
        data.sum as f64 / 1_000_000.0
    );
    let _ = writeln!(out, "{name}_count{} {total}", labels(sample_labels, None));
}

/// `{a="x",b="y"}`, values escaped, with an `le` label for histogram buckets.
fn labels(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let mut first = true;
    for (key, value) in labels
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(le.map(|le| ("le", le)))
    {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(key);
        out.push_str("=\"");
        for character in value.chars() {
            match character {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                other => out.push(other),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

/// A metric name prefix made of `[a-zA-Z0-9_]`, not starting with a digit.
fn sanitize(prefix: &str) -> String {
    let mut name: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::response::ClusterMetrics;

    use super::*;

    #[test]
    fn families_have_help_type_and_labels() {
        let mut metrics = AggregatedMetrics::default();
        metrics
            .proxy
            .insert("requests".to_string(), FilteredMetric::Count(7));
        metrics
            .proxy
            .insert("status.2xx".to_string(), FilteredMetric::Count(6));
        metrics
            .proxy
            .insert("status.404".to_string(), FilteredMetric::Count(1));
        let mut cluster = ClusterMetrics::default();
        cluster.cluster.insert(
            "response_time".to_string(),
            FilteredMetric::Histogram(HistogramData {
                values: vec![(800, 2), (30_000, 1)],
                sum: 31_600,
            }),
        );
        cluster
            .backends
            .entry("b\"1".to_string())
            .or_default()
            .insert("up".to_string(), FilteredMetric::Gauge(1));
        metrics.clusters.insert("api".to_string(), cluster);
        let text = render(&metrics, "sozu");
        assert!(text.contains("# HELP sozu_requests_total "), "{text}");
        assert!(text.contains("# TYPE sozu_requests_total counter\nsozu_requests_total 7\n"));
        assert!(text.contains("sozu_responses_total{class=\"2xx\"} 6\n"));
        assert!(text.contains("sozu_error_responses_total{code=\"404\"} 1\n"));
        assert!(
            text.contains(
                "sozu_cluster_response_time_seconds_bucket{cluster=\"api\",le=\"0.001\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains(
            "sozu_cluster_response_time_seconds_bucket{cluster=\"api\",le=\"0.05\"} 3\n"
        ));
        assert!(text.contains(
            "sozu_cluster_response_time_seconds_bucket{cluster=\"api\",le=\"+Inf\"} 3\n"
        ));
        assert!(text.contains("sozu_cluster_response_time_seconds_count{cluster=\"api\"} 3\n"));
        assert!(text.contains("sozu_backend_up{cluster=\"api\",backend=\"b\\\"1\"} 1\n"));
        assert_eq!(text.matches("# TYPE sozu_responses_total").count(), 1);
    }

    #[test]
    fn content_routing_figures_are_listener_families_with_their_rule_or_reason() {
        let mut metrics = AggregatedMetrics::default();
        let figures = metrics
            .listeners
            .entry("127.0.0.1:5000".to_string())
            .or_default();
        for (name, count) in [
            ("content.matches", 3),
            ("content.rule_matches.tenant-a sni = \"a.test\"", 3),
            ("content.defaults_by_timeout", 2),
            ("content.script_errors", 1),
        ] {
            figures.insert(name.to_string(), FilteredMetric::Count(count));
        }
        let text = render(&metrics, "sozu");
        let listener = "listener=\"127.0.0.1:5000\"";
        for sample in [
            format!("sozu_listener_content_matches_total{{{listener}}} 3\n"),
            format!(
                "sozu_listener_content_rule_matches_total{{{listener},rule=\"tenant-a sni = \\\"a.test\\\"\"}} 3\n"
            ),
            format!("sozu_listener_content_defaults_total{{{listener},reason=\"timeout\"}} 2\n"),
            format!("sozu_listener_content_script_errors_total{{{listener}}} 1\n"),
        ] {
            assert!(text.contains(&sample), "{sample} in {text}");
        }
    }
}
