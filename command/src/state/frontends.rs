//! The HTTP or HTTPS frontends of a state, ordered by key.
//!
//! A state holds 100,000 frontends and more, in the main process and in every worker: each is
//! stored once, behind an `Arc` shared with a worker's router, and its key (listener address,
//! hostname without case, path rule, method) is read from the frontend itself instead of being
//! kept beside it as a [`FrontendKey`], which was a second copy of the hostname and a B-tree
//! slot of 120 bytes instead of 8.

use std::{
    borrow::Borrow,
    cmp::Ordering,
    collections::BTreeSet,
    hash::{Hash, Hasher},
    net::SocketAddr,
    sync::Arc,
};

use crate::request::{FrontendKey, HttpFrontend, PathRule};

/// Frontends by listener address, hostname (without case), path rule and method, in the order
/// of [`FrontendKey`].
#[derive(Debug, Clone, Default)]
pub struct HttpFrontends(BTreeSet<Keyed>);

impl HttpFrontends {
    /// How many frontends there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The frontend with this key.
    pub fn get(&self, key: &FrontendKey) -> Option<&Arc<HttpFrontend>> {
        self.0
            .get(key as &dyn KeyParts)
            .map(|keyed| &keyed.frontend)
    }

    /// The frontend with the same key as `frontend` (which may differ in other fields).
    pub fn get_same_key(&self, frontend: &HttpFrontend) -> Option<&Arc<HttpFrontend>> {
        self.0
            .get(frontend as &dyn KeyParts)
            .map(|keyed| &keyed.frontend)
    }

    /// The frontends in key order.
    pub fn values(&self) -> impl Iterator<Item = &Arc<HttpFrontend>> {
        self.0.iter().map(|keyed| &keyed.frontend)
    }

    /// Adds `frontend`, or gives it back when one with its key is there already.
    pub fn insert(&mut self, frontend: Arc<HttpFrontend>) -> Result<(), Arc<HttpFrontend>> {
        // One search of the tree: the set drops what it refuses, so a second handle on the
        // frontend is what gives it back.
        let given = Arc::clone(&frontend);
        if self.0.insert(Keyed::new(frontend)) {
            Ok(())
        } else {
            Err(given)
        }
    }

    /// Removes the frontend with this key and gives it back.
    pub fn remove(&mut self, key: &FrontendKey) -> Option<Arc<HttpFrontend>> {
        self.0
            .take(key as &dyn KeyParts)
            .map(|keyed| keyed.frontend)
    }

    /// Keeps the frontends for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(&HttpFrontend) -> bool) {
        self.0.retain(|keyed| keep(&keyed.frontend));
    }
}

/// Two sets are equal when they hold equal frontends, every field compared.
impl PartialEq for HttpFrontends {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.values().zip(other.values()).all(|(a, b)| a == b)
    }
}

impl Eq for HttpFrontends {}

impl FromIterator<HttpFrontend> for HttpFrontends {
    /// The last of frontends with the same key stays.
    fn from_iter<I: IntoIterator<Item = HttpFrontend>>(frontends: I) -> Self {
        let mut set = BTreeSet::new();
        for frontend in frontends {
            set.replace(Keyed::new(Arc::new(frontend)));
        }
        HttpFrontends(set)
    }
}

impl HttpFrontend {
    /// Whether `other` has this frontend's key: the equality of their [`FrontendKey`]s, without
    /// making them (a copy of the hostname in lower case each).
    pub fn has_same_key(&self, other: &HttpFrontend) -> bool {
        cmp_keys(self, other) == Ordering::Equal
    }

    /// Hashes this frontend's key as two frontends with the same key
    /// ([`HttpFrontend::has_same_key`]) hash alike: the hostname in lower case, a byte at a
    /// time, without making a [`FrontendKey`].
    pub fn hash_key<H: Hasher>(&self, state: &mut H) {
        self.address.hash(state);
        for byte in self.hostname.bytes() {
            state.write_u8(byte.to_ascii_lowercase());
        }
        state.write_usize(self.hostname.len());
        self.path.hash(state);
        self.method.hash(state);
    }
}

/// A frontend ordered and compared by its key only, with the first parts of its key as two
/// numbers that order as the key does: an insertion into a set of 100,000 frontends makes
/// about 32 comparisons, and most of them are decided by these numbers, in the set's own
/// node, without reading the frontend and its hostname through two pointers (the comparison
/// was a quarter of a worker's start and a sixth of the main process's).
#[derive(Debug, Clone)]
struct Keyed {
    /// An IPv4 address and its port as `ip << 16 | port`; [`u64::MAX`] for an IPv6 address,
    /// which the frontend's address then orders.
    address: u64,
    /// The hostname's first eight bytes in lower case, big-endian, zeros after a shorter
    /// hostname: numbers in the order of the bytes.
    hostname: u64,
    frontend: Arc<HttpFrontend>,
}

impl Keyed {
    fn new(frontend: Arc<HttpFrontend>) -> Self {
        let address = match frontend.address {
            SocketAddr::V4(address) => {
                u64::from(address.ip().to_bits()) << 16 | u64::from(address.port())
            }
            SocketAddr::V6(_) => u64::MAX,
        };
        let mut first = [0; 8];
        for (folded, byte) in first.iter_mut().zip(frontend.hostname.as_bytes()) {
            *folded = byte.to_ascii_lowercase();
        }
        Keyed {
            address,
            hostname: u64::from_be_bytes(first),
            frontend,
        }
    }
}

/// The parts of a frontend's key, as a frontend or a [`FrontendKey`] holds them, so that a
/// set of frontends can be searched with either.
trait KeyParts {
    fn address(&self) -> SocketAddr;
    /// The hostname, in any case: compared in lower case.
    fn hostname(&self) -> &str;
    fn path(&self) -> &PathRule;
    fn method(&self) -> Option<&str>;
}

impl KeyParts for HttpFrontend {
    fn address(&self) -> SocketAddr {
        self.address
    }
    fn hostname(&self) -> &str {
        &self.hostname
    }
    fn path(&self) -> &PathRule {
        &self.path
    }
    fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }
}

impl KeyParts for FrontendKey {
    fn address(&self) -> SocketAddr {
        self.address
    }
    fn hostname(&self) -> &str {
        &self.hostname
    }
    fn path(&self) -> &PathRule {
        &self.path
    }
    fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }
}

/// The order of [`FrontendKey`] (whose hostname is in lower case): address, hostname, path
/// rule, method. Generic, so that two frontends of the set (an insertion: 17 comparisons in a
/// set of 100,000) compare without a dynamic call per part; a search by key goes through
/// `dyn KeyParts`.
fn cmp_keys<A: KeyParts + ?Sized, B: KeyParts + ?Sized>(a: &A, b: &B) -> Ordering {
    cmp_addresses(a.address(), b.address())
        .then_with(|| cmp_folded(a.hostname(), b.hostname()))
        .then_with(|| a.path().cmp(b.path()))
        .then_with(|| a.method().cmp(&b.method()))
}

impl Ord for dyn KeyParts + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_keys(self, other)
    }
}

/// The order of `SocketAddr`, IPv4 addresses (nearly all listeners) compared inline as a
/// number and a port: `SocketAddr::cmp`, called out of line, was a quarter of a comparison
/// of two frontends.
fn cmp_addresses(a: SocketAddr, b: SocketAddr) -> Ordering {
    match (a, b) {
        (SocketAddr::V4(a), SocketAddr::V4(b)) => a
            .ip()
            .to_bits()
            .cmp(&b.ip().to_bits())
            .then_with(|| a.port().cmp(&b.port())),
        _ => a.cmp(&b),
    }
}

/// Two hostnames in the order of their bytes in lower case, as [`FrontendKey`] holds them.
/// Bytes that are equal as they are (nearly all of them: a search compares a hostname with
/// many that share its first bytes) are not folded.
fn cmp_folded(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            let (x, y) = (x.to_ascii_lowercase(), y.to_ascii_lowercase());
            if x != y {
                return x.cmp(&y);
            }
        }
    }
    a.len().cmp(&b.len())
}

impl PartialOrd for dyn KeyParts + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for dyn KeyParts + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for dyn KeyParts + '_ {}

impl<'a> Borrow<dyn KeyParts + 'a> for Keyed {
    fn borrow(&self) -> &(dyn KeyParts + 'a) {
        &*self.frontend
    }
}

/// The order of [`cmp_keys`]: two addresses that differ as numbers differ in that order
/// (IPv6 ones, all [`u64::MAX`], are compared by [`cmp_keys`]), and then two hostnames whose
/// first eight bytes differ, in lower case, differ at the first of those bytes, or one ended
/// there (a zero against a byte: the shorter one comes first, as a prefix does).
impl Ord for Keyed {
    fn cmp(&self, other: &Self) -> Ordering {
        let numbers = if self.address == u64::MAX && other.address == u64::MAX {
            Ordering::Equal
        } else {
            (self.address, self.hostname).cmp(&(other.address, other.hostname))
        };
        numbers.then_with(|| cmp_keys(&*self.frontend, &*other.frontend))
    }
}

impl PartialOrd for Keyed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Keyed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Keyed {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::PathRuleKind;

    fn frontend(port: u16, hostname: &str, path: &str, method: Option<&str>) -> HttpFrontend {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut frontend = HttpFrontend::new(None, address, hostname);
        frontend.path = PathRule {
            kind: PathRuleKind::Prefix,
            value: path.to_string(),
        };
        frontend.method = method.map(str::to_string);
        frontend
    }

    fn sample() -> Vec<HttpFrontend> {
        vec![
            frontend(81, "a.test", "", None),
            frontend(80, "B.test", "/x", None),
            frontend(80, "b.test", "", Some("GET")),
            frontend(80, "a.test", "/", None),
            frontend(80, "Ab.test", "", None),
            frontend(80, "a.test", "", None),
            frontend(80, "b.test", "", None),
        ]
    }

    #[test]
    fn frontends_are_in_the_order_of_their_keys() {
        let frontends: HttpFrontends = sample().into_iter().collect();
        let keys: Vec<FrontendKey> = frontends.values().map(|f| f.key()).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(frontends.len(), sample().len());
    }

    #[test]
    fn a_key_finds_its_frontend_whatever_the_case_of_its_hostname() {
        let mut frontends: HttpFrontends = sample().into_iter().collect();
        let upper = frontend(80, "B.TEST", "/x", None);
        let found = frontends.get(&upper.key()).map(|f| f.hostname.clone());
        assert_eq!(found.as_deref(), Some("B.test"));
        assert!(frontends.get_same_key(&upper).is_some());
        assert!(frontends.insert(Arc::new(upper.clone())).is_err());
        assert!(
            frontends
                .get(&frontend(80, "B.test", "/y", None).key())
                .is_none()
        );
        assert!(frontends.remove(&upper.key()).is_some());
        assert!(frontends.get_same_key(&upper).is_none());
        assert_eq!(frontends.len(), sample().len() - 1);
    }

    #[test]
    fn hostnames_compare_as_their_lowercase_bytes() {
        for (a, b) in [
            ("a.test", "B.test"),
            ("ab.test", "AB.TEST"),
            ("a", "a.test"),
            ("A_b", "a[b"),
            ("zz", "Z"),
            ("", "a"),
            ("x.TEST", "x.tesu"),
        ] {
            let expected = a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase());
            assert_eq!(cmp_folded(a, b), expected, "{a} {b}");
            assert_eq!(cmp_folded(b, a), expected.reverse(), "{b} {a}");
        }
    }

    fn any_frontend() -> impl proptest::strategy::Strategy<Value = HttpFrontend> {
        use proptest::prelude::*;
        (
            prop_oneof![
                Just("127.0.0.1"),
                Just("127.0.0.2"),
                Just("::1"),
                Just("::2")
            ],
            79u16..82,
            "[a-bA-B.]{0,10}",
            prop_oneof![Just(""), Just("/a")],
        )
            .prop_map(|(ip, port, hostname, path)| {
                let address = SocketAddr::new(ip.parse().expect("an address"), port);
                let mut frontend = frontend(80, &hostname, path, None);
                frontend.address = address;
                frontend
            })
    }

    proptest::proptest! {
        /// Issue 17: frontends of the set, compared by the numbers they keep beside them
        /// first, order as their keys do (IPv6 addresses, hostnames that share their first
        /// eight bytes or differ in case, one a prefix of the other).
        #[test]
        fn kept_numbers_order_frontends_as_their_keys(a in any_frontend(), b in any_frontend()) {
            let expected = cmp_keys(&a, &b);
            let (a, b) = (Keyed::new(Arc::new(a)), Keyed::new(Arc::new(b)));
            proptest::prop_assert_eq!(a.cmp(&b), expected);
            proptest::prop_assert_eq!(b.cmp(&a), expected.reverse());
        }
    }

    fn key_hash(frontend: &HttpFrontend) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        frontend.hash_key(&mut hasher);
        hasher.finish()
    }

    proptest::proptest! {
        /// Issue 17: two frontends have the same key exactly when their [`FrontendKey`]s are
        /// equal, and then hash alike.
        #[test]
        fn same_keys_are_equal_keys_and_hash_alike(a in any_frontend(), b in any_frontend()) {
            let same = a.has_same_key(&b);
            proptest::prop_assert_eq!(same, a.key() == b.key());
            if same {
                proptest::prop_assert_eq!(key_hash(&a), key_hash(&b));
            }
        }
    }

    #[test]
    fn keys_differ_by_address_hostname_path_or_method_but_not_case() {
        let a = frontend(80, "A.test", "/x", Some("GET"));
        assert!(a.has_same_key(&frontend(80, "a.TEST", "/x", Some("GET"))));
        assert_eq!(
            key_hash(&a),
            key_hash(&frontend(80, "a.TEST", "/x", Some("GET")))
        );
        for other in [
            frontend(81, "a.test", "/x", Some("GET")),
            frontend(80, "a.test.", "/x", Some("GET")),
            frontend(80, "a.test", "/X", Some("GET")),
            frontend(80, "a.test", "/x", None),
            frontend(80, "a.test", "/x", Some("get")),
        ] {
            assert!(!a.has_same_key(&other), "{}", other.key());
        }
    }

    #[test]
    fn sets_are_equal_when_every_field_is() {
        let frontends: HttpFrontends = sample().into_iter().collect();
        let mut tagged = sample();
        tagged[0].tags.insert("k".into(), "v".into());
        assert_ne!(frontends, tagged.into_iter().collect());
        assert_eq!(frontends, sample().into_iter().rev().collect());
    }

    /// Issue 17: addresses compare inline as `SocketAddr` orders them (the address, then the
    /// port; IPv4 before IPv6), whatever the sizes of their parts.
    #[test]
    fn addresses_compare_as_socket_addresses_do() {
        let addresses: Vec<SocketAddr> = [
            "0.0.0.0:0",
            "0.0.0.0:65535",
            "1.0.0.0:1",
            "0.0.0.255:2",
            "127.0.0.1:80",
            "127.0.0.1:8080",
            "127.0.0.2:80",
            "255.255.255.255:1",
            "[::1]:80",
            "[::1]:79",
            "[::ffff:127.0.0.1]:80",
            "[2001:db8::1]:443",
        ]
        .iter()
        .map(|text| text.parse().unwrap())
        .collect();
        for a in &addresses {
            for b in &addresses {
                assert_eq!(cmp_addresses(*a, *b), a.cmp(b), "{a} against {b}");
            }
        }
    }
}
