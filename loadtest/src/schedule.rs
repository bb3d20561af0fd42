//! Open-loop scheduling: when each request is *meant* to be sent.
//!
//! In open-loop mode (`--rate`), request `i` is due at `start + i / rate`, whatever happened to
//! the requests before it. Its latency is measured from that intended time, not from when a
//! connection got round to sending it. That is the correction for coordinated omission: when the
//! target stalls for a second, a closed-loop tool records one slow request and then politely
//! waits, while real users keep arriving; here every request that should have been sent during
//! the stall is recorded with the time it spent waiting.
//!
//! The schedule is integer arithmetic on nanoseconds and milli-requests per second, so there is
//! no drift: ticket one billion is due exactly when it should be, whatever the rate.
//!
//! Two parts:
//! * [`RateSchedule`] and [`Pacer`] are pure: given "now" they say how many tickets are due and
//!   when the next one is. They are tested with an injected clock.
//! * [`Gate`] hands tickets to connections, and [`run_pacer`] releases them. Each generator
//!   thread has its own gate and pacer for every `threads`-th ticket (thread 0 gets tickets 0,
//!   N, 2N, ...), so releasing a ticket never needs a wake-up across threads. The pacer sleeps
//!   on a [`Sleeper`]: in real runs a Linux `timerfd`, whose hrtimer fires within microseconds
//!   (tokio's own timer rounds to whole milliseconds, and `nanosleep` has 50 µs of timer slack;
//!   either would add that much fake latency to every request against a gateway that answers
//!   in 100 µs); in tests tokio's clock, paused and advanced by tokio.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

const NANOS_PER_KILOSECOND: u128 = 1_000_000_000_000;

/// Highest supported rate; far beyond what one machine can send, so it only catches typos.
pub const MAX_RATE: f64 = 100_000_000.0;

/// A constant-rate schedule: ticket `i` is due `i / rate` seconds after the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSchedule {
    /// Requests per 1000 seconds, so fractional rates such as 0.5/s stay exact.
    milli_rps: u64,
}

impl RateSchedule {
    /// A schedule for `rps` requests per second (at least 0.001, at most [`MAX_RATE`]).
    pub fn new(rps: f64) -> Result<Self, String> {
        if !rps.is_finite() || !(0.001..=MAX_RATE).contains(&rps) {
            return Err(format!("rate must be between 0.001 and {MAX_RATE} requests/s, got {rps}"));
        }
        Ok(RateSchedule { milli_rps: (rps * 1000.0).round() as u64 })
    }

    /// The rate in requests per second.
    pub fn rps(&self) -> f64 {
        self.milli_rps as f64 / 1000.0
    }

    /// When ticket `i` is due, relative to the start (rounded down to the nanosecond).
    pub fn offset(&self, ticket: u64) -> Duration {
        let nanos = u128::from(ticket) * NANOS_PER_KILOSECOND / u128::from(self.milli_rps);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How many tickets are due at `elapsed`: the number of `i` with `offset(i) <= elapsed`.
    ///
    /// `offset(i) <= e` holds exactly when `i * 10^12 < (e + 1) * milli_rps`, so the count is
    /// `ceil((e + 1) * milli_rps / 10^12)`.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let e = elapsed.as_nanos() + 1;
        let count = (e * u128::from(self.milli_rps)).div_ceil(NANOS_PER_KILOSECOND);
        u64::try_from(count).unwrap_or(u64::MAX)
    }

    /// How many tickets are due strictly before `end` (the tickets of a run that ends there).
    pub fn due_before(&self, end: Duration) -> u64 {
        if end.is_zero() {
            0
        } else {
            self.due_by(end - Duration::from_nanos(1))
        }
    }
}

/// What the pacer should do after looking at the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Tickets that became due since the previous step.
    pub release: u64,
    /// When the next ticket is due (relative to the start), or `None` when all are released.
    pub next: Option<Duration>,
}

/// Releases the tickets of a [`RateSchedule`] up to a total count and an end time.
///
/// A pacer may own only a subsequence of the tickets (`phase`, `phase + stride`, ...), so that
/// each generator thread paces its own share of one global schedule.
#[derive(Debug, Clone)]
pub struct Pacer {
    schedule: RateSchedule,
    /// Global ticket count of the whole schedule.
    total: u64,
    phase: u64,
    stride: u64,
    /// Tickets of this subsequence released so far.
    released: u64,
}

impl Pacer {
    /// A pacer that stops after `max_tickets` tickets and before `end` (both optional; at
    /// least one must be set or the run would be unbounded).
    pub fn new(schedule: RateSchedule, max_tickets: Option<u64>, end: Option<Duration>) -> Self {
        let by_time = end.map(|e| schedule.due_before(e));
        let total = match (max_tickets, by_time) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => 0,
        };
        Pacer { schedule, total, phase: 0, stride: 1, released: 0 }
    }

    /// The same schedule restricted to tickets `phase`, `phase + stride`, `phase + 2 * stride`...
    pub fn subsequence(mut self, phase: u64, stride: u64) -> Self {
        self.stride = stride.max(1);
        self.phase = phase.min(self.stride - 1);
        self
    }

    /// How many of the tickets `0..global` belong to this subsequence.
    fn mine(&self, global: u64) -> u64 {
        global.saturating_sub(self.phase).div_ceil(self.stride)
    }

    /// The number of tickets this pacer will release in all.
    pub fn total(&self) -> u64 {
        self.mine(self.total)
    }

    /// Tickets released so far.
    pub fn released(&self) -> u64 {
        self.released
    }

    pub fn schedule(&self) -> RateSchedule {
        self.schedule
    }

    /// The global ticket number of this pacer's `k`-th ticket.
    pub fn global_ticket(&self, k: u64) -> u64 {
        self.phase + k * self.stride
    }

    /// Looks at the clock (`elapsed` since the start) and releases what is due.
    pub fn advance(&mut self, elapsed: Duration) -> Step {
        let due = self.mine(self.schedule.due_by(elapsed).min(self.total));
        let release = due.saturating_sub(self.released);
        self.released = self.released.max(due);
        let next = (self.released < self.total()).then(|| self.schedule.offset(self.global_ticket(self.released)));
        Step { release, next }
    }
}

/// Hands out open-loop tickets to connections, in order, as the pacer releases them.
///
/// Each connection takes a permit, then the next ticket number; so the k-th ticket is only
/// taken after k + 1 permits were released, and its due time is never in the future. When all
/// connections are busy, released tickets wait in the semaphore: that backlog is exactly the
/// queueing delay that the latency of those tickets then includes.
#[derive(Debug)]
pub struct Gate {
    permits: Semaphore,
    next_ticket: AtomicU64,
    /// Set once when the pacer is done: tickets at or above it mean "stop".
    final_total: AtomicU64,
    phase: u64,
    stride: u64,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new(0, 1)
    }
}

impl Gate {
    /// A gate for the tickets `phase`, `phase + stride`, ... (see [`Pacer::subsequence`]).
    pub fn new(phase: u64, stride: u64) -> Self {
        Gate {
            permits: Semaphore::new(0),
            next_ticket: AtomicU64::new(0),
            final_total: AtomicU64::new(u64::MAX),
            phase,
            stride: stride.max(1),
        }
    }

    /// Waits for the next due ticket; `None` when the run is over for this connection.
    pub async fn next_ticket(&self) -> Option<u64> {
        let permit = self.permits.acquire().await.ok()?;
        permit.forget();
        let k = self.next_ticket.fetch_add(1, Ordering::AcqRel);
        (k < self.final_total.load(Ordering::Acquire)).then_some(self.phase + k * self.stride)
    }

    /// How many tickets the pacer released in all (0 until it has finished).
    pub fn released_total(&self) -> u64 {
        match self.final_total.load(Ordering::Acquire) {
            u64::MAX => 0,
            n => n,
        }
    }

    fn release(&self, n: u64) {
        let mut left = n;
        while left > 0 {
            let chunk = left.min(1 << 30);
            self.permits.add_permits(chunk as usize);
            left -= chunk;
        }
    }

    /// Ends the schedule after `released` tickets and wakes `waiters` connections so they
    /// can see it (one extra permit each). Tickets already released are still served.
    pub fn finish(&self, released: u64, waiters: usize) {
        self.final_total.store(released, Ordering::Release);
        self.release(waiters as u64);
    }
}

/// Something the pacer can sleep on.
pub trait Sleeper {
    /// Sleeps until about `start + offset` (a little later is fine; never earlier).
    fn sleep_until(&mut self, start: Instant, offset: Duration) -> impl Future<Output = ()>;
}

/// tokio's timer: millisecond granularity, but it follows tokio's paused clock in tests.
#[derive(Debug, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    async fn sleep_until(&mut self, start: Instant, offset: Duration) {
        tokio::time::sleep_until(start + offset).await;
    }
}

/// A Linux `timerfd` registered with tokio's reactor: a one-shot hrtimer per sleep, with no
/// timer slack, so the pacer wakes within microseconds of a ticket's due time.
#[cfg(target_os = "linux")]
pub struct TimerFdSleeper {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

#[cfg(target_os = "linux")]
impl TimerFdSleeper {
    /// Sleeps shorter than this are rounded up, so that at high rates tickets are released in
    /// batches instead of paying a timer wake-up for each one.
    pub const MIN_SLEEP: Duration = Duration::from_micros(20);

    /// Must be called inside a tokio runtime (it registers with the reactor).
    pub fn new() -> std::io::Result<Self> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let fd = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC)?;
        // tokio deprecated the safe constructors in favour of an `unsafe fn register` whose
        // contract is that the descriptor stays open and the same while registered. An
        // `OwnedFd` moved into the `AsyncFd` guarantees exactly that, so the safe (deprecated)
        // constructor is used rather than an `unsafe` block.
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(TimerFdSleeper { fd })
    }

    async fn sleep_for(&mut self, d: Duration) -> std::io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        let value = Timespec { tv_sec: d.as_secs() as i64, tv_nsec: i64::from(d.subsec_nanos()) };
        let spec = Itimerspec { it_interval: Timespec::default(), it_value: value };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match guard.try_io(|fd| rustix::io::read(fd.get_ref(), &mut expirations).map_err(std::io::Error::from)) {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(target_os = "linux")]
impl Sleeper for TimerFdSleeper {
    async fn sleep_until(&mut self, start: Instant, offset: Duration) {
        let wait = offset.saturating_sub(start.elapsed()).max(Self::MIN_SLEEP);
        if self.sleep_for(wait).await.is_err() {
            // Not expected; tokio's timer is a correct (if coarser) fallback.
            tokio::time::sleep_until(start + offset).await;
        }
    }
}

/// Runs a pacer until all its tickets are released or `stop` is set, then ends the gate.
/// Sleeps are capped at 20 ms so that `stop` is noticed quickly.
pub async fn run_pacer<S: Sleeper>(
    mut pacer: Pacer,
    start: Instant,
    gate: Arc<Gate>,
    waiters: usize,
    stop: Arc<AtomicBool>,
    mut sleeper: S,
) {
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let step = pacer.advance(start.elapsed());
        gate.release(step.release);
        match step.next {
            None => break,
            Some(next) => {
                let cap = start.elapsed() + Duration::from_millis(20);
                sleeper.sleep_until(start, next.min(cap)).await;
            }
        }
    }
    gate.finish(pacer.released(), waiters);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    #[test]
    fn offsets_are_exact_and_do_not_drift() {
        let s = RateSchedule::new(1000.0).unwrap();
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(1_000_000_000), Duration::from_secs(1_000_000));
        // 3 requests/s: thirds of a second, rounded down, never accumulating error.
        let s = RateSchedule::new(3.0).unwrap();
        assert_eq!(s.offset(1), ns(333_333_333));
        assert_eq!(s.offset(2), ns(666_666_666));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        assert_eq!(s.offset(3_000_000), Duration::from_secs(1_000_000));
        // Fractional rates.
        let s = RateSchedule::new(0.5).unwrap();
        assert_eq!(s.offset(1), Duration::from_secs(2));
    }

    #[test]
    fn due_by_agrees_with_offset_at_every_boundary() {
        for rps in [1.0, 3.0, 7.5, 999.0, 12_345.0, 1_000_000.0] {
            let s = RateSchedule::new(rps).unwrap();
            for i in [0u64, 1, 2, 3, 10, 999, 1000, 123_456] {
                let t = s.offset(i);
                // At its due time the ticket is released, one nanosecond before it is not.
                assert!(s.due_by(t) > i, "rate {rps} ticket {i}");
                if !t.is_zero() {
                    assert!(s.due_by(t - ns(1)) <= i, "rate {rps} ticket {i}");
                }
            }
        }
    }

    #[test]
    fn rejects_nonsense_rates() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e12] {
            assert!(RateSchedule::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pacer_with_an_injected_clock_releases_exactly_what_is_due() {
        // 10 000 requests/s: one ticket every 100 µs.
        let s = RateSchedule::new(10_000.0).unwrap();
        let mut p = Pacer::new(s, None, Some(Duration::from_secs(1)));
        assert_eq!(p.total(), 10_000);
        let step = p.advance(Duration::ZERO);
        assert_eq!(step, Step { release: 1, next: Some(Duration::from_micros(100)) });
        // A late wake-up (e.g. the pacer thread was descheduled for 1.05 ms) releases the
        // whole backlog at once; the tickets keep their own due times.
        let step = p.advance(Duration::from_micros(1050));
        assert_eq!(step, Step { release: 10, next: Some(Duration::from_micros(1100)) });
        // Looking again at the same instant releases nothing new.
        assert_eq!(p.advance(Duration::from_micros(1050)).release, 0);
        // The end is exclusive: the ticket due exactly at 1 s belongs to the next run.
        let step = p.advance(Duration::from_secs(5));
        assert_eq!(step, Step { release: 10_000 - 11, next: None });
        assert_eq!(p.released(), 10_000);
    }

    #[test]
    fn pacer_simulated_over_a_long_run_matches_the_rate_exactly() {
        // Simulate a pacer that wakes at jittered times for 10 s at 33 333.3/s and check that
        // after every wake-up it has released exactly the tickets whose offset has passed,
        // counted independently by walking the offsets.
        let s = RateSchedule::new(33_333.3).unwrap();
        let mut p = Pacer::new(s, Some(u64::MAX), Some(Duration::from_secs(10)));
        let mut t = 0u64;
        let mut jitter = 12345u64;
        let mut walked = 0u64;
        while t < 10_000_000_000 {
            let step = p.advance(ns(t));
            while s.offset(walked) <= ns(t) {
                walked += 1;
            }
            assert_eq!(p.released(), walked.min(p.total()), "t={t}");
            let Some(next) = step.next else { break };
            jitter = jitter.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            t = next.as_nanos() as u64 + (jitter >> 40) % 200_000;
        }
        assert_eq!(p.advance(Duration::from_secs(11)).next, None);
        assert_eq!(p.released(), 333_333);
    }

    #[test]
    fn pacer_stops_at_the_ticket_limit() {
        let s = RateSchedule::new(1000.0).unwrap();
        let mut p = Pacer::new(s, Some(5), Some(Duration::from_secs(60)));
        assert_eq!(p.total(), 5);
        assert_eq!(p.advance(Duration::from_secs(1)), Step { release: 5, next: None });
    }

    #[test]
    fn subsequences_partition_the_schedule() {
        // Three threads pacing one schedule between them release every ticket exactly once,
        // each at its own due time.
        let s = RateSchedule::new(1000.0).unwrap();
        let mut pacers: Vec<Pacer> = (0..3).map(|t| Pacer::new(s, Some(10), None).subsequence(t, 3)).collect();
        assert_eq!(pacers.iter().map(Pacer::total).collect::<Vec<_>>(), vec![4, 3, 3]);
        // At 4.5 ms tickets 0..=4 are due: thread 0 owns 0 and 3, thread 1 owns 1 and 4, thread 2 owns 2.
        let released: Vec<u64> = pacers.iter_mut().map(|p| p.advance(Duration::from_micros(4500)).release).collect();
        assert_eq!(released, vec![2, 2, 1]);
        assert_eq!(pacers[2].advance(Duration::from_micros(4500)).next, Some(Duration::from_millis(5)));
        assert_eq!(pacers[0].global_ticket(2), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn gate_serves_backlog_then_stops_each_waiter() {
        let gate = Arc::new(Gate::new(1, 2));
        let s = RateSchedule::new(1000.0).unwrap();
        let pacer = Pacer::new(s, Some(14), None).subsequence(1, 2);
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let task = tokio::spawn(run_pacer(pacer, start, gate.clone(), 3, stop, TokioSleeper));
        let mut got = Vec::new();
        while let Some(t) = gate.next_ticket().await {
            // Every ticket is handed out at or after its due time.
            assert!(start.elapsed() >= s.offset(t));
            got.push(t);
        }
        task.await.unwrap();
        assert_eq!(got, vec![1, 3, 5, 7, 9, 11, 13]);
        assert_eq!(gate.released_total(), 7);
        // The two other waiters also get their stop signal.
        assert_eq!(gate.next_ticket().await, None);
        assert_eq!(gate.next_ticket().await, None);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn timerfd_sleeper_never_wakes_early() {
        // Only a lower bound is asserted: a loaded machine may wake us late, never early.
        let mut sleeper = TimerFdSleeper::new().unwrap();
        let start = Instant::now();
        for ms in [1u64, 2, 5] {
            sleeper.sleep_until(start, Duration::from_millis(ms)).await;
            assert!(start.elapsed() >= Duration::from_millis(ms));
        }
    }
}
