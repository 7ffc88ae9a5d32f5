//! Waiting before reconnecting: doubling from one second up to a cap, with jitter so that
//! many mailboxes on one server do not all reconnect in the same instant.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

pub const FIRST: Duration = Duration::from_secs(1);
pub const CAP: Duration = Duration::from_secs(300);

/// The wait before retry number `failures` (1 for the first retry): a random point in the
/// upper half of the doubled interval, `[d/2, d]` with `d = min(FIRST * 2^(failures-1), CAP)`.
pub fn delay(failures: u32) -> Duration {
    let full = FIRST
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(CAP);
    let fraction = (RandomState::new().hash_one(failures) % 1001) as f64 / 1000.0;
    full.mul_f64(0.5 + fraction / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        for (failures, full) in [
            (1, 1),
            (2, 2),
            (3, 4),
            (6, 32),
            (9, 256),
            (10, 300),
            (40, 300),
        ] {
            let full = Duration::from_secs(full);
            for _ in 0..20 {
                let d = delay(failures);
                assert!(
                    d >= full / 2 && d <= full,
                    "retry {failures}: {d:?} outside [{:?}, {full:?}]",
                    full / 2
                );
            }
        }
        let spread: std::collections::HashSet<_> = (0..20).map(|_| delay(8)).collect();
        assert!(spread.len() > 1, "jitter varies");
    }
}
