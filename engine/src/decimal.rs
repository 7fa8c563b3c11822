//! Decimal text at the edges. FIX, JSON and config files speak in decimal strings; the engine
//! speaks in integers. These helpers convert exactly, in both directions, and refuse anything
//! they cannot represent rather than round it: floats never touch value.

use core::fmt;

/// Why a decimal string was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecimalError {
    #[error("not a decimal number")]
    Syntax,
    #[error("more decimal places than the {0} allowed")]
    TooPrecise(u8),
    #[error("number too large")]
    Overflow,
    #[error("not a whole multiple of the increment")]
    NotAMultiple,
}

/// Parses a non-negative decimal such as `"12.5"` into minor units with `scale` decimal places
/// (`"12.5"` at scale 2 is 1250). Trailing zeros beyond the scale are accepted; significant
/// digits beyond it are an error, never rounded.
pub fn parse_units(text: &str, scale: u8) -> Result<u128, DecimalError> {
    let text = text.trim();
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return Err(DecimalError::Syntax);
    }
    let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(DecimalError::Syntax);
    }
    let significant = fraction.trim_end_matches('0');
    if significant.len() > usize::from(scale) {
        return Err(DecimalError::TooPrecise(scale));
    }
    let mut value: u128 = 0;
    let mut push = |digit: u8| -> Result<(), DecimalError> {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(digit - b'0')))
            .ok_or(DecimalError::Overflow)?;
        Ok(())
    };
    for digit in whole.bytes().chain(significant.bytes()) {
        push(digit)?;
    }
    for _ in significant.len()..usize::from(scale) {
        push(b'0')?;
    }
    Ok(value)
}

/// Parses a decimal that must be a whole number of `increment`s (both at `scale`), returning
/// the count: a price into ticks, a quantity into lots.
pub fn parse_increments(text: &str, scale: u8, increment: u128) -> Result<u128, DecimalError> {
    let units = parse_units(text, scale)?;
    if increment == 0 || units % increment != 0 {
        return Err(DecimalError::NotAMultiple);
    }
    Ok(units / increment)
}

/// Formats minor units with `scale` decimal places, trimming trailing fractional zeros:
/// 1250 at scale 2 is `"12.5"`, 1200 is `"12"`.
pub fn format_units(units: u128, scale: u8) -> DecimalDisplay {
    DecimalDisplay { units, scale }
}

/// The [`fmt::Display`] returned by [`format_units`]; it writes without allocating, and
/// [`DecimalDisplay::write_to`] appends the same text to a `String` without a formatter, for
/// the FIX encoder's hot path.
#[derive(Clone, Copy, Debug)]
pub struct DecimalDisplay {
    units: u128,
    scale: u8,
}

impl DecimalDisplay {
    /// Appends the text to `out`.
    pub fn write_to(&self, out: &mut String) {
        self.pieces(|piece| out.push_str(piece));
    }

    /// Hands the text to `sink` in pieces: the whole part, then (if the fraction is not zero)
    /// the point, the fraction's leading zeros and its significant digits.
    fn pieces(&self, mut sink: impl FnMut(&str)) {
        // A scale beyond u128's range leaves no whole part.
        // Values that fit 64 bits, which is nearly all of them, take the cheap 64-bit
        // division rather than u128's library call.
        let (whole, fraction) = match 10u128.checked_pow(u32::from(self.scale)) {
            Some(divisor) => match (u64::try_from(self.units), u64::try_from(divisor)) {
                (Ok(units), Ok(divisor)) => {
                    (u128::from(units / divisor), u128::from(units % divisor))
                }
                _ => (self.units / divisor, self.units % divisor),
            },
            None => (0, self.units),
        };
        let mut digits = itoa::Buffer::new();
        sink(integer_text(whole, &mut digits));
        if fraction == 0 {
            return;
        }
        let (fraction, width) = trim_zeros(fraction, usize::from(self.scale));
        sink(".");
        let significant = integer_text(fraction, &mut digits);
        let mut zeros = width - significant.len();
        while zeros > 0 {
            let run = zeros.min(ZEROS.len());
            sink(&ZEROS[..run]);
            zeros -= run;
        }
        sink(significant);
    }
}

impl fmt::Display for DecimalDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut result = Ok(());
        self.pieces(|piece| {
            if result.is_ok() {
                result = f.write_str(piece);
            }
        });
        result
    }
}

const ZEROS: &str = "0000000000000000000000000000000000000000";

/// The decimal digits of `value`, through 64-bit arithmetic whenever the value fits.
fn integer_text(value: u128, digits: &mut itoa::Buffer) -> &str {
    match u64::try_from(value) {
        Ok(small) => digits.format(small),
        Err(_) => digits.format(value),
    }
}

/// A non-zero fraction of `width` digits without its trailing zeros, and the digits left.
fn trim_zeros(fraction: u128, mut width: usize) -> (u128, usize) {
    let Ok(mut small) = u64::try_from(fraction) else {
        let mut fraction = fraction;
        while fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        return (fraction, width);
    };
    while small % 10 == 0 {
        small /= 10;
        width -= 1;
    }
    (u128::from(small), width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly() {
        assert_eq!(parse_units("12.5", 2), Ok(1250));
        assert_eq!(parse_units("12", 2), Ok(1200));
        assert_eq!(parse_units("0.01", 2), Ok(1));
        assert_eq!(parse_units(".5", 1), Ok(5));
        assert_eq!(parse_units("1.2300", 2), Ok(123));
        assert_eq!(parse_units("0.000000001", 8), Err(DecimalError::TooPrecise(8)));
        assert_eq!(parse_units("-1", 2), Err(DecimalError::Syntax));
        assert_eq!(parse_units("1e5", 2), Err(DecimalError::Syntax));
        assert_eq!(parse_units("", 2), Err(DecimalError::Syntax));
        assert_eq!(parse_units(".", 2), Err(DecimalError::Syntax));
        assert_eq!(parse_units("1.2.3", 2), Err(DecimalError::Syntax));
        let huge = "9".repeat(40);
        assert_eq!(parse_units(&huge, 0), Err(DecimalError::Overflow));
    }

    #[test]
    fn increments() {
        assert_eq!(parse_increments("60000.50", 2, 50), Ok(120_001));
        assert_eq!(parse_increments("60000.25", 2, 50), Err(DecimalError::NotAMultiple));
    }

    #[test]
    fn formats_and_round_trips() {
        assert_eq!(format_units(1250, 2).to_string(), "12.5");
        assert_eq!(format_units(1200, 2).to_string(), "12");
        assert_eq!(format_units(1, 8).to_string(), "0.00000001");
        assert_eq!(format_units(7, 0).to_string(), "7");
        for units in [0u128, 1, 9, 10, 123_456_789, u128::from(u64::MAX)] {
            let text = format_units(units, 6).to_string();
            assert_eq!(parse_units(&text, 6), Ok(units));
        }
    }

    #[test]
    fn formats_beyond_64_bits_and_beyond_u128_scales() {
        let max = u128::MAX;
        assert_eq!(format_units(max, 0).to_string(), max.to_string());
        let units = u128::from(u64::MAX) * 1000 + 5;
        assert_eq!(format_units(units, 4).to_string(), "1844674407370955161.5005");
        let tiny = format_units(5, 45).to_string();
        assert_eq!(tiny, format!("0.{}5", "0".repeat(44)));
        let mut appended = String::from("44=");
        format_units(6_000_150, 2).write_to(&mut appended);
        assert_eq!(appended, "44=60001.5");
    }
}
