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

/// Formats Unix time (seconds) as `YYYY-MM-DD HH:MM` in UTC; a time beyond the
/// years 1 to 9999 (never one the server means) as its raw seconds.
pub(crate) fn utc_minutes(unix_seconds: i64) -> String {
    dge_core::time::format(
        unix_seconds,
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(utc_minutes(i64::MAX), format!("@{}", i64::MAX));
        assert_eq!(utc_minutes(i64::MIN), format!("@{}", i64::MIN));
        assert_eq!(utc_minutes(253_402_300_740), "9999-12-31 23:59");
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
