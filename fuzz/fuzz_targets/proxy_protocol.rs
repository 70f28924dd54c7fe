//! PROXY protocol headers, versions 1 and 2, as a listener with `expect_proxy` reads them: no
//! panic, a header lies within the input, every prefix of it asks for more bytes, and a v2
//! header written for the addresses read reads back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sozu_lib::protocol::proxy_protocol::{ProxyAddresses, parse, write_v2};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(header)) = parse(data) else {
        return;
    };
    assert!(header.length > 0 && header.length <= data.len());
    for end in 0..header.length {
        let prefix = data.get(..end).unwrap_or_default();
        assert_eq!(parse(prefix), Ok(None), "prefix of {end} bytes");
    }
    if let ProxyAddresses::Proxied {
        source,
        destination,
    } = header.addresses
    {
        if source.is_ipv4() == destination.is_ipv4() {
            let mut written = Vec::new();
            write_v2(source, destination, &mut written);
            let again = parse(&written).expect("a written header is valid");
            assert_eq!(
                again.map(|h| (h.addresses, h.length)),
                Some((header.addresses, written.len()))
            );
        }
    }
});
