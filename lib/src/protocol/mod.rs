//! The protocols a session moves through: each is a stage that works on the session's sockets
//! and says what it needs from the event loop.

pub mod pipe;
pub mod proxy_protocol;
