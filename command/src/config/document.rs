//! The configuration file as a TOML document that remembers where each key is written.
//!
//! [`Document`] parses the text with spans and turns byte offsets into line numbers. A
//! [`Table`] gives typed access to the keys of one table and records which keys were read, so
//! that a key nobody reads is reported instead of silently ignored. A [`Field`] is one value
//! with its key and line; its conversions fail with errors that name both.

use std::{cell::RefCell, net::SocketAddr, ops::Range, str::FromStr, time::Duration};

use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::error::{ConfigError, ConfigWarning, Severity};
use crate::{
    request::UnknownName,
    rules::{Bounds, TextRule},
};

/// The text of a configuration file and where its lines start.
pub(super) struct Document<'i> {
    text: &'i str,
    /// Byte offset of the first character of each line; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
    /// The addresses of the file parsed last (see [`Addresses`]).
    addresses: RefCell<Addresses>,
}

impl<'i> Document<'i> {
    pub fn new(text: &'i str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(offset, _)| offset + 1))
            .collect();
        Document {
            text,
            line_starts,
            addresses: RefCell::new(Addresses::default()),
        }
    }

    /// The tables and values of the document, or the first syntax error.
    pub fn parse(&self) -> Result<Spanned<DeTable<'i>>, ConfigError> {
        DeTable::parse(self.text).map_err(|error| self.syntax_error(&error))
    }

    /// The line (counted from 1) of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    /// The text of a line (counted from 1), without its end of line.
    fn line_text(&self, line: usize) -> &'i str {
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        self.text.get(start..end).unwrap_or("").trim_end()
    }

    /// A value as written in the file, shortened to fit in a message.
    fn snippet(&self, span: Range<usize>) -> String {
        const MAX_CHARS: usize = 40;
        let text = self.text.get(span).unwrap_or("").trim();
        if text.chars().count() <= MAX_CHARS {
            return text.to_string();
        }
        let mut short: String = text.chars().take(MAX_CHARS).collect();
        short.push('…');
        short
    }

    pub fn table<'t>(
        &'t self,
        name: &'t str,
        entries: &'t DeTable<'i>,
        offset: usize,
    ) -> Table<'t, 'i> {
        Table {
            doc: self,
            name,
            entries: entries
                .iter()
                .map(|(key, value)| Entry {
                    name: key.get_ref(),
                    key_offset: key.span().start,
                    value,
                    used: false,
                })
                .collect(),
            offset,
        }
    }

    /// Turns the TOML parser's error into one that names the key or table of its line.
    fn syntax_error(&self, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map_or(0, |span| span.start);
        let line = self.line(offset);
        let line_text = self.line_text(line);
        let header = table_header(line_text);
        // The parser names no error kind; its message for a key or table written twice is this.
        if error.message() == "duplicate key" {
            if let Some(table) = header {
                if let Some(first_line) = self.first_header(table, line) {
                    return ConfigError::DuplicateTable {
                        table: table.to_string(),
                        line,
                        first_line,
                    };
                }
            }
            let key = error
                .span()
                .and_then(|span| self.text.get(span))
                .unwrap_or(line_text);
            return ConfigError::DuplicateKey {
                key: key.trim().to_string(),
                line,
            };
        }
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(1, |before| before.chars().count() + 1);
        let key = header.or_else(|| {
            line_text
                .split_once('=')
                .map(|(key, _)| key.trim())
                .filter(|key| is_bare_key(key))
        });
        ConfigError::Syntax {
            key: key.map(str::to_string),
            line,
            column,
            message: error.message().to_string(),
        }
    }

    /// The first line before `before` whose table header is `table`.
    fn first_header(&self, table: &str, before: usize) -> Option<usize> {
        (1..before).find(|&line| table_header(self.line_text(line)) == Some(table))
    }
}

/// The last few addresses parsed, each with its text: 100,000 frontends name the same few
/// listeners, and parsing each one's `SocketAddr` again was 2 % of reading them.
#[derive(Default)]
struct Addresses {
    /// At most [`Addresses::KEPT`], the oldest first.
    recent: Vec<(Box<str>, SocketAddr)>,
}

impl Addresses {
    /// How many addresses are kept: a file's frontends alternate between a few listeners.
    const KEPT: usize = 8;

    /// `text` as a socket address, parsed or found among the last ones parsed.
    fn parse(&mut self, text: &str) -> Option<SocketAddr> {
        if let Some((_, address)) = self.recent.iter().find(|(known, _)| **known == *text) {
            return Some(*address);
        }
        let address = text.parse().ok()?;
        if self.recent.len() == Self::KEPT {
            self.recent.remove(0);
        }
        self.recent.push((text.into(), address));
        Some(address)
    }
}

/// `clusters.web` for the line `[clusters.web]` or `[[clusters.web]]`.
fn table_header(line: &str) -> Option<&str> {
    let line = line.trim();
    let inner = line.strip_prefix('[')?.split(']').next()?;
    Some(inner.trim_start_matches('[').trim())
}

fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"' | ' '))
}

/// One table of the file: a section such as `[[listeners]]`, or an inline table such as a
/// frontend.
///
/// Its entries are kept in a vector searched from the start: a table has a few keys, or many
/// that are never looked up by name (`[clusters]`), and each frontend asks for about twenty
/// keys it mostly does not have, which a comparison of lengths answers.
pub(super) struct Table<'t, 'i> {
    doc: &'t Document<'i>,
    /// How messages name the table: `[[listeners]]`, `[clusters.web]`, `a frontend`.
    name: &'t str,
    /// In the parser's order (by key).
    entries: Vec<Entry<'t, 'i>>,
    /// Where the table starts; its line is counted when asked for (a search of the lines'
    /// starts, paid by 100,000 frontends each for nothing when it was counted eagerly).
    offset: usize,
}

/// One key of a table and its value.
#[derive(Clone, Copy)]
struct Entry<'t, 'i> {
    name: &'t str,
    /// Where the key is written.
    key_offset: usize,
    value: &'t Spanned<DeValue<'i>>,
    /// Read, or reported as unknown already.
    used: bool,
}

impl<'t, 'i> Table<'t, 'i> {
    pub fn line(&self) -> usize {
        self.doc.line(self.offset)
    }

    /// The entries of the table in file order, with their line.
    pub fn entries(&self) -> Vec<(&'t str, Field<'t, 'i>)> {
        let mut entries: Vec<_> = self
            .entries
            .iter()
            .map(|entry| {
                (
                    entry.key_offset,
                    entry.name,
                    self.entry_field(entry.name, entry),
                )
            })
            .collect();
        entries.sort_unstable_by_key(|(offset, _, _)| *offset);
        entries
            .into_iter()
            .map(|(_, key, field)| (key, field))
            .collect()
    }

    /// Unknown keys, each with the closest known one when it looks like a typo. They count as
    /// read, so that [`Table::unused`] does not report them again.
    pub fn unknown_keys(&mut self, known: &[&'static [&'static str]]) -> Vec<ConfigError> {
        self.unknown(known)
            .into_iter()
            .map(|(key, line, suggestion)| ConfigError::UnknownKey {
                key: key.to_string(),
                section: self.name.to_string(),
                line,
                suggestion,
                expected: expected_keys(known),
            })
            .collect()
    }

    /// Unknown keys as warnings: ignored, as Sōzu ignores unknown top-level keys, so that a
    /// file written for a newer Sōzu still starts. They count as read.
    pub fn ignored_unknown_keys(
        &mut self,
        known: &[&'static [&'static str]],
    ) -> Vec<ConfigWarning> {
        self.unknown(known)
            .into_iter()
            .map(|(key, line, suggestion)| ConfigWarning {
                severity: Severity::Warning,
                key: key.to_string(),
                line,
                message: format!(
                    "unknown key in {}, ignored as Sōzu ignores it{}",
                    self.name,
                    suggestion
                        .map(|known| format!(" (did you mean `{known}`?)"))
                        .unwrap_or_default()
                ),
            })
            .collect()
    }

    /// The keys not in `known`, with their line and the closest known key; marked as read.
    fn unknown(
        &mut self,
        known: &[&'static [&'static str]],
    ) -> Vec<(&'t str, usize, Option<&'static str>)> {
        let is_known = |key: &str| known.iter().any(|group| group.contains(&key));
        let mut unknown = Vec::new();
        for entry in self
            .entries
            .iter_mut()
            .filter(|entry| !is_known(entry.name))
        {
            entry.used = true;
            unknown.push((
                entry.name,
                self.doc.line(entry.key_offset),
                closest(entry.name, known),
            ));
        }
        unknown
    }

    /// The value of `key`, if the table has one; `key` counts as read.
    pub fn field(&mut self, key: &'static str) -> Option<Field<'t, 'i>> {
        let entry = self.entries.iter_mut().find(|entry| entry.name == key)?;
        entry.used = true;
        let entry = *entry;
        Some(self.entry_field(key, &entry))
    }

    /// The field of `entry`, named `key` in messages.
    fn entry_field(&self, key: &'t str, entry: &Entry<'t, 'i>) -> Field<'t, 'i> {
        Field {
            doc: self.doc,
            key,
            offset: entry.key_offset,
            value: entry.value,
        }
    }

    pub fn required(&mut self, key: &'static str) -> Result<Field<'t, 'i>, ConfigError> {
        self.field(key).ok_or_else(|| ConfigError::MissingKey {
            key,
            section: self.name.to_string(),
            line: self.line(),
        })
    }

    /// Whether the table has `key`; it does not count as read.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|entry| entry.name == key)
    }

    /// A warning when the table has `key`, which is accepted and not in force.
    pub fn ignore(&mut self, key: &'static str, message: &str) -> Option<ConfigWarning> {
        self.field(key).map(|field| field.warning(message))
    }

    /// Reads a key with `read` when the table has it.
    pub fn with<T>(
        &mut self,
        key: &'static str,
        read: impl FnOnce(Field<'t, 'i>) -> Result<T, ConfigError>,
    ) -> Result<Option<T>, ConfigError> {
        self.field(key).map(read).transpose()
    }

    pub fn string(&mut self, key: &'static str) -> Result<Option<String>, ConfigError> {
        self.with(key, |field| field.string().map(str::to_string))
    }

    pub fn bool(&mut self, key: &'static str) -> Result<Option<bool>, ConfigError> {
        self.with(key, Field::bool)
    }

    pub fn number<T: TryFrom<u64>>(
        &mut self,
        key: &'static str,
        bounds: &Bounds,
    ) -> Result<Option<T>, ConfigError> {
        self.with(key, |field| field.number(bounds))
    }

    pub fn seconds(
        &mut self,
        key: &'static str,
        bounds: &Bounds,
    ) -> Result<Option<Duration>, ConfigError> {
        self.with(key, |field| field.seconds(bounds))
    }

    /// A string that obeys `rule`.
    pub fn text(
        &mut self,
        key: &'static str,
        rule: &TextRule,
    ) -> Result<Option<String>, ConfigError> {
        self.with(key, |field| field.text(rule).map(str::to_string))
    }

    pub fn address(&mut self, key: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
        self.with(key, Field::address)
    }

    pub fn choice<T: Copy>(
        &mut self,
        key: &'static str,
        choices: &[(&str, T)],
    ) -> Result<Option<T>, ConfigError> {
        self.with(key, |field| field.choice(choices))
    }

    /// The first key of the table that was never read: a key that has no meaning where it is.
    pub fn unused(&self) -> Result<(), ConfigError> {
        match self.entries.iter().find(|entry| !entry.used) {
            Some(entry) => Err(ConfigError::NotApplicable {
                key: entry.name.to_string(),
                section: self.name.to_string(),
                line: self.doc.line(entry.key_offset),
            }),
            None => Ok(()),
        }
    }
}

/// The known key within two edits of `key`, if there is one.
fn closest(key: &str, known: &[&'static [&'static str]]) -> Option<&'static str> {
    known
        .iter()
        .flat_map(|group| group.iter())
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The known keys for a message, with the families `h2_*` and `answer_NNN` written once.
fn expected_keys(known: &[&[&'static str]]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for key in known.iter().flat_map(|group| group.iter()) {
        let name = if key.starts_with("h2_") {
            "h2_*"
        } else if key.starts_with("answer_") {
            "answer_NNN"
        } else {
            key
        };
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names.join(", ")
}

/// One value of the file, with its key and line.
#[derive(Clone, Copy)]
pub(super) struct Field<'t, 'i> {
    doc: &'t Document<'i>,
    key: &'t str,
    /// Where its line is counted from (its key, or an array's element); the line is counted
    /// when asked for, as a table's.
    offset: usize,
    value: &'t Spanned<DeValue<'i>>,
}

impl<'t, 'i> Field<'t, 'i> {
    pub fn key(&self) -> &'t str {
        self.key
    }

    pub fn line(&self) -> usize {
        self.doc.line(self.offset)
    }

    /// The line (counted from 1) of `offset` in this field's file: that of another value, as
    /// a duplicate's message names the first.
    pub fn line_at(&self, offset: usize) -> usize {
        self.doc.line(offset)
    }

    /// The value refused, with what was expected instead.
    pub fn invalid(&self, expected: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: self.key.to_string(),
            line: self.line(),
            value: self.doc.snippet(self.value.span()),
            expected: expected.into(),
        }
    }

    pub fn refused(&self, reason: &'static str) -> ConfigError {
        ConfigError::Refused {
            key: self.key.to_string(),
            line: self.line(),
            reason,
        }
    }

    pub fn requires(&self, required: &'static str) -> ConfigError {
        ConfigError::Requires {
            key: self.key.to_string(),
            line: self.line(),
            required,
        }
    }

    /// A [`Severity::Info`] note about what this key implies.
    pub fn info(&self, message: impl Into<String>) -> ConfigWarning {
        ConfigWarning {
            severity: Severity::Info,
            ..self.warning(message)
        }
    }

    pub fn warning(&self, message: impl Into<String>) -> ConfigWarning {
        ConfigWarning {
            severity: Severity::Warning,
            key: self.key.to_string(),
            line: self.line(),
            message: message.into(),
        }
    }

    pub fn string(&self) -> Result<&'t str, ConfigError> {
        match self.value.get_ref() {
            DeValue::String(text) => Ok(text),
            _ => Err(self.invalid("a string")),
        }
    }

    pub fn bool(self) -> Result<bool, ConfigError> {
        self.value
            .get_ref()
            .as_bool()
            .ok_or_else(|| self.invalid("true or false"))
    }

    /// A whole number within `bounds` (see [`crate::rules`]).
    pub fn number<T: TryFrom<u64>>(self, bounds: &Bounds) -> Result<T, ConfigError> {
        let expected = || self.invalid(format!("a whole number from {bounds}"));
        let DeValue::Integer(integer) = self.value.get_ref() else {
            return Err(expected());
        };
        i64::from_str_radix(integer.as_str(), integer.radix())
            .ok()
            .and_then(|value| u64::try_from(value).ok())
            .filter(|value| bounds.contains(*value))
            .and_then(|value| T::try_from(value).ok())
            .ok_or_else(expected)
    }

    /// A whole number of seconds within `bounds`.
    pub fn seconds(self, bounds: &Bounds) -> Result<Duration, ConfigError> {
        self.number(bounds).map(Duration::from_secs)
    }

    /// A whole number of milliseconds within `bounds`.
    pub fn milliseconds(self, bounds: &Bounds) -> Result<Duration, ConfigError> {
        self.number(bounds).map(Duration::from_millis)
    }

    /// A string that obeys `rule` (see [`crate::rules`]).
    pub fn text(self, rule: &TextRule) -> Result<&'t str, ConfigError> {
        let text = self.string()?;
        rule.check(text)
            .map_err(|expected| self.invalid(expected))?;
        Ok(text)
    }

    /// A string that passes `check`, a rule of [`crate::rules`] that says what it expected.
    pub fn checked(
        self,
        check: fn(&str) -> Result<(), &'static str>,
    ) -> Result<&'t str, ConfigError> {
        let text = self.string()?;
        check(text).map_err(|expected| self.invalid(expected))?;
        Ok(text)
    }

    pub fn address(self) -> Result<SocketAddr, ConfigError> {
        let text = self
            .string()
            .map_err(|_| self.invalid("an address as a string, like \"127.0.0.1:8080\""))?;
        let parsed = self.doc.addresses.borrow_mut().parse(text);
        parsed.ok_or_else(|| ConfigError::InvalidAddress {
            key: self.key.to_string(),
            line: self.line(),
            value: text.to_string(),
        })
    }

    /// One of `choices` by name, ignoring case and taking `-` for `_`.
    pub fn choice<T: Copy>(self, choices: &[(&str, T)]) -> Result<T, ConfigError> {
        let expected = || {
            let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
            self.invalid(format!("one of {}", names.join(", ")))
        };
        let text = self.string().map_err(|_| expected())?;
        let wanted = text.trim().replace('-', "_");
        choices
            .iter()
            .find(|(name, _)| name.replace('-', "_").eq_ignore_ascii_case(&wanted))
            .map(|(_, value)| *value)
            .ok_or_else(expected)
    }

    /// A value of an enumeration that parses its own names.
    pub fn named<T: FromStr<Err = UnknownName>>(self) -> Result<T, ConfigError> {
        self.string()?
            .parse()
            .map_err(|error: UnknownName| self.invalid(format!("one of {}", error.expected)))
    }

    /// The elements of an array, each with this field's key and its own line.
    pub fn items(self) -> Result<Vec<Field<'t, 'i>>, ConfigError> {
        let DeValue::Array(array) = self.value.get_ref() else {
            return Err(self.invalid("an array"));
        };
        Ok(array
            .iter()
            .map(|value| Field {
                doc: self.doc,
                key: self.key,
                offset: value.span().start,
                value,
            })
            .collect())
    }

    pub fn strings(self) -> Result<Vec<String>, ConfigError> {
        self.items()?
            .into_iter()
            .map(|item| {
                item.string()
                    .map(str::to_string)
                    .map_err(|_| self.invalid("an array of strings"))
            })
            .collect()
    }

    /// The value as a table called `name` in messages.
    pub fn table(self, name: &'t str) -> Result<Table<'t, 'i>, ConfigError> {
        match self.value.get_ref() {
            DeValue::Table(entries) => Ok(self.doc.table(name, entries, self.value.span().start)),
            _ => Err(self.invalid("a table")),
        }
    }

    /// The value read by its serde form, for values whose form is shared with an order; the
    /// error says what was `expected` and why the value is not that.
    pub fn deserialize<T: serde::de::DeserializeOwned>(
        self,
        expected: &str,
    ) -> Result<T, ConfigError> {
        use serde::de::IntoDeserializer;
        T::deserialize(self.value.clone().into_deserializer())
            .map_err(|error| self.invalid(format!("{expected}: {}", error.message())))
    }

    /// The start of the value in the file, to sort values in file order.
    pub fn offset(&self) -> usize {
        self.value.span().start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_counted_from_one() {
        let doc = Document::new("a = 1\nb = 2\n\nc = 3");
        assert_eq!(doc.line(0), 1);
        assert_eq!(doc.line(6), 2);
        assert_eq!(doc.line(13), 4);
    }

    #[test]
    fn an_address_is_the_one_of_its_text_whatever_was_parsed_before() {
        let mut addresses = Addresses::default();
        let texts: Vec<String> = (0..20)
            .flat_map(|port| {
                [
                    format!("127.0.0.1:{}", 8000 + port),
                    "127.0.0.1:8080".to_string(),
                    format!("[::1]:{}", 9000 + port),
                ]
            })
            .collect();
        for text in texts.iter().chain(texts.iter().rev()) {
            assert_eq!(addresses.parse(text), text.parse().ok(), "{text}");
            assert!(addresses.recent.len() <= Addresses::KEPT);
        }
        assert_eq!(addresses.parse("127.0.0.1:8080 "), None);
        assert_eq!(addresses.parse("127.0.0.1"), None);
        assert_eq!(
            addresses.parse("127.0.0.1:8080"),
            "127.0.0.1:8080".parse().ok()
        );
    }

    #[test]
    fn close_typo_gets_a_suggestion() {
        assert_eq!(
            closest("fron_timeout", &[&["front_timeout", "back_timeout"]]),
            Some("front_timeout")
        );
        assert_eq!(closest("zzz", &[&["front_timeout"]]), None);
    }

    #[test]
    fn header_of_a_table_line() {
        assert_eq!(table_header("[clusters.web]"), Some("clusters.web"));
        assert_eq!(table_header("  [[listeners]] # x"), Some("listeners"));
        assert_eq!(table_header("a = [1]"), None);
    }
}
