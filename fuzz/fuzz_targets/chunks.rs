//! Messages larger than a frame travel in parts and come back whole, whatever the
//! payload and however the reads split it. One input in 256 repeats its payload to just
//! past the 1 MiB part size (read in pieces of at least 1 KiB); the others are small
//! and read in pieces of 1 to 256 bytes. (Property tests in `ipc/frame.rs` cover
//! messages of several parts.)
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else {
        return;
    };
    let mut split = usize::from(*a) + 1;
    let payload = if *b == 255 && !body.is_empty() {
        split *= 1024;
        body.repeat(((1 << 20) + usize::from(*a)) / body.len() + 1)
    } else {
        body.to_vec()
    };
    wix_cluster::__fuzz::round_trip(&payload, split);
});
