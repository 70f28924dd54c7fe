//! Host names of a script's `remote`, resolved off the event loop: one thread runs the
//! system's resolver (`getaddrinfo`, which blocks), and a cache answers again without it.
//!
//! The event loop asks [`Resolver::lookup`], which never blocks: an address literal, or a
//! name in the cache, answers at once; another name is sent to the thread and answers
//! [`Lookup::Pending`]. When the thread has an answer it calls the `notify` function given to
//! [`Resolver::spawn`] (the loop's waker); the loop then calls [`Resolver::receive`], which
//! fills the cache and names the hosts answered, so that the sessions waiting for them ask
//! again.

use std::{
    collections::{HashMap, HashSet},
    io,
    net::{SocketAddr, ToSocketAddrs},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// How long a resolved name is kept.
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a failure is kept, so a bad name does not keep the thread busy.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Names kept in the cache at most; past it, expired entries go, then the whole cache.
const MAX_CACHED: usize = 4096;
/// Names waiting for the thread at most; more fail at once.
const MAX_PENDING: usize = 1024;

/// The answer for one `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The addresses the name resolved to, in the resolver's order.
    Resolved(Vec<SocketAddr>),
    /// Asked of the thread; `notify` will be called.
    Pending,
    /// The resolver's message.
    Failed(String),
}

/// A name's answer in the cache.
struct Cached {
    answer: Result<Vec<SocketAddr>, String>,
    expires: Instant,
}

type Answer = (String, io::Result<Vec<SocketAddr>>);

/// The resolver of one worker.
pub struct Resolver {
    questions: mpsc::Sender<String>,
    answers: mpsc::Receiver<Answer>,
    cache: HashMap<String, Cached>,
    pending: HashSet<String>,
}

impl Resolver {
    /// Starts the resolver thread. `notify` is called from it after each answer.
    pub fn spawn(notify: impl Fn() + Send + 'static) -> io::Result<Resolver> {
        let (questions, questions_rx) = mpsc::channel::<String>();
        let (answers_tx, answers) = mpsc::channel();
        thread::Builder::new()
            .name("sozu-resolver".to_string())
            .spawn(move || {
                // Ends when the resolver (the sender of questions) is dropped.
                for name in questions_rx {
                    let answer = name
                        .to_socket_addrs()
                        .map(|addresses| addresses.collect::<Vec<_>>());
                    if answers_tx.send((name, answer)).is_err() {
                        return;
                    }
                    notify();
                }
            })?;
        Ok(Resolver {
            questions,
            answers,
            cache: HashMap::new(),
            pending: HashSet::new(),
        })
    }

    /// The addresses of `name` (`host:port`), without blocking.
    pub fn lookup(&mut self, name: &str, now: Instant) -> Lookup {
        if let Ok(address) = name.parse::<SocketAddr>() {
            return Lookup::Resolved(vec![address]);
        }
        if let Some(cached) = self.cache.get(name)
            && cached.expires > now
        {
            return match &cached.answer {
                Ok(addresses) => Lookup::Resolved(addresses.clone()),
                Err(message) => Lookup::Failed(message.clone()),
            };
        }
        if self.pending.contains(name) {
            return Lookup::Pending;
        }
        if self.pending.len() >= MAX_PENDING {
            return Lookup::Failed("too many names waiting for the resolver".to_string());
        }
        if self.questions.send(name.to_string()).is_err() {
            return Lookup::Failed("the resolver thread is gone".to_string());
        }
        self.pending.insert(name.to_string());
        Lookup::Pending
    }

    /// Takes the thread's answers into the cache; returns the names answered.
    pub fn receive(&mut self, now: Instant) -> Vec<String> {
        let mut answered = Vec::new();
        while let Ok((name, answer)) = self.answers.try_recv() {
            self.pending.remove(&name);
            let (answer, ttl) = match answer {
                Ok(addresses) if addresses.is_empty() => {
                    (Err("no address".to_string()), NEGATIVE_TTL)
                }
                Ok(addresses) => (Ok(addresses), POSITIVE_TTL),
                Err(error) => (Err(error.to_string()), NEGATIVE_TTL),
            };
            self.make_room(now);
            self.cache.insert(
                name.clone(),
                Cached {
                    answer,
                    expires: now + ttl,
                },
            );
            answered.push(name);
        }
        answered
    }

    fn make_room(&mut self, now: Instant) {
        if self.cache.len() < MAX_CACHED {
            return;
        }
        self.cache.retain(|_, cached| cached.expires > now);
        if self.cache.len() >= MAX_CACHED {
            self.cache.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resolver whose notifications arrive on a channel, to wait on them with a deadline.
    fn resolver() -> (Resolver, mpsc::Receiver<()>) {
        let (notified, notifications) = mpsc::channel();
        let resolver = Resolver::spawn(move || {
            let _ = notified.send(());
        })
        .unwrap();
        (resolver, notifications)
    }

    fn answer_for(resolver: &mut Resolver, notifications: &mpsc::Receiver<()>, name: &str) {
        let now = Instant::now();
        assert_eq!(resolver.lookup(name, now), Lookup::Pending);
        assert_eq!(resolver.lookup(name, now), Lookup::Pending, "asked once");
        notifications
            .recv_timeout(Duration::from_secs(10))
            .expect("the resolver answers");
        assert_eq!(resolver.receive(now), vec![name.to_string()]);
    }

    #[test]
    fn address_literals_answer_at_once() {
        let (mut resolver, _) = resolver();
        let now = Instant::now();
        assert_eq!(
            resolver.lookup("127.0.0.1:9000", now),
            Lookup::Resolved(vec![SocketAddr::from(([127, 0, 0, 1], 9000))])
        );
        assert_eq!(
            resolver.lookup("[::1]:80", now),
            Lookup::Resolved(vec!["[::1]:80".parse().unwrap()])
        );
    }

    #[test]
    fn names_resolve_on_the_thread_then_come_from_the_cache_until_they_expire() {
        let (mut resolver, notifications) = resolver();
        answer_for(&mut resolver, &notifications, "localhost:9000");
        let now = Instant::now();
        let Lookup::Resolved(addresses) = resolver.lookup("localhost:9000", now) else {
            panic!("not resolved");
        };
        assert!(
            addresses
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 9000),
            "{addresses:?}"
        );
        assert_eq!(
            resolver.lookup(
                "localhost:9000",
                now + POSITIVE_TTL + Duration::from_secs(1)
            ),
            Lookup::Pending
        );
    }

    #[test]
    fn failures_are_cached_briefly() {
        let (mut resolver, notifications) = resolver();
        answer_for(&mut resolver, &notifications, "no port here");
        let now = Instant::now();
        assert!(
            matches!(resolver.lookup("no port here", now), Lookup::Failed(_)),
            "a name without a port fails"
        );
    }
}
