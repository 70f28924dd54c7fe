//! `sozu config check`: loads the configuration file, checks its orders as the proxy would at
//! start, and prints its warnings (on stderr), then the orders it turns into (on stdout: one
//! readable line each, or one JSON object per line with `--json`), or its errors (on stderr).

use std::{
    io::{self, BufWriter, Write},
    process::ExitCode,
};

use sozu_command_lib::{
    config::{Config, Severity},
    request::{HttpFrontend, Order, RedirectPolicy},
};

use super::{Cli, with_causes};

pub fn run(cli: &Cli) -> ExitCode {
    let Some(path) = &cli.config else {
        eprintln!("error: no configuration file: pass -c/--config FILE");
        return ExitCode::FAILURE;
    };
    let (config, warnings) = match Config::load(path) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in errors.errors() {
                eprintln!("error: {}", with_causes(error));
            }
            eprintln!(
                "{}: invalid, {} error(s)",
                path.display(),
                errors.errors().len()
            );
            return ExitCode::FAILURE;
        }
    };
    for warning in &warnings {
        eprintln!("{}: {warning}", warning.severity);
    }
    let orders = config.into_orders();
    if let Err(error) = crate::main_process::state_of_orders(orders.clone()) {
        eprintln!("error: {error}");
        eprintln!("{}: invalid, 1 error(s)", path.display());
        return ExitCode::FAILURE;
    }
    match print_orders(&orders, cli.json.is_some()) {
        Ok(()) => {}
        // A reader such as `head` that stops early is not a failure of the check.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
        Err(error) => {
            eprintln!("error: cannot write the orders: {error}");
            return ExitCode::FAILURE;
        }
    }
    eprintln!(
        "{}: valid, {} order(s), {} warning(s)",
        path.display(),
        orders.len(),
        warnings
            .iter()
            .filter(|warning| warning.severity == Severity::Warning)
            .count()
    );
    ExitCode::SUCCESS
}

fn print_orders(orders: &[Order], json: bool) -> io::Result<()> {
    let mut out = BufWriter::new(io::stdout().lock());
    for order in orders {
        if json {
            serde_json::to_writer(&mut out, order)?;
            writeln!(out)?;
        } else {
            writeln!(out, "{}", summary(order))?;
        }
    }
    out.flush()
}

/// One readable line per order: its name and what it is about.
fn summary(order: &Order) -> String {
    let name = order.name();
    match order {
        Order::AddHttpListener(listener) => format!("{name} {}", listener.address),
        Order::AddHttpsListener(listener) => {
            let certificate = if listener.tls.certificate.is_some() {
                " with a default certificate"
            } else {
                ""
            };
            format!("{name} {}{certificate}", listener.http.address)
        }
        Order::AddTcpListener(listener) => format!("{name} {}", listener.address),
        Order::ActivateListener(listener) => {
            format!("{name} {} {}", listener.proxy, listener.address)
        }
        Order::AddCluster(cluster) => {
            format!(
                "{name} {} {}",
                cluster.cluster_id,
                cluster.load_balancing.name()
            )
        }
        Order::AddBackend(backend) => format!(
            "{name} {} {} {} weight {}{}",
            backend.cluster_id,
            backend.backend_id,
            backend.address,
            backend.weight,
            if backend.backup { " backup" } else { "" }
        ),
        Order::AddCertificate(add) => format!(
            "{name} {} with {} chain certificate(s)",
            add.address,
            add.certificate.certificate_chain.len()
        ),
        Order::AddHttpFrontend(frontend) | Order::AddHttpsFrontend(frontend) => {
            format!("{name} {} -> {}", frontend.key(), target(frontend))
        }
        Order::AddTcpFrontend(frontend) => {
            let rule = (frontend.rule.as_ref()).map_or(String::new(), |rule| format!(" {rule}"));
            format!(
                "{name} {}{rule} -> cluster {}",
                frontend.address, frontend.cluster_id
            )
        }
        Order::SetMaxConnectionsPerIp(limit) => {
            format!("{name} {}", limit.max_connections_per_ip)
        }
        _ => name.to_string(),
    }
}

/// What an HTTP frontend does with the requests it takes.
fn target(frontend: &HttpFrontend) -> String {
    if let Some(answer) = &frontend.answer {
        return format!("answer {}", answer.status);
    }
    match (frontend.redirect, &frontend.cluster_id) {
        (RedirectPolicy::Forward, Some(cluster)) => format!("cluster {cluster}"),
        (RedirectPolicy::Forward, None) => "no cluster".to_string(),
        (RedirectPolicy::Permanent, _) => "redirect 301".to_string(),
        (RedirectPolicy::Found, _) => "redirect 302".to_string(),
        (RedirectPolicy::PermanentRedirect, _) => "redirect 308".to_string(),
        (RedirectPolicy::Unauthorized, _) => "deny 401".to_string(),
    }
}
