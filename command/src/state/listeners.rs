//! Listeners in the state: adding, removing (with their frontends and certificates),
//! activating and updating them.

use std::net::SocketAddr;

use super::{ConfigState, ListenerState, StateError};
use crate::request::{
    HttpListenerConfig, HttpsListenerConfig, ListenerAddress, ListenerType, TcpListenerConfig,
    UpdateHttpListener, UpdateHttpsListener, UpdateTcpListener,
};

impl ConfigState {
    pub(super) fn require_listener(
        &self,
        address: SocketAddr,
        kind: ListenerType,
    ) -> Result<(), StateError> {
        if self.listener_kind(address) == Some(kind) {
            Ok(())
        } else {
            Err(StateError::NoListener { address, kind })
        }
    }

    /// The kind of the listener on `address`, if any.
    pub fn listener_kind(&self, address: SocketAddr) -> Option<ListenerType> {
        if self.http_listeners.contains_key(&address) {
            Some(ListenerType::Http)
        } else if self.https_listeners.contains_key(&address) {
            Some(ListenerType::Https)
        } else if self.tcp_listeners.contains_key(&address) {
            Some(ListenerType::Tcp)
        } else {
            None
        }
    }

    pub(super) fn require_free_address(&self, address: SocketAddr) -> Result<(), StateError> {
        match self.listener_kind(address) {
            Some(existing) => Err(StateError::ListenerExists { address, existing }),
            None => Ok(()),
        }
    }

    pub(super) fn add_http_listener(
        &mut self,
        config: &HttpListenerConfig,
    ) -> Result<(), StateError> {
        self.require_free_address(config.address)?;
        self.http_listeners.insert(
            config.address,
            ListenerState {
                config: config.clone(),
                active: false,
            },
        );
        Ok(())
    }

    pub(super) fn add_https_listener(
        &mut self,
        config: &HttpsListenerConfig,
    ) -> Result<(), StateError> {
        let address = config.http.address;
        self.require_free_address(address)?;
        if let Some(certificate) = &config.tls.certificate {
            Self::inspect_certificate(address, certificate)?;
        }
        self.https_listeners.insert(
            address,
            ListenerState {
                config: config.clone(),
                active: false,
            },
        );
        Ok(())
    }

    pub(super) fn add_tcp_listener(
        &mut self,
        config: &TcpListenerConfig,
    ) -> Result<(), StateError> {
        self.require_free_address(config.address)?;
        self.tcp_listeners.insert(
            config.address,
            ListenerState {
                config: config.clone(),
                active: false,
            },
        );
        Ok(())
    }

    /// Removes a listener with its frontends and certificates.
    pub(super) fn remove_listener(&mut self, listener: &ListenerAddress) -> Result<(), StateError> {
        let address = listener.address;
        self.require_listener(address, listener.proxy)?;
        match listener.proxy {
            ListenerType::Http => {
                self.http_listeners.remove(&address);
                self.http_frontends
                    .retain(|frontend| frontend.address != address);
            }
            ListenerType::Https => {
                self.https_listeners.remove(&address);
                self.https_frontends
                    .retain(|frontend| frontend.address != address);
                self.certificates.remove(&address);
            }
            ListenerType::Tcp => {
                self.tcp_listeners.remove(&address);
                self.tcp_frontends.remove(&address);
            }
        }
        self.remove_listener_faults(address);
        Ok(())
    }

    pub(super) fn set_listener_active(
        &mut self,
        listener: &ListenerAddress,
        active: bool,
    ) -> Result<(), StateError> {
        let address = listener.address;
        let missing = || StateError::NoListener {
            address,
            kind: listener.proxy,
        };
        let flag = match listener.proxy {
            ListenerType::Http => self.http_listeners.get_mut(&address).map(|l| &mut l.active),
            ListenerType::Https => self
                .https_listeners
                .get_mut(&address)
                .map(|l| &mut l.active),
            ListenerType::Tcp => self.tcp_listeners.get_mut(&address).map(|l| &mut l.active),
        };
        *flag.ok_or_else(missing)? = active;
        Ok(())
    }

    pub(super) fn update_http_listener(
        &mut self,
        update: &UpdateHttpListener,
    ) -> Result<(), StateError> {
        let listener =
            self.http_listeners
                .get_mut(&update.address)
                .ok_or(StateError::NoListener {
                    address: update.address,
                    kind: ListenerType::Http,
                })?;
        update.http.apply(&mut listener.config);
        Ok(())
    }

    pub(super) fn update_https_listener(
        &mut self,
        update: &UpdateHttpsListener,
    ) -> Result<(), StateError> {
        if let Some(Some(certificate)) = &update.tls.certificate {
            Self::inspect_certificate(update.address, certificate)?;
        }
        let listener =
            self.https_listeners
                .get_mut(&update.address)
                .ok_or(StateError::NoListener {
                    address: update.address,
                    kind: ListenerType::Https,
                })?;
        update.http.apply(&mut listener.config.http);
        update.tls.apply(&mut listener.config.tls);
        Ok(())
    }

    pub(super) fn update_tcp_listener(
        &mut self,
        update: &UpdateTcpListener,
    ) -> Result<(), StateError> {
        let listener =
            self.tcp_listeners
                .get_mut(&update.address)
                .ok_or(StateError::NoListener {
                    address: update.address,
                    kind: ListenerType::Tcp,
                })?;
        update.apply(&mut listener.config);
        Ok(())
    }
}
