//! Content routing flags: the match of `frontend tcp add|remove` and the inspection settings
//! of `listener tcp add|update`.

use std::{fs, path::PathBuf, time::Duration};

use anyhow::Context;
use clap::Args;
use sozu_command_lib::request::{TcpProtocol, TcpRule, TcpScript};

/// The one match a TCP frontend may carry; none makes the listener's default frontend.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct TcpRuleArgs {
    /// The server name of the TLS ClientHello: exact, `*.suffix` or `/regex/`.
    #[arg(long, value_name = "PATTERN")]
    sni: Option<String>,
    /// One of the ALPN protocols of the TLS ClientHello: exact, `*.suffix` or `/regex/`.
    #[arg(long, value_name = "PATTERN")]
    alpn: Option<String>,
    /// The Host of a plain HTTP/1.x request: exact, `*.suffix` or `/regex/`.
    #[arg(long, value_name = "PATTERN")]
    http_host: Option<String>,
    /// The first bytes, with `\xNN` escapes.
    #[arg(long, value_name = "BYTES")]
    prefix: Option<String>,
    /// A regular expression over the first bytes.
    #[arg(long, value_name = "REGEX")]
    regex: Option<String>,
    /// A built-in detector.
    #[arg(long, value_name = "NAME", value_parser = parse_protocol)]
    protocol: Option<TcpProtocol>,
}

fn parse_protocol(name: &str) -> Result<TcpProtocol, String> {
    name.parse()
        .map_err(|error: sozu_command_lib::request::UnknownName| error.to_string())
}

impl TcpRuleArgs {
    pub fn rule(&self) -> Option<TcpRule> {
        let text = |value: &Option<String>, make: fn(String) -> TcpRule| value.clone().map(make);
        text(&self.sni, TcpRule::Sni)
            .or_else(|| text(&self.alpn, TcpRule::Alpn))
            .or_else(|| text(&self.http_host, TcpRule::HttpHost))
            .or_else(|| text(&self.prefix, TcpRule::Prefix))
            .or_else(|| text(&self.regex, TcpRule::Regex))
            .or_else(|| self.protocol.map(TcpRule::Protocol))
    }
}

/// How a TCP listener inspects the first bytes of its connections.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Past this many bytes without a matching rule, the default frontend.
    #[arg(long, value_name = "BYTES")]
    pub inspect_bytes: Option<u64>,
    /// Seconds to wait for the first bytes before the default frontend.
    #[arg(long, value_name = "SECS")]
    inspect_timeout: Option<u64>,
    /// The Lua routing script (read now, sent with the order).
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
}

impl InspectArgs {
    pub fn inspect_timeout(&self) -> Option<Duration> {
        self.inspect_timeout.map(Duration::from_secs)
    }

    /// The script named by `--script`, read.
    pub fn script(&self) -> anyhow::Result<Option<TcpScript>> {
        self.script
            .as_ref()
            .map(|path| read_script(path))
            .transpose()
    }
}

/// A routing script file, as an order carries it.
pub fn read_script(path: &std::path::Path) -> anyhow::Result<TcpScript> {
    let source =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(TcpScript {
        name: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[derive(Parser)]
    struct RuleOnly {
        #[command(flatten)]
        rule: TcpRuleArgs,
    }

    fn rule(args: &[&str]) -> Result<Option<TcpRule>, clap::Error> {
        let mut argv = vec!["test"];
        argv.extend_from_slice(args);
        RuleOnly::try_parse_from(argv).map(|parsed| parsed.rule.rule())
    }

    #[test]
    fn each_flag_makes_its_rule_and_none_makes_the_default() {
        assert_eq!(rule(&[]).unwrap(), None);
        assert_eq!(
            rule(&["--sni", "*.a.test"]).unwrap(),
            Some(TcpRule::Sni("*.a.test".to_string()))
        );
        assert_eq!(
            rule(&["--http-host", "c.test"]).unwrap(),
            Some(TcpRule::HttpHost("c.test".to_string()))
        );
        assert_eq!(
            rule(&["--prefix", r"\x16"]).unwrap(),
            Some(TcpRule::Prefix(r"\x16".to_string()))
        );
        assert_eq!(
            rule(&["--protocol", "SSH"]).unwrap(),
            Some(TcpRule::Protocol(TcpProtocol::Ssh))
        );
    }

    #[test]
    fn two_matches_or_an_unknown_protocol_are_refused() {
        let error = rule(&["--sni", "a.test", "--alpn", "h2"]).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        let error = rule(&["--protocol", "gopher"]).unwrap_err().to_string();
        assert!(
            error.contains("gopher") && error.contains("openvpn"),
            "{error}"
        );
    }

    #[test]
    fn listener_and_frontend_subcommands_take_the_flags() {
        for argv in [
            &[
                "sozu",
                "frontend",
                "tcp",
                "add",
                "-i",
                "a",
                "-a",
                "127.0.0.1:5000",
                "--sni",
                "a.test",
            ][..],
            &[
                "sozu",
                "frontend",
                "tcp",
                "remove",
                "-i",
                "a",
                "-a",
                "127.0.0.1:5000",
                "--regex",
                "^x",
            ],
            &[
                "sozu",
                "listener",
                "tcp",
                "add",
                "-a",
                "127.0.0.1:5000",
                "--inspect-bytes",
                "512",
                "--inspect-timeout",
                "3",
                "--script",
                "route.lua",
            ],
            &[
                "sozu",
                "listener",
                "tcp",
                "update",
                "-a",
                "127.0.0.1:5000",
                "--no-script",
            ],
        ] {
            Cli::try_parse_from(argv).unwrap_or_else(|error| panic!("{argv:?}: {error}"));
        }
        let both = [
            "sozu",
            "listener",
            "tcp",
            "update",
            "-a",
            "127.0.0.1:5000",
            "--no-script",
            "--script",
            "route.lua",
        ];
        assert!(Cli::try_parse_from(both).is_err());
    }

    #[test]
    fn a_script_file_is_read_with_its_name() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("route.lua");
        fs::write(&path, "function route(d, p) end").unwrap();
        let script = read_script(&path).unwrap();
        assert_eq!(script.source, "function route(d, p) end");
        assert!(script.name.ends_with("route.lua"));
        let error = read_script(&folder.path().join("missing.lua")).unwrap_err();
        assert!(error.to_string().starts_with("cannot read"), "{error}");
    }
}
