//! The timeouts of a listener as one value: the defaults the configuration file gives every
//! listener, and what each session of a listener runs with.
//!
//! Orders and the state write a listener's timeouts as its own flat fields (`front_timeout`,
//! `back_timeout`, …, in seconds), whose JSON is an interface; [`Timeouts`] is how the rest of
//! the proxy reads and sets them together.

use std::time::Duration;

use super::{
    HttpListenerConfig, TcpListenerConfig, default_back_timeout, default_connect_timeout,
    default_front_timeout, default_request_timeout,
};

/// How long each phase of a proxied connection may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// How long a client connection may stay idle (`front_timeout`, default 60 seconds).
    pub front: Duration,
    /// How long a backend connection may stay idle while a response is awaited
    /// (`back_timeout`, default 30 seconds).
    pub back: Duration,
    /// How long connecting to a backend may take (`connect_timeout`, default 3 seconds).
    pub connect: Duration,
    /// How long a client may take to send a request's head (`request_timeout`, default 10
    /// seconds). TCP listeners have no such setting: their sessions take `front`.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            front: default_front_timeout(),
            back: default_back_timeout(),
            connect: default_connect_timeout(),
            request: default_request_timeout(),
        }
    }
}

impl HttpListenerConfig {
    /// The listener's timeouts.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            front: self.front_timeout,
            back: self.back_timeout,
            connect: self.connect_timeout,
            request: self.request_timeout,
        }
    }

    /// Sets the listener's four timeouts.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.front_timeout = timeouts.front;
        self.back_timeout = timeouts.back;
        self.connect_timeout = timeouts.connect;
        self.request_timeout = timeouts.request;
    }
}

impl TcpListenerConfig {
    /// The listener's timeouts. A TCP session reads no request head: `request` is the front
    /// timeout.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            front: self.front_timeout,
            back: self.back_timeout,
            connect: self.connect_timeout,
            request: self.front_timeout,
        }
    }

    /// Sets the listener's front, back and connect timeouts; `request` does not apply to TCP.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.front_timeout = timeouts.front;
        self.back_timeout = timeouts.back;
        self.connect_timeout = timeouts.connect;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_timeouts_read_back_what_was_set_and_tcp_requests_take_the_front_timeout() {
        let timeouts = Timeouts {
            front: Duration::from_secs(7),
            back: Duration::from_secs(8),
            connect: Duration::from_secs(9),
            request: Duration::from_secs(11),
        };
        let mut http = HttpListenerConfig::new("127.0.0.1:80".parse().unwrap());
        assert_eq!(http.timeouts(), Timeouts::default());
        http.set_timeouts(timeouts);
        assert_eq!(http.timeouts(), timeouts);
        let mut tcp = TcpListenerConfig::new("127.0.0.1:81".parse().unwrap());
        tcp.set_timeouts(timeouts);
        assert_eq!(
            tcp.timeouts(),
            Timeouts {
                request: timeouts.front,
                ..timeouts
            }
        );
    }
}
