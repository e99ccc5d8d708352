//! How far a `flumen bench` run is, while it runs: a live line on a terminal (indicatif), a
//! plain line every `--progress-every` otherwise (a CI log, a file), so that a 30-second run
//! does not look hung.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often the live line is redrawn on a terminal.
const TERMINAL_TICK: Duration = Duration::from_millis(200);

/// The run's counts so far, added to by every connection as it goes.
#[derive(Debug, Default)]
pub struct Live {
    /// Events written at least once.
    pub sent: AtomicU64,
    /// Events acknowledged (with --ack).
    pub acked: AtomicU64,
    /// Events written again after a failure.
    pub resent: AtomicU64,
    /// Set when every connection has ended.
    pub done: AtomicBool,
}

/// What the run is aiming at, for the time left.
#[derive(Debug, Clone, Copy)]
pub struct Goal {
    /// `--events` (all connections), if given.
    pub events: Option<u64>,
    /// When `--duration` ends the run, if given.
    pub deadline: Option<Instant>,
    /// Whether acknowledgements are counted.
    pub ack: bool,
}

/// Reports `live` until `live.done`: on a terminal a live line, else a line every `every`
/// (none when it is zero).
pub fn report(live: &Live, goal: Goal, started: Instant, every: Duration) {
    if std::io::stderr().is_terminal() {
        let line = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        line.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
        while !wait(live, TERMINAL_TICK) {
            line.set_message(status(live, goal, started.elapsed()));
            line.tick();
        }
        line.finish_and_clear();
    } else if !every.is_zero() {
        while !wait(live, every) {
            eprintln!("flumen bench: {}", status(live, goal, started.elapsed()));
        }
    }
}

/// Sleeps up to `period`, waking early when the run is done; true when it is.
fn wait(live: &Live, period: Duration) -> bool {
    let until = Instant::now() + period;
    while Instant::now() < until {
        if live.done.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(period));
    }
    live.done.load(Ordering::Relaxed)
}

/// `sent 1200000 (60%), acked 1199000, resent 0, 412000 events/s, 2.9 s, about 1.9 s left`.
pub fn status(live: &Live, goal: Goal, elapsed: Duration) -> String {
    let sent = live.sent.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    let mut line = format!("sent {sent}");
    if let Some(total) = goal.events.filter(|&t| t > 0) {
        line += &format!(" ({}%)", (sent * 100 / total).min(100));
    }
    if goal.ack {
        line += &format!(", acked {}", live.acked.load(Ordering::Relaxed));
    }
    line += &format!(
        ", resent {}, {rate:.0} events/s, {secs:.1} s",
        live.resent.load(Ordering::Relaxed)
    );
    if let Some(left) = time_left(goal, sent, rate) {
        line += &format!(", about {:.1} s left", left.as_secs_f64());
    }
    line
}

/// The sooner of the events left at the current rate and the deadline; none when neither is
/// known (or nothing was sent yet to tell the rate).
fn time_left(goal: Goal, sent: u64, rate: f64) -> Option<Duration> {
    let by_events = goal
        .events
        .filter(|_| rate > 0.0)
        .map(|total| Duration::from_secs_f64(total.saturating_sub(sent) as f64 / rate));
    let by_deadline = goal
        .deadline
        .map(|deadline| deadline.saturating_duration_since(Instant::now()));
    match (by_events, by_deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_says_how_far_and_how_long_is_left() {
        let live = Live::default();
        live.sent.store(500, Ordering::Relaxed);
        live.acked.store(400, Ordering::Relaxed);
        let goal = Goal {
            events: Some(2000),
            deadline: None,
            ack: true,
        };
        assert_eq!(
            status(&live, goal, Duration::from_secs(2)),
            "sent 500 (25%), acked 400, resent 0, 250 events/s, 2.0 s, about 6.0 s left"
        );
        let no_ack = Goal {
            events: None,
            deadline: None,
            ack: false,
        };
        assert_eq!(
            status(&live, no_ack, Duration::from_secs(1)),
            "sent 500, resent 0, 500 events/s, 1.0 s"
        );
        let deadline = Goal {
            events: Some(1_000_000),
            deadline: Some(Instant::now() + Duration::from_secs(3)),
            ack: false,
        };
        // The deadline comes first: 3 s, not the 1,999 s the events would take.
        let line = status(&live, deadline, Duration::from_secs(1));
        assert!(
            line.ends_with("about 3.0 s left") || line.ends_with("about 2.9 s left"),
            "{line}"
        );
    }
}
