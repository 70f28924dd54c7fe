//! Certificates through the command line: a key that is not the certificate's is refused by
//! the main process with its reason, and nothing changes.

mod common;

use common::{Proxy, free_address};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");

#[test]
fn a_certificate_with_another_key_is_refused_and_changes_nothing() {
    let https = free_address();
    let proxy = Proxy::start(&format!(
        "[[listeners]]\nprotocol = \"https\"\naddress = \"{https}\"\n"
    ));
    let https = https.to_string();
    let certificate = format!("{FIXTURES}/example.pem");
    let error = proxy.fails(&[
        "certificate",
        "add",
        "-a",
        &https,
        "--certificate",
        &certificate,
        "--key",
        &format!("{FIXTURES}/localhost.key"),
    ]);
    assert!(error.contains("does not match"), "{error}");
    let listed = proxy.ok(&["certificate", "list", "--json"]);
    assert!(!listed.contains("example.com"), "{listed}");

    proxy.ok(&[
        "certificate",
        "add",
        "-a",
        &https,
        "--certificate",
        &certificate,
        "--key",
        &format!("{FIXTURES}/example.key"),
    ]);
    let listed = proxy.ok(&["certificate", "list", "--json"]);
    assert!(listed.contains("example.com"), "{listed}");
}
