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
use sozu_lib::{protocol::tls::KeyCheck, server::check};

use crate::cli::with_causes;

/// For each order, whether its certificate (if it brings one) has a key that decodes and
/// matches, with the message [`super::orders::apply_order`] would give otherwise.
///
/// The certificate orders, not the orders, are shared out among the cores: a configuration's
/// certificates come together (after its clusters and backends, before its frontends), so
/// equal shares of all orders gave every certificate to one core.
pub fn check_keys<'a>(orders: impl IntoIterator<Item = &'a Order>) -> Vec<Result<(), String>> {
    let orders: Vec<&Order> = orders.into_iter().collect();
    let cores = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let mut verdicts: Vec<Result<(), String>> = vec![Ok(()); orders.len()];
    let checked: Vec<(usize, Result<(), String>)> = thread::scope(|scope| {
        let parts: Vec<_> = certificate_shares(&orders, cores)
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(index, order)| (*index, check_key(order)))
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
            .collect()
    });
    for (index, verdict) in checked {
        if let Some(slot) = verdicts.get_mut(index) {
            *slot = verdict;
        }
    }
    verdicts
}

/// The orders that bring a certificate, with their index, in at most `cores` shares of
/// nearly equal length.
fn certificate_shares<'a>(orders: &[&'a Order], cores: usize) -> Vec<Vec<(usize, &'a Order)>> {
    let certificates: Vec<(usize, &Order)> = orders
        .iter()
        .enumerate()
        .filter(|(_, order)| {
            matches!(
                order,
                Order::AddCertificate(_) | Order::ReplaceCertificate(_)
            )
        })
        .map(|(index, order)| (index, *order))
        .collect();
    let share = certificates.len().div_ceil(cores.max(1)).max(1);
    certificates
        .chunks(share)
        .map(<[(usize, &Order)]>::to_vec)
        .collect()
}

/// A certificate's check does not depend on the state.
fn check_key(order: &Order) -> Result<(), String> {
    check(&ConfigState::new(), order, KeyCheck::PublicPart).map_err(|error| with_causes(&error))
}

/// [`super::orders::apply_order`] for an order whose certificate key [`check_keys`] passed.
pub fn apply_order_with_checked_keys(state: &mut ConfigState, order: &Order) -> Result<(), String> {
    check_with_checked_keys(state, order)?;
    state.apply(order).map_err(|error| with_causes(&error))
}

/// The check of [`apply_order_with_checked_keys`], for a caller that then applies the order
/// itself.
pub fn check_with_checked_keys(state: &ConfigState, order: &Order) -> Result<(), String> {
    check(state, order, KeyCheck::OnFirstUse).map_err(|error| with_causes(&error))
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

    /// Issue 17: a configuration's certificates come together, and equal shares of all its
    /// orders gave them all to the first core.
    #[test]
    fn certificates_are_shared_out_among_the_cores() {
        let other = Order::RemoveCluster(ClusterId {
            cluster_id: "a".to_string(),
        });
        let certificate = add_certificate(LOCALHOST_KEY);
        let mut orders = vec![&other; 2];
        orders.extend([&certificate; 4]);
        orders.extend([&other; 10]);
        let shares = certificate_shares(&orders, 2);
        let indexes: Vec<Vec<usize>> = shares
            .iter()
            .map(|share| share.iter().map(|(index, _)| *index).collect())
            .collect();
        assert_eq!(indexes, [vec![2, 3], vec![4, 5]]);
        assert!(certificate_shares(&[&other], 2).is_empty());
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
