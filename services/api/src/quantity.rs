//! Kubernetes resource quantities (`500m`, `128Mi`, `1e3`, `0.5`).
//!
//! A [`Quantity`] holds its exact value in nano-units (`i128`, so `E` and `Ei` suffixes fit)
//! and the suffix family it was written in, which decides its canonical form as in Kubernetes:
//! `0.5` → `500m`, `1000` → `1k`, `1.5Gi` → `1536Mi`, `1e9` → `1e9`. Sums and comparisons are
//! exact. Precision finer than 1n is rounded up, as Kubernetes does.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

const NANO: i128 = 1_000_000_000;

/// The suffix family a quantity was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// `Ki`, `Mi`, `Gi`, …
    BinarySI,
    /// `n`, `u`, `m`, ``, `k`, `M`, `G`, …
    #[default]
    DecimalSI,
    /// `e3`, `E-2`, …
    DecimalExponent,
}

/// An exact resource quantity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// Why a string is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {input:?}: {reason}")]
pub struct ParseQuantityError {
    input: String,
    reason: &'static str,
}

impl Quantity {
    /// A quantity of `nanos` nano-units in decimal SI form.
    pub fn from_nanos(nanos: i128) -> Self {
        Self {
            nanos,
            format: Format::DecimalSI,
        }
    }

    /// `millis` thousandths (CPU millicores).
    pub fn from_millis(millis: i64) -> Self {
        Self::from_nanos(i128::from(millis) * 1_000_000)
    }

    /// A whole number in the given format (bytes are usually `BinarySI`).
    pub fn from_value(value: i64, format: Format) -> Self {
        Self {
            nanos: i128::from(value) * NANO,
            format,
        }
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in thousandths, rounded up (CPU millicores).
    pub fn milli_value(&self) -> i64 {
        ceil_div(self.nanos, 1_000_000).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// The value rounded up to a whole number (bytes, pods).
    pub fn value(&self) -> i64 {
        ceil_div(self.nanos, NANO).clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// The suffix family.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }
}

fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 { q + 1 } else { q }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}
impl Eq for Quantity {}
impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;
    fn add(self, rhs: Self) -> Self {
        Self {
            nanos: self.nanos.saturating_add(rhs.nanos),
            format: self.format,
        }
    }
}
impl std::ops::AddAssign for Quantity {
    fn add_assign(&mut self, rhs: Self) {
        self.nanos = self.nanos.saturating_add(rhs.nanos);
    }
}
impl std::ops::Sub for Quantity {
    type Output = Quantity;
    fn sub(self, rhs: Self) -> Self {
        Self {
            nanos: self.nanos.saturating_sub(rhs.nanos),
            format: self.format,
        }
    }
}
impl std::iter::Sum for Quantity {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Quantity::default(), |a, b| a + b)
    }
}

impl FromStr for Quantity {
    type Err = ParseQuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseQuantityError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (negative, body) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let number_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(err("no number"));
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // Value = digits × 10^(-frac_len) × multiplier.
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return Err(err("too large"));
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| err("bad digits"))?
        };
        let mut exp10: i32 = -(frac_part.len() as i32);
        let mut pow2: u32 = 0;
        let format = match suffix {
            "" => Format::DecimalSI,
            "n" => {
                exp10 -= 9;
                Format::DecimalSI
            }
            "u" => {
                exp10 -= 6;
                Format::DecimalSI
            }
            "m" => {
                exp10 -= 3;
                Format::DecimalSI
            }
            "k" => {
                exp10 += 3;
                Format::DecimalSI
            }
            "M" => {
                exp10 += 6;
                Format::DecimalSI
            }
            "G" => {
                exp10 += 9;
                Format::DecimalSI
            }
            "T" => {
                exp10 += 12;
                Format::DecimalSI
            }
            "P" => {
                exp10 += 15;
                Format::DecimalSI
            }
            "E" => {
                exp10 += 18;
                Format::DecimalSI
            }
            "Ki" => {
                pow2 = 10;
                Format::BinarySI
            }
            "Mi" => {
                pow2 = 20;
                Format::BinarySI
            }
            "Gi" => {
                pow2 = 30;
                Format::BinarySI
            }
            "Ti" => {
                pow2 = 40;
                Format::BinarySI
            }
            "Pi" => {
                pow2 = 50;
                Format::BinarySI
            }
            "Ei" => {
                pow2 = 60;
                Format::BinarySI
            }
            other => {
                let Some(exp) = other.strip_prefix(['e', 'E']) else {
                    return Err(err("unknown suffix"));
                };
                let exp: i32 = exp.parse().map_err(|_| err("bad exponent"))?;
                if !(-30..=30).contains(&exp) {
                    return Err(err("exponent out of range"));
                }
                exp10 += exp;
                Format::DecimalExponent
            }
        };
        // nanos = mantissa × 2^pow2 × 10^(exp10 + 9), rounding up below 1n.
        let mut value = mantissa
            .checked_mul(1i128 << pow2)
            .ok_or_else(|| err("too large"))?;
        let shift = exp10 + 9;
        if shift >= 0 {
            for _ in 0..shift {
                value = value.checked_mul(10).ok_or_else(|| err("too large"))?;
            }
        } else {
            let mut divisor: i128 = 1;
            for _ in 0..(-shift) {
                divisor = divisor.checked_mul(10).ok_or_else(|| err("too small"))?;
            }
            value = ceil_div(value, divisor);
        }
        if value > i128::from(i64::MAX) * NANO * 1000 {
            return Err(err("too large"));
        }
        Ok(Self {
            nanos: if negative { -value } else { value },
            format,
        })
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.abs();
        if abs == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySI && abs % NANO == 0 && abs / NANO >= 1024 {
            let whole = abs / NANO;
            const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            for (i, suffix) in SUFFIXES.iter().enumerate().rev() {
                let unit = 1i128 << (10 * (i + 1));
                if whole % unit == 0 {
                    return write!(f, "{sign}{}{suffix}", whole / unit);
                }
            }
            return write!(f, "{sign}{whole}");
        }
        // Largest power of 1000 (from 10^-9) that divides the value exactly.
        let mut exp = -9i32;
        let mut scaled = abs;
        while exp < 18 && scaled % 1000 == 0 {
            scaled /= 1000;
            exp += 3;
        }
        let suffix = match (self.format, exp) {
            (Format::DecimalExponent, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, -9) => "n".into(),
            (_, -6) => "u".into(),
            (_, -3) => "m".into(),
            (_, 0) => String::new(),
            (_, 3) => "k".into(),
            (_, 6) => "M".into(),
            (_, 9) => "G".into(),
            (_, 12) => "T".into(),
            (_, 15) => "P".into(),
            (_, _) => "E".into(),
        };
        write!(f, "{sign}{scaled}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    #[test]
    fn canonical_forms_match_kubernetes() {
        for (input, canonical) in [
            ("0.5", "500m"),
            ("500m", "500m"),
            ("1", "1"),
            ("1000", "1k"),
            ("1.5", "1500m"),
            ("128Mi", "128Mi"),
            ("1.5Gi", "1536Mi"),
            ("1024", "1024"),
            ("1Ki", "1Ki"),
            ("1e3", "1e3"),
            ("1e9", "1e9"),
            ("100M", "100M"),
            ("0", "0"),
            ("-2", "-2"),
            ("2.5Ki", "2560"),
            ("0.1m", "100u"),
            ("1000000000.0", "1G"),
        ] {
            assert_eq!(q(input).to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn compare_and_sum_exactly() {
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert!(q("500m") < q("1"));
        assert_eq!(q("250m") + q("0.75"), q("1"));
        assert_eq!(
            [q("100m"), q("200m"), q("700m")]
                .into_iter()
                .sum::<Quantity>(),
            q("1")
        );
        assert_eq!(q("1.5").milli_value(), 1500);
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1n").nanos(), 1);
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "abc", "1.2.3", "5 Mi", "1Zi", "--1", "1e", "."] {
            assert!(bad.parse::<Quantity>().is_err(), "{bad}");
        }
    }
}
