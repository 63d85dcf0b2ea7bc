//! Dates for people, from Unix seconds, without a calendar crate.

/// `(year, month, day)` of a day count since 1970-01-01 (H. Hinnant's civil algorithm).
#[must_use]
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// `(year, month, day, hour, minute)` in UTC of Unix seconds.
fn utc_parts(unix: i64) -> (i64, u32, u32, i64, i64) {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    let secs = unix.rem_euclid(86_400);
    (y, m, d, secs / 3600, (secs % 3600) / 60)
}

/// `JJ/MM/AAAA HH:MM UTC`, as French readers write dates.
#[must_use]
pub fn format_fr(unix: i64) -> String {
    let (y, m, d, hour, minute) = utc_parts(unix);
    format!("{d:02}/{m:02}/{y} {hour:02}:{minute:02} UTC")
}

/// `AAAA-MM-JJ HH:MM UTC`, for administrators' tools.
#[must_use]
pub fn format_utc(unix: i64) -> String {
    let (y, m, d, hour, minute) = utc_parts(unix);
    format!("{y}-{m:02}-{d:02} {hour:02}:{minute:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(format_fr(1_800_000_000), "15/01/2027 08:00 UTC");
        assert_eq!(format_fr(951_782_400), "29/02/2000 00:00 UTC");
        assert_eq!(format_fr(-1), "31/12/1969 23:59 UTC");
        assert_eq!(format_utc(1_800_000_000), "2027-01-15 08:00 UTC");
    }
}
