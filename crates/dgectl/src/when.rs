//! Times and delays typed on the command line: `30d`, `2027-01-31`,
//! `2027-01-31T18:00` (always UTC), turned into Unix seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A delay such as `90s`, `30m`, `12h`, `3d` or `2w`, in seconds (a bare number is seconds).
pub(crate) fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let bad = || format!("expected a delay such as 90s, 30m, 12h, 3d or 2w, not {s:?}");
    let amount: i64 = digits.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    amount.checked_mul(unit_secs).ok_or_else(bad)
}

/// `YYYY-MM-DD` (00:00 UTC) or `YYYY-MM-DDTHH:MM` (UTC), in Unix seconds.
pub(crate) fn parse_date_time(s: &str) -> Option<i64> {
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    // Far enough for any date a person means.
    if !(1..=9999).contains(&year) {
        return None;
    }
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let (hour, minute) = match time {
        None => (0, 0),
        Some(time) => {
            let (hour, minute) = time.trim_end_matches('Z').split_once(':')?;
            (hour.parse().ok()?, minute.parse().ok()?)
        }
    };
    // Refuses 2027-02-31, 24:00 and the like instead of rolling over.
    let at = time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day)
        .ok()?
        .with_hms(hour, minute, 0)
        .ok()?;
    Some(at.assume_utc().unix_timestamp())
}

/// When a grant ends: a date, a date and time, or a delay from now; never in the past.
pub(crate) fn parse_expiry(s: &str) -> Result<i64, String> {
    let at = match parse_date_time(s) {
        Some(at) => at,
        None => parse_duration(s)
            .ok()
            .and_then(|delay| now().checked_add(delay))
            .ok_or_else(|| expected(s))?,
    };
    if at <= now() {
        return Err(format!("{s:?} is already past"));
    }
    Ok(at)
}

/// A point in the past: a date, a date and time, or a delay ago (`7d`).
pub(crate) fn parse_past(s: &str) -> Result<i64, String> {
    match parse_date_time(s) {
        Some(at) => Ok(at),
        None => Ok(now() - parse_duration(s).map_err(|_| expected(s))?),
    }
}

fn expected(s: &str) -> String {
    format!("expected YYYY-MM-DD, YYYY-MM-DDTHH:MM (UTC) or a delay such as 30d, not {s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1_800));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("3d"), Ok(259_200));
        assert_eq!(parse_duration("2w"), Ok(1_209_600));
        for bad in ["", "d", "3y", "-3d", "3 d", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(parse_date_time("1970-01-02"), Some(86_400));
        assert_eq!(parse_date_time("2023-11-14T22:13"), Some(1_699_999_980));
        assert_eq!(parse_date_time("2000-02-29 23:59"), Some(951_868_740));
        assert_eq!(parse_date_time("1969-12-31"), Some(-86_400));
        assert_eq!(parse_date_time("2024-2-29"), Some(1_709_164_800));
        assert_eq!(parse_date_time("2027-01-31T18:00Z"), Some(1_801_418_400));
        for bad in [
            "2027-02-31",
            "2100-02-29",
            "2027-00-10",
            "2027-01-00",
            "2027-13-01",
            "2027-01-01T24:00",
            "demain",
            "2027-01",
            "99999999999999-01-01",
            "0-01-01",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad:?}");
        }
        // Huge delays are refused, not wrapped around.
        assert!(parse_expiry("9223372036854775000").is_err());
    }

    #[test]
    fn an_expiry_is_in_the_future() {
        let in_a_month = parse_expiry("30d").expect("a delay");
        assert!((in_a_month - now() - 30 * 86_400).abs() <= 2);
        assert!(parse_expiry("2001-01-01").is_err());
        assert!(parse_expiry("3000-01-01").is_ok());
        assert!(parse_expiry("bientôt").is_err());
        let week_ago = parse_past("7d").expect("a delay");
        assert!((now() - week_ago - 7 * 86_400).abs() <= 2);
    }
}
