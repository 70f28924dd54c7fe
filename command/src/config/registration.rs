//! `[registration]`: how long what registrations created outlives them, and the registration
//! socket, on which services may register and do nothing else (`doc/registration.md`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use super::{
    Loader,
    document::{Field, Table},
    error::ConfigError,
};
use crate::{
    hostname,
    rules::{Bounds, Unit},
};

const KEYS: &[&str] = &[
    "grace_period",
    "socket",
    "mode",
    "group",
    "allowed_hostnames",
    "allowed_listen",
];

/// How long what a registration created is kept after it ended (socketmaster's).
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
/// The registration socket's permissions: its owner and group may register.
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

const GRACE_PERIOD: Bounds = Bounds {
    min: 0,
    max: 2_147_483,
    unit: Unit::Seconds,
};

/// The `[registration]` section.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistrationConfig {
    /// How long what a lapsed registration created (listener, cluster, frontend, certificate) stays
    /// once no live registration uses it, so that a new registration can take it over without
    /// interruption (`grace_period`, default 30 seconds).
    pub grace_period: Duration,
    /// The registration socket, if any.
    pub socket: Option<PathBuf>,
    /// Its permission bits.
    pub mode: u32,
    /// The group that owns it, by name or number.
    pub group: Option<String>,
    /// Hostname patterns (`api.example.com`, `*.example.com`, `*`) that registrations on the
    /// registration socket may use; `None` allows every hostname.
    pub allowed_hostnames: Option<Vec<String>>,
    /// Listener addresses that registrations on the registration socket may use; `None` allows
    /// every address.
    pub allowed_listen: Option<Vec<SocketAddr>>,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        RegistrationConfig {
            grace_period: DEFAULT_GRACE_PERIOD,
            socket: None,
            mode: DEFAULT_SOCKET_MODE,
            group: None,
            allowed_hostnames: None,
            allowed_listen: None,
        }
    }
}

impl RegistrationConfig {
    /// Whether a registration on the registration socket may use `name`: a pattern equal to
    /// it, `*`, or `*.suffix` for a name (or a wildcard) ending in `.suffix`.
    pub fn allows_hostname(&self, name: &str) -> bool {
        let Some(patterns) = &self.allowed_hostnames else {
            return true;
        };
        let name = name.to_ascii_lowercase();
        patterns.iter().any(|pattern| {
            let pattern = pattern.to_ascii_lowercase();
            if pattern == "*" || pattern == name {
                return true;
            }
            pattern
                .strip_prefix('*')
                .is_some_and(|suffix| suffix.starts_with('.') && name.ends_with(suffix))
        })
    }

    /// Whether a registration on the registration socket may use the listener `address`.
    pub fn allows_listen(&self, address: SocketAddr) -> bool {
        self.allowed_listen
            .as_ref()
            .is_none_or(|allowed| allowed.contains(&address))
    }
}

pub(super) fn read(
    loader: &mut Loader,
    field: Field<'_, '_>,
) -> Result<RegistrationConfig, ConfigError> {
    let mut table: Table<'_, '_> = field.table("[registration]")?;
    loader.check_keys(&mut table, &[KEYS]);
    let defaults = RegistrationConfig::default();
    let grace_period = table
        .seconds("grace_period", &GRACE_PERIOD)?
        .unwrap_or(defaults.grace_period);
    let socket = table
        .with("socket", |field| loader.files.path(field))?
        .or(defaults.socket);
    let has_socket = socket.is_some();
    let only_with_socket = |field: &Field<'_, '_>| {
        if has_socket {
            Ok(())
        } else {
            Err(field.requires("`socket`"))
        }
    };
    let mode = table
        .with("mode", |field| {
            only_with_socket(&field)?;
            mode(field)
        })?
        .unwrap_or(defaults.mode);
    let group = table.with("group", |field| {
        only_with_socket(&field)?;
        let text = field.string()?;
        if text.is_empty() {
            return Err(field.invalid("a group name or number"));
        }
        Ok(text.to_string())
    })?;
    let allowed_hostnames = table.with("allowed_hostnames", |field| {
        let items = field.items()?;
        items
            .into_iter()
            .map(|item| {
                let text = item.string()?;
                let pattern = text.strip_prefix("*.").unwrap_or(text);
                if text != "*" && hostname::check_pattern(pattern).is_err() {
                    return Err(item.invalid("a hostname, `*.suffix` or `*`"));
                }
                Ok(text.to_string())
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let allowed_listen = table.with("allowed_listen", |field| {
        field
            .items()?
            .into_iter()
            .map(Field::address)
            .collect::<Result<Vec<_>, _>>()
    })?;
    table.unused()?;
    Ok(RegistrationConfig {
        grace_period,
        socket,
        mode,
        group,
        allowed_hostnames,
        allowed_listen,
    })
}

/// Permission bits written in octal as a string, like `"0660"`.
fn mode(field: Field<'_, '_>) -> Result<u32, ConfigError> {
    let text = field.string()?;
    u32::from_str_radix(text.trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .ok_or_else(|| field.invalid("permission bits in octal, like \"0660\""))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn registration(text: &str) -> Result<RegistrationConfig, String> {
        Config::parse(text, Path::new("/etc/sozu"))
            .map(|(config, _)| config.registration)
            .map_err(|errors| errors.to_string())
    }

    #[test]
    fn defaults_without_the_section() {
        let config = registration("").unwrap();
        assert_eq!(config, RegistrationConfig::default());
        assert_eq!(config.grace_period, Duration::from_secs(30));
    }

    #[test]
    fn every_key_is_read() {
        let config = registration(
            "[registration]\n\
             grace_period = 2\n\
             socket = \"register.sock\"\n\
             mode = \"0600\"\n\
             group = \"services\"\n\
             allowed_hostnames = [\"*.example.com\", \"api.test\"]\n\
             allowed_listen = [\"127.0.0.1:8000\"]\n",
        )
        .unwrap();
        assert_eq!(config.grace_period, Duration::from_secs(2));
        assert_eq!(
            config.socket,
            Some(PathBuf::from("/etc/sozu/register.sock"))
        );
        assert_eq!(config.mode, 0o600);
        assert_eq!(config.group.as_deref(), Some("services"));
        assert!(config.allows_hostname("a.example.com"));
        assert!(config.allows_hostname("*.b.example.com"));
        assert!(config.allows_hostname("API.test"));
        assert!(!config.allows_hostname("example.com"));
        assert!(!config.allows_hostname("evil.test"));
        assert!(config.allows_listen("127.0.0.1:8000".parse().unwrap()));
        assert!(!config.allows_listen("127.0.0.1:8001".parse().unwrap()));
    }

    #[test]
    fn mode_needs_a_socket_and_octal_digits() {
        let error = registration("[registration]\nmode = \"0660\"\n").unwrap_err();
        assert!(error.contains("mode"), "{error}");
        let error =
            registration("[registration]\nsocket = \"r.sock\"\nmode = \"0999\"\n").unwrap_err();
        assert!(error.contains("octal"), "{error}");
        let error = registration("[registration]\nallowed_hostnames = [\"a b\"]\n").unwrap_err();
        assert!(error.contains("allowed_hostnames"), "{error}");
        let error = registration("[registration]\nsockets = \"r.sock\"\n").unwrap_err();
        assert!(error.contains("sockets"), "{error}");
    }
}
