//! The registration socket (`[registration] socket`): a Unix socket, apart from the command
//! socket, on which services register. Its clients are ordinary command clients marked
//! restricted: they may send `REGISTER`, `RENEW` and `DEREGISTER` only, within the section's
//! `allowed_hostnames` and `allowed_listen`. Its permissions are `mode`, and its group `group`.

use std::{
    fs,
    io::ErrorKind,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use log::{info, warn};
use mio::{Interest, net::UnixListener};
use sozu_command_lib::config::RegistrationConfig;

use super::super::{Main, REGISTRATION_SOCKET};
use crate::sys;

#[derive(Debug)]
pub struct RegistrationSocket {
    pub(super) listener: UnixListener,
    pub(super) path: PathBuf,
}

impl RegistrationSocket {
    /// Creates the socket of `config`, replacing a socket file left at its path (by a
    /// previous run, or by the main process this one takes over from).
    fn bind(config: &RegistrationConfig, path: &Path) -> anyhow::Result<RegistrationSocket> {
        match fs::symlink_metadata(path) {
            Ok(metadata) if !metadata.file_type().is_socket() => bail!(
                "{} exists and is not a socket: remove it or set another [registration] socket",
                path.display()
            ),
            Ok(_) => fs::remove_file(path)
                .with_context(|| format!("cannot replace the socket {}", path.display()))?,
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot inspect {}", path.display()));
            }
        }
        // Nobody may connect before the mode and group are in place.
        let listener = sys::with_umask(0o177, || std::os::unix::net::UnixListener::bind(path))
            .with_context(|| format!("cannot create the registration socket {}", path.display()))?;
        if let Some(group) = &config.group {
            let gid = match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => sys::group_id(group)
                    .with_context(|| format!("cannot find the group `{group}`"))?,
            };
            std::os::unix::fs::chown(path, None, Some(gid))
                .with_context(|| format!("cannot give {} to group {group}", path.display()))?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(config.mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(RegistrationSocket {
            listener: UnixListener::from_std(listener),
            path: path.to_path_buf(),
        })
    }
}

impl Main {
    /// Opens the registration socket, when the configuration has one. A socket that cannot be
    /// opened is logged; the proxy runs without it.
    pub(in crate::main_process) fn open_registration_socket(&mut self) {
        let config = &self.settings.registration;
        let Some(path) = &config.socket else {
            return;
        };
        let mut socket = match RegistrationSocket::bind(config, path) {
            Ok(socket) => socket,
            Err(error) => {
                warn!("no registration socket: {error:#}");
                return;
            }
        };
        if let Err(error) = self.poll.registry().register(
            &mut socket.listener,
            REGISTRATION_SOCKET,
            Interest::READABLE,
        ) {
            warn!("no registration socket: cannot register it: {error}");
            return;
        }
        info!(
            "registration socket {} (mode {:o})",
            path.display(),
            config.mode
        );
        self.registrations.socket = Some(socket);
    }

    /// Accepts services on the registration socket, as restricted clients.
    pub(in crate::main_process) fn accept_registration_clients(&mut self) {
        loop {
            let Some(socket) = &self.registrations.socket else {
                return;
            };
            match socket.listener.accept() {
                Ok((stream, _)) => {
                    let id = self.add_client(stream);
                    if let Some(client) = self.clients.get_mut(&id) {
                        client.restricted = true;
                    }
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    warn!("cannot accept on the registration socket: {error}");
                    return;
                }
            }
        }
    }

    /// Removes the registration socket's file as the proxy stops.
    pub(in crate::main_process) fn remove_registration_socket(&self) {
        if let Some(socket) = &self.registrations.socket {
            if let Err(error) = fs::remove_file(&socket.path) {
                warn!(
                    "cannot remove the registration socket {}: {error}",
                    socket.path.display()
                );
            }
        }
    }
}
