//! The protocols a session moves through: each is a stage that works on the session's sockets
//! and buffers and says what it needs from the event loop; none touches the loop itself.

pub mod http;
pub mod pipe;
pub mod proxy_protocol;
pub mod reply;
pub mod sniff;
pub mod splice;
pub mod tls;
