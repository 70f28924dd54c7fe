//! Who may give orders on the command socket: `command_allowed_uids`, checked with
//! `SO_PEERCRED` on each connection. The tests run as root and try other users with a child
//! process that switches its uid.

mod common;

use std::{
    fs,
    os::unix::{
        fs::{FileTypeExt, PermissionsExt},
        process::CommandExt,
    },
    process::{Command, Output, Stdio},
};

use common::{Proxy, SOZU, text};

/// A user id no account has, listed in the configuration.
const LISTED: u32 = 4242;
/// `nobody`, not listed.
const OTHER: u32 = 65_534;

/// `sozu status` run as `uid`.
fn status_as(proxy: &Proxy, uid: u32) -> Output {
    Command::new(SOZU)
        .args(["status", "--socket"])
        .arg(&proxy.socket)
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .output()
        .expect("run the command line as another user")
}

/// Issue 10: `command_allowed_uids` was accepted and ignored.
#[test]
fn command_allowed_uids_admits_root_the_proxys_user_and_the_listed_users_only() {
    let proxy = Proxy::start(&format!("command_allowed_uids = [{LISTED}]"));
    let socket = fs::metadata(&proxy.socket).expect("the command socket");
    assert!(socket.file_type().is_socket());
    assert_eq!(socket.permissions().mode() & 0o777, 0o666);
    // Other users reach the socket through its folder.
    fs::set_permissions(proxy.dir.path(), fs::Permissions::from_mode(0o755))
        .expect("open the folder");

    proxy.ok(&["status"]);
    let listed = status_as(&proxy, LISTED);
    assert!(listed.status.success(), "{}", text(&listed.stderr));

    let other = status_as(&proxy, OTHER);
    assert!(!other.status.success());
    let error = text(&other.stderr);
    assert!(
        error.contains(&format!("uid {OTHER} may not give orders")),
        "{error}"
    );
    assert!(
        proxy
            .log_text()
            .contains(&format!("refused a connection of uid {OTHER}")),
        "{}",
        proxy.log_text()
    );
    // The refused user changed nothing, and the proxy goes on.
    proxy.ok(&["status"]);
}

#[test]
fn without_command_allowed_uids_the_socket_is_its_owners_only() {
    let proxy = Proxy::start("");
    let socket = fs::metadata(&proxy.socket).expect("the command socket");
    assert_eq!(socket.permissions().mode() & 0o777, 0o600);
}
