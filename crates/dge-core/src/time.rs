//! Dates for people, from Unix seconds, in UTC.

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

/// `unix` in UTC with `format`; a time outside years 1 to 9999 (a bug upstream, never
/// a date a person was told) as its raw seconds.
#[must_use]
pub fn format(unix: i64, format: &[BorrowedFormatItem<'_>]) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// `JJ/MM/AAAA HH:MM UTC`, as French readers write dates.
#[must_use]
pub fn format_fr(unix: i64) -> String {
    format(
        unix,
        format_description!("[day]/[month]/[year] [hour]:[minute] UTC"),
    )
}

/// `AAAA-MM-JJ HH:MM UTC`, for administrators' tools.
#[must_use]
pub fn format_utc(unix: i64) -> String {
    format(
        unix,
        format_description!("[year]-[month]-[day] [hour]:[minute] UTC"),
    )
}

/// A lifetime as a French reader says it: « 48 heures », « 1 heure et 30 minutes »,
/// « 20 minutes », and under a minute « 20 secondes ». Rounded down to the minute,
/// never up: a link is not promised longer than it lasts.
#[must_use]
pub fn duration_fr(secs: i64) -> String {
    let secs = u64::try_from(secs).unwrap_or(0).max(1);
    let unit = |n: u64, word: &str| format!("{n} {word}{}", if n > 1 { "s" } else { "" });
    if secs < 60 {
        return unit(secs, "seconde");
    }
    let minutes = secs / 60;
    let (hours, minutes) = (minutes / 60, minutes % 60);
    match (hours, minutes) {
        (0, m) => unit(m, "minute"),
        (h, 0) => unit(h, "heure"),
        (h, m) => format!("{} et {}", unit(h, "heure"), unit(m, "minute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_in_french_and_are_never_rounded_up() {
        assert_eq!(duration_fr(172_800), "48 heures");
        assert_eq!(duration_fr(3_600), "1 heure");
        assert_eq!(duration_fr(5_400), "1 heure et 30 minutes");
        assert_eq!(duration_fr(7_260), "2 heures et 1 minute");
        assert_eq!(duration_fr(3_599), "59 minutes");
        assert_eq!(duration_fr(120), "2 minutes");
        assert_eq!(duration_fr(60), "1 minute");
        assert_eq!(duration_fr(59), "59 secondes");
        assert_eq!(duration_fr(20), "20 secondes");
        assert_eq!(duration_fr(1), "1 seconde");
        assert_eq!(duration_fr(0), "1 seconde");
    }

    #[test]
    fn known_dates() {
        assert_eq!(format_fr(0), "01/01/1970 00:00 UTC");
        assert_eq!(format_fr(1_800_000_000), "15/01/2027 08:00 UTC");
        assert_eq!(format_fr(951_782_400), "29/02/2000 00:00 UTC");
        assert_eq!(format_fr(-1), "31/12/1969 23:59 UTC");
        assert_eq!(format_utc(1_800_000_000), "2027-01-15 08:00 UTC");
        assert_eq!(format_utc(i64::MAX), format!("@{}", i64::MAX));
    }
}
