//! The SNI certificates of HTTPS listeners: `ADD_CERTIFICATE`, `REPLACE_CERTIFICATE`,
//! `REMOVE_CERTIFICATE`, and their listing.

use std::{net::SocketAddr, sync::Arc};

use super::{CertificateState, ConfigState, StateError};
use crate::{
    certificate::{self, CertificateFacts},
    request::{
        AddCertificate, CertificateAndKey, CertificateFilters, ListenerType, RemoveCertificate,
        ReplaceCertificate,
    },
    response::CertificateSummary,
};

impl ConfigState {
    pub(super) fn inspect_certificate(
        address: SocketAddr,
        certificate: &CertificateAndKey,
    ) -> Result<CertificateFacts, StateError> {
        certificate::inspect(certificate)
            .map_err(|source| StateError::Certificate { address, source })
    }

    /// The facts of `certificate`: `known` when the caller read them, else read now.
    fn facts_of(
        address: SocketAddr,
        certificate: &CertificateAndKey,
        known: Option<CertificateFacts>,
    ) -> Result<CertificateFacts, StateError> {
        match known {
            Some(facts) => Ok(facts),
            None => Self::inspect_certificate(address, certificate),
        }
    }

    /// Adds the certificate of `add`, with its facts when `known`, and kept as `shared` when
    /// given (equal to the order's) instead of a copy.
    pub(super) fn add_certificate(
        &mut self,
        add: &AddCertificate,
        known: Option<CertificateFacts>,
        shared: Option<Arc<CertificateAndKey>>,
    ) -> Result<(), StateError> {
        self.require_listener(add.address, ListenerType::Https)?;
        let facts = Self::facts_of(add.address, &add.certificate, known)?;
        let certificates = self.certificates.entry(add.address).or_default();
        if certificates.contains_key(&facts.fingerprint) {
            return Err(StateError::CertificateExists {
                address: add.address,
                fingerprint: facts.fingerprint,
            });
        }
        certificates.insert(
            facts.fingerprint,
            CertificateState {
                certificate: shared.unwrap_or_else(|| Arc::new(add.certificate.clone())),
                allow_expired: add.allow_expired,
                names: facts.names,
                not_after: facts.not_after,
            },
        );
        Ok(())
    }

    /// Swaps the certificate `replace` names for its new one, as [`Self::add_certificate`]
    /// adds it.
    pub(super) fn replace_certificate(
        &mut self,
        replace: &ReplaceCertificate,
        known: Option<CertificateFacts>,
        shared: Option<Arc<CertificateAndKey>>,
    ) -> Result<(), StateError> {
        let address = replace.address;
        self.require_listener(address, ListenerType::Https)?;
        let facts = Self::facts_of(address, &replace.new_certificate, known)?;
        let no_old = || StateError::NoCertificate {
            address,
            fingerprint: replace.old_fingerprint.clone(),
        };
        let certificates = self.certificates.get_mut(&address).ok_or_else(no_old)?;
        if !certificates.contains_key(&replace.old_fingerprint) {
            return Err(no_old());
        }
        if facts.fingerprint != replace.old_fingerprint
            && certificates.contains_key(&facts.fingerprint)
        {
            return Err(StateError::CertificateExists {
                address,
                fingerprint: facts.fingerprint,
            });
        }
        certificates.remove(&replace.old_fingerprint);
        certificates.insert(
            facts.fingerprint,
            CertificateState {
                certificate: shared.unwrap_or_else(|| Arc::new(replace.new_certificate.clone())),
                allow_expired: replace.allow_expired,
                names: facts.names,
                not_after: facts.not_after,
            },
        );
        Ok(())
    }

    pub(super) fn remove_certificate(
        &mut self,
        remove: &RemoveCertificate,
    ) -> Result<(), StateError> {
        let missing = || StateError::NoCertificate {
            address: remove.address,
            fingerprint: remove.fingerprint.clone(),
        };
        let certificates = self
            .certificates
            .get_mut(&remove.address)
            .ok_or_else(missing)?;
        certificates
            .remove(&remove.fingerprint)
            .ok_or_else(missing)?;
        if certificates.is_empty() {
            self.certificates.remove(&remove.address);
        }
        Ok(())
    }

    /// The certificates that pass `filters`: a fingerprint, and a part of one of their names.
    pub fn certificate_summaries(&self, filters: &CertificateFilters) -> Vec<CertificateSummary> {
        self.certificates
            .iter()
            .flat_map(|(address, certificates)| {
                certificates
                    .iter()
                    .map(move |(fingerprint, certificate)| (address, fingerprint, certificate))
            })
            .filter(|(_, fingerprint, _)| {
                filters
                    .fingerprint
                    .as_ref()
                    .is_none_or(|wanted| wanted == *fingerprint)
            })
            .filter(|(_, _, certificate)| {
                filters.domain.as_ref().is_none_or(|domain| {
                    certificate
                        .names
                        .iter()
                        .any(|name| name.contains(domain.as_str()))
                })
            })
            .map(|(address, fingerprint, certificate)| CertificateSummary {
                address: *address,
                fingerprint: fingerprint.clone(),
                names: certificate.names.clone(),
                not_after: Some(certificate.not_after),
                pem: filters
                    .full
                    .then(|| CertificateAndKey::clone(&certificate.certificate)),
            })
            .collect()
    }
}
