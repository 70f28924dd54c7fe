//! The stage of a TCP session before its pipe: it holds the client's bytes read so far and
//! decides where the connection goes, then hands those bytes to the pipe, which replays them
//! to the backend first.
//!
//! The listener's [`ContentRouter`] decides, asked again after every read. A listener with
//! only a default frontend and no script decides at once, before any byte is awaited:
//! protocols where the server speaks first work, and nothing waits. Otherwise the stage reads
//! until the router decides; once the inspection deadline passed, the client half-closed or
//! the buffer is full, the decision is `complete` and the router no longer waits.

use std::{net::SocketAddr, time::Duration};

use crate::{
    pool::Buffer,
    router::content::{ContentRouter, Verdict},
};

/// Deciding where a TCP connection goes.
pub struct Sniff {
    /// The client's bytes read so far (after a PROXY header, if one was expected).
    pub buffer: Buffer,
    /// The capacity of the kernel pipes of the pipe to build, when `splice` is set.
    pub splice: Option<usize>,
    /// How long the first bytes are awaited (the listener's `inspect_timeout`).
    pub inspect_timeout: Duration,
    /// Where the stage is in its inspection.
    pub inspection: Inspection,
}

/// How long the stage waits for more bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inspection {
    /// Nothing awaited yet: the deadline is not armed.
    Starting,
    /// Reading, until the deadline.
    Waiting,
    /// No more bytes will be awaited: the deadline passed or the client half-closed.
    Over,
}

impl Sniff {
    /// A stage holding `buffer`, the client's bytes read so far.
    pub fn new(buffer: Buffer, splice: Option<usize>, inspect_timeout: Duration) -> Sniff {
        Sniff {
            buffer,
            splice,
            inspect_timeout,
            inspection: Inspection::Starting,
        }
    }

    /// Whether no more bytes will be awaited.
    pub fn is_complete(&self) -> bool {
        self.inspection == Inspection::Over || self.buffer.is_full()
    }

    /// The inspection deadline passed: the router decides with the bytes it has.
    pub fn inspection_over(&mut self) {
        self.inspection = Inspection::Over;
    }

    /// Asks the listener's router where the connection of `peer` goes; without a router (the
    /// listener is gone) it closes.
    pub fn decide(&self, router: Option<&mut ContentRouter>, peer: SocketAddr) -> Verdict {
        match router {
            Some(router) => router.decide(self.buffer.data(), peer, self.is_complete()),
            None => Verdict::Close,
        }
    }
}

#[cfg(test)]
mod tests {
    use sozu_command_lib::request::{TcpFrontend, TcpListenerConfig, TcpRule};

    use std::rc::Rc;

    use super::*;
    use crate::pool::Pool;

    fn frontend(cluster: &str, rule: Option<TcpRule>) -> TcpFrontend {
        let mut frontend = TcpFrontend::new(cluster, "127.0.0.1:5000".parse().unwrap());
        frontend.rule = rule;
        frontend
    }

    #[test]
    fn a_default_alone_decides_before_any_byte_and_rules_wait() {
        let pool = Pool::new(1024, 1, 2);
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let config = TcpListenerConfig::new("127.0.0.1:5000".parse().unwrap());
        let mut sniff = Sniff::new(pool.checkout(), None, Duration::from_secs(2));

        let mut alone = ContentRouter::new(&config, &[frontend("tcp", None)]).unwrap();
        assert_eq!(
            sniff.decide(Some(&mut alone), peer),
            Verdict::Route(Rc::from("tcp"))
        );

        let prefix = TcpRule::Prefix("GET ".to_string());
        let mut ruled = ContentRouter::new(
            &config,
            &[frontend("tcp", None), frontend("web", Some(prefix))],
        )
        .unwrap();
        assert_eq!(sniff.decide(Some(&mut ruled), peer), Verdict::NeedMore);
        sniff.inspection = Inspection::Over;
        assert_eq!(
            sniff.decide(Some(&mut ruled), peer),
            Verdict::Route(Rc::from("tcp"))
        );
        assert_eq!(sniff.decide(None, peer), Verdict::Close);
    }
}
