//! systemd's readiness protocol (`sd_notify(3)`), spoken by the main process without
//! libsystemd: one datagram of `KEY=value` lines per change, sent to the Unix socket named by
//! `NOTIFY_SOCKET` (a path, or an abstract name written `@name`).
//!
//! The service goes Starting → Ready once every worker has the state, Ready → Reloading →
//! Ready around a reload of the configuration, and to Stopping once. A hot upgrade hands the
//! service over: the old main process names its successor with `MAINPID=`, so that systemd
//! follows the new process rather than take the old one's exit for the service's; the new one
//! then says READY=1 with its own pid once its workers have the state. When `NOTIFY_SOCKET` is
//! unset nothing is sent. Workers never see the variable ([`VARIABLE`] is removed from their
//! environment in `workers::spawn`): only the main process speaks for the service.

use std::{
    io,
    os::{
        linux::net::SocketAddrExt,
        unix::net::{SocketAddr, UnixDatagram},
    },
};

use log::{info, warn};

use crate::sys;

/// The environment variable systemd sets for a `Type=notify` service.
pub const VARIABLE: &str = "NOTIFY_SOCKET";

/// Where the service is, as told to systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Workers are getting their first state.
    Starting,
    Ready,
    /// A reload is applied; READY=1 follows when the task with this id ends, or at once
    /// without one.
    Reloading {
        task: Option<u64>,
    },
    /// Terminal.
    Stopping,
    /// Terminal: a successor speaks for the service.
    HandedOver,
}

/// The main process's side of the protocol.
#[derive(Debug)]
pub struct Notifier {
    /// The socket and systemd's address; `None` when `NOTIFY_SOCKET` is unset or unusable.
    target: Option<(UnixDatagram, SocketAddr)>,
    stage: Stage,
}

impl Notifier {
    /// A notifier for the socket `NOTIFY_SOCKET` names, silent if it names none.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os(VARIABLE).and_then(|value| {
            let value = value.to_string_lossy().into_owned();
            match open(&value) {
                Ok(target) => {
                    info!("systemd notifications go to {value}");
                    Some(target)
                }
                Err(error) => {
                    warn!("{VARIABLE}={value} is not usable, systemd is not notified: {error}");
                    None
                }
            }
        });
        Notifier {
            target,
            stage: Stage::Starting,
        }
    }

    /// Whether the first READY=1 is still to be sent.
    pub fn is_starting(&self) -> bool {
        self.stage == Stage::Starting
    }

    /// Whether the end of task `id` ends the reload in progress.
    pub fn is_waiting_for(&self, id: u64) -> bool {
        self.stage == Stage::Reloading { task: Some(id) }
    }

    /// READY=1 with our pid and `status`, after the start or a reload; nothing otherwise.
    pub fn ready(&mut self, status: &str) {
        if !matches!(self.stage, Stage::Starting | Stage::Reloading { .. }) {
            return;
        }
        self.stage = Stage::Ready;
        let pid = std::process::id();
        self.send(&format!("READY=1\nMAINPID={pid}\nSTATUS={status}\n"));
    }

    /// RELOADING=1: a reload begins. READY=1 follows when `ready` is called, or, when `task`
    /// is given, once that task ended (see [`Notifier::is_waiting_for`]).
    pub fn reloading(&mut self) {
        if self.is_over() {
            return;
        }
        self.stage = Stage::Reloading { task: None };
        // systemd requires the time of the reload with RELOADING=1 (`Type=notify-reload`).
        let message = match sys::monotonic_microseconds() {
            Ok(now) => format!("RELOADING=1\nMONOTONIC_USEC={now}\nSTATUS=reloading\n"),
            Err(_) => "RELOADING=1\nSTATUS=reloading\n".to_string(),
        };
        self.send(&message);
    }

    /// The reload in progress ends when task `id` ends.
    pub fn reload_waits_for(&mut self, id: u64) {
        if let Stage::Reloading { task } = &mut self.stage {
            *task = Some(id);
        }
    }

    /// STOPPING=1, once.
    pub fn stopping(&mut self, status: &str) {
        if self.is_over() {
            return;
        }
        self.stage = Stage::Stopping;
        self.send(&format!("STOPPING=1\nSTATUS={status}\n"));
    }

    /// MAINPID= of the new main process that took over in a hot upgrade, once; nothing
    /// follows (this process exits).
    pub fn handed_over(&mut self, successor: u32) {
        if self.is_over() {
            return;
        }
        self.stage = Stage::HandedOver;
        self.send(&format!(
            "MAINPID={successor}\nSTATUS=handed over to the new main process\n"
        ));
    }

    fn is_over(&self) -> bool {
        matches!(self.stage, Stage::Stopping | Stage::HandedOver)
    }

    fn send(&self, message: &str) {
        if let Some((socket, address)) = &self.target {
            if let Err(error) = socket.send_to_addr(message.as_bytes(), address) {
                warn!("cannot notify systemd: {error}");
            }
        }
    }
}

/// An unbound datagram socket and the address `value` names: `@name` is an abstract name,
/// anything else a path.
fn open(value: &str) -> io::Result<(UnixDatagram, SocketAddr)> {
    let address = match value.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None if value.starts_with('/') => SocketAddr::from_pathname(value)?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "neither an absolute path nor an abstract name (`@name`)",
            ));
        }
    };
    Ok((UnixDatagram::unbound()?, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abstract_name_and_path_are_understood_and_other_forms_refused() {
        let (_, address) = open("@sozu/notify").expect("an abstract name");
        assert_eq!(address.as_abstract_name(), Some(&b"sozu/notify"[..]));
        let (_, address) = open("/run/systemd/notify").expect("a path");
        assert_eq!(
            address.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert!(open("vsock:2:1234").is_err());
    }

    #[test]
    fn ready_after_a_reload_waits_for_its_task_and_nothing_follows_stopping() {
        let mut notifier = Notifier {
            target: None,
            stage: Stage::Starting,
        };
        notifier.ready("serving");
        assert!(!notifier.is_starting());
        notifier.reloading();
        notifier.reload_waits_for(7);
        assert!(notifier.is_waiting_for(7));
        assert!(!notifier.is_waiting_for(6));
        notifier.stopping("hard stop");
        notifier.reloading();
        notifier.ready("serving");
        assert_eq!(notifier.stage, Stage::Stopping);
    }

    #[test]
    fn nothing_follows_a_hand_over() {
        let mut notifier = Notifier {
            target: None,
            stage: Stage::Ready,
        };
        notifier.handed_over(42);
        notifier.reloading();
        notifier.stopping("hard stop");
        assert_eq!(notifier.stage, Stage::HandedOver);
    }
}
