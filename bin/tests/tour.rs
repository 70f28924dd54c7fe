//! A new user's tour of the product as its docs show it (doc/cli.md), against
//! the real binary: each test is a defect the tour found.

mod common;

use std::{
    io::Read,
    process::{Command, Stdio},
};

use common::{DEADLINE, Proxy, SOZU, text, wait_until};

/// `sozu metrics get -r 1 | head -2`: once the reader goes, the next refresh ends the command
/// quietly, as `sozu events | head -1` does, instead of a panic (exit 101) with a backtrace.
#[test]
fn metrics_refresh_ends_quietly_when_its_reader_goes() {
    let proxy = Proxy::start("");
    let mut child = Command::new(SOZU)
        .args(["metrics", "get", "-r", "1", "--socket"])
        .arg(&proxy.socket)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the command line");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("the first figures");
    drop(stdout);
    assert!(
        wait_until(DEADLINE, || matches!(child.try_wait(), Ok(Some(_)))),
        "`metrics get -r 1` went on after its reader went away"
    );
    let output = child.wait_with_output().expect("the command's end");
    let errors = text(&output.stderr);
    assert!(!errors.contains("panicked"), "{errors}");
    assert!(output.status.success(), "{:?}: {errors}", output.status);
}
