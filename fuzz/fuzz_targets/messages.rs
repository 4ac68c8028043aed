//! Every message that crosses a channel (worker <-> master, old master <-> new), decoded
//! from any bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    wix_cluster::__fuzz::messages(data);
});
