//! The stage of a TCP session before its pipe: it holds the client's bytes read so far and
//! decides where the connection goes, then hands those bytes to the pipe, which replays them
//! to the backend first.
//!
//! A TCP listener has one default cluster today, so the decision is taken at once, before any
//! byte is awaited: protocols where the server speaks first work, and nothing waits. Content
//! routing (rules on the first bytes) decides here later, possibly after more reads and
//! possibly for another cluster.

use sozu_command_lib::request::ProxyProtocolConfig;

use crate::pool::Buffer;

/// Deciding where a TCP connection goes.
pub struct Sniff {
    /// The client's bytes read so far (after a PROXY header, if one was expected).
    pub buffer: Buffer,
    /// The pipe to build once decided: the PROXY header the backend gets, and the capacity
    /// of kernel pipes when `splice` is set.
    pub to_backend: Option<ProxyProtocolConfig>,
    pub splice: Option<usize>,
}

/// Where the connection goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// To a backend of this cluster, the buffered bytes first.
    Route(String),
    /// Nowhere: close the connection.
    Close,
}

impl Sniff {
    /// Decides with the listener's default cluster, at once.
    pub fn decide(&self, default_cluster: Option<&str>) -> Decision {
        match default_cluster {
            Some(cluster_id) => Decision::Route(cluster_id.to_string()),
            None => Decision::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::Pool;

    #[test]
    fn the_default_cluster_is_chosen_at_once_and_none_closes() {
        let pool = Pool::new(1024, 1, 2);
        let sniff = Sniff {
            buffer: pool.checkout(),
            to_backend: None,
            splice: None,
        };
        assert_eq!(
            sniff.decide(Some("tcp")),
            Decision::Route("tcp".to_string())
        );
        assert_eq!(sniff.decide(None), Decision::Close);
    }
}
