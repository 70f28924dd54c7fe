//! `metrics enable|disable|clear|get`: passed to the workers through the main process, which
//! merges their figures. `get` prints them by level (proxy, listeners, clusters, backends), or
//! as JSON with `--json`.

use std::{collections::BTreeMap, fmt::Write as _, io::Write as _, time::Duration};

use clap::Subcommand;

use sozu_command_lib::{
    request::{MetricsConfiguration, Order, QueryMetrics},
    response::{AggregatedMetrics, FilteredMetric, ResponseContent},
};

use super::{
    JsonFormat,
    client::{Client, print_json, write_out},
};

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    Enable,
    Disable,
    Clear,
    Get {
        /// List the metric names.
        #[arg(short, long)]
        list: bool,
        /// Print again every SECS seconds (at least 1: 0 would query the proxy in a loop).
        #[arg(short, long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
        refresh: Option<u64>,
        /// Only these metrics (comma-separated).
        #[arg(short, long, value_delimiter = ',')]
        names: Vec<String>,
        /// Only these clusters (comma-separated ids).
        #[arg(short = 'k', long, value_delimiter = ',', value_name = "IDS")]
        clusters: Vec<String>,
        /// Only these backends (comma-separated ids).
        #[arg(short, long, value_delimiter = ',', value_name = "IDS")]
        backends: Vec<String>,
        #[arg(long)]
        no_clusters: bool,
        /// One set of figures per worker instead of their merge.
        #[arg(short, long)]
        workers: bool,
    },
}

pub fn run(client: &mut Client, command: &MetricsCommand) -> anyhow::Result<()> {
    let configure = |configuration| Order::ConfigureMetrics(configuration);
    match command {
        MetricsCommand::Enable => client.order_and_print(configure(MetricsConfiguration::Enabled)),
        MetricsCommand::Disable => {
            client.order_and_print(configure(MetricsConfiguration::Disabled))
        }
        MetricsCommand::Clear => client.order_and_print(configure(MetricsConfiguration::Clear)),
        MetricsCommand::Get {
            list,
            refresh,
            names,
            clusters,
            backends,
            no_clusters,
            workers,
        } => {
            let query = QueryMetrics {
                list: *list,
                cluster_ids: clusters.clone(),
                backend_ids: backends.clone(),
                metric_names: names.clone(),
                no_clusters: *no_clusters,
                workers: *workers,
                // Sōzu's shapes hold each distribution as a histogram and as percentiles.
                histograms: client.json == Some(JsonFormat::Sozu),
            };
            loop {
                let response = client.order(Order::QueryMetrics(query.clone()))?;
                if !client.printed_as_json(&response)? {
                    match &response.content {
                        Some(ResponseContent::Metrics(metrics)) => {
                            write_out(|out| write!(out, "{}", render(metrics)))?
                        }
                        Some(ResponseContent::MetricNames(names)) => write_out(|out| {
                            names.iter().try_for_each(|name| writeln!(out, "{name}"))
                        })?,
                        Some(content) => {
                            let text = serde_json::to_string_pretty(content)?;
                            write_out(|out| writeln!(out, "{text}"))?
                        }
                        None => print_json(&response)?,
                    }
                }
                let Some(seconds) = refresh else {
                    return Ok(());
                };
                std::thread::sleep(Duration::from_secs(*seconds));
            }
        }
    }
}

/// Figures by level, one per line, aligned.
fn render(metrics: &AggregatedMetrics) -> String {
    let mut out = String::new();
    if !metrics.workers.is_empty() {
        for (worker, figures) in &metrics.workers {
            let _ = writeln!(out, "WORKER {worker}");
            out.push_str(&render(figures));
        }
        return out;
    }
    section(&mut out, "PROXY", "", &metrics.proxy);
    for (listener, figures) in &metrics.listeners {
        section(&mut out, &format!("LISTENER {listener}"), "", figures);
    }
    for (cluster_id, cluster) in &metrics.clusters {
        section(
            &mut out,
            &format!("CLUSTER {cluster_id}"),
            "",
            &cluster.cluster,
        );
        for (backend_id, figures) in &cluster.backends {
            section(&mut out, &format!("  BACKEND {backend_id}"), "  ", figures);
        }
    }
    out
}

fn section(
    out: &mut String,
    title: &str,
    indent: &str,
    figures: &BTreeMap<String, FilteredMetric>,
) {
    if figures.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}");
    let width = figures.keys().map(String::len).max().unwrap_or(0);
    for (name, value) in figures {
        let _ = write!(out, "{indent}  {name:width$}  ");
        match value {
            FilteredMetric::Count(count) => {
                let _ = writeln!(out, "{count}");
            }
            FilteredMetric::Gauge(gauge) => {
                let _ = writeln!(out, "{gauge}");
            }
            FilteredMetric::Percentiles(p) => {
                let _ = writeln!(
                    out,
                    "samples {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                    p.samples,
                    micros(p.p50),
                    micros(p.p90),
                    micros(p.p99),
                    micros(p.p99_9),
                    micros(p.max)
                );
            }
            FilteredMetric::Histogram(data) => {
                let samples: u64 = data.values.iter().map(|(_, count)| count).sum();
                let _ = writeln!(out, "samples {samples}");
            }
        }
    }
}

/// A duration in microseconds, in the unit that reads best.
pub(super) fn micros(value: u64) -> String {
    match value {
        0..1_000 => format!("{value}µs"),
        1_000..1_000_000 => format!("{:.1}ms", value as f64 / 1_000.0),
        _ => format!("{:.2}s", value as f64 / 1_000_000.0),
    }
}
