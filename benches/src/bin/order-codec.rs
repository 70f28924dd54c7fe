//! The cost of the orders of a configuration on their way to a worker, to count under
//! callgrind (`callgrind_annotate --inclusive=yes`, each step being a function of its own):
//!
//! - `serialise_with_serde`: each order written by `serde_json::to_writer`, one after the
//!   other in one buffer, as the main process did before issue 17's codec work;
//! - `serialise_with_write_order`: the same with `request::write_order`, as it does now;
//! - `decode_bytes`: each request line (`{"id":…,"order":…}`) decoded from its bytes, as a
//!   worker's channel did;
//! - `decode_text`: each line checked as UTF-8 once, then decoded as text, as it did in the
//!   ninth wave;
//! - `decode_written`: each line checked as UTF-8 once, then read by
//!   `request::read_written_request` when it is one of the orders `write_order` writes itself,
//!   else decoded as text, as it does now.
//!
//! Both serialisations must give the same bytes and every decoding the orders serialised, or
//! the program fails.
//!
//!     order-codec CONFIG.toml

use std::{hint::black_box, path::Path, process::ExitCode};

use sozu_command_lib::{
    config::Config,
    request::{Order, Request, read_written_request, write_order},
};

/// The orders' JSON, one after the other, and where each ends.
type Written = (Vec<u8>, Vec<usize>);

fn serialise(
    orders: &[Order],
    write: impl Fn(&Order, &mut Vec<u8>) -> serde_json::Result<()>,
) -> Result<Written, String> {
    let mut json = Vec::new();
    let mut ends = Vec::with_capacity(orders.len());
    for order in orders {
        write(order, &mut json).map_err(|error| error.to_string())?;
        ends.push(json.len());
    }
    Ok((json, ends))
}

#[inline(never)]
fn serialise_with_serde(orders: &[Order]) -> Result<Written, String> {
    serialise(orders, |order, out| serde_json::to_writer(out, order))
}

#[inline(never)]
fn serialise_with_write_order(orders: &[Order]) -> Result<Written, String> {
    serialise(orders, write_order)
}

#[inline(never)]
fn decode_bytes(lines: &[Vec<u8>]) -> Result<Vec<Request>, String> {
    lines
        .iter()
        .map(|line| serde_json::from_slice(line).map_err(|error| error.to_string()))
        .collect()
}

#[inline(never)]
fn decode_text(lines: &[Vec<u8>]) -> Result<Vec<Request>, String> {
    lines
        .iter()
        .map(|line| {
            let text = std::str::from_utf8(line).map_err(|error| error.to_string())?;
            serde_json::from_str(text).map_err(|error| error.to_string())
        })
        .collect()
}

#[inline(never)]
fn decode_written(lines: &[Vec<u8>]) -> Result<Vec<Request>, String> {
    lines
        .iter()
        .map(|line| {
            let text = std::str::from_utf8(line).map_err(|error| error.to_string())?;
            match read_written_request(text) {
                Some(request) => Ok(request),
                None => serde_json::from_str(text).map_err(|error| error.to_string()),
            }
        })
        .collect()
}

fn run(path: &Path) -> Result<(), String> {
    let (config, _) = Config::load(path).map_err(|errors| format!("{errors:?}"))?;
    let orders = config.orders();
    let before = black_box(serialise_with_serde(&orders)?);
    let (json, ends) = black_box(serialise_with_write_order(&orders)?);
    if before != (json.clone(), ends.clone()) {
        return Err("write_order wrote other bytes than serde_json".to_string());
    }
    let mut start = 0;
    let lines: Vec<Vec<u8>> = ends
        .iter()
        .map(|end| {
            let mut line = br#"{"id":"start","order":"#.to_vec();
            line.extend_from_slice(json.get(start..*end).unwrap_or_default());
            line.push(b'}');
            start = *end;
            line
        })
        .collect();
    for decoded in [
        black_box(decode_bytes(&lines)?),
        black_box(decode_text(&lines)?),
        black_box(decode_written(&lines)?),
    ] {
        if decoded.len() != orders.len()
            || decoded
                .iter()
                .zip(&orders)
                .any(|(request, order)| request.order != *order)
        {
            return Err("a decoded order differs from the one serialised".to_string());
        }
    }
    println!("{} orders, {} bytes of JSON", orders.len(), json.len());
    Ok(())
}

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: order-codec CONFIG.toml");
        return ExitCode::FAILURE;
    };
    match run(Path::new(&path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("order-codec: {error}");
            ExitCode::FAILURE
        }
    }
}
