//! libFuzzer over `zab::wire::decode`: never panics, every rejection has a
//! message, and whatever decodes re-encodes to something that decodes equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_core::zab::wire::{decode, encode};

fuzz_target!(|data: &[u8]| {
    match decode(data) {
        Ok(msg) => assert_eq!(decode(&encode(&msg)).expect("re-encoded message decodes"), msg),
        Err(e) => assert!(!e.is_empty()),
    }
});
