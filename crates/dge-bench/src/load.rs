//! A closed-loop load runner: `concurrency` workers each send one request after the
//! other until the duration is over, and every answer's latency is recorded.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one request (or one multi-request journey) came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The expected answer.
    Ok,
    /// A fast refusal under overload: HTTP 503, with or without `Retry-After`;
    /// `took` is the time of the refused request alone (a journey's earlier
    /// requests are not the refusal's latency).
    Refused { retry_after: bool, took: Duration },
    /// Anything else: a wrong status, a transport error, an unexpected body.
    Failed(String),
}

/// A boxed request future, so that every scenario fits one runner.
pub(crate) type Call = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// The figures of one scenario.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) concurrency: usize,
    pub(crate) ok: u64,
    pub(crate) refused: u64,
    pub(crate) refused_without_retry_after: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) elapsed: Duration,
    /// Latencies of successful calls, in microseconds, sorted.
    pub(crate) ok_micros: Vec<u64>,
    /// Latencies of refusals, in microseconds, sorted.
    pub(crate) refused_micros: Vec<u64>,
}

impl Stats {
    /// Successful calls per second.
    #[must_use]
    pub(crate) fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..=1) of successful calls, in milliseconds.
    #[must_use]
    pub(crate) fn ok_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.ok_micros, q)
    }

    /// The `q` quantile of refusals, in milliseconds.
    #[must_use]
    pub(crate) fn refused_ms(&self, q: f64) -> f64 {
        quantile_ms(&self.refused_micros, q)
    }
}

fn quantile_ms(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Runs `call(worker)` from `concurrency` workers for `duration`. Calls still in
/// flight at the end are waited for and counted; the rate divides by the time it
/// really took.
pub(crate) async fn run(
    concurrency: usize,
    duration: Duration,
    call: Arc<dyn Fn(usize) -> Call + Send + Sync>,
) -> Stats {
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::with_capacity(concurrency);
    for worker in 0..concurrency {
        let call = call.clone();
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let outcome = call(worker).await;
                let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
                match outcome {
                    Outcome::Ok => {
                        stats.ok += 1;
                        stats.ok_micros.push(micros);
                    }
                    Outcome::Refused { retry_after, took } => {
                        stats.refused += 1;
                        if !retry_after {
                            stats.refused_without_retry_after += 1;
                        }
                        stats
                            .refused_micros
                            .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                    }
                    Outcome::Failed(e) => {
                        stats.errors += 1;
                        stats.first_error.get_or_insert(e);
                        // A failing target must not turn into a busy loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            stats
        }));
    }
    let mut total = Stats {
        concurrency,
        ..Stats::default()
    };
    for worker in workers {
        match worker.await {
            Ok(s) => {
                total.ok += s.ok;
                total.refused += s.refused;
                total.refused_without_retry_after += s.refused_without_retry_after;
                total.errors += s.errors;
                if total.first_error.is_none() {
                    total.first_error = s.first_error;
                }
                total.ok_micros.extend(s.ok_micros);
                total.refused_micros.extend(s.refused_micros);
            }
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert(format!("worker panicked: {e}"));
            }
        }
    }
    total.elapsed = start.elapsed();
    total.ok_micros.sort_unstable();
    total.refused_micros.sort_unstable();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_each_outcome_and_sorts_latencies() {
        let call: Arc<dyn Fn(usize) -> Call + Send + Sync> = Arc::new(|worker| {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                match worker {
                    0 => Outcome::Ok,
                    1 => Outcome::Refused {
                        retry_after: false,
                        took: Duration::from_millis(1),
                    },
                    _ => Outcome::Failed("boom".into()),
                }
            })
        });
        let stats = run(3, Duration::from_millis(100), call).await;
        assert!(stats.ok > 10, "{stats:?}");
        assert_eq!(stats.refused, stats.refused_without_retry_after);
        assert!(stats.refused > 10);
        assert!(stats.errors > 0);
        assert_eq!(stats.first_error.as_deref(), Some("boom"));
        assert!(stats.ok_micros.windows(2).all(|w| w[0] <= w[1]));
        assert!(stats.ok_ms(0.5) >= 2.0);
        assert!(stats.rate() > 0.0);
    }
}
