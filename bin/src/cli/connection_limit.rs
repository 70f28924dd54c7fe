//! `connection-limit set|remove|show`: the global cap on connections from one client address
//! to one cluster.

use anyhow::bail;
use clap::Subcommand;
use sozu_command_lib::{
    request::{ConnectionLimit, Order},
    response::ResponseContent,
};

use super::client::{Client, content};

#[derive(Debug, Subcommand)]
pub enum ConnectionLimitCommand {
    /// Cap connections per client address and cluster; 0 means no cap.
    Set {
        limit: u64,
    },
    /// No cap.
    Remove,
    Show,
}

pub fn run(client: &mut Client, command: &ConnectionLimitCommand) -> anyhow::Result<()> {
    let set = |limit| {
        Order::SetMaxConnectionsPerIp(ConnectionLimit {
            max_connections_per_ip: limit,
        })
    };
    match command {
        ConnectionLimitCommand::Set { limit } => client.order_and_print(set(*limit)),
        ConnectionLimitCommand::Remove => client.order_and_print(set(0)),
        ConnectionLimitCommand::Show => {
            let response = client.order(Order::QueryMaxConnectionsPerIp)?;
            if client.printed_as_json(&response)? {
                return Ok(());
            }
            let ResponseContent::MaxConnectionsPerIp(limit) = content(response)? else {
                bail!("unexpected answer to QUERY_MAX_CONNECTIONS_PER_IP");
            };
            if limit == 0 {
                println!("no limit");
            } else {
                println!("{limit} connections per client address and cluster");
            }
            Ok(())
        }
    }
}
