//! The content routers of the worker's TCP listeners (issue 13), kept in step with the state:
//! an order that adds or removes a TCP listener or frontend, or changes a TCP listener's
//! settings, updates the router of that listener once the state took it.

use std::net::SocketAddr;

use log::error;
use sozu_command_lib::request::Order;

use super::Server;
use crate::router::content::ContentRouter;

impl Server {
    /// Updates the content routers an applied `order` touched.
    pub(super) fn sync_content_routers(&mut self, order: &Order) {
        match order {
            Order::AddTcpListener(config) => self.sync_content_router(config.address, false),
            Order::UpdateTcpListenerConfig(update) => {
                self.sync_content_router(update.address, true)
            }
            Order::AddTcpFrontend(frontend) | Order::RemoveTcpFrontend(frontend) => {
                self.sync_content_router(frontend.address, false)
            }
            Order::RemoveListener(listener) => {
                self.content_routers.remove(&listener.address);
            }
            // The state dropped the cluster's frontends.
            Order::RemoveCluster(_) => {
                let addresses: Vec<SocketAddr> = self.content_routers.keys().copied().collect();
                for address in addresses {
                    self.sync_content_router(address, false);
                }
            }
            _ => {}
        }
    }

    /// Gives the router of the TCP listener at `address` the state's frontends (and its
    /// settings when `settings` is set, or when the router is new).
    fn sync_content_router(&mut self, address: SocketAddr, settings: bool) {
        let Some(listener) = self.state.tcp_listeners.get(&address) else {
            self.content_routers.remove(&address);
            return;
        };
        let frontends = self
            .state
            .tcp_frontends
            .get(&address)
            .map_or(&[][..], Vec::as_slice);
        // The order was validated: its rules compile and its script loads.
        let result = match self.content_routers.get_mut(&address) {
            Some(router) => router.set_frontends(frontends).and_then(|()| {
                if settings {
                    router.set_config(&listener.config)
                } else {
                    Ok(())
                }
            }),
            None => ContentRouter::new(&listener.config, frontends).map(|mut router| {
                if let Some(program) = self.waiting_programs.remove(&address) {
                    router.set_program(program);
                }
                self.content_routers.insert(address, router);
            }),
        };
        if let Err(error) = result {
            error!(
                "content routing of TCP listener {address} disagrees with the state: {}",
                super::orders::error_chain(&error)
            );
        }
    }
}
