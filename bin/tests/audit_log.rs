//! `audit_logs_target` and `audit_logs_json_target` (issue 11): each order that changes
//! something is recorded with the user and process that sent it; queries are not.

mod common;

use std::{
    fs,
    os::unix::fs::MetadataExt,
    process::{Command, Stdio},
};

use common::{Proxy, SOZU};
use serde_json::Value;

#[test]
fn orders_are_recorded_with_who_sent_them() {
    let proxy = Proxy::start(
        "audit_logs_target = \"audit.log\"\naudit_logs_json_target = \"audit.jsonl\"\n",
    );
    assert!(
        !proxy.log_text().contains("audit_logs"),
        "no warning about the audit keys: {}",
        proxy.log_text()
    );
    proxy.ok(&["cluster", "list"]);
    let child = Command::new(SOZU)
        .args(["cluster", "add", "--id", "audited", "--socket"])
        .arg(&proxy.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("run the command line");
    let pid = child.id();
    let output = child.wait_with_output().expect("the command line ends");
    assert!(output.status.success(), "{output:?}");
    let uid = fs::metadata(proxy.dir.path()).expect("the folder").uid();

    // The order is recorded when received, before the answer is sent.
    let text = fs::read_to_string(proxy.dir.path().join("audit.log")).expect("the audit log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "only the change is recorded: {text}");
    assert!(lines[0].starts_with("AUDIT\tCommand(ts="), "{text}");
    for field in [
        "verb=ADD_CLUSTER".to_string(),
        format!("actor_uid={uid}"),
        format!("actor_pid={pid}"),
        format!("socket={}", proxy.socket.display()),
        "\"cluster_id\":\"audited\"".to_string(),
    ] {
        assert!(lines[0].contains(&field), "{field} in {text}");
    }
    assert!(
        proxy.log_text().contains(lines[0]),
        "the main log has it too"
    );

    let json = fs::read_to_string(proxy.dir.path().join("audit.jsonl")).expect("the JSON log");
    let records: Vec<Value> = json
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(records.len(), 1, "{json}");
    assert_eq!(records[0]["verb"], "ADD_CLUSTER");
    assert_eq!(records[0]["actor"]["uid"], uid);
    assert_eq!(records[0]["actor"]["pid"], pid);
    assert_eq!(records[0]["cluster_id"], "audited");
    let mode = fs::metadata(proxy.dir.path().join("audit.jsonl"))
        .expect("the JSON log")
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}
