//! Human durations and sizes in plugin settings, read at compile time: `"30s"`,
//! `"1.5s"`, `"1m 30s"` become nanoseconds and `"512MiB"` bytes, and a string that looks
//! like a number but is neither is refused with a message saying what was expected.
//!
//! A duration is written in [`humantime`]'s grammar, the same as the `WIX_CLUSTER_*`
//! duration variables of the runtime crate: one grammar for both, read by one parser.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// What a string literal written as a plugin setting's value holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quantity {
    /// A duration, in nanoseconds: `"1.5s"` is `1_500_000_000`.
    Duration { nanos: u64 },
    /// A size, in bytes: `"512MiB"` is `536_870_912`.
    Size { bytes: u64 },
}

/// Why a string that starts like a number (a digit, `-`, `+` or `.`) is not a
/// [`Quantity`]. Displayed, it is the whole compile error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum UnitsError {
    /// Neither a duration nor a size: `"30x"`, `"+5s"`, `".5s"`.
    NotAQuantity { text: String },
    /// A plain number, no unit: `"5"`, `"1.5"`.
    NoUnit { text: String },
    /// `"-5s"`.
    Negative { text: String },
    /// A size with a decimal point: `"1.5GB"`.
    FractionalSize { text: String },
    /// A duration that is not a whole number of nanoseconds (`"0.5ns"`) or is more of
    /// them than a `u64` holds (about 584 years).
    DurationOutOfRange { text: String },
    /// More bytes than a `u64` holds (16 EiB).
    SizeOverflow { text: String },
}

impl fmt::Display for UnitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAQuantity { text } => write!(
                f,
                "`{text:?}` is not a duration (like \"30s\", \"1.5s\", \"1m 30s\") \
                 or a size (like \"512MiB\", \"1GB\")"
            ),
            Self::NoUnit { text } => write!(
                f,
                "`{text:?}` has no unit: write a duration (ns, us, ms, s, m, h, d) like \"{text}s\", \
                 a size (B, KB, MB, GB, KiB, MiB, GiB, TiB), or a number without the quotes"
            ),
            Self::Negative { text } => {
                write!(f, "durations and sizes cannot be negative: `{text:?}`")
            }
            Self::FractionalSize { text } => write!(
                f,
                "`{text:?}` is not a size: a size is a whole number of its unit, \
                 like \"1536MiB\" for 1.5 GiB"
            ),
            Self::DurationOutOfRange { text } => write!(
                f,
                "`{text:?}` is out of range: a duration here is a whole number of nanoseconds, \
                 at most u64::MAX of them (about 584 years)"
            ),
            Self::SizeOverflow { text } => write!(
                f,
                "`{text:?}` is too large: a size is at most u64::MAX bytes (16 EiB)"
            ),
        }
    }
}

/// Size units and how many bytes each is: decimal (`KB` = 1000) and binary
/// (`KiB` = 1024).
const SIZE_UNITS: [(&str, u128); 8] = [
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Reads a setting's string literal.
///
/// `None` when the string does not start like a number (a digit, `-`, `+` or `.`), or is
/// an IP or socket address (`"127.0.0.1:8125"`): it is a real string and is passed on as
/// written. Otherwise it must be a size or a duration:
///
/// - a size is an integer, optional spaces, and one of `B`, `KB`, `MB`, `GB` (powers of
///   1000), `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024): `"512MiB"`;
/// - a duration is anything [`humantime::parse_duration`] reads: one or more numbers,
///   each with a unit (`ns`, `us` or `µs`, `ms`, `s`, `m` or `min`, `h`, `d`, `w`, and
///   their longer names), spaces allowed: `"30s"`, `"1.5 s"`, `"1h 30m"`, `"0"`. It
///   must come to a whole number of nanoseconds, at most `u64::MAX` of them.
///
/// Units are case-sensitive (`m` is minutes, `MB` megabytes). Zero is allowed.
pub(crate) fn parse(text: &str) -> Option<Result<Quantity, UnitsError>> {
    let first = text.chars().next()?;
    if !(first.is_ascii_digit() || matches!(first, '-' | '+' | '.')) {
        return None;
    }
    if text.parse::<IpAddr>().is_ok() || text.parse::<SocketAddr>().is_ok() {
        return None;
    }
    Some(parse_quantity(text))
}

fn parse_quantity(text: &str) -> Result<Quantity, UnitsError> {
    let text_owned = || text.to_owned();
    if let Some(magnitude) = text.strip_prefix('-') {
        // Only a real quantity with a minus gets the message about the sign; "-x" is
        // just not a quantity.
        return match parse_quantity(magnitude) {
            Ok(_)
            | Err(
                UnitsError::FractionalSize { .. }
                | UnitsError::DurationOutOfRange { .. }
                | UnitsError::SizeOverflow { .. },
            ) => Err(UnitsError::Negative { text: text_owned() }),
            Err(_) => Err(UnitsError::NotAQuantity { text: text_owned() }),
        };
    }
    if let Some(size) = parse_size(text) {
        return size;
    }
    match humantime::parse_duration(text) {
        Ok(duration) => u64::try_from(duration.as_nanos())
            .map(|nanos| Quantity::Duration { nanos })
            .map_err(|_| UnitsError::DurationOutOfRange { text: text_owned() }),
        // humantime's word for a number with no unit after it: `"5"`, `"1.5"`.
        Err(humantime::DurationError::UnknownUnit { unit, .. }) if unit.is_empty() => {
            Err(UnitsError::NoUnit { text: text_owned() })
        }
        // Too large, or finer than a nanosecond (`"0.5ns"`).
        Err(humantime::DurationError::NumberOverflow) => {
            Err(UnitsError::DurationOutOfRange { text: text_owned() })
        }
        Err(_) => Err(UnitsError::NotAQuantity { text: text_owned() }),
    }
}

/// `text` as a size if it is written as one, a number and a size unit (a decimal
/// number is refused: sizes are whole); `None` otherwise (then it may be a duration).
fn parse_size(text: &str) -> Option<Result<Quantity, UnitsError>> {
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (integer, rest) = text.split_at(digits_end(text));
    let (point, fraction, rest) = match rest.strip_prefix('.') {
        Some(after_point) => {
            let (fraction, rest) = after_point.split_at(digits_end(after_point));
            (true, fraction, rest)
        }
        None => (false, "", rest),
    };
    let unit = rest.trim_start_matches(' ');
    let &(_, bytes_per_unit) = SIZE_UNITS.iter().find(|(name, _)| *name == unit)?;
    let error = |error: fn(String) -> UnitsError| Some(Err(error(text.to_owned())));
    if (integer.is_empty() && fraction.is_empty()) || (point && fraction.is_empty()) {
        // `.GB`, `5.GB`: a point must be followed by digits.
        return error(|text| UnitsError::NotAQuantity { text });
    }
    if point {
        return error(|text| UnitsError::FractionalSize { text });
    }
    let bytes = digits_value(integer)
        .and_then(|integer| integer.checked_mul(bytes_per_unit))
        .and_then(|bytes| u64::try_from(bytes).ok());
    match bytes {
        Some(bytes) => Some(Ok(Quantity::Size { bytes })),
        None => error(|text| UnitsError::SizeOverflow { text }),
    }
}

/// The value of a string of ASCII digits; `None` if it does not fit a `u128`.
fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0_u128, |value, digit| {
        value.checked_mul(10)?.checked_add(u128::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(text: &str) -> u64 {
        match parse(text) {
            Some(Ok(Quantity::Duration { nanos })) => nanos,
            other => panic!("{text:?} is not a duration: {other:?}"),
        }
    }

    fn size(text: &str) -> u64 {
        match parse(text) {
            Some(Ok(Quantity::Size { bytes })) => bytes,
            other => panic!("{text:?} is not a size: {other:?}"),
        }
    }

    fn error(text: &str) -> UnitsError {
        match parse(text) {
            Some(Err(error)) => error,
            other => panic!("{text:?} is not refused: {other:?}"),
        }
    }

    #[test]
    fn durations_in_every_unit_become_nanoseconds() {
        assert_eq!(duration("7ns"), 7);
        assert_eq!(duration("7us"), 7_000);
        assert_eq!(duration("7µs"), 7_000);
        assert_eq!(duration("500ms"), 500_000_000);
        assert_eq!(duration("30s"), 30_000_000_000);
        assert_eq!(duration("2m"), 120_000_000_000);
        assert_eq!(duration("2min"), 120_000_000_000);
        assert_eq!(duration("1h"), 3_600_000_000_000);
        assert_eq!(duration("1d"), 86_400_000_000_000);
        assert_eq!(duration("30sec"), 30_000_000_000);
    }

    #[test]
    fn durations_may_add_up_several_units() {
        assert_eq!(duration("1m 30s"), 90_000_000_000);
        assert_eq!(duration("1h30m"), 5_400_000_000_000);
        assert_eq!(duration("2s 500ms"), 2_500_000_000);
    }

    #[test]
    fn decimal_durations_are_exact() {
        assert_eq!(duration("1.5s"), 1_500_000_000);
        assert_eq!(duration("1.5m"), 90_000_000_000);
        assert_eq!(duration("0.5ms"), 500_000);
        assert_eq!(duration("0.000000001s"), 1);
        assert_eq!(duration("2.5h"), 9_000_000_000_000);
    }

    #[test]
    fn spaces_may_separate_the_number_and_the_unit() {
        assert_eq!(duration("30 s"), 30_000_000_000);
        assert_eq!(duration("1.5  ms"), 1_500_000);
        assert_eq!(size("512 MiB"), 512 << 20);
    }

    #[test]
    fn zero_is_allowed() {
        assert_eq!(duration("0"), 0);
        assert_eq!(duration("0s"), 0);
        assert_eq!(duration("0.0ms"), 0);
        assert_eq!(size("0B"), 0);
    }

    #[test]
    fn sizes_in_every_unit_become_bytes() {
        assert_eq!(size("3B"), 3);
        assert_eq!(size("3KB"), 3_000);
        assert_eq!(size("3MB"), 3_000_000);
        assert_eq!(size("3GB"), 3_000_000_000);
        assert_eq!(size("3KiB"), 3 << 10);
        assert_eq!(size("512MiB"), 536_870_912);
        assert_eq!(size("3GiB"), 3 << 30);
        assert_eq!(size("3TiB"), 3 << 40);
    }

    #[test]
    fn strings_that_do_not_start_like_a_number_are_not_read() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("localhost:8080"), None);
        assert_eq!(parse("s30"), None);
        assert_eq!(parse(" 30s"), None);
    }

    #[test]
    fn strings_that_start_like_a_number_but_are_neither_are_refused() {
        for text in [
            "30x",
            "30S",
            "30mb",
            "1e3s",
            "1_000ms",
            "+5s",
            "5.s",
            ".s",
            ".",
            "+",
            "-",
            "1..5s",
            "1.5.s",
            ".5ms",
            "7\u{3bc}s",
            "5.GB",
            ".GB",
        ] {
            assert_eq!(
                error(text),
                UnitsError::NotAQuantity {
                    text: text.to_owned()
                },
                "{text:?}"
            );
        }
        assert_eq!(
            error("30x").to_string(),
            "`\"30x\"` is not a duration (like \"30s\", \"1.5s\", \"1m 30s\") \
             or a size (like \"512MiB\", \"1GB\")"
        );
    }

    #[test]
    fn a_number_without_a_unit_is_refused_with_a_hint() {
        assert!(matches!(error("5"), UnitsError::NoUnit { .. }));
        assert!(matches!(error("1.5"), UnitsError::NoUnit { .. }));
        assert!(matches!(error("30 "), UnitsError::NoUnit { .. }));
        assert_eq!(
            error("5").to_string(),
            "`\"5\"` has no unit: write a duration (ns, us, ms, s, m, h, d) like \"5s\", \
             a size (B, KB, MB, GB, KiB, MiB, GiB, TiB), or a number without the quotes"
        );
    }

    #[test]
    fn an_address_is_passed_on_as_written() {
        for text in [
            "127.0.0.1",
            "0.0.0.0:8080",
            "::1",
            "[::1]:80",
            "2001:db8::1",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn negative_quantities_are_refused() {
        for text in ["-5s", "-1.5m", "-512MiB", "-0s", "-1.5GB", "-99999999999h"] {
            assert_eq!(
                error(text),
                UnitsError::Negative {
                    text: text.to_owned()
                },
                "{text:?}"
            );
        }
        assert_eq!(
            error("-5s").to_string(),
            "durations and sizes cannot be negative: `\"-5s\"`"
        );
        // A minus before something that is not a quantity is just not a quantity.
        assert!(matches!(error("-5x"), UnitsError::NotAQuantity { .. }));
        assert!(matches!(error("--5s"), UnitsError::NotAQuantity { .. }));
    }

    #[test]
    fn sizes_are_whole_numbers() {
        assert!(matches!(error("1.5GB"), UnitsError::FractionalSize { .. }));
        assert!(matches!(error("1.0KiB"), UnitsError::FractionalSize { .. }));
    }

    #[test]
    fn durations_finer_than_a_nanosecond_are_refused() {
        for text in [
            "0.5ns",
            "1.0ns",
            "0.0000000001s",
            &format!("0.{}1h", "0".repeat(100)),
        ] {
            assert!(
                matches!(error(text), UnitsError::DurationOutOfRange { .. }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn quantities_beyond_u64_are_refused() {
        // u64::MAX nanoseconds is 18446744073.709551615 seconds.
        assert_eq!(duration("18446744073.709551615s"), u64::MAX);
        assert!(matches!(
            error("18446744073.709551616s"),
            UnitsError::DurationOutOfRange { .. }
        ));
        assert!(matches!(
            error("5124096h"),
            UnitsError::DurationOutOfRange { .. }
        ));
        assert!(matches!(
            error(&format!("{}s", "9".repeat(60))),
            UnitsError::DurationOutOfRange { .. }
        ));
        assert_eq!(size("18446744073709551615B"), u64::MAX);
        assert!(matches!(
            error("18446744073709551616B"),
            UnitsError::SizeOverflow { .. }
        ));
        assert!(matches!(
            error("16777216TiB"),
            UnitsError::SizeOverflow { .. }
        ));
        assert_eq!(size("16777215TiB"), 16_777_215 << 40);
    }
}
