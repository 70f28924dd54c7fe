//! `status`, `shutdown`, `upgrade`, `events` and `logging`: the processes of the proxy.

use std::io::Write;

use anyhow::bail;
use sozu_command_lib::{
    request::{LoggingFilter, Order, WorkerId},
    response::{ResponseContent, RunState},
};
use sozu_lib::server::EVENT_RESPONSE_ID;

use super::{
    client::{Client, content, print_json, write_out},
    table,
};

pub fn status(client: &mut Client) -> anyhow::Result<()> {
    let response = client.order(Order::Status)?;
    if !response.message.is_empty() {
        eprintln!("{}", response.message);
    }
    if client.printed_as_json(&response)? {
        return Ok(());
    }
    let ResponseContent::Workers(workers) = content(response)? else {
        bail!("unexpected answer to STATUS");
    };
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|worker| {
            vec![
                worker.id.to_string(),
                worker.pid.to_string(),
                worker.run_state.to_string(),
                worker.restarts.to_string(),
            ]
        })
        .collect();
    table::print(&["WORKER", "PID", "STATE", "RESTARTS"], &rows)?;
    if workers
        .iter()
        .any(|worker| worker.run_state == RunState::NotAnswering)
    {
        bail!("some workers are not answering");
    }
    Ok(())
}

pub fn shutdown(client: &mut Client, hard: bool) -> anyhow::Result<()> {
    let order = if hard {
        Order::HardStop
    } else {
        Order::SoftStop
    };
    let response = client.order_with_progress(order, true)?;
    client.print_done(&response)
}

pub fn upgrade(client: &mut Client, worker: Option<u32>) -> anyhow::Result<()> {
    let order = match worker {
        Some(worker_id) => Order::UpgradeWorker(WorkerId { worker_id }),
        None => Order::UpgradeMain,
    };
    let response = client.order_with_progress(order, true)?;
    client.print_done(&response)
}

pub fn logging(client: &mut Client, filter: &str) -> anyhow::Result<()> {
    let order = Order::Logging(LoggingFilter {
        filter: filter.to_string(),
    });
    client.order_and_print(order)
}

/// Subscribes, then prints every event until the proxy closes the connection.
pub fn events(client: &mut Client) -> anyhow::Result<()> {
    client.order(Order::SubscribeEvents)?;
    while let Some(response) = client.next_message(None)? {
        if response.id != EVENT_RESPONSE_ID {
            continue;
        }
        let Some(ResponseContent::Event(event)) = response.content else {
            continue;
        };
        if client.json.is_some() {
            print_json(&event)?;
        } else {
            write_out(|out| writeln!(out, "{}", crate::live::describe(&event)))?;
        }
    }
    Ok(())
}
