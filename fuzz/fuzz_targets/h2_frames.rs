//! HTTP/2 frames and HPACK: a client's bytes after the preface and SETTINGS, read by the
//! connection codec in pieces as a socket would deliver them. No panic; every step consumes
//! at most what it was given and never nothing; a connection error leaves the connection
//! finished; the same bytes read whole or in pieces give the same events and answers.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sozu_command_lib::request::H2Config;
use sozu_lib::protocol::http::h2::{Connection, Event, Progress, frame};

/// Reads `input` arriving `piece` bytes at a time; the events and what the codec wrote.
fn run(input: &[u8], piece: usize, now: Instant) -> (Vec<Event>, Vec<u8>) {
    let mut connection = Connection::new(H2Config::default(), Duration::from_secs(30), b"", now);
    let mut out = Vec::new();
    connection.start(&mut out);
    let mut bytes = frame::PREFACE.to_vec();
    frame::write_settings(&mut bytes, &[]);
    bytes.extend_from_slice(input);
    let mut events = Vec::new();
    let mut received = 0;
    let mut consumed = 0;
    while received < bytes.len() {
        received = (received + piece).min(bytes.len());
        loop {
            let pending = &bytes[consumed..received];
            match connection.receive(pending, now, &mut out) {
                Ok(Progress::NeedMore) => break,
                Ok(Progress::Consumed { len, event }) => {
                    assert!(len > 0 && len <= pending.len());
                    consumed += len;
                    events.extend(event);
                }
                Err(_) => {
                    assert!(connection.is_finished());
                    return (events, out);
                }
            }
        }
    }
    (events, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&piece, input)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let whole = run(input, usize::MAX / 2, now);
    let pieces = run(input, usize::from(piece).max(1), now);
    // Data events name ranges of the input given to `receive`, which differ with the
    // pieces: compare everything else.
    let strip = |events: Vec<Event>| -> Vec<Event> {
        events
            .into_iter()
            .map(|event| match event {
                Event::Data {
                    stream, end_stream, data,
                } => Event::Data {
                    stream,
                    end_stream,
                    data: 0..data.len(),
                },
                other => other,
            })
            .collect()
    };
    assert_eq!(strip(whole.0), strip(pieces.0));
    assert_eq!(whole.1, pieces.1);
});
