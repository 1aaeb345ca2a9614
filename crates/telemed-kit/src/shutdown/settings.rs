//! `SHUTDOWN_GRACE_PERIOD` and `SHUTDOWN_DELAY`, and the timeline of phases they give.

use std::time::{Duration, Instant};

use crate::config::{ConfigError, Env};

/// Time kept between the kit's own deadline and the end of the grace period, so that the process has exited
/// before the platform's SIGKILL even on a loaded node.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// The shortest drain window a configuration may leave.
pub const MIN_DRAIN: Duration = Duration::from_secs(1);
/// Time reserved after draining for shutdown hooks and for flushing logs and spans.
pub const HOOKS_AND_FLUSH_RESERVE: Duration = Duration::from_secs(1);
/// The longest grace period accepted.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(3600);

/// Shutdown timing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSettings {
    /// `SHUTDOWN_GRACE_PERIOD`: the platform's grace period, the hard limit for the whole sequence.
    /// Defaults to 10s.
    pub grace_period: Duration,
    /// `SHUTDOWN_DELAY`: how long requests are still served after readiness turns 503. Defaults to 3s.
    pub delay: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(10),
            delay: Duration::from_secs(3),
        }
    }
}

impl ShutdownSettings {
    /// The shortest grace period that fits every phase: [`MIN_DRAIN`], [`HOOKS_AND_FLUSH_RESERVE`] and
    /// [`DEADLINE_MARGIN`], with no delay.
    pub const MIN_GRACE_PERIOD: Duration = MIN_DRAIN
        .saturating_add(HOOKS_AND_FLUSH_RESERVE)
        .saturating_add(DEADLINE_MARGIN);

    /// Reads `SHUTDOWN_GRACE_PERIOD` and `SHUTDOWN_DELAY` and checks that the phases fit in the grace period.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let grace_period = env.duration_or("SHUTDOWN_GRACE_PERIOD", defaults.grace_period)?;
        let floor = Self::MIN_GRACE_PERIOD;
        if grace_period < floor || grace_period > MAX_GRACE_PERIOD {
            return Err(ConfigError::invalid(
                "SHUTDOWN_GRACE_PERIOD",
                &humantime::format_duration(grace_period).to_string(),
                format!(
                    "a duration from {} to 1h",
                    humantime::format_duration(floor)
                ),
            ));
        }
        let delay = env.duration_or("SHUTDOWN_DELAY", defaults.delay)?;
        let max_delay = grace_period - floor;
        if delay > max_delay {
            return Err(ConfigError::invalid(
                "SHUTDOWN_DELAY",
                &humantime::format_duration(delay).to_string(),
                format!(
                    "at most {} so that {} remain of SHUTDOWN_GRACE_PERIOD={} for draining, hooks, flushing \
                     and the safety margin",
                    humantime::format_duration(max_delay),
                    humantime::format_duration(floor),
                    humantime::format_duration(grace_period),
                ),
            ));
        }
        Ok(Self {
            grace_period,
            delay,
        })
    }

    /// The instants of each phase boundary for a shutdown that started at `started`.
    pub fn timeline(&self, started: Instant) -> Timeline {
        let deadline = started + self.grace_period - DEADLINE_MARGIN;
        Timeline {
            started,
            drain_start: started + self.delay,
            drain_deadline: deadline - HOOKS_AND_FLUSH_RESERVE,
            hooks_deadline: deadline - HOOKS_AND_FLUSH_RESERVE / 2,
            deadline,
        }
    }
}

/// The phase boundaries of one shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// The first signal.
    pub started: Instant,
    /// End of the readiness-off window: stop accepting.
    pub drain_start: Instant,
    /// Stop waiting for in-flight requests; run hooks.
    pub drain_deadline: Instant,
    /// Stop waiting for hooks; flush telemetry.
    pub hooks_deadline: Instant,
    /// The watchdog ends the process here if it is still running.
    pub deadline: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(grace: &str, delay: &str) -> Result<ShutdownSettings, ConfigError> {
        ShutdownSettings::from_env(&Env::from_pairs([
            ("SHUTDOWN_GRACE_PERIOD", grace),
            ("SHUTDOWN_DELAY", delay),
        ]))
    }

    #[test]
    fn every_accepted_setting_keeps_each_phase_inside_the_grace_period() {
        let started = Instant::now();
        let mut accepted = 0;
        // Grace periods from below the floor to past the ceiling, delays from zero to past the grace period,
        // in steps that cross every boundary.
        for grace_ms in (0..=3_700_000u64)
            .step_by(250)
            .filter(|ms| *ms < 70_000 || ms % 60_000 == 0)
        {
            let step = if grace_ms < 70_000 { 250 } else { 30_000 };
            let edge = grace_ms.saturating_sub(2_500);
            let delays = (0..=grace_ms + 500).step_by(step).chain([edge, edge + 1]);
            for delay_ms in delays {
                let Ok(settings) = read(&format!("{grace_ms}ms"), &format!("{delay_ms}ms")) else {
                    continue;
                };
                accepted += 1;
                let t = settings.timeline(started);
                assert_eq!(t.started, started);
                assert_eq!(t.drain_start - started, settings.delay);
                assert!(
                    t.drain_deadline - t.drain_start >= MIN_DRAIN,
                    "{settings:?}"
                );
                assert!(t.hooks_deadline > t.drain_deadline, "{settings:?}");
                assert!(t.deadline > t.hooks_deadline, "{settings:?}");
                assert_eq!(
                    started + settings.grace_period - t.deadline,
                    DEADLINE_MARGIN
                );
                assert!(settings.grace_period <= MAX_GRACE_PERIOD);
            }
        }
        // The loop must reach both outcomes, or it proves nothing.
        assert!(accepted > 1_000, "{accepted}");
        assert!(read("2499ms", "0s").is_err() && read("2500ms", "0s").is_ok());
        assert!(read("10s", "7500ms").is_ok() && read("10s", "7501ms").is_err());
        assert!(read("1h", "0s").is_ok() && read("3600001ms", "0s").is_err());
    }

    #[test]
    fn grace_period_too_short_for_the_phases_is_rejected() {
        let env = Env::from_pairs([("SHUTDOWN_GRACE_PERIOD", "2s")]);
        let error = ShutdownSettings::from_env(&env).unwrap_err();
        assert_eq!(error.variable(), "SHUTDOWN_GRACE_PERIOD");
        assert!(error.to_string().contains("from 2s 500ms to 1h"), "{error}");
    }
}
