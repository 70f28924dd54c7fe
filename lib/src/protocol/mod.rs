//! The protocols a session moves through, each one a state machine over the session's
//! buffers: for now the HTTP/1.1 message parser ([`http::parser`]).
//!
//! A protocol reads bytes from the pooled buffers it is given and tells the session what
//! it wants next; it never owns a socket nor touches the event loop.

pub mod http;
