//! Waits between the attempts of the durable queues (emails, back-channel logouts).

/// Wait before the next attempt, after `attempts` failed ones: `base_secs`,
/// 2×`base_secs`, 4×`base_secs` … capped at `max_secs` (both at least 1 s).
#[must_use]
pub fn backoff_secs(attempts: i64, base_secs: i64, max_secs: i64) -> i64 {
    let exp = u32::try_from(attempts.clamp(1, 31) - 1).unwrap_or(0);
    base_secs
        .max(1)
        .saturating_mul(2_i64.saturating_pow(exp))
        .min(max_secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::backoff_secs;

    #[test]
    fn doubles_and_is_capped() {
        assert_eq!(
            (0..=5)
                .map(|n| backoff_secs(n, 30, 100))
                .collect::<Vec<_>>(),
            [30, 30, 60, 100, 100, 100]
        );
        assert_eq!(backoff_secs(i64::MAX, 30, 3600), 3600);
        assert_eq!(backoff_secs(1, 0, 0), 1);
    }
}
