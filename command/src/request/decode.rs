//! Reading an [`Order`] from its JSON object without buffering it first.
//!
//! The JSON shape is serde's internal tagging: `{"type": "ADD_CLUSTER", "cluster_id": …}`. A
//! derived `Deserialize` for that shape reads the whole object into an intermediate tree before
//! it can look at `type`, then reads the order's fields from that tree: one allocation per
//! string and per field, for every order. The proxy (and `serde_json`, and every client that
//! serialises with serde) writes `type` first, so this decoder reads the first key: when it is
//! `type`, the order's fields are read straight from the rest of the object, with no tree.
//! When `type` comes later, the object is read into a [`serde_json::Value`] and decoded from
//! there, as before. Both give the same order for the same object.

use serde::{
    Deserialize, Deserializer,
    de::{self, Error, IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer},
};

use super::Order;

impl<'de> Deserialize<'de> for Order {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(OrderVisitor)
    }
}

/// Every `type` an order may have, for the message naming an unknown one.
const TYPES: &[&str] = &[
    "ADD_CLUSTER",
    "REMOVE_CLUSTER",
    "ADD_BACKEND",
    "REMOVE_BACKEND",
    "ADD_HTTP_FRONTEND",
    "REMOVE_HTTP_FRONTEND",
    "ADD_HTTPS_FRONTEND",
    "REMOVE_HTTPS_FRONTEND",
    "ADD_TCP_FRONTEND",
    "REMOVE_TCP_FRONTEND",
    "ADD_CERTIFICATE",
    "REPLACE_CERTIFICATE",
    "REMOVE_CERTIFICATE",
    "ADD_HTTP_LISTENER",
    "ADD_HTTPS_LISTENER",
    "ADD_TCP_LISTENER",
    "REMOVE_LISTENER",
    "ACTIVATE_LISTENER",
    "DEACTIVATE_LISTENER",
    "UPDATE_HTTP_LISTENER_CONFIG",
    "UPDATE_HTTPS_LISTENER_CONFIG",
    "UPDATE_TCP_LISTENER_CONFIG",
    "SET_MAX_CONNECTIONS_PER_IP",
    "SET_HEALTH_CHECK",
    "REMOVE_HEALTH_CHECK",
    "ADD_FAULT",
    "UPDATE_FAULT",
    "REMOVE_FAULT",
    "RESET_FAULTS",
    "STATUS",
    "LIST_WORKERS",
    "LIST_FRONTENDS",
    "LIST_LISTENERS",
    "QUERY_CLUSTER_BY_ID",
    "QUERY_CLUSTERS_BY_DOMAIN",
    "QUERY_CLUSTERS_HASHES",
    "QUERY_CLUSTERS_OF_WORKERS",
    "QUERY_CERTIFICATES_FROM_THE_STATE",
    "QUERY_CERTIFICATES_FROM_WORKERS",
    "QUERY_METRICS",
    "QUERY_MAX_CONNECTIONS_PER_IP",
    "QUERY_HEALTH_CHECKS",
    "COUNT_REQUESTS",
    "LIST_FAULTS",
    "SAVE_STATE",
    "LOAD_STATE",
    "RELOAD_CONFIGURATION",
    "UPGRADE_MAIN",
    "UPGRADE_WORKER",
    "LAUNCH_WORKER",
    "SOFT_STOP",
    "HARD_STOP",
    "CONFIGURE_METRICS",
    "LOGGING",
    "SUBSCRIBE_EVENTS",
    "REGISTER",
    "RENEW",
    "DEREGISTER",
    "LIST_REGISTRATIONS",
    "BEGIN_BATCH",
    "END_BATCH",
];

/// The order named `tag`, its fields read from `fields` (the object without its `type`).
/// Orders without fields ignore any, as serde's internal tagging does.
fn order_of<'de, D: Deserializer<'de>>(tag: &str, fields: D) -> Result<Order, D::Error> {
    let unit = |fields: D, order: Order| IgnoredAny::deserialize(fields).map(|_| order);
    Ok(match tag {
        "ADD_CLUSTER" => Order::AddCluster(Deserialize::deserialize(fields)?),
        "REMOVE_CLUSTER" => Order::RemoveCluster(Deserialize::deserialize(fields)?),
        "ADD_BACKEND" => Order::AddBackend(Deserialize::deserialize(fields)?),
        "REMOVE_BACKEND" => Order::RemoveBackend(Deserialize::deserialize(fields)?),
        "ADD_HTTP_FRONTEND" => Order::AddHttpFrontend(Deserialize::deserialize(fields)?),
        "REMOVE_HTTP_FRONTEND" => Order::RemoveHttpFrontend(Deserialize::deserialize(fields)?),
        "ADD_HTTPS_FRONTEND" => Order::AddHttpsFrontend(Deserialize::deserialize(fields)?),
        "REMOVE_HTTPS_FRONTEND" => Order::RemoveHttpsFrontend(Deserialize::deserialize(fields)?),
        "ADD_TCP_FRONTEND" => Order::AddTcpFrontend(Deserialize::deserialize(fields)?),
        "REMOVE_TCP_FRONTEND" => Order::RemoveTcpFrontend(Deserialize::deserialize(fields)?),
        "ADD_CERTIFICATE" => Order::AddCertificate(Deserialize::deserialize(fields)?),
        "REPLACE_CERTIFICATE" => Order::ReplaceCertificate(Deserialize::deserialize(fields)?),
        "REMOVE_CERTIFICATE" => Order::RemoveCertificate(Deserialize::deserialize(fields)?),
        "ADD_HTTP_LISTENER" => Order::AddHttpListener(Deserialize::deserialize(fields)?),
        "ADD_HTTPS_LISTENER" => Order::AddHttpsListener(Deserialize::deserialize(fields)?),
        "ADD_TCP_LISTENER" => Order::AddTcpListener(Deserialize::deserialize(fields)?),
        "REMOVE_LISTENER" => Order::RemoveListener(Deserialize::deserialize(fields)?),
        "ACTIVATE_LISTENER" => Order::ActivateListener(Deserialize::deserialize(fields)?),
        "DEACTIVATE_LISTENER" => Order::DeactivateListener(Deserialize::deserialize(fields)?),
        "UPDATE_HTTP_LISTENER_CONFIG" => {
            Order::UpdateHttpListenerConfig(Deserialize::deserialize(fields)?)
        }
        "UPDATE_HTTPS_LISTENER_CONFIG" => {
            Order::UpdateHttpsListenerConfig(Deserialize::deserialize(fields)?)
        }
        "UPDATE_TCP_LISTENER_CONFIG" => {
            Order::UpdateTcpListenerConfig(Deserialize::deserialize(fields)?)
        }
        "SET_MAX_CONNECTIONS_PER_IP" => {
            Order::SetMaxConnectionsPerIp(Deserialize::deserialize(fields)?)
        }
        "SET_HEALTH_CHECK" => Order::SetHealthCheck(Deserialize::deserialize(fields)?),
        "REMOVE_HEALTH_CHECK" => Order::RemoveHealthCheck(Deserialize::deserialize(fields)?),
        "ADD_FAULT" => Order::AddFault(Deserialize::deserialize(fields)?),
        "UPDATE_FAULT" => Order::UpdateFault(Deserialize::deserialize(fields)?),
        "REMOVE_FAULT" => Order::RemoveFault(Deserialize::deserialize(fields)?),
        "RESET_FAULTS" => unit(fields, Order::ResetFaults)?,
        "STATUS" => unit(fields, Order::Status)?,
        "LIST_WORKERS" => unit(fields, Order::ListWorkers)?,
        "LIST_FRONTENDS" => Order::ListFrontends(Deserialize::deserialize(fields)?),
        "LIST_LISTENERS" => unit(fields, Order::ListListeners)?,
        "QUERY_CLUSTER_BY_ID" => Order::QueryClusterById(Deserialize::deserialize(fields)?),
        "QUERY_CLUSTERS_BY_DOMAIN" => {
            Order::QueryClustersByDomain(Deserialize::deserialize(fields)?)
        }
        "QUERY_CLUSTERS_HASHES" => unit(fields, Order::QueryClustersHashes)?,
        "QUERY_CLUSTERS_OF_WORKERS" => {
            Order::QueryClustersOfWorkers(Deserialize::deserialize(fields)?)
        }
        "QUERY_CERTIFICATES_FROM_THE_STATE" => {
            Order::QueryCertificatesFromTheState(Deserialize::deserialize(fields)?)
        }
        "QUERY_CERTIFICATES_FROM_WORKERS" => {
            Order::QueryCertificatesFromWorkers(Deserialize::deserialize(fields)?)
        }
        "QUERY_METRICS" => Order::QueryMetrics(Deserialize::deserialize(fields)?),
        "QUERY_MAX_CONNECTIONS_PER_IP" => unit(fields, Order::QueryMaxConnectionsPerIp)?,
        "QUERY_HEALTH_CHECKS" => Order::QueryHealthChecks(Deserialize::deserialize(fields)?),
        "COUNT_REQUESTS" => unit(fields, Order::CountRequests)?,
        "LIST_FAULTS" => unit(fields, Order::ListFaults)?,
        "SAVE_STATE" => Order::SaveState(Deserialize::deserialize(fields)?),
        "LOAD_STATE" => Order::LoadState(Deserialize::deserialize(fields)?),
        "RELOAD_CONFIGURATION" => Order::ReloadConfiguration(Deserialize::deserialize(fields)?),
        "UPGRADE_MAIN" => unit(fields, Order::UpgradeMain)?,
        "UPGRADE_WORKER" => Order::UpgradeWorker(Deserialize::deserialize(fields)?),
        "LAUNCH_WORKER" => unit(fields, Order::LaunchWorker)?,
        "SOFT_STOP" => unit(fields, Order::SoftStop)?,
        "HARD_STOP" => unit(fields, Order::HardStop)?,
        "CONFIGURE_METRICS" => Order::ConfigureMetrics(Deserialize::deserialize(fields)?),
        "LOGGING" => Order::Logging(Deserialize::deserialize(fields)?),
        "SUBSCRIBE_EVENTS" => unit(fields, Order::SubscribeEvents)?,
        "REGISTER" => Order::Register(Deserialize::deserialize(fields)?),
        "RENEW" => Order::Renew(Deserialize::deserialize(fields)?),
        "DEREGISTER" => Order::Deregister(Deserialize::deserialize(fields)?),
        "LIST_REGISTRATIONS" => unit(fields, Order::ListRegistrations)?,
        "BEGIN_BATCH" => unit(fields, Order::BeginBatch)?,
        "END_BATCH" => unit(fields, Order::EndBatch)?,
        _ => return Err(D::Error::unknown_variant(tag, TYPES)),
    })
}

/// The first key of an order's object: `type`, or another, kept for the slow path.
enum FirstKey {
    Type,
    Other(String),
}

impl<'de> Deserialize<'de> for FirstKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = FirstKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: Error>(self, key: &str) -> Result<FirstKey, E> {
                Ok(match key {
                    "type" => FirstKey::Type,
                    other => FirstKey::Other(other.to_string()),
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

struct OrderVisitor;

impl<'de> Visitor<'de> for OrderVisitor {
    type Value = Order;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an order: an object with a `type`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Order, A::Error> {
        let first = match map.next_key::<FirstKey>()? {
            Some(FirstKey::Type) => {
                let tag: String = map.next_value()?;
                return order_of(&tag, MapAccessDeserializer::new(map));
            }
            Some(FirstKey::Other(key)) => key,
            None => return Err(A::Error::missing_field("type")),
        };
        let mut fields = serde_json::Map::new();
        fields.insert(first, map.next_value()?);
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            fields.insert(key, value);
        }
        let tag = match fields.remove("type") {
            Some(serde_json::Value::String(tag)) => tag,
            Some(other) => {
                return Err(A::Error::invalid_type(
                    de::Unexpected::Other(&other.to_string()),
                    &"a string",
                ));
            }
            None => return Err(A::Error::missing_field("type")),
        };
        order_of(&tag, serde_json::Value::Object(fields)).map_err(A::Error::custom)
    }
}

#[cfg(test)]
pub(in crate::request) mod tests {
    use std::path::Path;

    use super::*;
    use crate::{
        config::Config,
        request::{FaultName, MetricsConfiguration, Request, WorkerId},
    };

    /// Orders of every shape: those of a full configuration (listeners of each kind with
    /// their TLS settings and answers, clusters, frontends, backends, certificates), with
    /// orders without fields and orders holding an enumeration.
    pub(in crate::request) fn sample_orders() -> Vec<Order> {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let (config, _) = Config::load(&fixtures.join("sozu-2.1.toml")).expect("the fixture loads");
        let mut orders = config.orders();
        orders.extend([
            Order::Status,
            Order::ResetFaults,
            Order::BeginBatch,
            Order::EndBatch,
            Order::ConfigureMetrics(MetricsConfiguration::Clear),
            Order::RemoveFault(FaultName {
                name: "slow".to_string(),
            }),
            Order::UpgradeWorker(WorkerId { worker_id: 3 }),
        ]);
        orders
    }

    fn decode(json: &str) -> Result<Order, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn every_order_decodes_to_itself_with_type_first_or_last() {
        let orders = sample_orders();
        assert!(orders.len() > 20, "{} orders", orders.len());
        for order in orders {
            let json = serde_json::to_value(&order).expect("an order serialises");
            let serde_json::Value::Object(mut fields) = json.clone() else {
                panic!("{order} is not written as an object: {json}");
            };
            let text = serde_json::to_string(&order).expect("an order serialises");
            assert!(text.starts_with(r#"{"type":"#), "{text}");
            assert_eq!(decode(&text).expect("type first"), order, "{text}");
            // The same object with `type` last takes the slow path, to the same order.
            let tag = fields.remove("type").expect("the tag is written");
            let mut reordered = serde_json::Value::Object(fields).to_string();
            reordered.pop();
            let separator = if reordered.len() > 1 { "," } else { "" };
            let reordered = format!(r#"{reordered}{separator}"type":{tag}}}"#);
            assert_eq!(decode(&reordered).expect("type last"), order, "{reordered}");
        }
    }

    #[test]
    fn requests_decode_their_order_inside() {
        let request: Request = serde_json::from_str(
            r#"{"id":"1","order":{"type":"REMOVE_CLUSTER","cluster_id":"a"}}"#,
        )
        .expect("a request");
        assert_eq!(request.order.name(), "REMOVE_CLUSTER");
        let request: Request = serde_json::from_str(
            r#"{"order":{"cluster_id":"a","type":"REMOVE_CLUSTER"},"id":"1"}"#,
        )
        .expect("a request with `type` last");
        assert_eq!(request.order.name(), "REMOVE_CLUSTER");
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let error = decode(r#"{"type":"NOPE"}"#).unwrap_err().to_string();
        assert!(
            error.starts_with("unknown variant `NOPE`, expected one of `ADD_CLUSTER`"),
            "{error}"
        );
        let error = decode(r#"{"cluster_id":"a"}"#).unwrap_err().to_string();
        assert!(error.starts_with("missing field `type`"), "{error}");
        let error = decode(r#"{}"#).unwrap_err().to_string();
        assert!(error.starts_with("missing field `type`"), "{error}");
        let error = decode(r#"{"type":"REMOVE_CLUSTER","cluster_id":"a","extra":1}"#)
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `extra`"), "{error}");
        assert!(decode(r#"{"type":7}"#).is_err());
        assert!(decode(r#"{"cluster_id":"a","type":7}"#).is_err());
        assert!(decode(r#"["STATUS"]"#).is_err());
    }

    #[test]
    fn orders_without_fields_ignore_extra_ones_as_before() {
        assert_eq!(
            decode(r#"{"type":"STATUS","verbose":true}"#).unwrap(),
            Order::Status
        );
        assert_eq!(
            decode(r#"{"verbose":true,"type":"STATUS"}"#).unwrap(),
            Order::Status
        );
    }

    #[test]
    fn every_listed_type_is_decoded() {
        for tag in TYPES {
            let decoded = decode(&format!(r#"{{"type":"{tag}"}}"#));
            match decoded {
                Ok(order) => assert_eq!(order.name(), *tag),
                Err(error) => assert!(
                    !error.to_string().contains("unknown variant"),
                    "{tag}: {error}"
                ),
            }
        }
    }
}
