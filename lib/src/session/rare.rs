//! What few sessions have: a PROXY header to relay, a TCP route's decider or a script's
//! `remote`. Boxed in [`SessionIo`], made when first set, so that the others (an idle HTTP
//! connection) carry 8 bytes for it.

use super::{Decider, SessionIo};

/// The parts of a session that only some sessions use ([`SessionIo::rare_mut`]).
#[derive(Default)]
pub struct Rare {
    /// The raw PROXY header received, kept to relay it to the backend.
    pub received_proxy_header: Option<Vec<u8>>,
    /// The `host:port` a script chose instead of a cluster (TCP listeners).
    pub remote: Option<String>,
    /// What chose where a TCP connection went (a rule, `script`, `program`, `default`), for
    /// the access log.
    pub decided_by: Option<Decider>,
}

impl SessionIo {
    /// The session's rarely used parts, made when first set.
    pub fn rare_mut(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The raw PROXY header received, kept to relay it to the backend.
    pub fn received_proxy_header(&self) -> Option<&Vec<u8>> {
        self.rare.as_ref()?.received_proxy_header.as_ref()
    }

    /// The `host:port` a script chose instead of a cluster (TCP listeners).
    pub fn remote(&self) -> Option<&String> {
        self.rare.as_ref()?.remote.as_ref()
    }

    /// What chose where a TCP connection went, for the access log.
    pub fn decided_by(&self) -> Option<&Decider> {
        self.rare.as_ref()?.decided_by.as_ref()
    }
}
