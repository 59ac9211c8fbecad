//! Rate limiting: how failures add up to a lockout. Pure; the store only keeps the state.

use crate::config::LockoutConfig;
use crate::store::users::LockState;

pub fn is_locked(lock: &LockState, now: u64) -> bool {
    lock.locked_until > now
}

/// The state after one more failure at `now`. `tag` identifies the attempt (a digest of the
/// step and what was sent): the same wrong attempt resent within one step counts once.
pub fn register_failure(
    lock: &LockState,
    now: u64,
    config: &LockoutConfig,
    tag: Vec<u8>,
) -> LockState {
    let mut next = lock.clone();
    if next.last_fail_tag.as_deref() == Some(tag.as_slice()) {
        return next;
    }
    next.last_fail_tag = Some(tag);
    if now >= next.fail_window_start.saturating_add(config.window_secs) {
        next.fail_window_start = now;
        next.fail_count = 0;
    }
    next.fail_count += 1;
    if next.fail_count >= config.max_failures {
        let factor = 1u64.checked_shl(next.lockout_level.min(32)).unwrap_or(u64::MAX);
        let duration = config.lockout_secs.saturating_mul(factor).min(config.max_lockout_secs);
        next.locked_until = now.saturating_add(duration);
        next.lockout_level = next.lockout_level.saturating_add(1);
        next.fail_count = 0;
        next.fail_window_start = now;
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_n(mut lock: LockState, n: u32, start: u64, config: &LockoutConfig) -> LockState {
        for i in 0..n {
            lock = register_failure(&lock, start + u64::from(i), config, vec![i as u8]);
        }
        lock
    }

    #[test]
    fn five_failures_in_five_minutes_lock_for_fifteen() {
        let config = LockoutConfig::default();
        let lock = fail_n(LockState::default(), 4, 1000, &config);
        assert!(!is_locked(&lock, 1004));
        let lock = register_failure(&lock, 1010, &config, vec![99]);
        assert!(is_locked(&lock, 1010));
        assert!(is_locked(&lock, 1010 + 899));
        assert!(!is_locked(&lock, 1010 + 900));
    }

    #[test]
    fn failures_spread_over_more_than_the_window_do_not_lock() {
        let config = LockoutConfig::default();
        let mut lock = LockState::default();
        for i in 0..20u64 {
            lock = register_failure(&lock, 1000 + i * 100, &config, vec![i as u8]);
            assert!(!is_locked(&lock, 1000 + i * 100), "failure {i}");
        }
    }

    #[test]
    fn each_further_lockout_doubles_up_to_the_cap() {
        let config = LockoutConfig::default();
        let mut lock = LockState::default();
        let mut now = 0;
        let mut durations = vec![];
        for _ in 0..10 {
            lock = fail_n(lock, 5, now, &config);
            durations.push(lock.locked_until - (now + 4));
            now = lock.locked_until;
        }
        assert_eq!(&durations[..4], &[900, 1800, 3600, 7200]);
        assert_eq!(*durations.last().unwrap(), 86_400);
    }

    #[test]
    fn the_same_wrong_attempt_resent_counts_once() {
        let config = LockoutConfig::default();
        let mut lock = LockState::default();
        for i in 0..10 {
            lock = register_failure(&lock, 1000 + i, &config, b"same".to_vec());
        }
        assert_eq!(lock.fail_count, 1);
        assert!(!is_locked(&lock, 1010));
    }
}
