//! A fleet of proxies fed from etcd v3 (`doc/fleet.md`).
//!
//! The keys of the prefix and their values are described by [`layout`]; the records each node
//! publishes by [`records`]. The main process runs a [`watcher::Watcher`] (an etcd thread,
//! blocking on its [`client`]) and applies what the prefix holds through its ordinary order
//! path (`main_process::provider`); the command line reads and writes the prefix directly
//! (`sozu fleet`).

pub mod client;
pub mod layout;
pub mod records;
pub mod watcher;
