//! Running active health checks from the event loop: starting due probes, reading their
//! sockets, and applying verdicts to the backends ([`crate::health`] holds the probe itself).

use std::time::Instant;

use log::{debug, warn};
use mio::{Interest, Token};
use sozu_command_lib::request::HealthCheckConfig;

use super::{Owner, Server};
use crate::{
    backends::BackendKey,
    health::{HealthRecord, Probe, ProbeOutcome, ProbeProtocol},
    timer,
};

impl Server {
    /// Starts the probes that are due and fails those past their timeout.
    pub(super) fn run_health_checks(&mut self, now: Instant) {
        let expired: Vec<usize> = self
            .probes
            .iter()
            .filter(|(_, probe)| probe.deadline <= now)
            .map(|(slot, _)| slot)
            .collect();
        for slot in expired {
            self.finish_probe(slot, ProbeOutcome::Unhealthy("timed out".to_string()));
        }
        let checked: Vec<(String, HealthCheckConfig, ProbeProtocol)> = self
            .state
            .clusters
            .values()
            .filter_map(|cluster| {
                let protocol = if cluster.http2 {
                    ProbeProtocol::H2c
                } else {
                    ProbeProtocol::Http1
                };
                Some((
                    cluster.cluster_id.clone(),
                    cluster.health_check.clone()?,
                    protocol,
                ))
            })
            .collect();
        for (cluster_id, check, protocol) in checked {
            for (backend, address) in self.backends.probe_targets(&cluster_id) {
                let record = self.health.entry(backend).or_default();
                if record.in_flight.is_some() || record.next_at.is_some_and(|at| at > now) {
                    continue;
                }
                record.next_at = Some(timer::later(now, check.interval));
                self.start_probe(backend, address, &check, protocol, now);
            }
        }
        // Records of backends that are gone.
        let backends = &self.backends;
        self.health
            .retain(|key, record| record.in_flight.is_some() || backends.get(*key).is_some());
    }

    fn start_probe(
        &mut self,
        backend: BackendKey,
        address: std::net::SocketAddr,
        check: &HealthCheckConfig,
        protocol: ProbeProtocol,
        now: Instant,
    ) {
        let slot = self.probes.vacant_entry();
        let probe_slot = slot.key();
        let token = Token(self.sockets.insert(Owner::Probe(probe_slot)));
        let mut probe = match Probe::start(backend, address, check, protocol, token, now) {
            Ok(probe) => probe,
            Err(error) => {
                self.sockets.remove(token.0);
                self.count_probe(backend, false, &format!("connect failed: {error}"));
                return;
            }
        };
        if let Err(error) = self.poll.registry().register(
            &mut probe.stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!("cannot register a health check of {address}: {error}");
            self.sockets.remove(token.0);
            return;
        }
        slot.insert(probe);
        if let Some(record) = self.health.get_mut(&backend) {
            record.in_flight = Some(probe_slot);
        }
    }

    /// An event on a probe's socket.
    pub(super) fn probe_event(&mut self, slot: usize) {
        let Some(probe) = self.probes.get_mut(slot) else {
            return;
        };
        let outcome = probe.ready();
        if outcome != ProbeOutcome::Pending {
            self.finish_probe(slot, outcome);
        }
    }

    fn finish_probe(&mut self, slot: usize, outcome: ProbeOutcome) {
        let Some(mut probe) = self.probes.try_remove(slot) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut probe.stream);
        self.sockets.try_remove(probe.token.0);
        if let Some(record) = self.health.get_mut(&probe.backend) {
            record.in_flight = None;
        }
        match outcome {
            ProbeOutcome::Healthy => self.count_probe(probe.backend, true, ""),
            ProbeOutcome::Unhealthy(reason) => self.count_probe(probe.backend, false, &reason),
            ProbeOutcome::Pending => {}
        }
    }

    /// Counts a probe's verdict and moves the backend in or out when a threshold is crossed.
    fn count_probe(&mut self, backend: BackendKey, healthy: bool, reason: &str) {
        let Some(current) = self.backends.get(backend) else {
            return;
        };
        let currently_healthy = current.healthy;
        let Some(check) = self
            .state
            .clusters
            .get(&current.cluster_id)
            .and_then(|cluster| cluster.health_check.clone())
        else {
            return;
        };
        let record: &mut HealthRecord = self.health.entry(backend).or_default();
        if let Some(now_healthy) = record.count(healthy, &check, currently_healthy) {
            debug!("health check of backend {backend:?}: healthy {now_healthy} ({reason})");
            self.backends.set_healthy(backend, now_healthy, reason);
        }
    }
}
