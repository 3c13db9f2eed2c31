//! Cron schedules as CronJobs write them (`robfig/cron/v3`'s standard parser, which
//! Kubernetes uses): five fields (minute, hour, day of month, month, day of week) with lists,
//! ranges, steps and names; the `@yearly`/`@monthly`/`@weekly`/`@daily`/`@hourly` macros and
//! `@every <duration>`; an optional `TZ=`/`CRON_TZ=` prefix. Times are computed in a time
//! zone, so DST shifts behave as Kubernetes' do (a time skipped by DST moves forward).

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    Fields(Fields),
    /// `@every <duration>`: a constant delay (whole seconds, at least one).
    Every(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fields {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// `*` or `?` in day-of-month / day-of-week: then both day fields must match (AND),
    /// otherwise either may (OR), as in Vixie cron.
    dom_star: bool,
    dow_star: bool,
    /// A `TZ=` prefix inside the schedule.
    pub time_zone: Option<String>,
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

fn value(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(b.min + i as u32);
    }
    let v: u32 = s
        .parse()
        .map_err(|_| format!("failed to parse int from {s}"))?;
    // Sunday may be written 7.
    if b.max == 6 && v == 7 {
        return Ok(0);
    }
    Ok(v)
}

/// Parses one field into a bit set; returns whether it was a bare `*`/`?`.
fn field(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {s}"))?,
                ),
            ),
            None => (part, None),
        };
        let (start, end) = if range == "*" || range == "?" {
            if step.is_none_or(|s| s == 1) {
                star = true;
            }
            (b.min, b.max)
        } else if let Some((lo, hi)) = range.split_once('-') {
            (value(lo, b)?, value(hi, b)?)
        } else {
            let v = value(range, b)?;
            (v, if step.is_some() { b.max } else { v })
        };
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        if start < b.min || end > b.max || start > end {
            return Err(format!(
                "{part}: out of range [{}, {}] or beginning of range after its end",
                b.min, b.max
            ));
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok((bits, star))
}

fn parse_every(d: &str) -> Result<i64, String> {
    let span: jiff::SignedDuration = d
        .parse::<jiff::Span>()
        .ok()
        .and_then(|s| jiff::SignedDuration::try_from(s).ok())
        .or_else(|| d.parse().ok())
        .ok_or_else(|| format!("failed to parse duration {d}"))?;
    Ok(span.as_secs().max(1))
}

impl Schedule {
    /// Parses a schedule.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let (time_zone, rest) = match spec
            .strip_prefix("TZ=")
            .or_else(|| spec.strip_prefix("CRON_TZ="))
        {
            Some(r) => {
                let (tz, rest) = r
                    .split_once(' ')
                    .ok_or("missing fields after the time zone")?;
                (Some(tz.to_string()), rest.trim())
            }
            None => (None, spec),
        };
        if let Some(d) = rest.strip_prefix("@every ") {
            return Ok(Self::Every(parse_every(d.trim())?));
        }
        let expanded = match rest {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other if other.starts_with('@') => {
                return Err(format!("unrecognized descriptor: {other}"));
            }
            other => other,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {expanded}",
                fields.len()
            ));
        }
        let (minute, _) = field(fields[0], &MINUTES)?;
        let (hour, _) = field(fields[1], &HOURS)?;
        let (dom, dom_star) = field(fields[2], &DOM)?;
        let (month, _) = field(fields[3], &MONTHS)?;
        let (dow, dow_star) = field(fields[4], &DOW)?;
        Ok(Self::Fields(Fields {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
            time_zone,
        }))
    }

    /// The time zone a `TZ=` prefix names.
    pub fn time_zone(&self) -> Option<&str> {
        match self {
            Self::Fields(f) => f.time_zone.as_deref(),
            Self::Every(_) => None,
        }
    }

    /// The first activation strictly after `after`, in `tz` (`None` if none within 5 years).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        match self {
            Self::Every(secs) => {
                let whole = Timestamp::from_second(after.as_second()).ok()?;
                whole
                    .checked_add(jiff::SignedDuration::from_secs(*secs))
                    .ok()
            }
            Self::Fields(f) => f.next(after, tz),
        }
    }
}

impl Fields {
    fn day_matches(&self, d: Date) -> bool {
        let dom = self.dom & (1 << d.day()) != 0;
        let dow = self.dow & (1 << d.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let local = after.to_zoned(tz.clone()).datetime();
        let mut dt = local
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = dt.year() + 5;
        while dt.year() <= limit {
            if self.month & (1 << dt.month()) == 0 {
                let first = Date::new(dt.year(), dt.month(), 1).ok()?;
                dt = first
                    .checked_add(1.month())
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !self.day_matches(dt.date()) {
                dt = dt
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if self.hour & (1 << dt.hour()) == 0 {
                dt = DateTime::new(dt.year(), dt.month(), dt.day(), dt.hour(), 0, 0, 0)
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minute & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            let at = dt.to_zoned(tz.clone()).ok()?.timestamp();
            if at > after {
                return Some(at);
            }
            dt = dt.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next(spec: &str, after: &str) -> String {
        Schedule::parse(spec)
            .unwrap()
            .next(ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn table_of_next_activations() {
        let cases = [
            ("* * * * *", "2024-03-01T10:00:30Z", "2024-03-01T10:01:00Z"),
            (
                "*/15 * * * *",
                "2024-03-01T10:01:00Z",
                "2024-03-01T10:15:00Z",
            ),
            (
                "0 */6 * * *",
                "2024-03-01T10:01:00Z",
                "2024-03-01T12:00:00Z",
            ),
            ("30 2 * * *", "2024-03-01T10:01:00Z", "2024-03-02T02:30:00Z"),
            ("0 0 1 * *", "2024-01-31T00:00:00Z", "2024-02-01T00:00:00Z"),
            ("0 0 29 2 *", "2023-03-01T00:00:00Z", "2024-02-29T00:00:00Z"),
            (
                "0 9 * * mon-fri",
                "2024-03-01T10:00:00Z",
                "2024-03-04T09:00:00Z",
            ),
            ("0 0 13 * 5", "2024-03-01T10:00:00Z", "2024-03-08T00:00:00Z"),
            (
                "0 0 * jan,jul *",
                "2024-03-01T10:00:00Z",
                "2024-07-01T00:00:00Z",
            ),
            (
                "5-10/5 1 * * *",
                "2024-03-01T01:06:00Z",
                "2024-03-01T01:10:00Z",
            ),
            ("@hourly", "2024-03-01T10:00:00Z", "2024-03-01T11:00:00Z"),
            ("@weekly", "2024-03-01T10:00:00Z", "2024-03-03T00:00:00Z"),
            ("@yearly", "2024-03-01T10:00:00Z", "2025-01-01T00:00:00Z"),
            ("@every 90s", "2024-03-01T10:00:00Z", "2024-03-01T10:01:30Z"),
            ("0 0 * * 7", "2024-03-01T10:00:00Z", "2024-03-03T00:00:00Z"),
        ];
        for (spec, after, want) in cases {
            assert_eq!(next(spec, after), want, "{spec} after {after}");
        }
    }

    #[test]
    fn invalid_schedules_are_refused() {
        for bad in [
            "",
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "*/0 * * * *",
            "@often",
            "a * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn time_zones_shift_activations() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC in summer.
        assert_eq!(
            s.next(ts("2024-01-10T12:00:00Z"), &tz).unwrap().to_string(),
            "2024-01-11T08:00:00Z"
        );
        assert_eq!(
            s.next(ts("2024-07-10T12:00:00Z"), &tz).unwrap().to_string(),
            "2024-07-11T07:00:00Z"
        );
        // 02:30 does not exist on the spring-forward day: it runs at 03:30 local.
        let s = Schedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            s.next(ts("2024-03-30T12:00:00Z"), &tz).unwrap().to_string(),
            "2024-03-31T01:30:00Z"
        );
        let p = Schedule::parse("TZ=Asia/Tokyo 0 0 * * *").unwrap();
        assert_eq!(p.time_zone(), Some("Asia/Tokyo"));
    }
}
