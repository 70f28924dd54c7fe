//! The configuration loader, as `sozu start` and `sozu config check` read a file (relative
//! paths resolve against the test fixtures, so certificates and answer files can be named):
//! no panic, and a configuration it accepts turns into orders that all apply to an empty
//! state, in order.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use sozu_command_lib::{config::Config, state::ConfigState};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../command/tests/fixtures");

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok((config, _warnings)) = Config::parse(text, Path::new(FIXTURES)) else {
        return;
    };
    let mut state = ConfigState::new();
    for order in config.orders() {
        if let Err(error) = state.apply(&order) {
            panic!(
                "the {} order of an accepted configuration is refused: {error}",
                order.name()
            );
        }
    }
});
