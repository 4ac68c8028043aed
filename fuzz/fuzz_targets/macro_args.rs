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
    // Deeply nested brackets overflow the stack of recursive descent anywhere (this
    // harness's tokenizer, syn); rustc bounds the nesting it hands a macro long before.
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
        if depth > 64 {
            return;
        }
    }
    let Ok(tokens) = text.parse::<proc_macro2::TokenStream>() else {
        return;
    };
    let mut errors = errors::Errors::default();
    let _ = attr::parse_args(tokens, &mut errors);
});
