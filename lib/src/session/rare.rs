//! What few sessions have: a PROXY header to relay, a TCP route's decider (other than a
//! default frontend) or a script's `remote`. Boxed in [`SessionIo`], made when first set, so
//! that the others (an idle HTTP connection, a TCP connection to a default frontend) carry 8
//! bytes for it.

use super::{Decider, SessionIo};

/// The parts of a session that only some sessions use ([`SessionIo::rare_mut`]).
#[derive(Default)]
pub struct Rare {
    /// The raw PROXY header received, kept to relay it to the backend.
    pub received_proxy_header: Option<Vec<u8>>,
    /// The `host:port` a script chose instead of a cluster (TCP listeners).
    pub remote: Option<String>,
    /// What chose where a TCP connection went (a rule, `script` or `program`), for the access
    /// log; a default frontend is a flag of the session's own.
    decided_by: Option<Decider>,
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
        const DEFAULT: &Decider = &Decider::Default;
        match self.rare.as_ref().and_then(|rare| rare.decided_by.as_ref()) {
            Some(decider) => Some(decider),
            None => self.decided_by_default.then_some(DEFAULT),
        }
    }

    /// Records what chose where a TCP connection went. The default frontend, the decider of
    /// most connections, makes no rare parts.
    pub fn set_decided_by(&mut self, decider: &Decider) {
        if *decider == Decider::Default {
            self.decided_by_default = true;
        } else {
            self.rare_mut().decided_by = Some(decider.clone());
        }
    }
}
