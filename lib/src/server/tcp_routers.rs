//! The embedding program's [`TcpRouter`]s, registered on TCP listeners of a running worker.
//!
//! [`Server::tcp_routers`] hands out a [`TcpRouters`] handle, which may cross threads: a
//! registration goes through a channel and wakes the event loop, which gives the router to
//! the listener's [`ContentRouter`](crate::router::content::ContentRouter), in place of its
//! script. A router registered before its listener is added waits for it. Removing the
//! listener drops its router.

use std::{
    net::SocketAddr,
    sync::{Arc, mpsc},
};

use log::debug;
use mio::Waker;

use super::Server;
use crate::router::content::TcpRouter;

/// A router for a listener, on its way to the worker.
pub(super) type Registration = (SocketAddr, Box<dyn TcpRouter + Send>);

/// Registers the embedding program's routers on a running worker's TCP listeners. Cloned
/// freely; usable from any thread.
#[derive(Clone)]
pub struct TcpRouters {
    registrations: mpsc::Sender<Registration>,
    waker: Arc<Waker>,
}

/// Why a registration did not reach the worker.
#[derive(Debug, thiserror::Error)]
#[error("the worker is gone")]
pub struct WorkerGone;

impl TcpRouters {
    /// Makes `router` decide where connections accepted on the TCP listener at `listener` go
    /// (after the listener's rules, in place of its script), from the next connection on.
    pub fn register(
        &self,
        listener: SocketAddr,
        router: impl TcpRouter + Send + 'static,
    ) -> Result<(), WorkerGone> {
        self.registrations
            .send((listener, Box::new(router)))
            .map_err(|_| WorkerGone)?;
        self.waker.wake().map_err(|_| WorkerGone)
    }
}

impl Server {
    /// A handle to register routers on this worker's TCP listeners, before or while it runs.
    pub fn tcp_routers(&self) -> TcpRouters {
        TcpRouters {
            registrations: self.registrations_sender.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Gives the routers registered since the last wake to their listeners.
    pub(super) fn receive_registrations(&mut self) {
        while let Ok((listener, router)) = self.registrations.try_recv() {
            match self.content_routers.get_mut(&listener) {
                Some(content_router) => {
                    debug!("TCP listener {listener}: the program's router decides");
                    content_router.set_program(router);
                }
                None => {
                    debug!("TCP listener {listener}: the program's router waits for it");
                    self.waiting_programs.insert(listener, router);
                }
            }
        }
    }
}
