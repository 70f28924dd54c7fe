//! `sozu fleet`: the etcd prefix of `[provider.etcd]`, read and written directly (no running
//! proxy needed). `status` tells whether every node applied what the prefix holds; `import`
//! writes a configuration's routing objects into the prefix; `export` prints the prefix as a
//! configuration file.

use std::{collections::BTreeMap, process::ExitCode};

use anyhow::{Context, bail};
use clap::Subcommand;
use sozu_command_lib::config::{Config, EtcdProvider};

use super::{Cli, table};
use crate::provider::etcd::{
    client::Client,
    layout::{self, KeyClass, NODES, STATUS, ViewDigest},
    records::{self, KeyError, NodeRecord, StatusRecord},
    watcher::relative,
};

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Each node of the fleet, and whether all applied what the prefix holds now. Exits with
    /// 0 when the fleet converged, 1 otherwise.
    Status,
    /// Write the configuration's listeners, clusters, backends, certificates and frontends
    /// into the prefix.
    Import,
    /// Print what the prefix holds as a configuration file (on standard output).
    Export {
        /// The folder where certificate and key files are written (the configuration names
        /// them); needed when the prefix holds certificates.
        #[arg(long, value_name = "DIR")]
        files: Option<std::path::PathBuf>,
    },
}

/// Most operations in one transaction: etcd's default `--max-txn-ops`.
const MAX_TXN_OPS: usize = 128;

pub fn run(cli: &Cli, command: &FleetCommand) -> ExitCode {
    match dispatch(cli, command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: &Cli, command: &FleetCommand) -> anyhow::Result<ExitCode> {
    let Some(path) = &cli.config else {
        bail!("no configuration file: pass -c/--config FILE, with a [provider.etcd] section");
    };
    let (config, _) = Config::load(path)
        .map_err(|errors| anyhow::anyhow!("{}: invalid configuration: {errors}", path.display()))?;
    let Some(settings) = config.etcd.clone() else {
        bail!("{} has no [provider.etcd] section", path.display());
    };
    let mut client = Client::connect(&settings, 0, REQUEST_TIMEOUT)
        .with_context(|| format!("cannot connect to {}", settings.endpoints.join(", ")))?;
    match command {
        FleetCommand::Status => status(cli, &mut client, &settings),
        FleetCommand::Import => import(&mut client, &settings, &config),
        FleetCommand::Export { files } => {
            let entries = read_prefix(&mut client, &settings)?;
            super::fleet_export::print(&settings, &entries, files.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Every key of the prefix (relative to it) with its value.
fn read_prefix(
    client: &mut Client,
    settings: &EtcdProvider,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let (_, kvs) = client
        .range_prefix(&settings.prefix)
        .with_context(|| format!("cannot read {}", settings.prefix))?;
    Ok(kvs
        .into_iter()
        .map(|kv| (relative(&settings.prefix, &kv.key), kv.value))
        .collect())
}

/// The fleet's convergence as printed by `sozu fleet status --json`.
#[derive(Debug, serde::Serialize)]
struct FleetStatus {
    /// The digest of the routing keys etcd holds now.
    view: String,
    converged: bool,
    nodes: Vec<NodeStatus>,
}

#[derive(Debug, serde::Serialize)]
struct NodeStatus {
    #[serde(flatten)]
    record: NodeRecord,
    /// The node applied what etcd holds now.
    up_to_date: bool,
    errors: Vec<KeyError>,
}

fn status(cli: &Cli, client: &mut Client, settings: &EtcdProvider) -> anyhow::Result<ExitCode> {
    let entries = read_prefix(client, settings)?;
    let mut view = ViewDigest::default();
    let mut records: BTreeMap<String, NodeRecord> = BTreeMap::new();
    let mut statuses: BTreeMap<String, StatusRecord> = BTreeMap::new();
    for (key, value) in &entries {
        if let Some(node) = key.strip_prefix(NODES) {
            if let Ok(record) = serde_json::from_slice(value) {
                records.insert(node.to_string(), record);
            }
        } else if let Some(node) = key.strip_prefix(STATUS) {
            if let Ok(status) = serde_json::from_slice(value) {
                statuses.insert(node.to_string(), status);
            }
        } else if layout::classify(key) != KeyClass::Record {
            view.toggle(ViewDigest::of_entry(key, value));
        }
    }
    let view = view.to_string();
    let nodes: Vec<NodeStatus> = records
        .into_values()
        .map(|record| {
            let errors = statuses
                .get(&record.node)
                .map(|status| status.errors.clone())
                .unwrap_or_default();
            NodeStatus {
                up_to_date: record.view == view && !record.keeping_state,
                record,
                errors,
            }
        })
        .collect();
    let converged = !nodes.is_empty() && nodes.iter().all(|node| node.up_to_date);
    let status = FleetStatus {
        view,
        converged,
        nodes,
    };
    if cli.json.is_some() {
        println!("{}", serde_json::to_string(&status)?);
    } else {
        print_status(&status)?;
    }
    Ok(if converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_status(status: &FleetStatus) -> anyhow::Result<()> {
    let now = records::unix_now_ms();
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|node| {
            let record = &node.record;
            let ago = now.saturating_sub(record.applied_at_ms) / 1000;
            vec![
                record.node.clone(),
                record.version.clone(),
                record.revision.to_string(),
                record.view.clone(),
                record.state_hash.clone(),
                format!("{ago}s ago"),
                record.refused.to_string(),
                if record.keeping_state {
                    "keeping its state (etcd restarted empty)".to_string()
                } else if node.up_to_date {
                    "yes".to_string()
                } else {
                    "no".to_string()
                },
            ]
        })
        .collect();
    table::print(
        &[
            "NODE",
            "VERSION",
            "REVISION",
            "VIEW",
            "STATE HASH",
            "APPLIED",
            "REFUSED",
            "UP TO DATE",
        ],
        &rows,
    )?;
    for node in &status.nodes {
        for error in &node.errors {
            println!(
                "{}: {} refused: {}",
                node.record.node, error.key, error.error
            );
        }
    }
    let hashes: std::collections::BTreeSet<&str> = status
        .nodes
        .iter()
        .map(|node| node.record.state_hash.as_str())
        .collect();
    if status.converged {
        println!(
            "converged: {} node(s) applied view {}{}",
            status.nodes.len(),
            status.view,
            if hashes.len() > 1 {
                " (their state hashes differ: their configuration files route differently)"
            } else {
                ""
            }
        );
    } else if status.nodes.is_empty() {
        println!("not converged: no node is publishing under this prefix");
    } else {
        let late = status.nodes.iter().filter(|node| !node.up_to_date).count();
        println!(
            "not converged: {late} of {} node(s) have not applied view {} yet",
            status.nodes.len(),
            status.view
        );
    }
    Ok(())
}

/// Writes the configuration's routing objects, in dependency order, at most
/// [`MAX_TXN_OPS`] per transaction: nodes that see the first transactions before the last
/// ones see a state whose references hold.
fn import(
    client: &mut Client,
    settings: &EtcdProvider,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    let mut puts: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for order in config.orders() {
        let Some(key) = layout::key_of(&order).context("cannot name an order's key")? else {
            continue;
        };
        let value = serde_json::to_vec(&order)?;
        if let Some(first) = keys.insert(key.clone(), order.to_string()) {
            bail!(
                "{key} would hold both {first} and {order}: a certificate is kept on one listener \
                 per fingerprint"
            );
        }
        puts.push((format!("{}{key}", settings.prefix), value));
    }
    for chunk in puts.chunks(MAX_TXN_OPS) {
        client
            .put_all(chunk, None)
            .context("cannot write into etcd")?;
    }
    println!("{} key(s) written under {}", puts.len(), settings.prefix);
    Ok(ExitCode::SUCCESS)
}
