//! What a configuration file can get wrong, and the warnings about keys accepted but not in
//! force. Every message names the key and its line.

use std::{fmt, io, net::SocketAddr, path::PathBuf};

/// One mistake in a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid TOML{} at line {line}, column {column}: {message}", in_key(.key))]
    Syntax {
        /// The key or table header on the line, when there is one.
        key: Option<String>,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "duplicate table `[{table}]` at line {line}, first defined at line {first_line}: \
         a table is written once, with all its keys"
    )]
    DuplicateTable {
        table: String,
        line: usize,
        first_line: usize,
    },
    #[error("duplicate key `{key}` at line {line}")]
    DuplicateKey { key: String, line: usize },
    #[error("unknown key `{key}` in {section} at line {line}{}; expected one of {expected}", did_you_mean(.suggestion))]
    UnknownKey {
        key: String,
        section: String,
        line: usize,
        /// The known key closest to the unknown one, when it is close enough to be a typo.
        suggestion: Option<&'static str>,
        expected: String,
    },
    #[error("missing key `{key}` in {section} at line {line}")]
    MissingKey {
        key: &'static str,
        section: String,
        line: usize,
    },
    #[error("key `{key}` at line {line} does not apply to {section}")]
    NotApplicable {
        key: String,
        section: String,
        line: usize,
    },
    #[error("invalid value {value} for `{key}` at line {line}: expected {expected}")]
    InvalidValue {
        key: String,
        line: usize,
        /// The value as written in the file, shortened when long.
        value: String,
        expected: String,
    },
    #[error(
        "invalid address `{value}` for `{key}` at line {line}: expected an IP address and a \
         port, like 127.0.0.1:8080"
    )]
    InvalidAddress {
        key: String,
        line: usize,
        value: String,
    },
    #[error("`{key}` at line {line} is refused: {reason}")]
    Refused {
        key: String,
        line: usize,
        reason: &'static str,
    },
    #[error("`{key}` at line {line} requires {required}")]
    Requires {
        key: String,
        line: usize,
        required: &'static str,
    },
    #[error("`{key}` and `{other}` at line {line} exclude each other: keep one")]
    Exclusive {
        key: String,
        other: String,
        line: usize,
    },
    #[error("cannot read {path} for `{key}` at line {line}")]
    File {
        key: String,
        line: usize,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "duplicate {what} `{name}` (`{key}`) at line {line}, first defined at line {first_line}"
    )]
    Duplicate {
        what: &'static str,
        name: String,
        key: &'static str,
        line: usize,
        first_line: usize,
    },
    #[error(
        "frontend `address` {address} at line {line} is {listener} listener, which cannot take \
         {frontend}"
    )]
    ListenerKind {
        address: SocketAddr,
        line: usize,
        /// `an http`, `an https` or `a tcp`.
        listener: &'static str,
        frontend: String,
    },
    #[error(
        "frontends of tcp cluster `{cluster}` (`frontends` at line {line}) mix listeners with \
         and without `expect_proxy`"
    )]
    MixedExpectProxy { cluster: String, line: usize },
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
    pub severity: Severity,
    pub key: String,
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
