//! The ring-buffer decoder on any record the kernel side could write (a record of another
//! layout, a torn or truncated one, lengths past the buffers): `decode` must never panic, only
//! return an event or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = seawall::kernel::decode::decode(data);
});
