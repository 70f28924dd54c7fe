//! Scale: a configuration of many HTTP frontends and HTTPS frontends with a certificate each
//! starts and routes its last hostname; its saved state loads into a fresh proxy. Timings are
//! printed, never asserted: the figures that count come from a release build, e.g.
//! `SOZU_SCALE_FRONTENDS=100000 cargo test --release -p sozu --test binary_scale -- --nocapture`
//! (100,000 HTTP frontends and 10,000 certificates). The default keeps the suite quick.

mod common;

use std::{fmt::Write as _, fs, path::Path, time::Instant};

use base64::Engine;
use common::{Backend, DEADLINE, Proxy, free_address, wait_until};

/// HTTP frontends, from `SOZU_SCALE_FRONTENDS` (default 10,000); a tenth as many certificates.
fn http_frontends() -> usize {
    std::env::var("SOZU_SCALE_FRONTENDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000)
}
const FRONTENDS_PER_CLUSTER: usize = 100;

/// The sample certificate with its serial number's last two bytes replaced by `index`: a
/// distinct certificate (fingerprint) for the same key. Offsets: the certificate and TBS
/// sequences (4 bytes each), the version (5 bytes), then the serial's tag and length (2 bytes)
/// and its 20 bytes.
fn certificate(der: &[u8], index: usize) -> String {
    let mut der = der.to_vec();
    let serial_end = 4 + 4 + 5 + 2 + 20;
    der[serial_end - 2] = (index >> 8) as u8;
    der[serial_end - 1] = index as u8;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn sample_der() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let pem = fs::read_to_string(root.join("assets/certificate.pem")).unwrap();
    let base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .unwrap();
    assert_eq!(&der[8..15], &[0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x14]);
    der
}

#[test]
fn many_frontends_and_certificates_start_route_and_reload() {
    let http_frontends_count = http_frontends();
    let certificates_count = http_frontends_count / 10;
    let backend = Backend::start("scale");
    let dir = tempfile::tempdir().unwrap();
    let (http, https) = (free_address(), free_address());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::copy(root.join("assets/key.pem"), dir.path().join("key.pem")).unwrap();
    let der = sample_der();
    fs::create_dir(dir.path().join("certs")).unwrap();
    let mut config = format!(
        "command_socket = \"sozu.sock\"\npid_file_path = \"sozu.pid\"\nworker_count = 2\n\
         [[listeners]]\nprotocol = \"http\"\naddress = \"{http}\"\n\
         [[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n"
    );
    for cluster in 0..http_frontends_count / FRONTENDS_PER_CLUSTER {
        let _ = writeln!(
            config,
            "[clusters.c{cluster}]\nprotocol = \"http\"\nbackends = [{{ address = \"{}\" }}]\n\
             frontends = [",
            backend.address
        );
        for index in 0..FRONTENDS_PER_CLUSTER {
            let host = cluster * FRONTENDS_PER_CLUSTER + index;
            let _ = writeln!(
                config,
                "  {{ address = \"{http}\", hostname = \"h{host}.example.com\" }},"
            );
            if host < certificates_count {
                let file = format!("certs/{host}.pem");
                fs::write(dir.path().join(&file), certificate(&der, host)).unwrap();
                let _ = writeln!(
                    config,
                    "  {{ address = \"{https}\", hostname = \"s{host}.example.com\", \
                     certificate = \"{file}\", key = \"key.pem\" }},"
                );
            }
        }
        config.push_str("]\n");
    }
    let config_path = dir.path().join("config.toml");
    fs::write(&config_path, config).unwrap();

    let last = format!("h{}.example.com", http_frontends_count - 1);
    let started = Instant::now();
    let proxy = Proxy::start_with(dir, config_path, http);
    assert!(wait_until(DEADLINE, || proxy
        .get(&last)
        .is_ok_and(|answer| answer.0 == 200)));
    let start_time = started.elapsed();
    for line in proxy.log_text().lines() {
        if line.contains("started in") || line.contains("has the current state") {
            eprintln!("scale: {line}");
        }
    }
    let stats = proxy.ok(&["state", "stats"]);
    assert!(
        stats.lines().any(|line| line
            .split_whitespace()
            .eq(["certificates".to_string(), certificates_count.to_string()])),
        "{stats}"
    );

    let call = Instant::now();
    proxy.ok(&["status"]);
    let status_time = call.elapsed();
    let call = Instant::now();
    proxy.ok(&["cluster", "add", "-i", "one-more"]);
    let order_time = call.elapsed();

    // The saved state, without its listeners, loaded into a fresh proxy.
    let kept = tempfile::tempdir().unwrap();
    let state_file = kept.path().join("state.json");
    proxy.ok(&["state", "save", "-f", state_file.to_str().unwrap()]);
    let saved = fs::read_to_string(&state_file).unwrap();
    let routing: Vec<&str> = saved
        .lines()
        .filter(|line| !line.contains("LISTENER"))
        .collect();
    let orders = routing.len();
    fs::write(&state_file, routing.join("\n")).unwrap();
    drop(proxy);
    let fresh = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{}\"\n",
        free_address()
    ));
    // The state names the first proxy's listeners: point it at the fresh proxy's.
    let rewritten = fs::read_to_string(&state_file)
        .unwrap()
        .replace(&http.to_string(), &fresh.http.to_string());
    let text = fs::read_to_string(&fresh.config).unwrap();
    let fresh_https = text
        .lines()
        .filter_map(|line| line.strip_prefix("address = \""))
        .map(|rest| rest.trim_end_matches('"').to_string())
        .find(|address| *address != fresh.http.to_string())
        .unwrap();
    fs::write(
        &state_file,
        rewritten.replace(&https.to_string(), &fresh_https),
    )
    .unwrap();
    let load = Instant::now();
    let output = fresh.ok(&[
        "state",
        "load",
        "-t",
        "60000",
        "-f",
        state_file.to_str().unwrap(),
    ]);
    let load_time = load.elapsed();
    assert!(output.contains("done"), "{output}");
    assert_eq!(fresh.get(&last).unwrap().0, 200);

    eprintln!(
        "scale: start to routing the last of {http_frontends_count} + {certificates_count} frontends \
         ({certificates_count} certificates): {start_time:?}; status: {status_time:?}; one order: \
         {order_time:?}; state load of {orders} orders: {load_time:?}"
    );
}
