//! `registration list`: the live registrations of services, who made them and what they
//! created.

use anyhow::bail;
use clap::Subcommand;
use sozu_command_lib::{request::Order, response::ResponseContent};

use super::{
    client::{Client, content},
    table,
};

#[derive(Debug, Subcommand)]
pub enum RegistrationCommand {
    /// One line per live registration: its client's pid and uid, age, route, backend, and
    /// what it created.
    List,
}

pub fn run(client: &mut Client, command: &RegistrationCommand) -> anyhow::Result<()> {
    match command {
        RegistrationCommand::List => list(client),
    }
}

fn list(client: &mut Client) -> anyhow::Result<()> {
    let response = client.order(Order::ListRegistrations)?;
    if client.printed_as_json(&response)? {
        return Ok(());
    }
    let ResponseContent::Registrations(registrations) = content(response)? else {
        bail!("unexpected answer to LIST_REGISTRATIONS");
    };
    let unknown = || "-".to_string();
    let rows: Vec<Vec<String>> = registrations
        .iter()
        .map(|registration| {
            let register = &registration.register;
            let route = match &register.hostname {
                Some(hostname) => format!(
                    "{hostname}{}",
                    register.path_prefix.as_deref().unwrap_or_default()
                ),
                None => unknown(),
            };
            vec![
                registration.registration_id.clone(),
                registration.pid.map_or_else(unknown, |pid| pid.to_string()),
                registration.uid.map_or_else(unknown, |uid| uid.to_string()),
                format!("{}s", registration.age.as_secs()),
                register.cluster_id.clone(),
                format!("{} {}", register.protocol, register.listen),
                route,
                format!("{} {}", registration.backend_id, register.backend),
                if registration.created.is_empty() {
                    unknown()
                } else {
                    registration.created.join(", ")
                },
            ]
        })
        .collect();
    table::print(
        &[
            "ID", "PID", "UID", "AGE", "CLUSTER", "LISTENER", "ROUTE", "BACKEND", "CREATED",
        ],
        &rows,
    )?;
    Ok(())
}
