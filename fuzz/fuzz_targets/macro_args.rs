//! `#[wix_cluster::main(...)]`'s argument parser, on any text that lexes as tokens: it
//! reports mistakes, never panics. Compiled from the macro crate's own sources.
#![no_main]

#[path = "../../wix-cluster-macros/src/errors.rs"]
#[allow(dead_code)]
mod errors;
#[path = "../../wix-cluster-macros/src/units.rs"]
#[allow(dead_code)]
mod units;
#[path = "../../wix-cluster-macros/src/attr.rs"]
#[allow(dead_code)]
mod attr;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Recursive descent (the tokenizer, syn's expression parser: `- - - - x`, deep
    // brackets) needs stack in proportion to the input; rustc gives a macro a large
    // stack and bounds nesting. Here each input is parsed on a thread with 512 MiB
    // (reserved, touched only as deep as the input goes: `a<<<<...` 2,600 deep overflows
    // 64 MiB in an unoptimized build).
    let text = text.to_owned();
    let parsed = std::thread::Builder::new()
        .stack_size(512 << 20)
        .spawn(move || parse(&text))
        .expect("spawn a parsing thread")
        .join();
    if let Err(panic) = parsed {
        std::panic::resume_unwind(panic);
    }
});

fn parse(text: &str) {
    let Ok(tokens) = text.parse::<proc_macro2::TokenStream>() else {
        return;
    };
    let mut errors = errors::Errors::default();
    let _ = attr::parse_args(tokens, &mut errors);
}
