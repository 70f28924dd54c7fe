//! `metrics enable|disable|clear|get`: passed to the workers; whatever they answer is printed.

use std::time::Duration;

use clap::Subcommand;
use sozu_command_lib::request::{MetricsConfiguration, Order, QueryMetrics};

use super::client::{Client, print_json};

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    Enable,
    Disable,
    Clear,
    Get {
        /// List the metric names.
        #[arg(short, long)]
        list: bool,
        /// Print again every SECS seconds.
        #[arg(short, long, value_name = "SECS")]
        refresh: Option<u64>,
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
        #[arg(long, value_delimiter = ',', value_name = "IDS")]
        clusters: Vec<String>,
        #[arg(long, value_delimiter = ',', value_name = "IDS")]
        backends: Vec<String>,
        #[arg(long)]
        no_clusters: bool,
        /// One set of figures per worker instead of their merge.
        #[arg(long)]
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
            };
            loop {
                let response = client.order(Order::QueryMetrics(query.clone()))?;
                if !client.printed_as_json(&response)? {
                    match &response.content {
                        Some(content) => println!("{}", serde_json::to_string_pretty(content)?),
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
