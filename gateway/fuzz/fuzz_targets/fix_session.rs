//! Arbitrary bytes through the FIX framer, decoder and session state machine (see
//! `gateway::fix::fuzzing`): no input may panic, and everything the session writes must decode.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway::fix::fuzzing::drive(data);
});
