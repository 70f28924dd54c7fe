//! `state save|load|stats` and `reload`: the routing state as a whole.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Subcommand;
use sozu_command_lib::{
    request::{Order, ReloadConfiguration, StateFormat, StatePath},
    response::ResponseContent,
};

use super::{
    client::{Client, absolute, content},
    table,
};

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Save the routing state to a file, one order per line (or in Sōzu's format).
    Save {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
        /// `orders` (one JSON order per line) or `sozu` (Sōzu 2.1's state file).
        #[arg(long, value_enum, default_value = "orders")]
        format: FileFormat,
    },
    /// Apply the orders of a saved state file on top of the running state (all or none).
    Load {
        #[arg(short, long, value_name = "FILE")]
        file: PathBuf,
    },
    /// How many clusters, backends, frontends, certificates and listeners the state holds, and
    /// the orders received since start.
    Stats,
}

/// The formats `state save` writes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FileFormat {
    Orders,
    Sozu,
}

pub fn run(client: &mut Client, command: &StateCommand) -> anyhow::Result<()> {
    match command {
        StateCommand::Save { file, format } => {
            client.order_and_print(Order::SaveState(StatePath {
                path: absolute(file)?,
                format: match format {
                    FileFormat::Orders => StateFormat::Orders,
                    FileFormat::Sozu => StateFormat::Sozu,
                },
            }))
        }
        StateCommand::Load { file } => {
            let order = Order::LoadState(StatePath {
                path: absolute(file)?,
                format: StateFormat::default(),
            });
            let response = client.order_with_progress(order, true)?;
            client.print_done(&response)
        }
        StateCommand::Stats => stats(client),
    }
}

fn stats(client: &mut Client) -> anyhow::Result<()> {
    let response = client.order(Order::CountRequests)?;
    if client.printed_as_json(&response)? {
        return Ok(());
    }
    let ResponseContent::RequestCounts(counts) = content(response)? else {
        bail!("unexpected answer to COUNT_REQUESTS");
    };
    let rows = |prefix: &str| -> Vec<Vec<String>> {
        counts
            .iter()
            .filter_map(|(key, count)| {
                let name = key.strip_prefix(prefix)?;
                Some(vec![name.to_string(), count.to_string()])
            })
            .collect()
    };
    table::print(&["STATE", "COUNT"], &rows("state."))?;
    println!();
    table::print(&["ORDERS SINCE START", "COUNT"], &rows("orders."))?;
    let fleet = rows("fleet.");
    if !fleet.is_empty() {
        println!();
        table::print(&["FLEET (ETCD)", "COUNT"], &fleet)?;
    }
    Ok(())
}

pub fn reload(client: &mut Client, file: Option<&Path>) -> anyhow::Result<()> {
    let path = file.map(absolute).transpose()?;
    let order = Order::ReloadConfiguration(ReloadConfiguration { path });
    let response = client.order_with_progress(order, true)?;
    client.print_done(&response)
}
