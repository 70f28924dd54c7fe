//! `fault add|update|remove|list|reset`: faults injected on live routes (see doc/faults.md).
//!
//! `add` and `update` build the fault's wire form ([`RawFault`]) from the flags, so the
//! command line checks a fault exactly as an order or the configuration file does. `update`
//! starts from the fault as the proxy has it and changes only the flags given; sending it
//! renews the fault's lease.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sozu_command_lib::{
    request::{AddFault, Direction, ErrorProtocol, Fault, FaultName, Order, RawFault},
    response::{FaultInformation, ResponseContent},
};

use super::{
    client::{Client, content},
    table,
};

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Add a fault.
    Add(FaultArgs),
    /// Change a fault (only the flags given) and renew its lease.
    Update(FaultArgs),
    /// Remove a fault.
    Remove {
        #[arg(short, long)]
        name: String,
    },
    /// Every fault, with its remaining lease and how many connections or requests it touched.
    List,
    /// Remove every fault.
    Reset,
}

/// A fault's settings; every one is optional for `update`.
#[derive(Debug, Args)]
#[command(allow_negative_numbers = true)]
pub struct FaultArgs {
    /// Unique name, shown in access logs and metrics.
    #[arg(short, long)]
    pub name: String,
    /// latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data, blackout,
    /// down, transient, http_error, http_delay, error.
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    /// Target: a cluster (with --backend-id, one of its backends).
    #[arg(short = 'i', long = "cluster-id", value_name = "CLUSTER")]
    pub cluster_id: Option<String>,
    #[arg(long, value_name = "ID", requires = "cluster_id")]
    pub backend_id: Option<String>,
    /// Target: the listener of a frontend (with --hostname, only its requests for that name).
    #[arg(long, value_name = "ADDR", conflicts_with = "cluster_id")]
    pub frontend: Option<SocketAddr>,
    #[arg(long, requires = "frontend")]
    pub hostname: Option<String>,
    /// upstream, downstream (default) or both.
    #[arg(long)]
    pub direction: Option<Direction>,
    /// From 0 to 1, per connection (TCP) or request (HTTP).
    #[arg(short, long)]
    pub probability: Option<f64>,
    /// Lease in seconds: the fault removes itself then.
    #[arg(long, value_name = "SECONDS")]
    pub ttl: Option<i64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// HTTP selector: the path starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub path_prefix: Option<String>,
    /// HTTP selector: `name=value`.
    #[arg(long, value_name = "NAME=VALUE")]
    pub header: Option<String>,
    /// Selector: the client address is in this network (`10.0.0.0/8`).
    #[arg(long, value_name = "NETWORK")]
    pub source: Option<String>,
    /// latency: milliseconds.
    #[arg(long, value_name = "MS")]
    pub latency: Option<i64>,
    /// latency: plus or minus this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub jitter: Option<i64>,
    /// bandwidth: kilobytes per second.
    #[arg(long, value_name = "KB_PER_S")]
    pub rate: Option<i64>,
    /// slow_close, http_delay: milliseconds; slicer: microseconds between slices.
    #[arg(long)]
    pub delay: Option<i64>,
    /// timeout, reset_peer: milliseconds (timeout 0 holds until removed).
    #[arg(long = "after", value_name = "MS")]
    pub timeout: Option<i64>,
    /// slicer: average slice in bytes.
    #[arg(long, value_name = "BYTES")]
    pub average_size: Option<i64>,
    /// slicer: slices vary by up to this many bytes.
    #[arg(long, value_name = "BYTES")]
    pub size_variation: Option<i64>,
    /// limit_data: close after this many bytes.
    #[arg(long)]
    pub bytes: Option<i64>,
    /// transient: how many connections or requests fail.
    #[arg(long)]
    pub count: Option<i64>,
    /// http_error: the status (503 when not given).
    #[arg(long)]
    pub status: Option<u16>,
    /// http_error: the body.
    #[arg(long)]
    pub body: Option<String>,
    /// http_error: a header field `Name: value` of the answer (repeatable).
    #[arg(long = "answer-header", value_name = "NAME: VALUE", value_parser = header_field)]
    pub answer_headers: Vec<(String, String)>,
    /// error: http, redis, memcache, mysql or smtp.
    #[arg(long)]
    pub protocol: Option<ErrorProtocol>,
}

fn header_field(text: &str) -> Result<(String, String), String> {
    text.split_once(':')
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .ok_or_else(|| format!("`{text}` is not `Name: value`"))
}

impl FaultArgs {
    /// Writes the flags given over `raw`.
    pub fn overlay(&self, raw: &mut RawFault) {
        raw.name.clone_from(&self.name);
        let set = |slot: &mut Option<i64>, value: Option<i64>| {
            if value.is_some() {
                *slot = value;
            }
        };
        if let Some(kind) = &self.kind {
            raw.kind.clone_from(kind);
        }
        if self.cluster_id.is_some() {
            raw.cluster_id.clone_from(&self.cluster_id);
            raw.backend_id.clone_from(&self.backend_id);
            raw.frontend = None;
            raw.hostname = None;
        }
        if self.frontend.is_some() {
            raw.frontend = self.frontend;
            raw.hostname.clone_from(&self.hostname);
            raw.cluster_id = None;
            raw.backend_id = None;
        }
        if let Some(direction) = self.direction {
            raw.direction = direction;
        }
        if let Some(probability) = self.probability {
            raw.probability = probability;
        }
        set(&mut raw.ttl, self.ttl);
        if self.seed.is_some() {
            raw.seed = self.seed;
        }
        for (slot, value) in [
            (&mut raw.path_prefix, &self.path_prefix),
            (&mut raw.header, &self.header),
            (&mut raw.source, &self.source),
            (&mut raw.body, &self.body),
        ] {
            if value.is_some() {
                slot.clone_from(value);
            }
        }
        set(&mut raw.latency, self.latency);
        set(&mut raw.jitter, self.jitter);
        set(&mut raw.rate, self.rate);
        set(&mut raw.delay, self.delay);
        set(&mut raw.timeout, self.timeout);
        set(&mut raw.average_size, self.average_size);
        set(&mut raw.size_variation, self.size_variation);
        set(&mut raw.bytes, self.bytes);
        set(&mut raw.count, self.count);
        if self.status.is_some() {
            raw.status = self.status;
        }
        if !self.answer_headers.is_empty() {
            raw.headers = Some(self.answer_headers.clone());
        }
        if self.protocol.is_some() {
            raw.protocol = self.protocol;
        }
    }

    /// The fault `add` sends.
    pub fn fault(&self) -> anyhow::Result<Fault> {
        if self.kind.is_none() {
            bail!("a new fault needs --type");
        }
        let mut raw = RawFault {
            probability: 1.0,
            ..RawFault::default()
        };
        self.overlay(&mut raw);
        Ok(Fault::try_from(raw)?)
    }
}

pub fn run(client: &mut Client, command: &FaultCommand) -> anyhow::Result<()> {
    match command {
        FaultCommand::Add(args) => {
            let fault = args.fault()?;
            client.order_and_print(Order::AddFault(AddFault { fault }))
        }
        FaultCommand::Update(args) => {
            let current = list(client)?
                .into_iter()
                .find(|listed| listed.fault.name == args.name)
                .with_context(|| format!("no fault `{}`", args.name))?;
            let mut raw = RawFault::from(current.fault);
            args.overlay(&mut raw);
            let fault = Fault::try_from(raw)?;
            client.order_and_print(Order::UpdateFault(AddFault { fault }))
        }
        FaultCommand::Remove { name } => {
            client.order_and_print(Order::RemoveFault(FaultName { name: name.clone() }))
        }
        FaultCommand::Reset => client.order_and_print(Order::ResetFaults),
        FaultCommand::List => {
            let response = client.order(Order::ListFaults)?;
            if client.printed_as_json(&response)? {
                return Ok(());
            }
            let ResponseContent::Faults(faults) = content(response)? else {
                bail!("unexpected answer to LIST_FAULTS");
            };
            print_faults(&faults)
        }
    }
}

fn list(client: &mut Client) -> anyhow::Result<Vec<FaultInformation>> {
    match content(client.order(Order::ListFaults)?)? {
        ResponseContent::Faults(faults) => Ok(faults),
        _ => bail!("unexpected answer to LIST_FAULTS"),
    }
}

fn print_faults(faults: &[FaultInformation]) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = faults
        .iter()
        .map(|listed| {
            let fault = &listed.fault;
            vec![
                fault.name.clone(),
                fault.effect.kind().to_string(),
                fault.target.to_string(),
                fault.direction.name().to_string(),
                fault.probability.0.to_string(),
                listed.remaining_ms.map_or_else(
                    || "-".to_string(),
                    |ms| format!("{:.1}s", ms as f64 / 1000.0),
                ),
                listed.touched.to_string(),
            ]
        })
        .collect();
    table::print(
        &[
            "NAME",
            "TYPE",
            "TARGET",
            "DIRECTION",
            "PROBABILITY",
            "LEASE",
            "TOUCHED",
        ],
        &rows,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(line: &[&str]) -> FaultArgs {
        let mut full = vec!["sozu", "fault"];
        full.extend_from_slice(line);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Fault {
                command: FaultCommand::Add(args) | FaultCommand::Update(args),
            } => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn add_builds_the_fault_an_order_would_carry() {
        let fault = args(&[
            "add",
            "-n",
            "slow",
            "-i",
            "api",
            "--type",
            "latency",
            "--latency",
            "200",
            "--probability",
            "0.5",
            "--ttl",
            "60",
            "--seed",
            "4",
        ])
        .fault()
        .unwrap();
        let expected: Fault = serde_json::from_value(serde_json::json!({
            "name": "slow", "cluster_id": "api", "type": "latency", "latency": 200,
            "probability": 0.5, "ttl": 60, "seed": 4,
        }))
        .unwrap();
        assert_eq!(fault, expected);
    }

    #[test]
    fn bad_flags_are_refused_before_anything_is_sent() {
        let error = args(&[
            "add",
            "-n",
            "f",
            "-i",
            "api",
            "--type",
            "latency",
            "--latency",
            "-5",
        ])
        .fault()
        .unwrap_err()
        .to_string();
        assert!(error.contains("`latency` is -5"), "{error}");
        let error = args(&["add", "-n", "f", "-i", "api", "--type", "lag"])
            .fault()
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown fault type"), "{error}");
    }

    #[test]
    fn update_changes_only_the_flags_given() {
        let current: Fault = serde_json::from_value(serde_json::json!({
            "name": "slow", "cluster_id": "api", "type": "latency", "latency": 200,
            "jitter": 10, "ttl": 60,
        }))
        .unwrap();
        let mut raw = RawFault::from(current);
        args(&["update", "-n", "slow", "--latency", "50"]).overlay(&mut raw);
        let updated = Fault::try_from(raw).unwrap();
        let expected: Fault = serde_json::from_value(serde_json::json!({
            "name": "slow", "cluster_id": "api", "type": "latency", "latency": 50,
            "jitter": 10, "ttl": 60,
        }))
        .unwrap();
        assert_eq!(updated, expected);
    }
}
