//! Printing results: plain tables for people, JSON for scripts, and the small
//! formatting helpers both share.

use std::io::{self, Write};

use clap::ValueEnum;
use comfy_table::{Table, presets};
use serde_json::Value;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned columns for people
    Table,
    /// Pretty-printed JSON for scripts
    Json,
}

/// A borderless table with the given column titles.
pub(crate) fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header);
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Writes `table` to standard output, without trailing blanks.
pub(crate) fn print_table(table: &Table) -> io::Result<()> {
    print_line(&table.trim_fmt())
}

/// Writes `value` to standard output as pretty-printed JSON.
pub(crate) fn print_json(value: &Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    print_line(&text)
}

/// Writes one line (or several joined by `\n`) to standard output.
pub(crate) fn print_line(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")?;
    out.flush()
}

/// Shortens `text` to at most `max` characters, with `…` marking a cut, and
/// folds line breaks and runs of white space into single spaces so that a
/// table row stays on one line.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `yes` or `no`, for boolean columns.
pub(crate) fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

/// A creation time for a table: `YYYY-MM-DD HH:MM` in UTC, or `-` when the
/// server left it unset (zero).
pub(crate) fn created(unix_seconds: i64) -> String {
    if unix_seconds == 0 {
        "-".to_owned()
    } else {
        utc_minutes(unix_seconds)
    }
}

/// Formats Unix time (seconds) as `YYYY-MM-DD HH:MM` in UTC.
pub(crate) fn utc_minutes(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let seconds_of_day = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let hour = seconds_of_day / 3_600;
    let minute = seconds_of_day % 3_600 / 60;
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}")
}

/// The proleptic Gregorian date `(year, month, day)` of a count of days since
/// 1970-01-01.
///
/// Howard Hinnant's `civil_from_days` ("chrono-Compatible Low-Level Date
/// Algorithms"): shift the epoch to 0000-03-01 so that the leap day ends the
/// year, split into 400-year eras of 146,097 days, then find the year of the
/// era, the day of that March-based year and the month from it.
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    // In [0, 146096].
    let day_of_era = z - era * 146_097;
    // In [0, 399].
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    // In [0, 365], counted from March 1st.
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // In [0, 11], March first.
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_from_days_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        // 2000 is a leap year (divisible by 400), 1900 and 2100 are not.
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(11_017), (2000, 3, 1));
        assert_eq!(civil_from_days(-25_508), (1900, 3, 1));
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
    }

    #[test]
    fn civil_from_days_walks_every_day_in_order() {
        // Each day from 1900 to 2100 follows the previous one by exactly one day.
        let mut previous = civil_from_days(-25_567);
        assert_eq!(previous, (1900, 1, 1));
        for days in -25_566..=47_846 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = (y, m, d) == (py, pm + 1, 1);
            let next_year = (y, m, d) == (py + 1, 1, 1) && (pm, pd) == (12, 31);
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {y}-{m}-{d}"
            );
            previous = (y, m, d);
        }
        assert_eq!(previous, (2100, 12, 31));
    }

    #[test]
    fn utc_minutes_formats_unix_seconds() {
        assert_eq!(utc_minutes(0), "1970-01-01 00:00");
        assert_eq!(utc_minutes(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(
            utc_minutes(951_782_400 + 23 * 3_600 + 59 * 60 + 59),
            "2000-02-29 23:59"
        );
        assert_eq!(utc_minutes(-60), "1969-12-31 23:59");
    }

    #[test]
    fn created_shows_a_dash_when_unset() {
        assert_eq!(created(0), "-");
        assert_eq!(created(86_400), "1970-01-02 00:00");
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        assert!(utc_minutes(i64::MAX).ends_with("15:30"));
        assert!(!utc_minutes(i64::MIN).is_empty());
    }

    #[test]
    fn truncate_counts_characters_and_flattens_lines() {
        assert_eq!(truncate("court", 40), "court");
        assert_eq!(truncate("ligne 1\n  ligne 2", 40), "ligne 1 ligne 2");
        let long = "é".repeat(50);
        let cut = truncate(&long, 40);
        assert_eq!(cut.chars().count(), 40);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate(&"a".repeat(40), 40), "a".repeat(40));
    }

    #[test]
    fn table_has_no_leading_blank_and_no_trailing_blanks() {
        let mut t = table(["ID", "NAME"]);
        t.add_row(["datahub", "DataHub"]);
        let text = t.trim_fmt();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("ID       NAME"));
        assert_eq!(lines.next(), Some("datahub  DataHub"));
    }
}
