//! The open files of the test's own process (where [`crate::Worker`] runs its event loop),
//! and its soft limit of open files, lowered so that a worker runs out of descriptors when the
//! test decides.

use std::{path::Path, process::Command};

/// The descriptors open in this process, by number.
pub fn open_descriptors() -> Vec<usize> {
    let listed: Vec<usize> = std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The listing's own descriptor was among them: it is closed now.
    listed
        .into_iter()
        .filter(|fd| Path::new(&format!("/proc/self/fd/{fd}")).exists())
        .collect()
}

/// The open-files limit that leaves `room` descriptors free: a limit is one more than the
/// highest number a new descriptor may take, and descriptors open (some inherited, numbered
/// high) take their numbers. With a room of 0, the lowest free number, which a new
/// descriptor would take.
pub fn limit_leaving(room: usize) -> usize {
    let open = open_descriptors();
    (0..).filter(|fd| !open.contains(fd)).nth(room).unwrap_or(0)
}

/// Sets this process's soft limit of open files (the hard one stays). Spawning `prlimit`
/// takes descriptors: the limit is never raised again.
pub fn set_open_files_limit(limit: usize) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--nofile={limit}:"))
        .status()
        .expect("prlimit (util-linux) must be installed");
    assert!(status.success(), "prlimit failed");
}
