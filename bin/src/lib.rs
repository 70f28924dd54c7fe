//! The `sozu` program: the main process, its workers and the command line.
//!
//! Both binaries, `sozu` and `sozuctl`, run [`cli::run`]. `sozu start` runs the
//! [`main_process`], which re-executes this binary as [`worker`] processes (and, for a hot
//! upgrade, as a new main process).

pub mod cli;
mod live;
mod logging;
mod main_process;
pub mod provider;
mod sys;
mod worker;
