//! State files: the routing state saved as one order per line (ours), read back, and merged
//! on top of a running state the way Sōzu loads a state: an order that would recreate an
//! identical item changes nothing, a conflicting one is reported with its line, and the rest is
//! applied.

use std::{
    fs,
    io::{self, BufWriter, Read, Write},
    ops::Range,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use sozu_command_lib::{
    request::{Order, StateFormat, read_written_order},
    state::{ConfigState, sozu_format},
};

use super::{
    listeners::ListenerSockets,
    orders::{acts_when_committed, take_order},
};
use crate::cli::with_causes;

/// What merging a state file into a state did.
#[derive(Debug, Default)]
pub struct Merged {
    /// How many orders the state took.
    pub applied: usize,
    /// Of the orders the state took, in file order, those the main process acts on once the
    /// workers have them ([`super::orders::acts_when_committed`]); the others, given to
    /// `applied` as the state took them, are dropped there: kept, they were a second copy of
    /// a large state (70 MB at 100,000 frontends, a quarter of a state load's page faults).
    pub to_commit: Vec<Order>,
    /// Orders that would recreate an item identical to one the state holds.
    pub unchanged: usize,
    /// The orders the state refused, each as `line N: ORDER is refused: why`.
    pub conflicts: Vec<String>,
}

impl Merged {
    /// `N applied, N already in force, N refused`.
    pub fn summary(&self) -> String {
        format!(
            "{} applied, {} already in force, {} refused",
            self.applied,
            self.unchanged,
            self.conflicts.len()
        )
    }
}

/// Applies each order of a state file (with its line) to `state`, one by one: an order equal
/// to one that builds `state` is skipped (the state answers, [`ConfigState::is_in_force`]),
/// an order the state refuses is reported, the others change it. The listener `sockets`
/// follow the state ([`take_order`]): an activation on an address that cannot be bound is
/// refused too. `applied` sees each order the state took as soon as it took it, with its JSON
/// as the file wrote it for a file of ours (see [`StateOrders`]).
///
/// The frontends the state takes are copied into it ([`take_order`] checks the order before
/// the state takes it, and the order goes to `applied` once taken): the file's order is then
/// dropped, and its memory is what the next order's copy takes.
pub fn merge(
    state: &mut ConfigState,
    sockets: &mut ListenerSockets,
    read: StateOrders,
    mut applied: impl FnMut(&mut ListenerSockets, &Order, Option<&str>),
) -> Merged {
    let StateOrders { orders, text } = read;
    let mut merged = Merged::default();
    for (line, order, json) in orders {
        if state.is_in_force(&order) {
            merged.unchanged += 1;
            continue;
        }
        match take_order(state, sockets, &order) {
            Ok(()) => {
                applied(
                    sockets,
                    &order,
                    text.as_deref().and_then(|text| text.get(json)),
                );
                merged.applied += 1;
                if acts_when_committed(&order) {
                    merged.to_commit.push(order);
                }
            }
            Err(error) => merged
                .conflicts
                .push(format!("line {line}: {order} is refused: {error}")),
        }
    }
    merged
}

/// Writes the state as one order per line (or as Sōzu's records), through a temporary file
/// renamed into place so that a reader never sees half a state. Returns the number of orders.
///
/// The state holds private keys: the file is readable and writable by its owner only (0600),
/// whatever the umask, and whether or not a file was there before.
pub fn save(state: &ConfigState, path: &Path, format: StateFormat) -> io::Result<usize> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(STATE_FILE_MODE)
        .open(&temporary)?;
    // A temporary file left over by an earlier run keeps its own mode: set it.
    file.set_permissions(fs::Permissions::from_mode(STATE_FILE_MODE))?;
    let mut writer = CountLines {
        inner: BufWriter::new(file),
        lines: 0,
    };
    match format {
        StateFormat::Orders => state.save(&mut writer)?,
        StateFormat::Sozu => {
            sozu_format::write(&state.orders(), &mut writer).map_err(io::Error::other)?;
        }
    }
    let lines = writer.lines;
    writer
        .inner
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    fs::rename(&temporary, path)?;
    Ok(lines)
}

/// Owner read and write, nothing for others: a state file holds private keys.
const STATE_FILE_MODE: u32 = 0o600;

/// A writer that counts the lines written through it.
struct CountLines<W> {
    inner: W,
    lines: usize,
}

impl<W: Write> Write for CountLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.lines += buf
            .get(..written)
            .map_or(0, |bytes| bytes.iter().filter(|&&b| b == b'\n').count());
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The orders of a state file, each with its line number and where its JSON is in the file's
/// text, which is kept for a file of ours (one order per line).
#[derive(Debug, Default)]
pub struct StateOrders {
    /// Each order, with its line and the range of its JSON in `text` (empty without text).
    pub orders: Vec<(usize, Order, Range<usize>)>,
    /// The file's text; `None` for Sōzu's records, which are not our orders' JSON.
    text: Option<String>,
}

/// The orders of a state file with their line numbers: ours (one order per line; blank lines
/// and `#` comments are skipped) or Sōzu's (JSON records separated by `\n\0`), told apart by
/// content. The first line that is not an order is named.
pub fn read(mut reader: impl Read) -> Result<StateOrders, String> {
    let mut text = String::new();
    reader
        .read_to_string(&mut text)
        .map_err(|error| format!("cannot read the state file: {error}"))?;
    if sozu_format::is_sozu_state(&text) {
        let orders = sozu_format::read(&text).map_err(|error| with_causes(&error))?;
        return Ok(StateOrders {
            orders: orders
                .into_iter()
                .map(|(line, order)| (line, order, 0..0))
                .collect(),
            text: None,
        });
    }
    let mut orders = Vec::new();
    let mut next_line = 0usize;
    for (index, line) in text.split('\n').enumerate() {
        let number = index + 1;
        let line_start = next_line;
        next_line = next_line.saturating_add(line.len()).saturating_add(1);
        let json = line.trim();
        if json.is_empty() || json.starts_with('#') {
            continue;
        }
        let order: Order = match read_written_order(json) {
            Some(order) => order,
            None => serde_json::from_str(json)
                .map_err(|error| format!("line {number} is not a valid order: {error}"))?,
        };
        if !order.is_state_change() {
            return Err(format!(
                "line {number}: {order} does not change the routing state"
            ));
        }
        let json_start =
            line_start.saturating_add(line.len().saturating_sub(line.trim_start().len()));
        orders.push((
            number,
            order,
            json_start..json_start.saturating_add(json.len()),
        ));
    }
    Ok(StateOrders {
        orders,
        text: Some(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// Issue 17: the orders of a state load reach the workers as the file wrote them, so
    /// each keeps its JSON, without the line's spaces; those the state did not take are not
    /// sent.
    #[test]
    fn orders_keep_their_json_as_written_and_only_applied_ones_are_sent() {
        let text = "# a comment\n\n  {\"type\":\"ADD_CLUSTER\",\"cluster_id\":\"a\"}  \r\n\
                    {\"type\":\"REMOVE_CLUSTER\",\"cluster_id\":\"b\"}\n\
                    {\"cluster_id\":\"c\", \"type\":\"ADD_CLUSTER\"}\n";
        let read = read(text.as_bytes()).unwrap();
        let lines: Vec<usize> = read.orders.iter().map(|(line, _, _)| *line).collect();
        assert_eq!(lines, [3, 4, 5]);
        let mut sent = Vec::new();
        let mut sockets = ListenerSockets::default();
        let merged = merge(
            &mut ConfigState::new(),
            &mut sockets,
            read,
            |_, order, json| {
                let mut line = Vec::new();
                super::super::delivery::request_line(&mut line, "1", order, json, None).unwrap();
                sent.push(String::from_utf8(line).unwrap());
            },
        );
        assert_eq!(merged.applied, 2);
        assert!(merged.to_commit.is_empty());
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        assert_eq!(
            sent,
            [
                r#"{"id":"1","order":{"type":"ADD_CLUSTER","cluster_id":"a"}}"#,
                r#"{"id":"1","order":{"cluster_id":"c", "type":"ADD_CLUSTER"}}"#,
            ]
        );
    }

    /// Issue 17: a state load keeps, of the orders the state took, only those the main
    /// process acts on once they are committed (here a fault reset), not a second copy of
    /// every frontend.
    #[test]
    fn only_orders_acted_on_after_the_commit_are_kept() {
        let text = "{\"type\":\"ADD_CLUSTER\",\"cluster_id\":\"a\"}\n\
                    {\"type\":\"RESET_FAULTS\"}\n";
        let merged = merge(
            &mut ConfigState::new(),
            &mut ListenerSockets::default(),
            read(text.as_bytes()).unwrap(),
            |_, _, _| {},
        );
        assert_eq!(merged.applied, 2, "{:?}", merged.conflicts);
        assert_eq!(merged.to_commit, [Order::ResetFaults]);
    }

    /// Issue 10, item 6: the state file, which holds private keys, was created with the umask
    /// (0644 usually) and kept the mode of a file it replaced.
    #[test]
    fn the_state_file_is_private_even_when_it_replaces_another() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        save(&ConfigState::new(), &path, StateFormat::Orders).unwrap();
        assert_eq!(mode(&path), 0o600);

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let leftover = dir.path().join("state.json.tmp");
        fs::write(&leftover, "").unwrap();
        fs::set_permissions(&leftover, fs::Permissions::from_mode(0o666)).unwrap();
        save(&ConfigState::new(), &path, StateFormat::Orders).unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
