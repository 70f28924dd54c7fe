//! `sozu chaos`: Vaurien's one command, no configuration file. One listener proxies to one
//! backend, with behaviours given as `PERCENT:NAME` that become faults; the proxy has its own
//! command socket, so `sozu fault …` changes them live.
//!
//! The behaviours map onto faults on the cluster `chaos`, each drawn on its own with
//! probability PERCENT/100 per connection (the percentages add up to at most 100):
//! `delay` is `latency` (`--delay-ms`), `error` is `error` with `--protocol` (a TCP proxy
//! answers errors with a reset), `hang` is `timeout` 0, `blackout` is `blackout`,
//! `transient` is `transient` (`--transient-count`), `dummy` does nothing.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use sozu_command_lib::request::{ErrorProtocol, Fault, RawFault};

/// The cluster the proxied traffic goes to.
const CLUSTER: &str = "chaos";

#[derive(Debug, Clone, Args)]
pub struct ChaosArgs {
    /// Where to accept connections.
    #[arg(long, value_name = "ADDR")]
    pub proxy: SocketAddr,
    /// Where to send them.
    #[arg(long, value_name = "ADDR")]
    pub backend: SocketAddr,
    /// Behaviours as PERCENT:NAME, comma-separated: delay, error, hang, blackout, transient,
    /// dummy.
    #[arg(long, value_name = "PERCENT:NAME,...", default_value = "")]
    pub behavior: String,
    /// The backend's protocol, for `error`: tcp (default), http, redis, memcache, mysql,
    /// smtp.
    #[arg(long, default_value = "tcp")]
    pub protocol: String,
    /// `delay`: how long, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub delay_ms: i64,
    /// `transient`: how many connections fail before it recovers.
    #[arg(long, value_name = "COUNT", default_value_t = 5)]
    pub transient_count: i64,
    /// The command socket of this proxy.
    #[arg(long, value_name = "PATH", default_value = "sozu-chaos.sock")]
    pub command_socket: PathBuf,
    /// The seed of the behaviours' draws, for a reproducible run.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// One `PERCENT:NAME`.
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    pub percent: u8,
    pub name: String,
}

/// Reads `20:delay,10:error`.
pub fn behaviors(text: &str) -> anyhow::Result<Vec<Behavior>> {
    let mut behaviors = Vec::new();
    let mut total = 0u32;
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let (percent, name) = item
            .split_once(':')
            .with_context(|| format!("`{item}` is not PERCENT:NAME"))?;
        let percent: u8 = percent
            .trim()
            .parse()
            .ok()
            .filter(|percent| *percent <= 100)
            .with_context(|| format!("`{percent}` in `{item}` is not a percentage"))?;
        total += u32::from(percent);
        behaviors.push(Behavior {
            percent,
            name: name.trim().to_string(),
        });
    }
    if total > 100 {
        bail!("the behaviours add up to {total}%, more than 100%");
    }
    Ok(behaviors)
}

impl ChaosArgs {
    /// The fault of one behaviour; `None` for `dummy`.
    fn fault(&self, behavior: &Behavior) -> anyhow::Result<Option<Fault>> {
        let mut raw = RawFault {
            name: format!("chaos-{}", behavior.name),
            cluster_id: Some(CLUSTER.to_string()),
            probability: f64::from(behavior.percent) / 100.0,
            seed: self.seed,
            ..RawFault::default()
        };
        match behavior.name.as_str() {
            "dummy" => return Ok(None),
            "delay" => {
                raw.kind = "latency".to_string();
                raw.latency = Some(self.delay_ms);
            }
            "error" if self.protocol == "tcp" => {
                raw.kind = "reset_peer".to_string();
                raw.timeout = Some(0);
            }
            "error" => {
                raw.kind = "error".to_string();
                raw.protocol = Some(self.protocol.parse::<ErrorProtocol>()?);
            }
            "hang" => {
                raw.kind = "timeout".to_string();
                raw.timeout = Some(0);
            }
            "blackout" => raw.kind = "blackout".to_string(),
            "transient" => {
                raw.kind = "transient".to_string();
                raw.count = Some(self.transient_count);
            }
            other => bail!(
                "unknown behaviour `{other}`: expected delay, error, hang, blackout, transient \
                 or dummy"
            ),
        }
        Ok(Some(Fault::try_from(raw)?))
    }

    /// The configuration file of this proxy, checked as `sozu start` checks it.
    pub fn config_text(&self) -> anyhow::Result<String> {
        #[derive(Serialize)]
        struct Faults {
            faults: Vec<RawFault>,
        }
        let faults = behaviors(&self.behavior)?
            .iter()
            .filter_map(|behavior| self.fault(behavior).transpose())
            .map(|fault| fault.map(RawFault::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let socket = self.command_socket.display().to_string();
        let mut text = format!(
            "command_socket = {socket:?}\n\
             worker_count = 1\n\
             activate_listeners = true\n\n\
             [[listeners]]\n\
             protocol = \"tcp\"\n\
             address = \"{proxy}\"\n\n\
             [clusters.{CLUSTER}]\n\
             protocol = \"tcp\"\n\
             frontends = [{{ address = \"{proxy}\" }}]\n\
             backends = [{{ address = \"{backend}\" }}]\n\n",
            proxy = self.proxy,
            backend = self.backend,
        );
        if !faults.is_empty() {
            text.push_str(&toml::to_string(&Faults { faults })?);
        }
        Ok(text)
    }
}

/// Writes the configuration beside the command socket (`sozu-chaos.toml` by default: `sozu
/// start -c` runs it again) and runs the proxy from it.
pub fn run(args: &ChaosArgs) -> ExitCode {
    super::one_command::run(
        &args.command_socket,
        |socket| {
            ChaosArgs {
                command_socket: socket.to_path_buf(),
                ..args.clone()
            }
            .config_text()
        },
        |path, socket| {
            format!(
                "proxying {} to {} ({}); change the behaviours with `sozu --socket {} fault …`",
                args.proxy,
                args.backend,
                path.display(),
                socket.display()
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use std::{path::Path, time::Duration};

    use clap::Parser;
    use sozu_command_lib::{
        config::Config,
        request::{Effect, Probability},
    };

    use super::*;
    use crate::cli::{Cli, Command};

    fn chaos(line: &[&str]) -> ChaosArgs {
        let mut full = vec![
            "sozu",
            "chaos",
            "--proxy",
            "127.0.0.1:8000",
            "--backend",
            "127.0.0.1:80",
        ];
        full.extend_from_slice(line);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Chaos(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn faults(args: &ChaosArgs) -> Vec<Fault> {
        let text = args.config_text().unwrap();
        let (config, _) = Config::parse(&text, Path::new("/")).unwrap();
        config.faults
    }

    #[test]
    fn behaviours_become_faults_on_the_proxied_cluster() {
        let args = chaos(&[
            "--behavior",
            "20:delay,10:error,5:dummy",
            "--protocol",
            "redis",
        ]);
        let faults = faults(&args);
        assert_eq!(faults.len(), 2);
        assert_eq!(faults[0].name, "chaos-delay");
        assert_eq!(faults[0].probability, Probability(0.2));
        assert_eq!(
            faults[0].effect,
            Effect::Latency {
                latency: Duration::from_secs(1),
                jitter: Duration::ZERO
            }
        );
        assert_eq!(
            faults[1].effect,
            Effect::Error {
                protocol: ErrorProtocol::Redis
            }
        );
        let (config, _) = Config::parse(&args.config_text().unwrap(), Path::new("/")).unwrap();
        assert_eq!(config.backends[0].address, args.backend);
        assert!(config.activate_listeners);
    }

    #[test]
    fn every_vaurien_behaviour_is_known() {
        let args = chaos(&[
            "--behavior",
            "10:delay,10:error,10:hang,10:blackout,10:transient,10:dummy",
        ]);
        let kinds: Vec<String> = faults(&args)
            .iter()
            .map(|fault| fault.effect.kind().to_string())
            .collect();
        assert_eq!(
            kinds,
            ["latency", "reset_peer", "timeout", "blackout", "transient"]
        );
    }

    #[test]
    fn bad_behaviours_are_named() {
        let cases = [
            ("20:slow", "unknown behaviour `slow`"),
            ("delay", "not PERCENT:NAME"),
            ("200:delay", "not a percentage"),
            ("60:delay,50:error", "more than 100%"),
        ];
        for (behavior, expected) in cases {
            let error = chaos(&["--behavior", behavior])
                .config_text()
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{behavior}: {error}");
        }
        let error = chaos(&["--behavior", "10:error", "--protocol", "gopher"])
            .config_text()
            .unwrap_err()
            .to_string();
        assert!(error.contains("gopher"), "{error}");
    }
}
