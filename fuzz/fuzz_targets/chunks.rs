//! Messages larger than a frame travel in parts and come back whole, whatever the
//! payload and however the reads split it. One input in 32 repeats its payload past the
//! 1 MiB part size (up to 3 MiB, read in pieces of at least 1 KiB); the others are
//! small and read in pieces of 1 to 256 bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else {
        return;
    };
    let mut payload = body.to_vec();
    let mut split = usize::from(*a) + 1;
    if b % 32 == 31 && !body.is_empty() {
        let target = (usize::from(b / 32) % 3 + 1) << 20;
        while payload.len() < target {
            payload.extend_from_slice(body);
        }
        split *= 1024;
    }
    wix_cluster::__fuzz::round_trip(&payload, split);
});
