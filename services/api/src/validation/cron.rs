//! CronJob schedules (the standard 5-field syntax of `robfig/cron/v3`, which Kubernetes uses)
//! and time zones.

use std::sync::LazyLock;

use regex::Regex;

use super::{Errs, Path, invalid_str};

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [(&'static str, u32)],
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
        ("jan", 1),
        ("feb", 2),
        ("mar", 3),
        ("apr", 4),
        ("may", 5),
        ("jun", 6),
        ("jul", 7),
        ("aug", 8),
        ("sep", 9),
        ("oct", 10),
        ("nov", 11),
        ("dec", 12),
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &[
        ("sun", 0),
        ("mon", 1),
        ("tue", 2),
        ("wed", 3),
        ("thu", 4),
        ("fri", 5),
        ("sat", 6),
    ],
};

/// Checks a cron schedule: five fields (minute hour day-of-month month day-of-week) or a
/// descriptor (`@hourly`, `@daily`, `@every 5m`, …). The error reads as robfig/cron's.
pub fn parse_schedule(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty spec string".to_string());
    }
    let mut spec = spec;
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        let (tz, rest) = spec.split_once(' ').unwrap_or((spec, ""));
        let name = tz.split_once('=').map_or("", |(_, n)| n);
        if !time_zone_exists(name) {
            return Err(format!(
                "provided bad location {name}: unknown time zone {name}"
            ));
        }
        spec = rest.trim_start();
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return parse_descriptor(descriptor, spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, bounds) in fields.iter().zip([&MINUTES, &HOURS, &DOM, &MONTHS, &DOW]) {
        for part in field.split(',') {
            parse_range(part, bounds)?;
        }
    }
    Ok(())
}

fn parse_descriptor(descriptor: &str, spec: &str) -> Result<(), String> {
    match descriptor {
        "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => Ok(()),
        _ => match descriptor.strip_prefix("every ") {
            Some(duration) => parse_go_duration(duration)
                .map(|_| ())
                .map_err(|e| format!("failed to parse duration {spec}: {e}")),
            None => Err(format!("unrecognized descriptor: {spec}")),
        },
    }
}

/// Go's `time.ParseDuration` grammar: `1h30m`, `90s`, `1.5h`.
fn parse_go_duration(s: &str) -> Result<f64, String> {
    static DURATION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$").expect("static regex")
    });
    if s == "0" {
        return Ok(0.0);
    }
    if !DURATION.is_match(s) {
        return Err(format!("time: invalid duration {s:?}"));
    }
    Ok(0.0)
}

fn parse_range(expr: &str, bounds: &Bounds) -> Result<(), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (bounds.min, bounds.max)
    } else {
        let start = parse_int_or_name(low_and_high[0], bounds)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => parse_int_or_name(low_and_high[1], bounds)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            if single {
                end = bounds.max;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < bounds.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            bounds.min
        ));
    }
    if end > bounds.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            bounds.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok(())
}

fn parse_int_or_name(expr: &str, bounds: &Bounds) -> Result<u32, String> {
    let lower = expr.to_ascii_lowercase();
    if let Some((_, v)) = bounds.names.iter().find(|(n, _)| *n == lower) {
        return Ok(*v);
    }
    parse_int(expr)
}

fn parse_int(expr: &str) -> Result<u32, String> {
    let n: i64 = expr.parse().map_err(|_| {
        format!("failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: invalid syntax")
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {expr}"));
    }
    u32::try_from(n).map_err(|_| {
        format!(
            "failed to parse int from {expr}: strconv.Atoi: parsing {expr:?}: value out of range"
        )
    })
}

/// Whether the IANA zone exists; when this machine has no time zone database every
/// well-formed name is accepted.
fn time_zone_exists(name: &str) -> bool {
    let db = jiff::tz::db();
    db.is_definitively_empty() || db.get(name).is_ok()
}

/// `validateTimeZone`: an explicit IANA zone name.
pub(crate) fn validate_time_zone(tz: &str, path: &Path, errs: &mut Errs) {
    static PART: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[A-Za-z\.\-_0-9+]{1,14}$").expect("static regex"));
    if tz.is_empty() {
        errs.push(invalid_str(
            path,
            tz,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    for part in tz.split('/') {
        if part == "." || part == ".." || part.starts_with('-') || !PART.is_match(part) {
            errs.push(invalid_str(path, tz, format!("unknown time zone {tz}")));
            return;
        }
    }
    if tz.eq_ignore_ascii_case("local") {
        errs.push(invalid_str(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
        return;
    }
    if !time_zone_exists(tz) {
        errs.push(invalid_str(path, tz, format!("unknown time zone {tz}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        for ok in [
            "30 2 * * *",
            "*/15 * * * *",
            "0 0 1 jan,jul *",
            "0 9-17 * * MON-FRI",
            "5 4 * * sun",
            "0 0 ? * *",
            "1-59/2 * * * *",
            "@hourly",
            "@daily",
            "@every 1h30m",
        ] {
            assert!(parse_schedule(ok).is_ok(), "{ok}: {:?}", parse_schedule(ok));
        }
        for (bad, msg) in [
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            ("60 * * * *", "end of range (60) above maximum (59): 60"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            (
                "x * * * *",
                "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax",
            ),
            ("@fortnightly", "unrecognized descriptor: @fortnightly"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
        ] {
            assert_eq!(parse_schedule(bad).unwrap_err(), msg, "{bad}");
        }
    }

    #[test]
    fn time_zones() {
        let mut errs = Vec::new();
        validate_time_zone("Europe/Berlin", &Path::new("spec.timeZone"), &mut errs);
        validate_time_zone("Etc/UTC", &Path::new("spec.timeZone"), &mut errs);
        assert!(errs.is_empty(), "{errs:?}");
        validate_time_zone("Local", &Path::new("spec.timeZone"), &mut errs);
        validate_time_zone("Not A Zone", &Path::new("spec.timeZone"), &mut errs);
        validate_time_zone("", &Path::new("spec.timeZone"), &mut errs);
        assert_eq!(errs.len(), 3);
        assert_eq!(
            errs[1].to_string(),
            "spec.timeZone: Invalid value: \"Not A Zone\": unknown time zone Not A Zone"
        );
    }
}
