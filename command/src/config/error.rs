//! What a configuration file can get wrong, and the warnings about keys accepted but not in
//! force. Every message names the key and its line.

use std::{fmt, io, net::SocketAddr, path::PathBuf};

/// One mistake in a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// The file asked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// The file is not valid TOML.
    #[error("invalid TOML{} at line {line}, column {column}: {message}", in_key(.key))]
    Syntax {
        /// The key or table header on the line, when there is one.
        key: Option<String>,
        /// The line of the mistake, from 1.
        line: usize,
        /// The column of the mistake, from 1.
        column: usize,
        /// What the TOML parser expected.
        message: String,
    },
    /// A table header written twice (`[metrics]` twice).
    #[error(
        "duplicate table `[{table}]` at line {line}, first defined at line {first_line}: \
         a table is written once, with all its keys"
    )]
    DuplicateTable {
        /// The table's name.
        table: String,
        /// The line of the second header, from 1.
        line: usize,
        /// The line of the first one.
        first_line: usize,
    },
    /// A key written twice in one table.
    #[error("duplicate key `{key}` at line {line}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// The line of the second one, from 1.
        line: usize,
    },
    /// A key the section does not have, often misspelt.
    #[error("unknown key `{key}` in {section} at line {line}{}; expected one of {expected}", did_you_mean(.suggestion))]
    UnknownKey {
        /// The key as written.
        key: String,
        /// The section it is in: the top level, a listener, a cluster…
        section: String,
        /// The key's line, from 1.
        line: usize,
        /// The known key closest to the unknown one, when it is close enough to be a typo.
        suggestion: Option<&'static str>,
        /// The keys the section accepts.
        expected: String,
    },
    /// A key the section needs is absent.
    #[error("missing key `{key}` in {section} at line {line}")]
    MissingKey {
        /// The key needed.
        key: &'static str,
        /// The section that lacks it.
        section: String,
        /// The section's line, from 1.
        line: usize,
    },
    /// A key that does not apply to this section.
    #[error("key `{key}` at line {line} does not apply to {section}")]
    NotApplicable {
        /// The key as written.
        key: String,
        /// The section it is in.
        section: String,
        /// The key's line, from 1.
        line: usize,
    },
    /// A value of the wrong type or out of its range.
    #[error("invalid value {value} for `{key}` at line {line}: expected {expected}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The key's line, from 1.
        line: usize,
        /// The value as written in the file, shortened when long.
        value: String,
        /// What the key accepts.
        expected: String,
    },
    /// A value that is not a socket address (`127.0.0.1:8080`).
    #[error(
        "invalid address `{value}` for `{key}` at line {line}: expected an IP address and a \
         port, like 127.0.0.1:8080"
    )]
    InvalidAddress {
        /// The key.
        key: String,
        /// The key's line, from 1.
        line: usize,
        /// The value as written.
        value: String,
    },
    /// A key this proxy does not accept in that form, for a reason it names.
    #[error("`{key}` at line {line} is refused: {reason}")]
    Refused {
        /// The key.
        key: String,
        /// The key's line, from 1.
        line: usize,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A key that only works with another one.
    #[error("`{key}` at line {line} requires {required}")]
    Requires {
        /// The key.
        key: String,
        /// The key's line, from 1.
        line: usize,
        /// What it needs.
        required: &'static str,
    },
    /// Two keys of which only one may be set.
    #[error("`{key}` and `{other}` at line {line} exclude each other: keep one")]
    Exclusive {
        /// The first key.
        key: String,
        /// The other key.
        other: String,
        /// The line of the first key, from 1.
        line: usize,
    },
    /// A file named by a key (certificate, answer, script) could not be read.
    #[error("cannot read {path} for `{key}` at line {line}")]
    File {
        /// The key.
        key: String,
        /// The key's line, from 1.
        line: usize,
        /// The file named.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: io::Error,
    },
    /// Two items with the same name or key (two listeners on one address, two clusters with one
    /// id…).
    #[error(
        "duplicate {what} `{name}` (`{key}`) at line {line}, first defined at line {first_line}"
    )]
    Duplicate {
        /// What is duplicated (`listener`, `cluster`, `backend`…).
        what: &'static str,
        /// The name they share.
        name: String,
        /// The key that names them.
        key: &'static str,
        /// The line of the second one, from 1.
        line: usize,
        /// The line of the first one.
        first_line: usize,
    },
    /// A frontend on a listener of the wrong kind (an HTTP frontend on a TCP listener…).
    #[error(
        "frontend `address` {address} at line {line} is {listener} listener, which cannot take \
         {frontend}"
    )]
    ListenerKind {
        /// The frontend's `address`.
        address: SocketAddr,
        /// The line of the frontend's `address`, from 1.
        line: usize,
        /// `an http`, `an https` or `a tcp`.
        listener: &'static str,
        /// What the frontend is (`an http frontend`…).
        frontend: String,
    },
    /// The frontends of a TCP cluster use listeners with and without `expect_proxy`.
    #[error(
        "frontends of tcp cluster `{cluster}` (`frontends` at line {line}) mix listeners with \
         and without `expect_proxy`"
    )]
    MixedExpectProxy {
        /// The cluster.
        cluster: String,
        /// The line of the cluster's `frontends`, from 1.
        line: usize,
    },
}

impl ConfigError {
    /// The line of the file the error is about; `None` when it is about the whole file.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { line, .. }
            | ConfigError::DuplicateTable { line, .. }
            | ConfigError::DuplicateKey { line, .. }
            | ConfigError::UnknownKey { line, .. }
            | ConfigError::MissingKey { line, .. }
            | ConfigError::NotApplicable { line, .. }
            | ConfigError::InvalidValue { line, .. }
            | ConfigError::InvalidAddress { line, .. }
            | ConfigError::Refused { line, .. }
            | ConfigError::Requires { line, .. }
            | ConfigError::Exclusive { line, .. }
            | ConfigError::File { line, .. }
            | ConfigError::Duplicate { line, .. }
            | ConfigError::ListenerKind { line, .. }
            | ConfigError::MixedExpectProxy { line, .. } => Some(*line),
        }
    }
}

fn in_key(key: &Option<String>) -> String {
    key.as_ref()
        .map(|key| format!(" in `{key}`"))
        .unwrap_or_default()
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion
        .map(|key| format!(" (did you mean `{key}`?)"))
        .unwrap_or_default()
}

/// Every mistake found in a configuration file, by line.
///
/// Invariant: never empty.
#[derive(Debug)]
pub struct ConfigErrors(Vec<ConfigError>);

impl ConfigErrors {
    /// `None` when there is no error.
    pub(super) fn new(mut errors: Vec<ConfigError>) -> Option<Self> {
        errors.sort_by_key(ConfigError::line);
        (!errors.is_empty()).then_some(ConfigErrors(errors))
    }

    /// The errors, in line order; never empty.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line, each followed by its causes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A key that is accepted but not in force, or a value that was changed to one in force; or,
/// at [`Severity::Info`], something the file implies that it does not write out (a listener
/// created for a frontend's address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// Whether the key is not in force (warning) or only information.
    pub severity: Severity,
    /// The key concerned.
    pub key: String,
    /// The key's line, from 1.
    pub line: usize,
    /// What is done with the key, and why.
    pub message: String,
}

/// How much a [`ConfigWarning`] asks of the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Done as Sōzu does; said so that nothing happens unseen.
    Info,
    /// Part of the file is not in force.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
        })
    }
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` at line {}: {}", self.key, self.line, self.message)
    }
}
