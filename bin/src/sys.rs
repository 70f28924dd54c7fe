//! The few system calls the binary makes without a safe std API: descriptor flags for handing
//! sockets to a child across `exec`, signalling a process that is not our child, the umask
//! around the creation of the command socket, who is at the other end of it, and the id of a
//! group named in the configuration, the monotonic clock as systemd reads it, giving
//! freed heap memory back to the system, keeping large allocations in the heap while the main
//! process starts, and waiting for sockets to take more output.
//!
//! This is the only module of the crate with `unsafe` code; each block says why it is sound.
#![allow(
    unsafe_code,
    reason = "fcntl, kill, umask, geteuid, getsockopt, getgrnam_r, clock_gettime, poll, \
              malloc_trim and mallopt are FFI calls with no safe std equivalent"
)]

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    time::Duration,
};

/// Lets `fd` survive `exec`, so that a child started next inherits it under the same number.
///
/// The main process is single-threaded, so no other child can be started between this call
/// and the `spawn` that hands the descriptor over; the caller closes its copy right after.
pub fn inherit_on_exec(fd: &impl AsRawFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFD and F_SETFD only read and write the flags of a descriptor that `fd`
    // owns and keeps open for the duration of the calls.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFD);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Takes ownership of a descriptor inherited across `exec`, whose number came on the command
/// line, and marks it close-on-exec again so that it does not leak into our own children.
///
/// Fails when `raw` is not an open descriptor. The caller must name each inherited descriptor
/// once: the parent process hands over each number once, and nothing else in this process
/// opens a descriptor before the inherited ones are taken.
pub fn take_inherited_fd(raw: RawFd) -> io::Result<OwnedFd> {
    if raw < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {raw} is a standard stream, not an inherited socket"),
        ));
    }
    // SAFETY: F_GETFD and F_SETFD only read and write the flags of `raw`; on a closed
    // descriptor they fail with EBADF and change nothing.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFD);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: `raw` is open (checked above) and was handed to this process by its parent for
    // this purpose only; per this function's contract nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends `signal` to process `pid`. Used for workers adopted from a previous main process,
/// which are not our children (a [`std::process::Child`] is killed through its own API).
pub fn send_signal(pid: i32, signal: libc::c_int) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid pid {pid}"),
        ));
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a positive pid
    // names a single process, never a process group.
    if unsafe { libc::kill(pid, signal) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `create` with the file mode creation mask set to `mask`, then restores the previous
/// mask. The command socket is created this way so that it is never reachable by others, not
/// even between its `bind` and a `chmod`.
pub fn with_umask<T>(mask: libc::mode_t, create: impl FnOnce() -> T) -> T {
    // SAFETY: umask(2) only swaps the process's mask; the main process is single-threaded
    // while it creates the socket, so no other thread creates files under the changed mask.
    let previous = unsafe { libc::umask(mask) };
    let result = create();
    // SAFETY: as above, restoring the mask that was in force.
    unsafe { libc::umask(previous) };
    result
}

/// The effective user id of this process.
pub fn own_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing, touches no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

/// CLOCK_MONOTONIC in microseconds: the clock systemd compares `MONOTONIC_USEC=` against
/// (`std::time::Instant` hides its value).
pub fn monotonic_microseconds() -> io::Result<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime(2) writes one `timespec` into `now`, which lives for the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanoseconds = u64::try_from(now.tv_nsec).unwrap_or(0);
    Ok(seconds
        .saturating_mul(1_000_000)
        .saturating_add(nanoseconds / 1_000))
}

/// The user and process at the other end of a connected Unix socket, as the kernel recorded
/// them when it connected (`SO_PEERCRED`).
pub fn peer_credentials(socket: &impl AsRawFd) -> io::Result<(u32, i32)> {
    let mut credentials = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut length = libc::socklen_t::try_from(std::mem::size_of::<libc::ucred>())
        .map_err(|_| io::Error::other("ucred does not fit a socklen_t"))?;
    // SAFETY: getsockopt(2) writes at most `length` bytes into `credentials`, a `ucred` that
    // lives through the call, and `length` says its size; the descriptor stays open.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut credentials).cast(),
            &mut length,
        )
    };
    if result < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((credentials.uid, credentials.pid))
}

/// The id of the group called `name` in the system's group database.
pub fn group_id(name: &str) -> io::Result<u32> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a group name without NUL"))?;
    let mut group = std::mem::MaybeUninit::<libc::group>::uninit();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r(3) writes the entry into `group` and the strings it points to into
    // `buffer`, whose length is passed; all three outlive the call, and `found` is set to
    // `group` or null. Only the gid, a plain integer, is read afterwards.
    let result = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            group.as_mut_ptr(),
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if result != 0 {
        return Err(io::Error::from_raw_os_error(result));
    }
    if found.is_null() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no group `{name}`"),
        ));
    }
    // SAFETY: `found` is not null, so getgrnam_r filled `group`.
    Ok(unsafe { group.assume_init() }.gr_gid)
}

/// Gives the free memory of the heap back to the system, also the free pages between live
/// allocations: the main process calls it once the parsed configuration, larger than the
/// state it built, is freed, so that its memory stays what the state needs.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn release_free_memory() {
    // SAFETY: `malloc_trim` only reorganises the allocator's own free lists and pages; it
    // takes no pointer and leaves every live allocation where it is.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators than glibc's give memory back by themselves, or not at all.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() {}

/// glibc's default of `M_MMAP_MAX`: how many allocations it may serve by `mmap` at once.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const DEFAULT_MMAP_MAX: libc::c_int = 65_536;

/// Serves every allocation from the heap while it lives, none by `mmap` of its own.
///
/// glibc serves a large allocation (from 128 KiB, more once such allocations were freed) by a
/// mapping of its own and unmaps it when freed: the next large allocation, or the many small
/// ones that follow, take fresh pages, each a page fault the kernel zeroes. A start at 100,000
/// frontends frees two such blocks of 55 MB (what the `toml` crate reads its document from)
/// once the document is read, then builds the configuration's tables and the state: 90,600
/// page faults, and 61,200 with the blocks reused (the kernel's share of the main
/// process's time was 44 %, see doc/benchmarks.md). The main process holds this while it reads
/// its configuration and builds its state; [`release_free_memory`] then gives back what the
/// heap no longer needs. Once dropped, large allocations are mapped again, from 128 KiB: glibc
/// stops raising that threshold once a setting was made, which keeps a long-running process's
/// heap from holding large freed blocks (the setting many servers make for that reason).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub struct HeapOnly(());

#[cfg(all(target_os = "linux", target_env = "gnu"))]
impl HeapOnly {
    /// Stops glibc from serving allocations by `mmap` until the value is dropped.
    pub fn begin() -> Self {
        // SAFETY: `mallopt` only changes a setting of the allocator, which is read under its
        // own lock; no allocation is moved. `M_MMAP_MAX` at 0 makes every later allocation
        // come from the heap; those already mapped stay where they are.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0);
        }
        HeapOnly(())
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
impl Drop for HeapOnly {
    fn drop(&mut self) {
        // SAFETY: as in `begin`: the setting goes back to glibc's default.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, DEFAULT_MMAP_MAX);
        }
    }
}

/// Other allocators than glibc's decide for themselves.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub struct HeapOnly(());

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
impl HeapOnly {
    /// Nothing to change.
    pub fn begin() -> Self {
        HeapOnly(())
    }
}

/// Waits at most `timeout` until one of `fds` can be written to (or is closed or in error: a
/// write then says why), and tells which can; `None` entries are not waited for. An
/// interrupted wait returns with none ready.
pub fn wait_writable(fds: &[Option<BorrowedFd<'_>>], timeout: Duration) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            // A negative descriptor is ignored by poll.
            fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
            events: libc::POLLOUT,
            revents: 0,
        })
        .collect();
    let count = libc::nfds_t::try_from(pollfds.len()).unwrap_or(libc::nfds_t::MAX);
    let timeout = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pollfds` holds `count` initialised pollfd structures and lives across the call;
    // their descriptors are borrowed from `fds`, open for the whole call, or -1.
    let ready = unsafe { libc::poll(pollfds.as_mut_ptr(), count, timeout) };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(pollfds.iter().map(|pollfd| pollfd.revents != 0).collect())
}
