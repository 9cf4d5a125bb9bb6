//! libFuzzer over `zab::wire::decode_hello`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::zab::wire::decode_hello;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = decode_hello(data) {
        assert!(!e.is_empty());
    }
});
