//! HTTP/2 settings of HTTP and HTTPS listeners: the flood limits and the tuning of the
//! `h2_*` configuration keys, and the patch that changes them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{optional_seconds, seconds};

/// HTTP/2 settings of a listener. Each limit, when passed, ends the connection with GOAWAY
/// (ENHANCE_YOUR_CALM) and counts in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct H2Config {
    /// `h2_max_rst_stream_per_window` [100]: RST_STREAM frames received per one-second window (Rapid Reset, CVE-2023-44487).
    pub max_rst_stream_per_window: u32,
    /// `h2_max_ping_per_window` [100]: PING frames received per window (CVE-2019-9512).
    pub max_ping_per_window: u32,
    /// `h2_max_settings_per_window` [50]: SETTINGS frames received per window (CVE-2019-9515).
    pub max_settings_per_window: u32,
    /// `h2_max_empty_data_per_window` [100]: DATA frames without data nor END_STREAM per window (CVE-2019-9518).
    pub max_empty_data_per_window: u32,
    /// `h2_max_window_update_stream0_per_window` [100]: WINDOW_UPDATE frames on stream 0 per window.
    pub max_window_update_stream0_per_window: u32,
    /// `h2_max_continuation_frames` [20]: CONTINUATION frames in one header block (CVE-2024-27316).
    pub max_continuation_frames: u32,
    /// `h2_max_glitch_count` [100]: protocol glitches over the connection's life.
    pub max_glitch_count: u32,
    /// `h2_max_rst_stream_lifetime` [10000]: RST_STREAM frames received over the connection's life.
    pub max_rst_stream_lifetime: u32,
    /// `h2_max_rst_stream_abusive_lifetime` [50]: streams reset by the client before their response started.
    pub max_rst_stream_abusive_lifetime: u32,
    /// `h2_max_rst_stream_emitted_lifetime` [500]: streams reset by the proxy for the client's errors (MadeYouReset, CVE-2025-8671).
    pub max_rst_stream_emitted_lifetime: u32,
    /// `h2_initial_connection_window` [1048576]: the connection's receive window, in bytes.
    pub initial_connection_window: u32,
    /// `h2_max_concurrent_streams` [100]: streams a client may have open at once.
    pub max_concurrent_streams: u32,
    /// `h2_stream_shrink_ratio` [2]: how much larger than needed the stream table may stay before it is shrunk.
    pub stream_shrink_ratio: u32,
    /// `h2_max_header_list_size` [65536]: decoded size of a header list (RFC 9113 §6.5.2), and raw size of a header block.
    pub max_header_list_size: u32,
    /// `h2_max_header_table_size` [65536]: HPACK dynamic table size the client may use.
    pub max_header_table_size: u32,
    /// `h2_max_header_fields` [128]: header fields in one header list.
    pub max_header_fields: u32,
    /// `h2_stream_idle_timeout_seconds`: how long a stream may see no frame, or wait on a
    /// closed flow-control window, before it is reset; `None` means the larger of 30 seconds
    /// and the listener's back timeout.
    #[serde(with = "optional_seconds", skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<Duration>,
    /// `h2_graceful_shutdown_deadline_seconds` [5]: how long streams may finish after the
    /// GOAWAY of a soft stop; zero waits for them without a deadline.
    #[serde(with = "seconds")]
    pub graceful_shutdown_deadline: Duration,
}

impl Default for H2Config {
    fn default() -> Self {
        H2Config {
            max_rst_stream_per_window: 100,
            max_ping_per_window: 100,
            max_settings_per_window: 50,
            max_empty_data_per_window: 100,
            max_window_update_stream0_per_window: 100,
            max_continuation_frames: 20,
            max_glitch_count: 100,
            max_rst_stream_lifetime: 10_000,
            max_rst_stream_abusive_lifetime: 50,
            max_rst_stream_emitted_lifetime: 500,
            initial_connection_window: 1_048_576,
            max_concurrent_streams: 100,
            stream_shrink_ratio: 2,
            max_header_list_size: 65_536,
            max_header_table_size: 65_536,
            max_header_fields: 128,
            stream_idle_timeout: None,
            graceful_shutdown_deadline: Duration::from_secs(5),
        }
    }
}

/// Each numeric key and the field of [`H2Config`] and [`H2Patch`] it names, written once: it
/// makes the list [`H2_NUMBER_KEYS`], and for both types `number_mut` (the field of a key) and
/// `numbers` (every key with its value).
macro_rules! numeric_keys {
    ($($key:literal => $field:ident,)*) => {
        /// The numeric `h2_*` keys, as the configuration file and the `--h2-*` flags name them.
        pub const H2_NUMBER_KEYS: [&str; 16] = [$($key),*];

        impl H2Config {
            /// The value of a numeric key of [`H2_NUMBER_KEYS`], `None` for another name.
            pub fn number_mut(&mut self, key: &str) -> Option<&mut u32> {
                Some(match key {
                    $($key => &mut self.$field,)*
                    _ => return None,
                })
            }

            /// Every numeric key with its value.
            pub fn numbers(&self) -> [(&'static str, u32); 16] {
                [$(($key, self.$field)),*]
            }
        }

        impl H2Patch {
            /// The value a numeric key of [`H2_NUMBER_KEYS`] is set to, `None` for another
            /// name.
            pub fn number_mut(&mut self, key: &str) -> Option<&mut Option<u32>> {
                Some(match key {
                    $($key => &mut self.$field,)*
                    _ => return None,
                })
            }

            /// Every numeric key with the value it is set to.
            pub fn numbers(&self) -> [(&'static str, Option<u32>); 16] {
                [$(($key, self.$field)),*]
            }
        }
    };
}

numeric_keys! {
    "h2_max_rst_stream_per_window" => max_rst_stream_per_window,
    "h2_max_ping_per_window" => max_ping_per_window,
    "h2_max_settings_per_window" => max_settings_per_window,
    "h2_max_empty_data_per_window" => max_empty_data_per_window,
    "h2_max_window_update_stream0_per_window" => max_window_update_stream0_per_window,
    "h2_max_continuation_frames" => max_continuation_frames,
    "h2_max_glitch_count" => max_glitch_count,
    "h2_max_rst_stream_lifetime" => max_rst_stream_lifetime,
    "h2_max_rst_stream_abusive_lifetime" => max_rst_stream_abusive_lifetime,
    "h2_max_rst_stream_emitted_lifetime" => max_rst_stream_emitted_lifetime,
    "h2_initial_connection_window" => initial_connection_window,
    "h2_max_concurrent_streams" => max_concurrent_streams,
    "h2_stream_shrink_ratio" => stream_shrink_ratio,
    "h2_max_header_list_size" => max_header_list_size,
    "h2_max_header_table_size" => max_header_table_size,
    "h2_max_header_fields" => max_header_fields,
}

impl H2Config {
    /// Whether every setting is at its default (the listener's JSON then leaves `h2` out).
    pub fn is_default(&self) -> bool {
        *self == H2Config::default()
    }

    /// The stream idle timeout for a listener whose back timeout is `back_timeout`.
    pub fn stream_idle_timeout(&self, back_timeout: Duration) -> Duration {
        self.stream_idle_timeout
            .unwrap_or_else(|| back_timeout.max(Duration::from_secs(30)))
    }
}

/// Changes to a listener's HTTP/2 settings; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct H2Patch {
    /// New `max_rst_stream_per_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rst_stream_per_window: Option<u32>,
    /// New `max_ping_per_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ping_per_window: Option<u32>,
    /// New `max_settings_per_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_settings_per_window: Option<u32>,
    /// New `max_empty_data_per_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_empty_data_per_window: Option<u32>,
    /// New `max_window_update_stream0_per_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_window_update_stream0_per_window: Option<u32>,
    /// New `max_continuation_frames`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_continuation_frames: Option<u32>,
    /// New `max_glitch_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_glitch_count: Option<u32>,
    /// New `max_rst_stream_lifetime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rst_stream_lifetime: Option<u32>,
    /// New `max_rst_stream_abusive_lifetime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rst_stream_abusive_lifetime: Option<u32>,
    /// New `max_rst_stream_emitted_lifetime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rst_stream_emitted_lifetime: Option<u32>,
    /// New `initial_connection_window`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_connection_window: Option<u32>,
    /// New `max_concurrent_streams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    /// New `stream_shrink_ratio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_shrink_ratio: Option<u32>,
    /// New `max_header_list_size`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_list_size: Option<u32>,
    /// New `max_header_table_size`, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_table_size: Option<u32>,
    /// New `max_header_fields`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_fields: Option<u32>,
    /// New stream idle timeout, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub stream_idle_timeout: Option<Duration>,
    /// New graceful shutdown deadline, in seconds.
    #[serde(
        default,
        with = "optional_seconds",
        skip_serializing_if = "Option::is_none"
    )]
    pub graceful_shutdown_deadline: Option<Duration>,
}

impl H2Patch {
    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == H2Patch::default()
    }

    /// Writes the patch's values into `config`, leaving the fields it does not set.
    pub fn apply(&self, config: &mut H2Config) {
        for (key, value) in self.numbers() {
            if let (Some(value), Some(field)) = (value, config.number_mut(key)) {
                *field = value;
            }
        }
        if let Some(timeout) = self.stream_idle_timeout {
            config.stream_idle_timeout = Some(timeout);
        }
        if let Some(deadline) = self.graceful_shutdown_deadline {
            config.graceful_shutdown_deadline = deadline;
        }
    }

    /// The patch that turns `old` into `new`. A stream idle timeout that goes back to the
    /// default cannot be written as a patch, and is left as it is.
    pub fn between(old: &H2Config, new: &H2Config) -> Self {
        let mut patch = H2Patch::default();
        for ((key, old), (_, new)) in old.numbers().into_iter().zip(new.numbers()) {
            if let Some(field) = patch.number_mut(key) {
                *field = (old != new).then_some(new);
            }
        }
        patch.stream_idle_timeout = new
            .stream_idle_timeout
            .filter(|_| old.stream_idle_timeout != new.stream_idle_timeout);
        patch.graceful_shutdown_deadline = (old.graceful_shutdown_deadline
            != new.graceful_shutdown_deadline)
            .then_some(new.graceful_shutdown_deadline);
        patch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_key_reaches_its_field() {
        let mut config = H2Config::default();
        for (index, key) in H2_NUMBER_KEYS.iter().enumerate() {
            let value = u32::try_from(index).unwrap_or(0) + 1_000;
            *config
                .number_mut(key)
                .expect("every listed key has a field") = value;
        }
        for (index, (key, value)) in config.numbers().into_iter().enumerate() {
            assert_eq!(key, H2_NUMBER_KEYS[index]);
            assert_eq!(value, u32::try_from(index).unwrap_or(0) + 1_000);
        }
        assert_eq!(config.number_mut("h2_unknown"), None);
    }

    #[test]
    fn patch_between_two_configs_turns_one_into_the_other() {
        let old = H2Config::default();
        let new = H2Config {
            max_ping_per_window: 7,
            max_header_fields: 64,
            stream_idle_timeout: Some(Duration::from_secs(12)),
            graceful_shutdown_deadline: Duration::ZERO,
            ..H2Config::default()
        };
        let patch = H2Patch::between(&old, &new);
        assert_eq!(patch.max_ping_per_window, Some(7));
        assert_eq!(patch.max_rst_stream_per_window, None);
        let mut patched = old;
        patch.apply(&mut patched);
        assert_eq!(patched, new);
        assert_eq!(H2Patch::between(&new, &new), H2Patch::default());
    }

    #[test]
    fn stream_idle_timeout_defaults_to_the_back_timeout_or_thirty_seconds() {
        let config = H2Config::default();
        assert_eq!(
            config.stream_idle_timeout(Duration::from_secs(10)),
            Duration::from_secs(30)
        );
        assert_eq!(
            config.stream_idle_timeout(Duration::from_secs(90)),
            Duration::from_secs(90)
        );
    }
}
