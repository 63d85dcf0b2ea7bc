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

#[cfg(test)]
mod tests {
    use super::*;

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
