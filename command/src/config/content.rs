//! Content routing in the file: the match keys of a TCP frontend (`sni`, `alpn`, `http_host`,
//! `prefix`, `regex`, `protocol`) and the keys of a TCP listener that govern it
//! (`inspect_bytes`, `inspect_timeout`, `script`).

use super::{Loader, document::Table, error::ConfigError};
use crate::{
    request::{TcpListenerConfig, TcpProtocol, TcpRule, TcpScript},
    rules,
};

/// The match keys of a TCP frontend; a frontend of an HTTP or HTTPS listener has none.
pub(super) const RULE_KEYS: &[&str] = &["sni", "alpn", "http_host", "prefix", "regex", "protocol"];

/// The rule of a TCP frontend: at most one of [`RULE_KEYS`], checked as an order's would be.
pub(super) fn tcp_rule(table: &mut Table<'_, '_>) -> Result<Option<TcpRule>, ConfigError> {
    let mut found: Option<(TcpRule, &'static str)> = None;
    for &key in RULE_KEYS {
        let Some(field) = table.field(key) else {
            continue;
        };
        let rule = if key == "protocol" {
            TcpRule::Protocol(field.named::<TcpProtocol>()?)
        } else {
            let value = field.string()?.to_string();
            match key {
                "sni" => TcpRule::Sni(value),
                "alpn" => TcpRule::Alpn(value),
                "http_host" => TcpRule::HttpHost(value),
                "prefix" => TcpRule::Prefix(value),
                _ => TcpRule::Regex(value),
            }
        };
        rule.check()
            .map_err(|error| field.invalid(error.to_string()))?;
        if let Some((_, first)) = &found {
            return Err(field.invalid(format!(
                "no second match: `{first}` is set, and a TCP frontend carries one"
            )));
        }
        found = Some((rule, key));
    }
    Ok(found.map(|(rule, _)| rule))
}

/// Reads the content routing keys of a TCP listener into `config`; the script's file is read
/// now, so that the order carries its source.
pub(super) fn read_listener_keys(
    loader: &mut Loader,
    table: &mut Table<'_, '_>,
    config: &mut TcpListenerConfig,
) -> Result<(), ConfigError> {
    if let Some(bytes) = table.number("inspect_bytes", &rules::INSPECT_BYTES)? {
        config.inspect_bytes = bytes;
    }
    if let Some(timeout) = table.seconds("inspect_timeout", &rules::TIMEOUT)? {
        config.inspect_timeout = timeout;
    }
    if let Some(field) = table.field("script") {
        let name = field.string()?.to_string();
        let (_, source) = loader.files.read(field)?;
        config.script = Some(TcpScript {
            name,
            source: source.to_string(),
        });
    }
    Ok(())
}
