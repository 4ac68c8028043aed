//! Human durations and sizes in plugin settings, read at compile time: `"30s"`,
//! `"1.5s"`, `"500ms"` become nanoseconds and `"512MiB"` bytes, and a string that looks
//! like a number but is neither is refused with a message saying what was expected.

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
    /// Neither a duration nor a size: `"30x"`, `"30"`, `"+5s"`.
    NotAQuantity { text: String },
    /// A plain number, no unit: `"5"`, `"1.5"`.
    NoUnit { text: String },
    /// `"-5s"`.
    Negative { text: String },
    /// A size with a decimal point: `"1.5GB"`.
    FractionalSize { text: String },
    /// A duration that is not a whole number of nanoseconds: `"0.5ns"`.
    SubNanosecond { text: String },
    /// More nanoseconds than a `u64` holds (about 584 years).
    DurationOverflow { text: String },
    /// More bytes than a `u64` holds (16 EiB).
    SizeOverflow { text: String },
}

impl fmt::Display for UnitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAQuantity { text } => write!(
                f,
                "`{text:?}` is not a duration (like \"30s\", \"500ms\", \"1.5m\") \
                 or a size (like \"512MiB\", \"1GB\")"
            ),
            Self::NoUnit { text } => write!(
                f,
                "`{text:?}` has no unit: write a duration (ns, us, ms, s, m, h) like \"{text}s\", \
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
            Self::SubNanosecond { text } => write!(
                f,
                "`{text:?}` is not a whole number of nanoseconds, the finest a duration can be"
            ),
            Self::DurationOverflow { text } => write!(
                f,
                "`{text:?}` is too long: a duration here is at most u64::MAX nanoseconds \
                 (about 584 years)"
            ),
            Self::SizeOverflow { text } => write!(
                f,
                "`{text:?}` is too large: a size is at most u64::MAX bytes (16 EiB)"
            ),
        }
    }
}

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// Duration units and how many nanoseconds each is. `µ` is accepted both as the micro
/// sign (U+00B5, what keyboards type) and as the Greek letter mu (U+03BC).
const DURATION_UNITS: [(&str, u128); 9] = [
    ("ns", 1),
    ("us", NANOS_PER_MICRO),
    ("\u{b5}s", NANOS_PER_MICRO),
    ("\u{3bc}s", NANOS_PER_MICRO),
    ("ms", NANOS_PER_MILLI),
    ("s", NANOS_PER_SECOND),
    ("m", 60 * NANOS_PER_SECOND),
    ("min", 60 * NANOS_PER_SECOND),
    ("h", 3_600 * NANOS_PER_SECOND),
];

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
/// written. Otherwise it must be a duration or a size:
///
/// - a duration is an integer or decimal number, optional spaces, and one of `ns`, `us`
///   (or `µs`), `ms`, `s`, `m` (or `min`), `h`: `"30s"`, `"1.5 s"`, `".5ms"`;
/// - a size is an integer, optional spaces, and one of `B`, `KB`, `MB`, `GB` (powers of
///   1000), `KiB`, `MiB`, `GiB`, `TiB` (powers of 1024): `"512MiB"`.
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
    let not_a_quantity = || UnitsError::NotAQuantity {
        text: text.to_owned(),
    };
    if let Some(magnitude) = text.strip_prefix('-') {
        // Only a real quantity with a minus gets the message about the sign; "-x" is
        // just not a quantity.
        return match parse_quantity(magnitude) {
            Ok(_)
            | Err(
                UnitsError::FractionalSize { .. }
                | UnitsError::SubNanosecond { .. }
                | UnitsError::DurationOverflow { .. }
                | UnitsError::SizeOverflow { .. },
            ) => Err(UnitsError::Negative {
                text: text.to_owned(),
            }),
            Err(_) => Err(not_a_quantity()),
        };
    }
    let (number, rest) = split_number(text).ok_or_else(not_a_quantity)?;
    if rest.is_empty() {
        return Err(UnitsError::NoUnit {
            text: text.to_owned(),
        });
    }
    let unit = rest.trim_start_matches(' ');
    if let Some(&(_, nanos_per_unit)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) {
        let nanos = number.times(nanos_per_unit).map_err(|error| match error {
            Inexact::Overflow => UnitsError::DurationOverflow {
                text: text.to_owned(),
            },
            Inexact::Fraction => UnitsError::SubNanosecond {
                text: text.to_owned(),
            },
        })?;
        return Ok(Quantity::Duration { nanos });
    }
    if let Some(&(_, bytes_per_unit)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) {
        if !number.fraction.is_empty() {
            return Err(UnitsError::FractionalSize {
                text: text.to_owned(),
            });
        }
        let bytes = number
            .times(bytes_per_unit)
            .map_err(|_| UnitsError::SizeOverflow {
                text: text.to_owned(),
            })?;
        return Ok(Quantity::Size { bytes });
    }
    Err(not_a_quantity())
}

/// A non-negative decimal number as written, `12.50`: its digits before and after the
/// point (either may be empty, not both).
struct Number<'a> {
    integer: &'a str,
    fraction: &'a str,
}

/// Why a [`Number`] times a unit is not a `u64`.
enum Inexact {
    Overflow,
    /// Not a whole number of the smallest unit.
    Fraction,
}

/// Splits `digits[.digits]` or `.digits` off the front of `text`; `None` if it does not
/// start with one (a sign, a lone `.`, a `.` not followed by a digit).
fn split_number(text: &str) -> Option<(Number<'_>, &str)> {
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (integer, after_integer) = text.split_at(digits_end(text));
    let (fraction, rest) = match after_integer.strip_prefix('.') {
        Some(after_point) => {
            let (fraction, rest) = after_point.split_at(digits_end(after_point));
            if fraction.is_empty() {
                // `5.s`, `.s`: a point must be followed by digits.
                return None;
            }
            (fraction, rest)
        }
        None if integer.is_empty() => return None,
        None => ("", after_integer),
    };
    Some((Number { integer, fraction }, rest))
}

impl Number<'_> {
    /// The number times `unit`, exactly, as a `u64`.
    fn times(&self, unit: u128) -> Result<u64, Inexact> {
        let integer = digits_value(self.integer).ok_or(Inexact::Overflow)?;
        let whole = integer.checked_mul(unit).ok_or(Inexact::Overflow)?;
        let part = fraction_times(self.fraction, unit)?;
        let total = whole.checked_add(part).ok_or(Inexact::Overflow)?;
        u64::try_from(total).map_err(|_| Inexact::Overflow)
    }
}

/// `0.<fraction>` times `unit`, which must come out whole.
fn fraction_times(fraction: &str, unit: u128) -> Result<u128, Inexact> {
    let fraction = fraction.trim_end_matches('0');
    // Without its trailing zeros, `0.<fraction>` is n / 10^len with n not a multiple of
    // 10: times `unit` it is whole only if `unit` is a multiple of 2^len or of 5^len. No
    // duration unit is past len = 13 (an hour is 2^13 · 3^2 · 5^11 ns), and len <= 20
    // keeps n · unit far within `u128`.
    if fraction.len() > 20 {
        return Err(Inexact::Fraction);
    }
    let numerator = digits_value(fraction).ok_or(Inexact::Fraction)?;
    let denominator = fraction.bytes().fold(1_u128, |power, _| power * 10);
    let product = numerator.checked_mul(unit).ok_or(Inexact::Overflow)?;
    if product % denominator != 0 {
        return Err(Inexact::Fraction);
    }
    Ok(product / denominator)
}

/// The value of a string of ASCII digits; `None` if it does not fit a `u128`. An empty
/// string is 0 (`".5"` has no integer digits).
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
        assert_eq!(duration("7\u{3bc}s"), 7_000);
        assert_eq!(duration("500ms"), 500_000_000);
        assert_eq!(duration("30s"), 30_000_000_000);
        assert_eq!(duration("2m"), 120_000_000_000);
        assert_eq!(duration("2min"), 120_000_000_000);
        assert_eq!(duration("1h"), 3_600_000_000_000);
    }

    #[test]
    fn decimal_durations_are_exact() {
        assert_eq!(duration("1.5s"), 1_500_000_000);
        assert_eq!(duration("1.5m"), 90_000_000_000);
        assert_eq!(duration(".5ms"), 500_000);
        assert_eq!(duration("0.000000001s"), 1);
        assert_eq!(
            duration("2.50000000000000000000000000000000000000000000h"),
            9_000_000_000_000
        );
        assert_eq!(duration("1.0ns"), 1);
    }

    #[test]
    fn spaces_may_separate_the_number_and_the_unit() {
        assert_eq!(duration("30 s"), 30_000_000_000);
        assert_eq!(duration("1.5  ms"), 1_500_000);
        assert_eq!(size("512 MiB"), 512 << 20);
    }

    #[test]
    fn zero_is_allowed() {
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
            "30x", "30S", "30mb", "30 ", "30s ", "1e3s", "1_000ms", "+5s", "5.s", ".s", ".", "+",
            "-", "1..5s", "1.5.s", "30sec",
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
            "`\"30x\"` is not a duration (like \"30s\", \"500ms\", \"1.5m\") \
             or a size (like \"512MiB\", \"1GB\")"
        );
    }

    #[test]
    fn a_number_without_a_unit_is_refused_with_a_hint() {
        assert!(matches!(error("5"), UnitsError::NoUnit { .. }));
        assert!(matches!(error("1.5"), UnitsError::NoUnit { .. }));
        assert_eq!(
            error("5").to_string(),
            "`\"5\"` has no unit: write a duration (ns, us, ms, s, m, h) like \"5s\", \
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
        assert!(matches!(error("0.5ns"), UnitsError::SubNanosecond { .. }));
        assert!(matches!(
            error("0.0000000001s"),
            UnitsError::SubNanosecond { .. }
        ));
        assert!(matches!(
            error(&format!("0.{}1h", "0".repeat(100))),
            UnitsError::SubNanosecond { .. }
        ));
    }

    #[test]
    fn quantities_beyond_u64_are_refused() {
        // u64::MAX nanoseconds is 18446744073.709551615 seconds.
        assert_eq!(duration("18446744073.709551615s"), u64::MAX);
        assert!(matches!(
            error("18446744073.709551616s"),
            UnitsError::DurationOverflow { .. }
        ));
        assert!(matches!(
            error("5124096h"),
            UnitsError::DurationOverflow { .. }
        ));
        assert!(matches!(
            error(&format!("{}s", "9".repeat(60))),
            UnitsError::DurationOverflow { .. }
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
