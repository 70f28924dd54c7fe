//! HTTP/1.1: parsing message heads and finding where message bodies end
//! ([`parser`]).
//!
//! Bytes enter as the session's read buffer; what leaves is positions into that buffer
//! (method, target, header fields, body framing), never copies. Editing headers and
//! writing answers are left to the modules that will sit beside the parser.

pub mod parser;
