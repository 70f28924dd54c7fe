//! The `sozu` program: the main process, its workers and the command line.
