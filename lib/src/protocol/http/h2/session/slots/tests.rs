//! Backend slots of an HTTP/2 session over real loopback connections: kept idle between
//! streams, taken over by the next stream that fits, given back when the backend stirs; and
//! the buffers of finished streams, kept for the next ones.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use mio::Token;
use sozu_command_lib::request::H2Config;

use super::super::{Buffers, Exchange, Mux, State};
use crate::{
    protocol::http::h2::Connection,
    session::{
        Action, BackConnection, BackUse,
        backs::{Backs, Slot},
        endpoint::{Endpoint, Ready},
    },
    timer::{Timeout, TimeoutKind, TimerKey, Timers},
};

const IDLE_AFTER: Duration = Duration::from_secs(30);

fn mux() -> Mux {
    let now = Instant::now();
    let codec = Connection::new(H2Config::default(), IDLE_AFTER, b"sozu-id", now);
    Mux::new(codec, Vec::new(), None, now)
}

/// Backend connections in `slots`, established for cluster `c`, to a listener of the test.
fn backs(backend: &TcpListener, slots: &[Slot]) -> Backs {
    let address = backend.local_addr().expect("address");
    let mut backs = Backs::default();
    for (token, &slot) in slots.iter().enumerate() {
        let stream = mio::net::TcpStream::connect(address).expect("connect");
        backs.insert(
            slot,
            BackConnection {
                endpoint: Endpoint::new(stream, Token(token)),
                lease: None,
                backend_id: "b".to_string(),
                address,
                connected: true,
                connect_started: Instant::now(),
                timeout: Timeout::default(),
            },
        );
        backs.connect_to(slot, Some(std::rc::Rc::from("c")));
    }
    backs
}

/// A stream routed to `cluster`, in `state`.
fn exchange(id: u32, cluster: &str, state: State) -> Exchange {
    let mut exchange = Exchange::with_buffers(id, Buffers::default());
    exchange.stream.cluster_id.push_str(cluster);
    exchange.state = state;
    exchange
}

/// A stream to `cluster` whose request and response went whole over `slot`, to the backend
/// whose sticky id is `backend_sticky`.
fn finished(id: u32, cluster: &str, slot: Slot, backend_sticky: &str) -> Exchange {
    let mut exchange = exchange(id, cluster, State::Forwarding);
    exchange.slot = Some(slot);
    exchange.backend_sticky.push_str(backend_sticky);
    exchange.push_body(&[], true);
    exchange.mark_done();
    exchange
}

fn queue(mux: &mut Mux, exchange: Exchange) {
    mux.queue.push_back(exchange.id);
    mux.exchanges.push(exchange);
}

fn leave(mux: &mut Mux, exchange: &mut Exchange, backs: &mut Backs, timers: &mut Timers) {
    let key = TimerKey {
        session: 0,
        uid: 1,
        kind: TimeoutKind::Front,
    };
    mux.leave_slot(exchange, backs, key, (Instant::now(), timers), IDLE_AFTER);
}

#[test]
fn a_clean_connection_stays_idle_and_the_next_stream_to_its_cluster_takes_it_over() {
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut backs = backs(&backend, &[Slot(0)]);
    let (mut mux, mut timers) = (mux(), Timers::new());
    let mut first = finished(1, "c", Slot(0), "b1");
    leave(&mut mux, &mut first, &mut backs, &mut timers);
    assert!(mux.released.is_empty(), "nothing goes back to the loop");
    assert!(mux.is_idle_slot(Slot(0)));
    assert!(
        backs
            .timeout_mut(Slot(0))
            .is_some_and(|t| t.deadline().is_some())
    );
    assert_eq!(mux.settle_slots(&backs), None, "an idle slot is held");

    queue(&mut mux, exchange(3, "c", State::Queued));
    queue(&mut mux, exchange(5, "other", State::Queued));
    let action = mux.next_connect(&backs);
    let taken = &mux.exchanges[0];
    assert_eq!(taken.slot, Some(Slot(0)));
    assert_eq!(taken.state, State::Forwarding);
    assert_eq!(taken.back_use, BackUse::Reused);
    assert_eq!(taken.backend_sticky, "b1");
    assert!(!mux.is_idle_slot(Slot(0)));
    // Another cluster connects, in a slot no one holds.
    assert_eq!(
        action,
        Some(Action::Connect {
            slot: Slot(1),
            cluster_id: "other".into(),
            sticky_id: None,
        })
    );
}

#[test]
fn a_sticky_stream_takes_over_only_a_connection_to_its_backend() {
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut backs = backs(&backend, &[Slot(0)]);
    let (mut mux, mut timers) = (mux(), Timers::new());
    leave(
        &mut mux,
        &mut finished(1, "c", Slot(0), "b1"),
        &mut backs,
        &mut timers,
    );
    let mut sticky = exchange(3, "c", State::Queued);
    sticky.sticky_id = Some("b2".to_string());
    queue(&mut mux, sticky);
    let action = mux.next_connect(&backs);
    assert!(mux.is_idle_slot(Slot(0)));
    assert_eq!(
        action,
        Some(Action::Connect {
            slot: Slot(1),
            cluster_id: "c".into(),
            sticky_id: Some("b2".to_string()),
        })
    );
}

#[test]
fn an_idle_connection_the_backend_stirred_is_given_back_for_the_loop_to_check() {
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut backs = backs(&backend, &[Slot(0), Slot(1)]);
    let (mut mux, mut timers) = (mux(), Timers::new());
    leave(
        &mut mux,
        &mut finished(1, "c", Slot(0), "b1"),
        &mut backs,
        &mut timers,
    );
    // A stream that ended before its request went whole leaves its connection unclean.
    let mut cut = exchange(3, "c", State::Forwarding);
    cut.slot = Some(Slot(1));
    cut.mark_done();
    leave(&mut mux, &mut cut, &mut backs, &mut timers);
    assert!(!mux.is_idle_slot(Slot(1)));
    assert_eq!(mux.settle_slots(&backs), Some(Slot(1)));
    assert!(!mux.released[0].reusable);

    if let Some(back) = backs.get_mut(Slot(0)) {
        back.endpoint.readiness.event.insert(Ready::READABLE);
    }
    mux.settle_slots(&backs);
    assert!(!mux.is_idle_slot(Slot(0)));
    let given_back = mux.released.iter().find(|r| r.slot == Slot(0));
    assert!(given_back.is_some_and(|released| released.reusable));
}

#[test]
fn an_idle_connection_past_its_timeout_goes_back_to_the_pool() {
    let backend = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut backs = backs(&backend, &[Slot(0)]);
    let (mut mux, mut timers) = (mux(), Timers::new());
    leave(
        &mut mux,
        &mut finished(1, "c", Slot(0), "b1"),
        &mut backs,
        &mut timers,
    );
    assert!(mux.expire_idle(Slot(0)));
    assert!(!mux.expire_idle(Slot(0)));
    assert_eq!(mux.settle_slots(&backs), Some(Slot(0)));
    assert!(mux.released[0].reusable);
}

/// Issue 16: with the spares bounded by the streams still open as each one finished, half
/// of a batch of streams that ended together started the next batch on new buffers.
#[test]
fn a_batch_of_streams_done_together_leaves_buffers_for_as_many() {
    let mut mux = mux();
    for id in 0..10 {
        mux.open(exchange(2 * id + 1, "c", State::Forwarding));
    }
    while let Some(exchange) = mux.exchanges.pop() {
        mux.recycle(exchange);
    }
    assert_eq!(mux.spare.len(), 10);
    // One more stream on buffers of its own: they are not kept.
    mux.open(exchange(21, "c", State::Forwarding));
    if let Some(exchange) = mux.exchanges.pop() {
        mux.recycle(exchange);
    }
    assert_eq!(
        mux.spare.len(),
        10,
        "no more than the most streams open at once"
    );
}
