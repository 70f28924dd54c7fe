//! Signals, delivered as events of the main loop (`signal-hook`'s self-pipe):
//!
//! | signal | effect |
//! |---|---|
//! | TERM, INT | hard stop: workers close their sessions now |
//! | QUIT | soft stop: workers finish their sessions, then everything exits |
//! | HUP | reload the configuration file, applying only the difference |
//! | USR2 | hot upgrade of the main process and then of every worker |
//! | TTIN / TTOU | one more / one less worker |
//! | CHLD | a worker exited: reap it, restart it if it died |

use std::io;

use log::info;
use signal_hook::consts::signal::{
    SIGCHLD, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR2,
};
use signal_hook_mio::v1_0::Signals;

use super::Main;

pub fn register() -> io::Result<Signals> {
    Signals::new([
        SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR2, SIGTTIN, SIGTTOU, SIGCHLD,
    ])
}

impl Main {
    pub(super) fn handle_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGTERM | SIGINT => {
                    info!("signal {signal}: hard stop");
                    self.begin_stop(true, None);
                }
                SIGQUIT => {
                    info!("SIGQUIT: soft stop");
                    self.begin_stop(false, None);
                }
                SIGHUP => {
                    info!("SIGHUP: reloading {}", self.settings.config_path.display());
                    self.reload(None, None);
                }
                SIGUSR2 => {
                    info!("SIGUSR2: hot upgrade");
                    self.request_main_upgrade(None);
                }
                SIGTTIN => {
                    info!("SIGTTIN: one more worker");
                    self.one_more_worker(None);
                }
                SIGTTOU => {
                    info!("SIGTTOU: one less worker");
                    self.one_less_worker();
                }
                SIGCHLD => self.reap_workers(),
                _ => {}
            }
        }
    }
}
