//! The command channel's line decoder, as a worker or the main process reads orders: the first
//! two bytes choose the read size and the maximum message size, the rest is what the peer sends
//! before closing. No panic; reading ends once the input is used up; a line is refused as too
//! large only past the maximum; every message read serialises to a line that reads back equal.

#![no_main]

use std::{io::Write, os::unix::net::UnixStream};

use libfuzzer_sys::fuzz_target;
use sozu_command_lib::{
    channel::{Channel, ChannelError},
    request::Request,
    response::Response,
};

/// Stays below a Unix socket's buffer, so writing it all before reading never blocks.
const MAX_INPUT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let [read_size, max_size, input @ ..] = data else {
        return;
    };
    if input.len() > MAX_INPUT {
        return;
    }
    let read_size = 1 + usize::from(*read_size % 64);
    let max_message_size = 1 + usize::from(*max_size) * 8;
    let (mut peer, ours) = UnixStream::pair().expect("a socket pair");
    let mut channel: Channel<Response, Request> =
        Channel::from_std(ours, read_size, max_message_size).expect("a blocking channel");
    peer.write_all(input)
        .expect("the socket buffer takes the input");
    drop(peer);

    // Each call consumes at least one line or the end of stream.
    let lines = input.split(|&b| b == b'\n').count();
    for _ in 0..=lines + 1 {
        match channel.read_message() {
            Ok(None) => return,
            Ok(Some(request)) => {
                let line = serde_json::to_string(&request).expect("a message serialises");
                assert!(!line.contains('\n'));
                let again: Request = serde_json::from_str(&line).expect("its line reads back");
                assert_eq!(again, request);
            }
            Err(ChannelError::MessageTooLarge { size_so_far, max }) => {
                assert_eq!(max, max_message_size);
                assert!(size_so_far > max);
            }
            Err(ChannelError::InvalidMessage { line_excerpt, .. }) => {
                // At most 100 bytes of the line, and a mark when it was cut.
                assert!(line_excerpt.chars().count() <= 101);
            }
            Err(error) => panic!("unexpected error on a socket pair: {error}"),
        }
    }
    panic!("reading did not end after {lines} lines");
});
