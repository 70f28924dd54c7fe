//! The channel on real socket pairs: framing across partial writes, size limits, malformed
//! lines, peer close, slow readers, timeouts.

use std::{
    io::Write,
    os::unix::net::UnixStream,
    thread,
    time::{Duration, Instant},
};

use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};

use super::*;

const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: String,
    n: u64,
}

fn order(n: u64) -> Order {
    Order {
        id: format!("order-{n}"),
        n,
    }
}

fn line(n: u64) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&order(n)).unwrap();
    bytes.push(b'\n');
    bytes
}

/// A channel reading orders from the returned raw stream, in blocking mode.
fn reader(max: usize) -> (Channel<Order, Order>, UnixStream) {
    let (raw, other) = UnixStream::pair().unwrap();
    (Channel::from_std(other, 1024, max).unwrap(), raw)
}

#[test]
fn message_written_byte_by_byte_arrives_whole() {
    let (mut channel, mut raw) = reader(1024);
    channel.nonblocking().unwrap();
    let bytes = line(7);
    for (index, byte) in bytes.iter().enumerate() {
        assert_eq!(channel.read_message().unwrap(), None);
        raw.write_all(&[*byte]).unwrap();
        assert_eq!(channel.readable().unwrap(), 1, "byte {index}");
    }
    assert_eq!(channel.read_message().unwrap(), Some(order(7)));
    assert_eq!(channel.read_message().unwrap(), None);
}

#[test]
fn messages_split_across_small_writes_arrive_whole() {
    let (mut channel, mut raw) = reader(1024);
    let writer = thread::spawn(move || {
        let bytes: Vec<u8> = (0..200).flat_map(line).collect();
        for piece in bytes.chunks(3) {
            raw.write_all(piece).unwrap();
        }
    });
    for n in 0..200 {
        assert_eq!(
            channel.read_message_timeout(TIMEOUT).unwrap(),
            Some(order(n))
        );
    }
    writer.join().unwrap();
}

#[test]
fn oversized_line_is_refused_and_the_next_message_arrives() {
    const MAX: usize = 1 << 20;
    let (mut channel, mut raw) = reader(MAX);
    let writer = thread::spawn(move || {
        let huge = vec![b'a'; 10 << 20];
        raw.write_all(&huge).unwrap();
        raw.write_all(b"\n").unwrap();
        raw.write_all(&line(1)).unwrap();
    });
    let error = channel.read_message_timeout(TIMEOUT).unwrap_err();
    assert!(
        matches!(error, ChannelError::MessageTooLarge { size_so_far, max: MAX } if size_so_far > MAX),
        "{error:?}"
    );
    assert!(!error.is_fatal());
    assert!(channel.input.size() <= MAX + 1024);
    assert_eq!(
        channel.read_message_timeout(TIMEOUT).unwrap(),
        Some(order(1))
    );
    assert!(channel.input.size() <= MAX + 1024);
    writer.join().unwrap();
}

#[test]
fn complete_oversized_line_is_refused_but_a_line_of_exactly_max_is_not() {
    let exact = line(3);
    let max = exact.len() - 1;
    let (mut channel, mut raw) = reader(max);
    raw.write_all(&line(12345)).unwrap();
    raw.write_all(&exact).unwrap();
    let error = channel.read_message().unwrap_err();
    assert!(
        matches!(error, ChannelError::MessageTooLarge { size_so_far, .. } if size_so_far == max + 8),
        "{error:?}"
    );
    assert_eq!(channel.read_message().unwrap(), Some(order(3)));
}

#[test]
fn many_small_messages_flow_whatever_the_maximum() {
    const COUNT: u64 = 100_000;
    let (mut channel, raw) = reader(64);
    let writer = thread::spawn(move || {
        let mut sender: Channel<Order, Order> = Channel::from_std(raw, 1024, 64).unwrap();
        for n in 0..COUNT {
            sender.write_message(&order(n)).unwrap();
        }
    });
    for n in 0..COUNT {
        assert_eq!(
            channel.read_message_timeout(TIMEOUT).unwrap(),
            Some(order(n))
        );
    }
    assert!(channel.input.size() <= 64 + 1024);
    writer.join().unwrap();
}

#[test]
fn ten_thousand_messages_arrive_in_order_under_a_mio_loop() {
    const COUNT: u64 = 10_000;
    const SENDER: Token = Token(0);
    const RECEIVER: Token = Token(1);
    let (mio_sender, mio_receiver) = mio::net::UnixStream::pair().unwrap();
    let mut sender: Channel<Order, Order> = Channel::new(mio_sender, 4096, 1024);
    let mut receiver: Channel<Order, Order> = Channel::new(mio_receiver, 4096, 1024);
    let mut poll = Poll::new().unwrap();
    let both = Interest::READABLE | Interest::WRITABLE;
    poll.registry().register(&mut sender, SENDER, both).unwrap();
    poll.registry()
        .register(&mut receiver, RECEIVER, Interest::READABLE)
        .unwrap();
    // Padded so that the backlog exceeds the socket buffer and writes resume on events.
    let padded = |n| Order {
        id: format!("{n}{}", "p".repeat(200)),
        n,
    };
    for n in 0..COUNT {
        sender.write_message(&padded(n)).unwrap();
    }
    assert!(sender.has_pending_output());
    let deadline = Instant::now() + TIMEOUT;
    let mut events = Events::with_capacity(16);
    let mut next = 0;
    while next < COUNT {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(!remaining.is_zero(), "received {next} of {COUNT} messages");
        poll.poll(&mut events, Some(remaining)).unwrap();
        for event in &events {
            match event.token() {
                SENDER if event.is_writable() => drop(sender.writable().unwrap()),
                RECEIVER if event.is_readable() => {
                    receiver.readable().unwrap();
                    while let Some(message) = receiver.read_message().unwrap() {
                        assert_eq!(message, padded(next));
                        next += 1;
                    }
                }
                _ => {}
            }
        }
    }
    assert!(!sender.has_pending_output());
    assert_eq!(sender.interest(), Interest::READABLE);
}

#[test]
fn malformed_lines_are_reported_and_the_next_line_parses() {
    let (mut channel, mut raw) = reader(1024);
    raw.write_all(b"{\"id\":\"req-1\",\"n\":\"not a number\"}\n")
        .unwrap();
    raw.write_all(b"not json at all\n").unwrap();
    raw.write_all(&[b'x'; 300]).unwrap();
    raw.write_all(b"\n\n  \r\n").unwrap();
    raw.write_all(&line(2)).unwrap();

    let error = channel.read_message().unwrap_err();
    assert!(!error.is_fatal());
    let ChannelError::InvalidMessage {
        line_excerpt, id, ..
    } = error
    else {
        panic!("{error:?}");
    };
    assert_eq!(id.as_deref(), Some("req-1"));
    assert_eq!(line_excerpt, r#"{"id":"req-1","n":"not a number"}"#);

    let error = channel.read_message().unwrap_err();
    assert!(
        matches!(&error, ChannelError::InvalidMessage { id: None, line_excerpt, .. } if line_excerpt == "not json at all"),
        "{error:?}"
    );
    let error = channel.read_message().unwrap_err();
    assert!(
        matches!(&error, ChannelError::InvalidMessage { line_excerpt, .. } if *line_excerpt == format!("{}…", "x".repeat(100))),
        "{error:?}"
    );
    assert_eq!(channel.read_message().unwrap(), Some(order(2)));
}

/// Issue 17: lines are decoded as text once checked as UTF-8 as a whole; a line that is not
/// UTF-8 is still refused for the string that is not, and a string with non-ASCII characters
/// still reads.
#[test]
fn lines_that_are_not_utf8_are_refused_and_others_read() {
    let (mut channel, mut raw) = reader(1024);
    raw.write_all(b"{\"id\":\"a\xff\",\"n\":1}\n").unwrap();
    raw.write_all("{\"id\":\"é\\n\u{1F600}\",\"n\":2}\n".as_bytes())
        .unwrap();
    let error = channel.read_message().unwrap_err();
    let ChannelError::InvalidMessage { source, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        source.to_string().starts_with("invalid unicode code point"),
        "{source}"
    );
    let read = channel.read_message().unwrap();
    assert_eq!(
        read,
        Some(Order {
            id: "é\n\u{1F600}".to_string(),
            n: 2
        })
    );
}

#[test]
fn peer_close_is_reported_after_the_buffered_messages() {
    for blocking in [true, false] {
        let (mut channel, mut raw) = reader(1024);
        if !blocking {
            channel.nonblocking().unwrap();
        }
        raw.write_all(&line(1)).unwrap();
        raw.write_all(b"{\"unfinished").unwrap();
        drop(raw);
        channel.readable().unwrap();
        assert_eq!(channel.read_message().unwrap(), Some(order(1)));
        assert_eq!(channel.read_message().unwrap(), None);
        assert!(channel.is_closed());
        assert_eq!(channel.read_message().unwrap(), None);
    }
}

#[test]
fn writing_to_a_closed_peer_fails_and_marks_the_channel_closed() {
    let (mut channel, raw) = reader(1024);
    drop(raw);
    let error = channel.write_message(&order(1)).unwrap_err();
    assert!(error.is_fatal(), "{error:?}");
    assert!(channel.is_closed());
}

#[test]
fn large_backlog_is_flushed_once_the_slow_peer_reads() {
    const COUNT: u64 = 2_000;
    let (mut sender, mut receiver) = Channel::<Order, Order>::pair(4096, 8192).unwrap();
    assert!(sender.is_blocking() && !receiver.is_blocking());
    sender.nonblocking().unwrap();
    let padding = "p".repeat(1000);
    for n in 0..COUNT {
        let mut message = order(n);
        message.id.push_str(&padding);
        sender.write_message(&message).unwrap();
    }
    assert!(sender.has_pending_output());
    assert_eq!(sender.interest(), Interest::READABLE | Interest::WRITABLE);

    receiver.blocking().unwrap();
    let reader = thread::spawn(move || {
        for n in 0..COUNT {
            let message = receiver.read_message_timeout(TIMEOUT).unwrap().unwrap();
            assert_eq!(message.n, n);
        }
    });
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut sender, Token(0), Interest::WRITABLE)
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let mut events = Events::with_capacity(4);
    while sender.has_pending_output() {
        let remaining = deadline.saturating_duration_since(Instant::now());
        assert!(!remaining.is_zero(), "backlog not flushed in time");
        sender.writable().unwrap();
        if sender.has_pending_output() {
            poll.poll(&mut events, Some(remaining)).unwrap();
        }
    }
    reader.join().unwrap();
}

#[test]
fn read_timeout_expires_and_keeps_the_channel_usable() {
    let (mut channel, mut raw) = reader(1024);
    channel.nonblocking().unwrap();
    raw.write_all(b"{\"id\":").unwrap();
    let error = channel
        .read_message_timeout(Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(error, ChannelError::Timeout { .. }), "{error:?}");
    assert!(!channel.is_blocking(), "the mode is restored");
    raw.write_all(b"\"x\",\"n\":5}\n").unwrap();
    let message = channel.read_message_timeout(TIMEOUT).unwrap();
    assert_eq!(message.map(|order| order.n), Some(5));
}

#[test]
fn outgoing_message_over_the_maximum_is_refused_and_nothing_is_queued() {
    let (mut sender, mut receiver) = Channel::<Order, Order>::pair(1024, 40).unwrap();
    let mut big = order(1);
    big.id = "i".repeat(100);
    let error = sender.write_message(&big).unwrap_err();
    assert!(
        matches!(error, ChannelError::OutgoingMessageTooLarge { max: 40, .. }),
        "{error:?}"
    );
    assert!(!sender.has_pending_output());
    sender.write_message(&order(2)).unwrap();
    receiver.blocking().unwrap();
    assert_eq!(receiver.read_message().unwrap(), Some(order(2)));
}
