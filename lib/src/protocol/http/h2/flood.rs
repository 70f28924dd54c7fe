//! Flood defences of an HTTP/2 connection: counters of the frames a client can send in
//! bulk for almost no cost of its own, each with its limit from the listener's `h2_*`
//! settings.
//!
//! Per-window counters cover a window of one second and are halved (not zeroed) when a
//! window ends, so a client that bursts, waits a window and bursts again still adds up.
//! Lifetime counters never decay. A counter past its limit is a [`Cause`] for which the
//! connection sends GOAWAY with ENHANCE_YOUR_CALM.

use std::time::{Duration, Instant};

use sozu_command_lib::request::H2Config;

use super::error::Cause;

/// The length of a counting window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// The frames counted per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Windowed {
    /// RST_STREAM frames from the client.
    RstStream,
    /// PING frames (not acknowledgements).
    Ping,
    /// SETTINGS frames (not acknowledgements).
    Settings,
    /// DATA frames with no payload and no END_STREAM.
    EmptyData,
    /// WINDOW_UPDATE on stream 0.
    ConnectionWindowUpdate,
}

impl Windowed {
    fn index(self) -> usize {
        match self {
            Self::RstStream => 0,
            Self::Ping => 1,
            Self::Settings => 2,
            Self::EmptyData => 3,
            Self::ConnectionWindowUpdate => 4,
        }
    }

    fn limit(self, config: &H2Config) -> u32 {
        match self {
            Self::RstStream => config.max_rst_stream_per_window,
            Self::Ping => config.max_ping_per_window,
            Self::Settings => config.max_settings_per_window,
            Self::EmptyData => config.max_empty_data_per_window,
            Self::ConnectionWindowUpdate => config.max_window_update_stream0_per_window,
        }
    }

    fn cause(self) -> Cause {
        match self {
            Self::RstStream => Cause::RstStreamFlood,
            Self::Ping => Cause::PingFlood,
            Self::Settings => Cause::SettingsFlood,
            Self::EmptyData => Cause::EmptyDataFlood,
            Self::ConnectionWindowUpdate => Cause::WindowUpdateFlood,
        }
    }
}

/// The counters that never decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// Every RST_STREAM received.
    RstStream,
    /// RST_STREAM received for a stream whose response had not started (the Rapid Reset
    /// signature: the client makes the proxy work and cancels before any answer).
    AbusiveRstStream,
    /// RST_STREAM sent because of the client's errors (MadeYouReset makes the server
    /// reset streams instead of the client).
    EmittedRstStream,
    /// Protocol oddities that a correct client rarely causes: malformed requests,
    /// streams refused over the concurrency limit, frames for streams in the wrong state.
    Glitch,
}

impl Lifetime {
    fn index(self) -> usize {
        match self {
            Self::RstStream => 0,
            Self::AbusiveRstStream => 1,
            Self::EmittedRstStream => 2,
            Self::Glitch => 3,
        }
    }

    fn limit(self, config: &H2Config) -> u32 {
        match self {
            Self::RstStream => config.max_rst_stream_lifetime,
            Self::AbusiveRstStream => config.max_rst_stream_abusive_lifetime,
            Self::EmittedRstStream => config.max_rst_stream_emitted_lifetime,
            Self::Glitch => config.max_glitch_count,
        }
    }

    fn cause(self) -> Cause {
        match self {
            Self::RstStream => Cause::RstStreamLifetime,
            Self::AbusiveRstStream => Cause::AbusiveRstStream,
            Self::EmittedRstStream => Cause::EmittedRstStream,
            Self::Glitch => Cause::Glitches,
        }
    }
}

/// The counters of one connection.
#[derive(Clone, Debug)]
pub struct Flood {
    window_start: Instant,
    windowed: [u32; 5],
    lifetime: [u32; 4],
}

impl Flood {
    /// Counters at zero, the first window starting at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            windowed: [0; 5],
            lifetime: [0; 4],
        }
    }

    /// Counts one frame of `kind` at `now`; the cause when that passes the limit.
    pub fn record(&mut self, kind: Windowed, now: Instant, config: &H2Config) -> Result<(), Cause> {
        self.decay(now);
        let count = &mut self.windowed[kind.index()];
        *count = count.saturating_add(1);
        if *count > kind.limit(config) {
            return Err(kind.cause());
        }
        Ok(())
    }

    /// Counts one event of `kind`; the cause when that passes the limit.
    pub fn record_lifetime(&mut self, kind: Lifetime, config: &H2Config) -> Result<(), Cause> {
        let count = &mut self.lifetime[kind.index()];
        *count = count.saturating_add(1);
        if *count > kind.limit(config) {
            return Err(kind.cause());
        }
        Ok(())
    }

    /// How many events of `kind` were counted over the connection so far.
    pub fn lifetime(&self, kind: Lifetime) -> u32 {
        self.lifetime[kind.index()]
    }

    /// Halves every windowed counter once per window that ended before `now`.
    fn decay(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed < WINDOW {
            return;
        }
        let windows = elapsed.as_secs().min(32);
        for count in &mut self.windowed {
            *count = count
                .checked_shr(u32::try_from(windows).unwrap_or(32))
                .unwrap_or(0);
        }
        self.window_start = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windowed_counter_trips_one_past_its_limit() {
        let config = H2Config {
            max_ping_per_window: 3,
            ..H2Config::default()
        };
        let now = Instant::now();
        let mut flood = Flood::new(now);
        for _ in 0..3 {
            assert_eq!(flood.record(Windowed::Ping, now, &config), Ok(()));
        }
        assert_eq!(
            flood.record(Windowed::Ping, now, &config),
            Err(Cause::PingFlood)
        );
    }

    #[test]
    fn windowed_counter_halves_when_a_window_ends() {
        let config = H2Config {
            max_settings_per_window: 4,
            ..H2Config::default()
        };
        let start = Instant::now();
        let mut flood = Flood::new(start);
        for _ in 0..4 {
            assert_eq!(flood.record(Windowed::Settings, start, &config), Ok(()));
        }
        // One window later the count is 2: two more fit, the third trips.
        let later = start + WINDOW;
        assert_eq!(flood.record(Windowed::Settings, later, &config), Ok(()));
        assert_eq!(flood.record(Windowed::Settings, later, &config), Ok(()));
        assert_eq!(
            flood.record(Windowed::Settings, later, &config),
            Err(Cause::SettingsFlood)
        );
        // Many windows later everything has decayed.
        let much_later = later + WINDOW * 40;
        assert_eq!(
            flood.record(Windowed::Settings, much_later, &config),
            Ok(())
        );
    }

    #[test]
    fn lifetime_counter_never_decays() {
        let config = H2Config {
            max_rst_stream_emitted_lifetime: 2,
            ..H2Config::default()
        };
        let mut flood = Flood::new(Instant::now());
        assert_eq!(
            flood.record_lifetime(Lifetime::EmittedRstStream, &config),
            Ok(())
        );
        assert_eq!(
            flood.record_lifetime(Lifetime::EmittedRstStream, &config),
            Ok(())
        );
        assert_eq!(
            flood.record_lifetime(Lifetime::EmittedRstStream, &config),
            Err(Cause::EmittedRstStream)
        );
        assert_eq!(flood.lifetime(Lifetime::EmittedRstStream), 3);
    }
}
