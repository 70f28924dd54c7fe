//! The main process's check of certificate keys, on every core at once.
//!
//! The main process decodes the private key of every certificate order and checks it against
//! its certificate before its state takes the order, so that a bad pair is refused with the
//! order; the workers then decode each key at its first handshake only
//! ([`KeyCheck::OnFirstUse`]). With thousands of certificates (a start, a reload, a state
//! load) this check is most of the main process's work: [`check_keys`] spreads it over the
//! cores, then [`apply_order_with_checked_keys`] applies each order without checking its key
//! again.

use std::{num::NonZeroUsize, thread};

use sozu_command_lib::{request::Order, state::ConfigState};
use sozu_lib::{protocol::tls::KeyCheck, server::validate};

use crate::cli::with_causes;

/// For each order, whether its certificate (if it brings one) has a key that decodes and
/// matches, with the message [`super::orders::apply_order`] would give otherwise.
pub fn check_keys<'a>(orders: impl IntoIterator<Item = &'a Order>) -> Vec<Result<(), String>> {
    let orders: Vec<&Order> = orders.into_iter().collect();
    let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let share = orders.len().div_ceil(cores).max(1);
    thread::scope(|scope| {
        let parts: Vec<_> = orders
            .chunks(share)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|order| check_key(order))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|part| {
                part.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Vec<Result<(), String>>>()
    })
}

fn check_key(order: &Order) -> Result<(), String> {
    match order {
        // A certificate's check does not depend on the state.
        Order::AddCertificate(_) | Order::ReplaceCertificate(_) => {
            validate(&ConfigState::new(), order, KeyCheck::Now)
                .map(|_| ())
                .map_err(|error| with_causes(&error))
        }
        _ => Ok(()),
    }
}

/// [`super::orders::apply_order`] for an order whose certificate key [`check_keys`] passed.
pub fn apply_order_with_checked_keys(state: &mut ConfigState, order: &Order) -> Result<(), String> {
    validate(state, order, KeyCheck::OnFirstUse).map_err(|error| with_causes(&error))?;
    state.apply(order).map_err(|error| with_causes(&error))
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::request::{AddCertificate, CertificateAndKey, ClusterId, Order};

    use super::*;

    const LOCALHOST: &str = include_str!("../../../command/tests/fixtures/localhost.pem");
    const LOCALHOST_KEY: &str = include_str!("../../../command/tests/fixtures/localhost.key");
    const EXAMPLE_KEY: &str = include_str!("../../../command/tests/fixtures/example.key");

    fn add_certificate(key: &str) -> Order {
        Order::AddCertificate(AddCertificate {
            address: "127.0.0.1:8443".parse().expect("an address"),
            certificate: CertificateAndKey::new(LOCALHOST, key),
            allow_expired: true,
        })
    }

    #[test]
    fn each_order_gets_its_own_verdict_in_order() {
        let other = Order::RemoveCluster(ClusterId {
            cluster_id: "a".to_string(),
        });
        let mut orders = Vec::new();
        for index in 0..9 {
            orders.push(match index % 3 {
                0 => add_certificate(LOCALHOST_KEY),
                1 => add_certificate(EXAMPLE_KEY),
                _ => other.clone(),
            });
        }
        let verdicts = check_keys(&orders);
        assert_eq!(verdicts.len(), orders.len());
        for (index, verdict) in verdicts.iter().enumerate() {
            match index % 3 {
                1 => assert!(
                    verdict
                        .as_ref()
                        .is_err_and(|message| message.contains("does not match")),
                    "{index}: {verdict:?}"
                ),
                _ => assert!(verdict.is_ok(), "{index}: {verdict:?}"),
            }
        }
    }
}
