//! The `[[faults]]` tables and the `[toxiproxy]` section.
//!
//! A `[[faults]]` table holds the same keys as the `fault` of an `ADD_FAULT` order (see
//! [`crate::request::Fault`]), read by the same code, so the file and the command socket
//! accept exactly the same faults; then each passes the order's rules.

use std::net::{Ipv4Addr, SocketAddr};

use super::{ConfigError, Loader, document::Field};
use crate::{
    request::{AddFault, Fault, Order},
    rules,
};

/// Keys of `[toxiproxy]`.
const TOXIPROXY_KEYS: &[&str] = &["address"];

/// Toxiproxy's own port, on the loopback interface.
pub const DEFAULT_TOXIPROXY_ADDRESS: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8474);

/// Every `[[faults]]` table, in file order; a bad one is recorded and left out.
pub(super) fn read_all(loader: &mut Loader, field: Field<'_, '_>) -> Vec<Fault> {
    let Some(items) = loader.keep(field.items()) else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let fault = item
                .deserialize::<Fault>("a fault (see doc/faults.md)")
                .and_then(|fault| check(item, fault));
            loader.keep(fault)
        })
        .collect()
}

fn check(item: Field<'_, '_>, fault: Fault) -> Result<Fault, ConfigError> {
    let order = Order::AddFault(AddFault {
        fault: fault.clone(),
    });
    rules::check_order(&order).map_err(|invalid| item.invalid(invalid.to_string()))?;
    Ok(fault)
}

/// The `[toxiproxy]` section: the address of the Toxiproxy-compatible API.
pub(super) fn toxiproxy(
    loader: &mut Loader,
    field: Field<'_, '_>,
) -> Result<SocketAddr, ConfigError> {
    let mut table = field.table("[toxiproxy]")?;
    loader.check_keys(&mut table, &[TOXIPROXY_KEYS]);
    let address = table.address("address")?;
    table.unused()?;
    Ok(address.unwrap_or(DEFAULT_TOXIPROXY_ADDRESS))
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use crate::{
        config::Config,
        request::{Effect, FaultTarget, Order},
        state::ConfigState,
    };

    const CLUSTER: &str = r#"
[clusters.api]
protocol = "http"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/"))
            .map(|(config, _)| config)
            .map_err(|errors| errors.to_string())
    }

    #[test]
    fn faults_of_the_file_become_the_last_orders() {
        let text = format!(
            r#"{CLUSTER}
[[faults]]
name = "slow-api"
cluster_id = "api"
type = "latency"
latency = 200
jitter = 20
probability = 0.5
ttl = 300
seed = 42

[[faults]]
name = "outage"
cluster_id = "api"
type = "http_error"
status = 503
body = "injected"
headers = [["Retry-After", "5"]]
path_prefix = "/v1"
"#
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.toxiproxy, None);
        let slow = &config.faults[0];
        assert_eq!(
            slow.target,
            FaultTarget::Cluster {
                cluster_id: "api".to_string()
            }
        );
        assert_eq!(
            slow.effect,
            Effect::Latency {
                latency: Duration::from_millis(200),
                jitter: Duration::from_millis(20)
            }
        );
        assert_eq!(slow.ttl, Some(Duration::from_secs(300)));
        let orders = config.orders();
        assert!(matches!(orders.last(), Some(Order::AddFault(add)) if add.fault.name == "outage"));
        let mut state = ConfigState::new();
        for order in &orders {
            state.apply(order).unwrap();
        }
        assert_eq!(state.faults.len(), 2);
    }

    #[test]
    fn bad_faults_of_the_file_name_their_line_and_problem() {
        let cases = [
            ("type = \"lag\"", "unknown fault type"),
            ("type = \"latency\"\nprobability = 1.5", "probability"),
            ("type = \"latency\"\nlatency = -3", "`latency` is -3"),
            ("type = \"latency\"\nttl = 10000000", "ttl"),
            ("type = \"latency\"\nlatncy = 3", "unknown field `latncy`"),
        ];
        for (keys, expected) in cases {
            let text =
                format!("{CLUSTER}\n[[faults]]\nname = \"f\"\ncluster_id = \"api\"\n{keys}\n");
            let error = parse(&text).unwrap_err();
            assert!(error.contains(expected), "{keys}: {error}");
            assert!(error.contains("`faults` at line 5"), "{keys}: {error}");
        }
    }

    #[test]
    fn toxiproxy_is_off_by_default_and_on_loopback_when_asked() {
        let config = parse("[toxiproxy]\n").unwrap();
        assert_eq!(config.toxiproxy, Some(super::DEFAULT_TOXIPROXY_ADDRESS));
        let config = parse("[toxiproxy]\naddress = \"127.0.0.2:9000\"\n").unwrap();
        assert_eq!(config.toxiproxy, Some("127.0.0.2:9000".parse().unwrap()));
    }
}
