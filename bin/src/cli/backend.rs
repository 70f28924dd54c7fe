//! `backend add|remove`.

use std::{net::SocketAddr, time::Duration};

use clap::Subcommand;
use sozu_command_lib::request::{AddBackend, DEFAULT_BACKEND_WEIGHT, Order, RemoveBackend};

use super::client::Client;

#[derive(Debug, Subcommand)]
pub enum BackendCommand {
    /// Add a backend to a cluster.
    Add {
        /// The cluster.
        #[arg(short, long, value_name = "CLUSTER")]
        id: String,
        #[arg(long, value_name = "ID")]
        backend_id: String,
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        /// The sticky cookie value that names this backend.
        #[arg(short, long, value_name = "VALUE")]
        sticky_id: Option<String>,
        /// Used only when no other backend is up.
        #[arg(short, long, value_name = "BOOL")]
        backup: Option<bool>,
        /// Share of traffic for the weighted algorithms.
        #[arg(long, default_value_t = DEFAULT_BACKEND_WEIGHT)]
        weight: u32,
    },
    /// Remove a backend: it takes no new connection and is forgotten once its last one ends.
    Remove {
        #[arg(short, long, value_name = "CLUSTER")]
        id: String,
        #[arg(long, value_name = "ID")]
        backend_id: String,
        #[arg(short, long, value_name = "ADDR")]
        address: SocketAddr,
        /// Close the sessions still using the backend after this many seconds; events tell
        /// how many are left until then (`sozu events`).
        #[arg(long, value_name = "SECONDS")]
        drain_timeout: Option<u64>,
    },
}

pub fn run(client: &mut Client, command: &BackendCommand) -> anyhow::Result<()> {
    let order = match command {
        BackendCommand::Add {
            id,
            backend_id,
            address,
            sticky_id,
            backup,
            weight,
        } => Order::AddBackend(AddBackend {
            cluster_id: id.clone(),
            backend_id: backend_id.clone(),
            address: *address,
            sticky_id: sticky_id.clone(),
            weight: *weight,
            backup: backup.unwrap_or(false),
        }),
        BackendCommand::Remove {
            id,
            backend_id,
            address,
            drain_timeout,
        } => Order::RemoveBackend(RemoveBackend {
            cluster_id: id.clone(),
            backend_id: backend_id.clone(),
            address: *address,
            drain_timeout: drain_timeout.map(Duration::from_secs),
        }),
    };
    client.order_and_print(order)
}
