//! What the command line reads of a configuration file: its `command_socket` and
//! `ctl_command_timeout`, and nothing else.
//!
//! Both are top-level keys, and TOML puts every top-level key before the first table header
//! (`[table]` or `[[array]]`). So the file is read only up to that first header, found by
//! [`top_level_end`], a small scanner that knows where strings, comments and multi-line
//! values end; that part alone goes through the TOML reader. A file of 100,000 frontends is
//! then as quick to use as a file of one line, and a mistake in a cluster does not keep the
//! operator from reaching the running proxy.

use std::{
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};

/// The configuration's default `ctl_command_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1000);
/// The first read of the file; each further read doubles what is held, so the scans of a
/// file whose top-level part is long cost at most twice its length.
const FIRST_READ: usize = 64 << 10;

/// The command socket and timeout of a configuration file.
pub struct ConfigSocket {
    pub socket: PathBuf,
    pub timeout: Duration,
}

/// Reads `command_socket` (default `sozu.sock`, relative to the file's folder) and
/// `ctl_command_timeout` (milliseconds, default 1000) from the top-level part of the file.
pub fn read_config_socket(path: &Path) -> anyhow::Result<ConfigSocket> {
    let head = read_top_level(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&head).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let folder = std::path::absolute(path)
        .ok()
        .and_then(|absolute| absolute.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let socket = match table.get("command_socket") {
        None => folder.join("sozu.sock"),
        Some(toml::Value::String(socket)) => folder.join(socket),
        Some(_) => bail!("`command_socket` in {} is not a string", path.display()),
    };
    let timeout = match table.get("ctl_command_timeout") {
        None => DEFAULT_TIMEOUT,
        Some(toml::Value::Integer(ms)) => Duration::from_millis(u64::try_from(*ms).unwrap_or(0)),
        Some(_) => bail!(
            "`ctl_command_timeout` in {} is not a number of milliseconds",
            path.display()
        ),
    };
    Ok(ConfigSocket { socket, timeout })
}

/// The text of the file before its first table header (the whole file if it has none).
fn read_top_level(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path)?;
    let mut bytes = Vec::new();
    let mut wanted = FIRST_READ;
    loop {
        let held = bytes.len();
        let read = (&mut file)
            .take(u64::try_from(wanted - held).unwrap_or(u64::MAX))
            .read_to_end(&mut bytes)?;
        let is_whole = held + read < wanted;
        // A header found in a part of the file is the header of the whole file: the scanner
        // decides on a `[` from the bytes before it only.
        if let Some(end) = top_level_end(&bytes) {
            bytes.truncate(end);
            break;
        }
        if is_whole {
            break;
        }
        wanted = wanted.saturating_mul(2);
    }
    Ok(String::from_utf8(bytes)?)
}

/// Where a string being skipped ends.
#[derive(Clone, Copy)]
enum Quote {
    /// `"…"`, with backslash escapes.
    Basic,
    /// `"""…"""`, with backslash escapes, over several lines.
    MultiLineBasic,
    /// `'…'`, no escapes.
    Literal,
    /// `'''…'''`, no escapes, over several lines.
    MultiLineLiteral,
}

impl Quote {
    fn delimiter(self) -> &'static [u8] {
        match self {
            Quote::Basic => b"\"",
            Quote::MultiLineBasic => b"\"\"\"",
            Quote::Literal => b"'",
            Quote::MultiLineLiteral => b"'''",
        }
    }

    fn has_escapes(self) -> bool {
        matches!(self, Quote::Basic | Quote::MultiLineBasic)
    }
}

/// The offset of the `[` that opens the first table header of a TOML document, if the text
/// holds one: the first `[` that starts a line (after blanks) outside any string, comment,
/// array or inline table. Inside an array spanning lines, a `[` may start a line too, so
/// nesting is counted. A byte-order mark before the first line is skipped.
fn top_level_end(text: &[u8]) -> Option<usize> {
    let mut index = if text.starts_with("\u{feff}".as_bytes()) {
        3
    } else {
        0
    };
    let mut depth = 0usize;
    let mut is_line_start = true;
    while let Some(&byte) = text.get(index) {
        match byte {
            b'\n' => is_line_start = true,
            b' ' | b'\t' | b'\r' => {}
            b'#' => {
                // A comment ends at the end of its line.
                index = text
                    .get(index..)
                    .and_then(|rest| rest.iter().position(|&next| next == b'\n'))
                    .map_or(text.len(), |position| index + position);
                continue;
            }
            b'"' | b'\'' => {
                let is_triple = text.get(index..index + 3) == Some(&[byte; 3][..]);
                let quote = match (byte, is_triple) {
                    (b'"', false) => Quote::Basic,
                    (b'"', true) => Quote::MultiLineBasic,
                    (_, false) => Quote::Literal,
                    (_, true) => Quote::MultiLineLiteral,
                };
                index = string_end(text, index + quote.delimiter().len(), quote);
                is_line_start = false;
                continue;
            }
            b'[' if depth == 0 && is_line_start => return Some(index),
            b'[' | b'{' => {
                depth += 1;
                is_line_start = false;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                is_line_start = false;
            }
            _ => is_line_start = false,
        }
        index += 1;
    }
    None
}

/// The offset just past the string whose content starts at `start` (the end of the text if
/// it is not closed there).
fn string_end(text: &[u8], start: usize, quote: Quote) -> usize {
    let delimiter = quote.delimiter();
    let mut index = start;
    while let Some(&byte) = text.get(index) {
        if byte == b'\\' && quote.has_escapes() {
            index += 2;
        } else if text.get(index..index + delimiter.len()) == Some(delimiter) {
            index += delimiter.len();
            // A multi-line string may end with one or two quotes of its own kind just
            // before its closing delimiter: `"""a""""` is `a"`.
            if delimiter.len() == 3 {
                let extra = text
                    .get(index..)
                    .unwrap_or_default()
                    .iter()
                    .take(2)
                    .take_while(|&&next| next == delimiter[0])
                    .count();
                index += extra;
            }
            return index;
        } else {
            index += 1;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn head(text: &str) -> &str {
        &text[..top_level_end(text.as_bytes()).unwrap_or(text.len())]
    }

    #[test]
    fn stops_at_the_first_table_header() {
        let text = "command_socket = \"a.sock\"\n\n[[listeners]]\ncommand_socket = \"b\"\n";
        assert_eq!(head(text), "command_socket = \"a.sock\"\n\n");
        assert_eq!(head("  [clusters.a]\nx = 1\n"), "  ");
        assert_eq!(head("a = 1\r\n[t]\r\n"), "a = 1\r\n");
    }

    #[test]
    fn a_file_without_tables_is_read_whole() {
        assert_eq!(top_level_end(b"a = 1\nb = [1, 2]\n"), None);
        assert_eq!(top_level_end(b""), None);
    }

    #[test]
    fn brackets_inside_values_are_not_headers() {
        let text = "a = [\n[1, 2],\n  [3],\n]\nb = { c = [\n[4]] }\n[t]\n";
        assert_eq!(
            head(text),
            "a = [\n[1, 2],\n  [3],\n]\nb = { c = [\n[4]] }\n"
        );
    }

    #[test]
    fn brackets_inside_strings_and_comments_are_not_headers() {
        let cases = [
            "a = \"\"\"\n[t]\n\"\"\"\n",
            "a = '''\n[t]\n'''\n",
            "a = \"\"\"x\\\"\"\"\n[t]\n\"\"\"\n",
            "a = \"\"\"x\"\"\"\"\nb = \"]\"\n",
            "a = '''x'''''\nb = '['\n",
            "# [t]\na = 1 # [u]\n",
            "a = \"[\\\"\" # \"\n",
            "\"[t]\" = 1\n'[u]' = 2\n",
        ];
        for text in cases {
            assert_eq!(top_level_end(text.as_bytes()), None, "{text:?}");
            toml::from_str::<toml::Table>(text).expect("each case is valid TOML");
        }
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_header() {
        assert_eq!(top_level_end("\u{feff}[t]\na = 1\n".as_bytes()), Some(3));
    }

    #[test]
    fn the_socket_is_found_in_a_long_file_whose_tables_do_not_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut text =
            String::from("'command_socket' = \"run/s.sock\"\nctl_command_timeout = 250\n");
        for index in 0..20_000 {
            text.push_str(&format!("[clusters.c{index}]\nprotocol = \"http\"\n"));
        }
        text.push_str("this line is not TOML\n");
        std::fs::write(&path, text).unwrap();
        let read = read_config_socket(&path).unwrap();
        assert_eq!(read.socket, dir.path().join("run/s.sock"));
        assert_eq!(read.timeout, Duration::from_millis(250));
    }

    #[test]
    fn a_top_level_part_longer_than_one_read_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let padding = format!("# {}\n", "x".repeat(FIRST_READ * 3));
        let text = format!("{padding}ctl_command_timeout = 0\n[t]\nctl_command_timeout = [\n");
        std::fs::write(&path, text).unwrap();
        let read = read_config_socket(&path).unwrap();
        assert_eq!(read.socket, dir.path().join("sozu.sock"));
        assert_eq!(read.timeout, Duration::ZERO);
    }

    #[test]
    fn a_mistake_in_the_top_level_part_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "command_socket = 3\n").unwrap();
        let error = read_config_socket(&path).err().unwrap();
        assert!(error.to_string().contains("is not a string"), "{error}");
        std::fs::write(&path, "command_socket = \"a\n").unwrap();
        let error = read_config_socket(&path).err().unwrap();
        assert!(error.to_string().contains("is not valid TOML"), "{error}");
    }

    /// A top-level value written any way TOML allows, possibly holding `[` after a newline.
    fn value() -> impl Strategy<Value = String> {
        let text = "[a-z\\[\\]{}#=\n ]{0,12}";
        prop_oneof![
            any::<i32>().prop_map(|n| n.to_string()),
            "[a-z\\[\\]{}#' ]{0,12}".prop_map(|s| format!("{s:?}")),
            "[a-z\\[\\]{}#\" ]{0,12}".prop_map(|s| format!("'{s}'")),
            text.prop_map(|s| format!("\"\"\"\n{s}\"\"\"")),
            text.prop_map(|s| format!("'''\n{s}'''")),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(|items| {
                let items: Vec<String> = items.iter().map(|n| format!("[{n}]")).collect();
                format!("[\n{}\n]", items.join(",\n"))
            }),
            "[a-z]{1,6}".prop_map(|s| format!("{{ k = [\n\"{s}\"] }}")),
        ]
    }

    proptest! {
        /// The top-level part alone reads as the whole document's top-level keys.
        #[test]
        fn the_top_level_part_has_the_top_level_keys(
            values in proptest::collection::vec(value(), 0..6),
            comment in "[a-z\\[ ]{0,8}",
        ) {
            let mut text = String::new();
            for (index, value) in values.iter().enumerate() {
                text.push_str(&format!("k{index} = {value} # {comment}\n"));
            }
            text.push_str("[table]\nk0 = \"not top-level\"\n[[array]]\nx = 1\n");
            let whole: toml::Table = toml::from_str(&text).unwrap();
            let part: toml::Table = toml::from_str(head(&text)).unwrap();
            let top_level: toml::Table =
                whole.into_iter().filter(|(key, _)| key.starts_with('k')).collect();
            prop_assert_eq!(part, top_level);
        }
    }
}
