//! The protocols a session moves through: each is a stage that works on the session's sockets
//! and buffers and says what it needs from the event loop; none touches the loop itself.

pub mod http;
pub(crate) mod pipe;
pub mod proxy_protocol;
pub(crate) mod reply;
pub(crate) mod sniff;
pub(crate) mod splice;
pub mod tls;
