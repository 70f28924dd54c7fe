//! HTTP/1.1: parsing message heads and finding where bodies end ([`parser`]), header edits
//! ([`editor`]), the protocol upgrades let through ([`upgrade`]), and the answers the proxy
//! writes itself ([`answers`]).
//! HTTP/2 toward clients is a codec of its own ([`h2`]) whose requests come out as the same
//! HTTP/1.1 heads.
//!
//! Bytes enter as the session's read buffer; what leaves is positions into that buffer
//! (method, target, header fields, body framing), never copies.

pub mod answers;
pub mod editor;
pub mod h2;
pub mod parser;
pub mod upgrade;
