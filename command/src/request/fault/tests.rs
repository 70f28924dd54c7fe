//! Faults in their wire form: every kind round-trips, defaults, refusals naming the problem,
//! networks.

use super::*;

fn parse(json: &str) -> Result<Fault, String> {
    serde_json::from_str(json).map_err(|error| error.to_string())
}

#[test]
fn every_kind_round_trips_through_its_wire_form() {
    let effects = [
        Effect::Latency {
            latency: Duration::from_millis(200),
            jitter: Duration::from_millis(20),
        },
        Effect::Bandwidth { rate: 100 },
        Effect::SlowClose {
            delay: Duration::from_millis(5),
        },
        Effect::Timeout {
            timeout: Duration::ZERO,
        },
        Effect::ResetPeer {
            timeout: Duration::from_millis(10),
        },
        Effect::Slicer {
            average_size: 64,
            size_variation: 32,
            delay: Duration::from_micros(10),
        },
        Effect::LimitData { bytes: 1024 },
        Effect::Blackout,
        Effect::Down,
        Effect::Transient { count: 3 },
        Effect::HttpError(FixedAnswer {
            status: 503,
            headers: vec![("Retry-After".to_string(), "5".to_string())],
            body: "injected".to_string(),
        }),
        Effect::HttpDelay {
            delay: Duration::from_millis(50),
        },
        Effect::Error {
            protocol: ErrorProtocol::Redis,
        },
    ];
    assert_eq!(effects.len(), FaultKind::ALL.len());
    for effect in effects {
        let fault = Fault {
            name: format!("f-{}", effect.kind()),
            target: FaultTarget::Backend {
                cluster_id: "api".to_string(),
                backend_id: "api-0".to_string(),
            },
            effect,
            direction: Direction::Both,
            probability: Probability(0.25),
            selector: Selector {
                path_prefix: Some("/v1".to_string()),
                header: Some("x-chaos=on".parse().unwrap()),
                source: Some("10.0.0.0/8".parse().unwrap()),
            },
            ttl: Some(Duration::from_secs(60)),
            seed: Some(7),
        };
        let json = serde_json::to_string(&fault).unwrap();
        assert_eq!(parse(&json).unwrap(), fault, "{json}");
    }
}

#[test]
fn written_faults_take_defaults() {
    let fault =
        parse(r#"{"name":"slow","cluster_id":"api","type":"latency","latency":200}"#).unwrap();
    assert_eq!(fault.direction, Direction::Downstream);
    assert_eq!(fault.probability, Probability::ALWAYS);
    assert_eq!(
        fault.effect,
        Effect::Latency {
            latency: Duration::from_millis(200),
            jitter: Duration::ZERO
        }
    );
    assert_eq!(fault.ttl, None);
}

#[test]
fn bad_faults_are_refused_with_the_problem_named() {
    let cases = [
        (
            r#"{"name":"f","cluster_id":"a","type":"lag"}"#,
            "unknown fault type",
        ),
        (
            r#"{"name":"f","cluster_id":"a","type":"latency","latency":-5}"#,
            "`latency` is -5: it must not be negative",
        ),
        (
            r#"{"name":"f","cluster_id":"a","type":"latency","rate":5}"#,
            "`rate` is not a parameter of a latency fault",
        ),
        (r#"{"name":"f","type":"down"}"#, "a fault needs a target"),
        (
            r#"{"name":"f","cluster_id":"a","frontend":"127.0.0.1:80","type":"down"}"#,
            "one target",
        ),
        (
            r#"{"name":"f","cluster_id":"a","type":"error"}"#,
            "needs `protocol`",
        ),
        (
            r#"{"name":"f","cluster_id":"a","type":"down","source":"10.0.0.0/40"}"#,
            "invalid network",
        ),
        (
            r#"{"name":"f","cluster_id":"a","type":"down","ttl":-1}"#,
            "`ttl` is -1",
        ),
    ];
    for (json, expected) in cases {
        let error = parse(json).unwrap_err();
        assert!(error.contains(expected), "{json}: {error}");
    }
}

#[test]
fn networks_contain_their_addresses() {
    let network: Network = "10.1.0.0/16".parse().unwrap();
    assert!(network.contains("10.1.200.3".parse().unwrap()));
    assert!(!network.contains("10.2.0.1".parse().unwrap()));
    assert!(network.contains("::ffff:10.1.0.9".parse().unwrap()));
    let everything: Network = "0.0.0.0/0".parse().unwrap();
    assert!(everything.contains("192.0.2.1".parse().unwrap()));
    let one: Network = "::1".parse().unwrap();
    assert!(one.contains("::1".parse().unwrap()));
    assert!(!one.contains("::2".parse().unwrap()));
}
