//! The `sozu` program: the main process, its workers and the command line.
//!
//! Both binaries, `sozu` and `sozuctl`, run [`cli::run`].

pub mod cli;
