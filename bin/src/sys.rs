//! The few system calls the binary makes without a safe std API: descriptor flags for handing
//! sockets to a child across `exec`, signalling a process that is not our child, the umask
//! around the creation of the command socket, who is at the other end of it, and the id of a
//! group named in the configuration, the monotonic clock as systemd reads it, giving freed
//! heap memory back to the system, and dropping the code start-up used from resident memory.
//!
//! This is the only module of the crate with `unsafe` code; each block says why it is sound.
#![allow(
    unsafe_code,
    reason = "fcntl, kill, umask, geteuid, getsockopt, getgrnam_r, clock_gettime, malloc_trim and \
              madvise are FFI calls with no safe std equivalent"
)]

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
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

/// Drops the code and read-only data of this program and its libraries from the process's
/// resident memory: the main process and each worker call it once their start-up is over.
/// Start-up (the command line, the configuration, logging, building the state) runs code the
/// process never runs again, and the kernel maps the pages around each page touched
/// (fault-around): with a binary of many megabytes of code, that left 8 to 9 MiB of it
/// resident in each process for good. After this call, each page comes back from the page
/// cache, which still holds it, the first time it is touched (a minor fault): what stays
/// resident is the code the process runs from then on.
///
/// A traced process (a debugger's breakpoints are written into its code pages, which this
/// would drop) is left as it is.
#[cfg(target_os = "linux")]
pub fn release_startup_code() {
    if is_traced() {
        return;
    }
    // SAFETY: sysconf reads a constant of the system.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .unwrap_or(4096)
        .max(1);
    let mut segments: Vec<(usize, usize)> = Vec::new();
    // SAFETY: dl_iterate_phdr calls `read_only_segments` once per loaded object, on this
    // thread, before it returns; `segments` outlives the call and is reached only through the
    // pointer passed, which the callback takes as what it is.
    unsafe {
        libc::dl_iterate_phdr(Some(read_only_segments), (&raw mut segments).cast());
    }
    for (start, end) in segments {
        // Only the whole pages inside the segment: a page it shares with another segment stays.
        let (Some(start), end) = (start.checked_next_multiple_of(page), end / page * page) else {
            continue;
        };
        if end > start {
            // SAFETY: [start, end) lies inside a loaded segment that is not writable: code or
            // read-only data mapped privately from its file and never written (relocations go
            // to writable segments). MADV_DONTNEED drops those pages from the page tables; the
            // next access maps the same bytes from the file again. No Rust object lives there.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }
}

/// `dl_iterate_phdr`'s callback: adds the loaded segments of one object that are not writable,
/// as (start, end) addresses, to the vector `data` points to. The vDSO, which is no file, is
/// left out.
#[cfg(target_os = "linux")]
unsafe extern "C" fn read_only_segments(
    info: *mut libc::dl_phdr_info,
    _size: libc::size_t,
    data: *mut libc::c_void,
) -> libc::c_int {
    // SAFETY: dl_iterate_phdr passes an `info` valid for the call, and `data` is the vector
    // release_startup_code passed, not otherwise borrowed during the call.
    let (info, segments) = unsafe { (&*info, &mut *data.cast::<Vec<(usize, usize)>>()) };
    if !info.dlpi_name.is_null() {
        // SAFETY: a non-null dlpi_name is a NUL-terminated string that outlives the call.
        let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }.to_bytes();
        if name.starts_with(b"linux-vdso") || name.starts_with(b"linux-gate") {
            return 0;
        }
    }
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: dlpi_phdr points to the object's dlpi_phnum program headers, valid for the call.
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let Ok(base) = usize::try_from(info.dlpi_addr) else {
        return 0;
    };
    for header in headers {
        if header.p_type != libc::PT_LOAD || header.p_flags & libc::PF_W != 0 {
            continue;
        }
        let (Ok(address), Ok(length)) = (
            usize::try_from(header.p_vaddr),
            usize::try_from(header.p_memsz),
        ) else {
            continue;
        };
        if let Some(start) = base.checked_add(address)
            && let Some(end) = start.checked_add(length)
        {
            segments.push((start, end));
        }
    }
    0
}

/// Whether a debugger (or another tracer) is attached to this process.
#[cfg(target_os = "linux")]
fn is_traced() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .filter_map(|line| line.strip_prefix("TracerPid:"))
            .any(|pid| pid.trim() != "0")
    })
}

/// Elsewhere, the program's pages stay as they are.
#[cfg(not(target_os = "linux"))]
pub fn release_startup_code() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Resident pages mapped from files (code and read-only data), in KiB.
    fn resident_file_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("RssFile:"))
            .unwrap();
        line.trim().trim_end_matches("kB").trim().parse().unwrap()
    }

    #[test]
    fn the_segments_found_hold_this_code_and_none_is_writable() {
        let mut segments: Vec<(usize, usize)> = Vec::new();
        // SAFETY: as in release_startup_code.
        unsafe {
            libc::dl_iterate_phdr(Some(read_only_segments), (&raw mut segments).cast());
        }
        let code = release_startup_code as *const () as usize;
        assert!(
            segments
                .iter()
                .any(|&(start, end)| start <= code && code < end)
        );
        let data = &raw const segments as usize;
        assert!(
            !segments
                .iter()
                .any(|&(start, end)| start <= data && data < end)
        );
    }

    /// The code start-up touched leaves resident memory, and the process runs on (its pages
    /// come back as they are used).
    #[test]
    fn releasing_the_startup_code_shrinks_resident_memory_and_code_still_runs() {
        let before = resident_file_kib();
        release_startup_code();
        let after = resident_file_kib();
        assert!(after < before, "{before} KiB -> {after} KiB");
        let mut words: Vec<String> = "the code runs on".split(' ').map(String::from).collect();
        words.sort();
        assert_eq!(words.join(" "), "code on runs the");
    }
}
