//! Writing to stdout: a closed pipe (`| head`) ends the command quietly instead of
//! panicking.

use std::io::Write;

/// Prints `line` and a newline.
pub(crate) fn line(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Prints `value` as one line of JSON.
pub(crate) fn json(value: &impl serde::Serialize) {
    match serde_json::to_string(value) {
        Ok(text) => line(&text),
        Err(e) => eprintln!("wix-cluster: cannot write JSON: {e}"),
    }
}

/// Fits `segments` on one line of at most `width` columns: whole segments, separated
/// by two blanks, as many as fit (the first always, cut if need be).
pub(crate) fn segments(segments: &[String], width: Option<usize>) -> String {
    let mut out = String::new();
    for segment in segments.iter().filter(|s| !s.is_empty()) {
        let extra = if out.is_empty() { 0 } else { 2 };
        let fits = width.is_none_or(|w| {
            crate::table::width_of(&out) + extra + crate::table::width_of(segment) <= w
        });
        if out.is_empty() && !fits {
            return crate::table::cut(segment, width.unwrap_or(0));
        }
        if !fits {
            break;
        }
        if extra > 0 {
            out.push_str("  ");
        }
        out.push_str(segment);
    }
    out
}
