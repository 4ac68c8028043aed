//! The frame reader (lengths, parts, the assembly limit) and the decoders of both
//! directions' messages, on any bytes a peer could send, in any read sizes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| usize::from(*b) % 64 + 1);
    wix_cluster::__fuzz::frames(data.get(1..).unwrap_or_default(), split);
});
