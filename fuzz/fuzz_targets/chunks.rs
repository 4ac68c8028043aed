//! Messages larger than a frame travel in parts and come back whole, whatever the
//! payload and however the reads split it (the payload is repeated to cross the 1 MiB
//! part size now and then).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (split, repeat) = match data {
        [a, b, ..] => (usize::from(*a) * 97 + 1, usize::from(*b) % 4),
        _ => (1, 0),
    };
    let body = data.get(2..).unwrap_or_default();
    let mut payload = body.to_vec();
    if repeat > 0 && !body.is_empty() {
        while payload.len() < repeat * (1 << 20) {
            payload.extend_from_slice(body);
        }
    }
    wix_cluster::__fuzz::round_trip(&payload, split);
});
