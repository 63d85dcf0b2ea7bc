//! The printed table (Markdown, so that a run can be pasted into
//! `docs/performance.md`) and the targets checked against it.

use std::time::Duration;

use crate::load::Stats;

/// The figure one of ours is compared with.
#[derive(Debug)]
pub(crate) struct Reference {
    pub(crate) label: String,
    pub(crate) rate: f64,
}

impl Reference {
    pub(crate) fn new(label: &str, rate: f64) -> Self {
        Self {
            label: label.to_owned(),
            rate,
        }
    }
}

/// One line of the table.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) stats: Stats,
    /// The server's (or the reference process's) peak RSS during the scenario.
    pub(crate) peak_kib: Option<u64>,
    pub(crate) reference: Option<Reference>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .filter(|r| r.rate > 0.0)
            .map(|r| self.stats.rate() / r.rate)
    }
}

/// A whole run.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) backend: String,
    /// Threads of the load generator, and the server's worker threads.
    pub(crate) threads: (usize, usize),
    pub(crate) accounts: u64,
    pub(crate) concurrency: usize,
    pub(crate) duration: Duration,
    pub(crate) start_to_ready: Duration,
    pub(crate) idle_kib: u64,
    pub(crate) idle_after_kib: u64,
    pub(crate) seeded_in: Duration,
    pub(crate) total: Duration,
    pub(crate) rows: Vec<Row>,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok { "reached" } else { "NOT reached" }
}

impl Report {
    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// Every scenario had successes and no unexpected error.
    pub(crate) fn all_ok(&self) -> bool {
        self.rows
            .iter()
            .all(|r| r.stats.ok > 0 && r.stats.errors == 0)
    }

    pub(crate) fn print(&self) {
        println!(
            "backend {}, {} accounts, {} connections, {:.0} s per scenario, load generator on {} thread(s), server on {} worker thread(s)",
            self.backend,
            self.accounts,
            self.concurrency,
            self.duration.as_secs_f64(),
            self.threads.0,
            self.threads.1,
        );
        println!();
        println!(
            "| scenario | conc | ok | 503 | errors | req/s | p50 ms | p99 ms | peak RSS MiB | reference | ref req/s | ratio |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
        for row in &self.rows {
            let s = &row.stats;
            let (label, rate) = row.reference.as_ref().map_or(("", String::new()), |r| {
                (r.label.as_str(), format!("{:.0}", r.rate))
            });
            println!(
                "| {} | {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {} | {} | {} | {} |",
                row.name,
                s.concurrency,
                s.ok,
                s.refused,
                s.errors,
                s.rate(),
                s.ok_ms(0.5),
                s.ok_ms(0.99),
                row.peak_kib
                    .map_or(String::new(), |k| format!("{:.1}", mib(k))),
                label,
                rate,
                row.ratio().map_or(String::new(), |r| format!("{r:.2}")),
            );
        }
        println!();
        for row in &self.rows {
            if let Some(e) = &row.stats.first_error {
                println!("errors in {}: {} (first: {e})", row.name, row.stats.errors);
            }
            if row.stats.refused > 0 {
                println!(
                    "refusals in {}: {} answered 503 ({} without Retry-After), p50 {:.2} ms, p99 {:.2} ms",
                    row.name,
                    row.stats.refused,
                    row.stats.refused_without_retry_after,
                    row.stats.refused_ms(0.5),
                    row.stats.refused_ms(0.99),
                );
            }
        }
        // The tail of the gRPC calls, where the `Check` target's p99 is read.
        for row in self.rows.iter().filter(|r| r.name.starts_with("grpc_")) {
            let s = &row.stats;
            println!(
                "latency of {}: p90 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
                row.name,
                s.ok_ms(0.90),
                s.ok_ms(0.95),
                s.ok_ms(0.99),
                s.ok_ms(0.999),
                s.ok_ms(1.0),
            );
        }
        println!(
            "start to ready {:.0} ms (spawn to /readyz 200, migrations included); idle RSS {:.1} MiB before the load, {:.1} MiB after; seeding {:.1} s; whole run {:.0} s",
            self.start_to_ready.as_secs_f64() * 1000.0,
            mib(self.idle_kib),
            mib(self.idle_after_kib),
            self.seeded_in.as_secs_f64(),
            self.total.as_secs_f64(),
        );
        self.print_targets();
    }

    fn print_targets(&self) {
        println!();
        println!("targets:");
        let ratio = |name: &str| self.row(name).and_then(Row::ratio).unwrap_or(0.0);
        // With `--only`, a scenario that did not run has no target line.
        if self.row("client_credentials").is_some() {
            let cc = ratio("client_credentials");
            println!(
                "- client_credentials >= 5x oidc-provider: {cc:.2}x, {}",
                verdict(cc >= 5.0)
            );
        }
        if let Some(row) = self.row("grpc_check") {
            let check = ratio("grpc_check");
            let check_p99 = row.stats.ok_ms(0.99);
            println!(
                "- grpc_check >= 70% of the empty call, p99 < 5 ms: {:.0}%, p99 {check_p99:.2} ms, {}",
                check * 100.0,
                verdict(check >= 0.70 && check_p99 < 5.0)
            );
        }
        if self.row("password_login").is_some() {
            let login = ratio("password_login");
            println!(
                "- password_login >= 85% of the argon2id ceiling: {:.0}%, {}",
                login * 100.0,
                verdict(login >= 0.85)
            );
        }
        if let Some(over) = self
            .rows
            .iter()
            .find(|r| r.name.starts_with("password_login x"))
        {
            let s = &over.stats;
            let fast = s.refused > 0
                && s.refused_without_retry_after == 0
                && s.refused_ms(0.99) < 1000.0
                && s.errors == 0;
            let bounded = over.peak_kib.is_some_and(|k| k < 256 * 1024);
            println!(
                "- {}: {} refused with 503 (p99 {:.0} ms), {} without Retry-After, {} errors, peak {:.1} MiB: {}",
                over.name,
                s.refused,
                s.refused_ms(0.99),
                s.refused_without_retry_after,
                s.errors,
                mib(over.peak_kib.unwrap_or(0)),
                verdict(fast && bounded)
            );
        }
        let peak = self
            .rows
            .iter()
            .filter(|r| !r.name.starts_with("ref:"))
            .filter_map(|r| r.peak_kib)
            .max()
            .unwrap_or(0);
        println!(
            "- memory: idle {:.1} MiB < 64, peak {:.1} MiB < 256: {}",
            mib(self.idle_kib),
            mib(peak),
            verdict(self.idle_kib < 64 * 1024 && peak < 256 * 1024)
        );
        println!(
            "- start to ready < 1 s: {:.0} ms, {}",
            self.start_to_ready.as_secs_f64() * 1000.0,
            verdict(self.start_to_ready < Duration::from_secs(1))
        );
    }
}
