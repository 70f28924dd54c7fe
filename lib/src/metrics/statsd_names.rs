//! The names Sōzu gives over StatsD to the figures this proxy counts under its own names, so
//! that dashboards built on Sōzu's lines keep working. `sozu metrics get --json` (Sōzu's
//! shapes) uses them too; `sozu metrics get` and Prometheus keep the proxy's own names;
//! doc/metrics.md has the whole table.

use std::borrow::Cow;

/// The level a figure is counted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The proxy as a whole.
    Proxy,
    /// One listener.
    Listener,
    /// One cluster.
    Cluster,
    /// One backend of a cluster.
    Backend,
}

/// Sōzu's StatsD name for one of our figures; a figure Sōzu has no name for keeps ours.
pub fn sozu_name(level: Level, name: &str) -> Cow<'_, str> {
    let renamed = match (level, name) {
        (Level::Proxy, "requests") => "http.requests",
        (Level::Proxy, "connections") => "listener.accepted.total",
        (Level::Proxy, "active_connections") => "client.connections",
        (Level::Backend, "active_connections") => "connections_per_backend",
        (Level::Backend, "up") => "backend.available",
        (Level::Cluster, "backends.up") => "cluster.available_backends",
        (_, "connect_failures") => "backend.connections.error",
        (_, "connect_time") => "backend_connection_time",
        (_, "first_byte_time") => "backend_response_time",
        (_, "response_time") => "request_time",
        _ => {
            if let Some(status) = name.strip_prefix("status.") {
                return Cow::Owned(format!("http.status.{status}"));
            }
            if let Some(code) = name.strip_prefix("proxy_answers.") {
                let kind = if code.starts_with('3') {
                    "redirection"
                } else {
                    "errors"
                };
                return Cow::Owned(format!("http.{code}.{kind}"));
            }
            return Cow::Borrowed(name);
        }
    };
    Cow::Borrowed(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_sozu() {
        for (level, ours, theirs) in [
            (Level::Proxy, "requests", "http.requests"),
            (Level::Cluster, "requests", "requests"),
            (Level::Proxy, "active_connections", "client.connections"),
            (
                Level::Backend,
                "active_connections",
                "connections_per_backend",
            ),
            (Level::Proxy, "status.2xx", "http.status.2xx"),
            (Level::Cluster, "status.503", "http.status.503"),
            (Level::Proxy, "proxy_answers.301", "http.301.redirection"),
            (Level::Proxy, "proxy_answers.404", "http.404.errors"),
            (Level::Cluster, "response_time", "request_time"),
            (Level::Backend, "first_byte_time", "backend_response_time"),
            (Level::Backend, "connect_time", "backend_connection_time"),
            (Level::Cluster, "backends.up", "cluster.available_backends"),
            (Level::Proxy, "bytes_in", "bytes_in"),
            (Level::Proxy, "hold.held", "hold.held"),
        ] {
            assert_eq!(sozu_name(level, ours), theirs, "{ours} at {level:?}");
        }
    }
}
