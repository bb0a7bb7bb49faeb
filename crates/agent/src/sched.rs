//! The agent's own CPU priority: yield to workloads while keeping up, claim a fair share when
//! falling behind.
//!
//! A monitor's events arrive in bursts with the work that causes them, so the agent wakes
//! exactly when a workload is busy. At normal priority it then competes with the workload's
//! threads for the same cores, and a workload thread woken while the agent holds its core
//! waits for the agent's slice: on a connect storm that wait, not the agent's CPU time, was
//! most of the agent's cost (BENCHMARKS.md, "CPU policy").
//!
//! Under the adaptive policy the agent's threads run as `SCHED_IDLE`: any runnable workload
//! thread preempts them, and they run on whatever CPU time is otherwise idle. A monitor that
//! a busy machine could starve would be blind exactly when it matters, so a watchdog thread at
//! normal priority watches the ring-buffer drain and moves every agent thread back to
//! `SCHED_OTHER` as soon as the drain stalls (no pass for [`STALL`]: it gets no CPU) or comes
//! back with a full batch (its backlog outgrew one batch). The events wait in the ring buffer
//! meanwhile, which holds about a second of the heaviest storm measured; overflow would be
//! counted like any other loss. Once calm for a while the threads yield again; a workload that
//! keeps starving the agent makes it wait longer each time before yielding again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nightjar_core::telemetry::{ModeLabel, Telemetry};
use serde::Deserialize;

/// How the agent's threads are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CpuPriority {
    /// `SCHED_IDLE` while the agent keeps up, normal when it falls behind or is starved.
    #[default]
    Adaptive,
    /// Always `SCHED_OTHER`, like any process.
    Normal,
}

/// How often the watchdog looks at the drain.
const CHECK_EVERY: Duration = Duration::from_millis(20);
/// A drain with no pass for this long is not getting CPU (it ticks every 10 ms).
const STALL: Duration = Duration::from_millis(60);
/// Calm time before yielding again after the first promotion...
const CALM_FIRST: Duration = Duration::from_secs(2);
/// ...doubled after each promotion that follows a yield within the previous calm time,
/// up to this.
const CALM_MAX: Duration = Duration::from_secs(64);

/// The policy the agent's threads should run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Idle,
    Normal,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Idle => "idle",
            Policy::Normal => "normal",
        }
    }

    fn linux(self) -> libc::c_int {
        match self {
            Policy::Idle => libc::SCHED_IDLE,
            Policy::Normal => libc::SCHED_OTHER,
        }
    }
}

/// The drain's progress counters at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainSample {
    pub passes: u64,
    pub full_batches: u64,
}

/// Decides, from successive looks at the drain, when to yield and when to claim the CPU.
/// Pure: the caller supplies time and samples, so the decisions are unit-tested.
#[derive(Debug)]
pub struct Controller {
    policy: Policy,
    last: DrainSample,
    /// When the pass count last moved.
    progressed_at: Instant,
    /// When the drain last showed pressure (stall or full batch).
    pressured_at: Instant,
    /// When the threads last went back to idle.
    yielded_at: Option<Instant>,
    calm: Duration,
}

impl Controller {
    /// Starts yielding, with the drain as sampled `now`.
    pub fn new(now: Instant, sample: DrainSample) -> Self {
        Self {
            policy: Policy::Idle,
            last: sample,
            progressed_at: now,
            pressured_at: now,
            yielded_at: None,
            calm: CALM_FIRST,
        }
    }

    #[cfg(test)]
    fn policy(&self) -> Policy {
        self.policy
    }

    /// Takes a new look; returns the new policy when it changes.
    pub fn observe(&mut self, now: Instant, sample: DrainSample) -> Option<Policy> {
        if sample.passes != self.last.passes {
            self.progressed_at = now;
        }
        let stalled = now.duration_since(self.progressed_at) >= STALL;
        let backlogged = sample.full_batches != self.last.full_batches;
        self.last = sample;
        if stalled || backlogged {
            self.pressured_at = now;
        }
        match self.policy {
            Policy::Idle if stalled || backlogged => {
                // Starved again soon after yielding: wait longer before the next yield.
                self.calm = match self.yielded_at {
                    Some(at) if now.duration_since(at) < self.calm => (self.calm * 2).min(CALM_MAX),
                    _ => CALM_FIRST,
                };
                self.policy = Policy::Normal;
                Some(Policy::Normal)
            }
            Policy::Normal if now.duration_since(self.pressured_at) >= self.calm => {
                self.policy = Policy::Idle;
                self.yielded_at = Some(now);
                Some(Policy::Idle)
            }
            _ => None,
        }
    }
}

/// Sets `policy` on thread `tid` (0: the calling thread).
fn set_policy(tid: libc::pid_t, policy: Policy) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on a thread of this process, with a valid sched_param.
    if unsafe { libc::sched_setscheduler(tid, policy.linux(), &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `policy` on every thread of this process but `except` (the watchdog's own).
/// Threads the agent starts later inherit the policy of the thread that starts them.
fn apply(policy: Policy, except: libc::pid_t) -> std::io::Result<()> {
    for entry in std::fs::read_dir("/proc/self/task")? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if tid == except {
            continue;
        }
        match set_policy(tid, policy) {
            // The thread may have exited since the directory was read.
            Err(err) if err.raw_os_error() != Some(libc::ESRCH) => return Err(err),
            _ => {}
        }
    }
    Ok(())
}

/// Puts the calling thread back under the normal policy: for a child process forked from an
/// agent thread before it execs, so that a program the agent starts does not inherit idle.
pub fn reset_current_thread() -> std::io::Result<()> {
    set_policy(0, Policy::Normal)
}

fn report(telemetry: &Telemetry, policy: Policy) {
    for p in [Policy::Idle, Policy::Normal] {
        telemetry
            .cpu_policy
            .get_or_create(&ModeLabel { mode: p.name() })
            .set(i64::from(p == policy));
    }
}

/// The running watchdog; stopping it (or dropping it) leaves the threads at normal priority.
#[derive(Debug)]
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the policy: with `Normal`, only reports it.
    pub fn start(priority: CpuPriority, telemetry: Arc<Telemetry>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        if priority == CpuPriority::Normal {
            report(&telemetry, Policy::Normal);
            return Self { stop, thread: None };
        }
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("nj-cpu-watchdog".into())
            .spawn(move || watch(&telemetry, &flag))
            .map_err(|err| tracing::warn!(%err, "CPU watchdog not started: normal priority"))
            .ok();
        Self { stop, thread }
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.halt();
    }
}

fn sample(telemetry: &Telemetry) -> DrainSample {
    DrainSample {
        passes: telemetry.drain_passes.get(),
        full_batches: telemetry.drain_full_batches.get(),
    }
}

fn watch(telemetry: &Telemetry, stop: &AtomicBool) {
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    let mut controller = Controller::new(Instant::now(), sample(telemetry));
    let mut applied = apply(Policy::Idle, me);
    if applied.is_ok() {
        report(telemetry, Policy::Idle);
    }
    while applied.is_ok() && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(CHECK_EVERY);
        let Some(policy) = controller.observe(Instant::now(), sample(telemetry)) else {
            continue;
        };
        if policy == Policy::Normal {
            telemetry.cpu_policy_promotions.inc();
        }
        tracing::debug!(policy = policy.name(), "agent CPU policy");
        applied = apply(policy, me);
        if applied.is_ok() {
            report(telemetry, policy);
        }
    }
    if let Err(err) = applied {
        tracing::warn!(%err, "cannot change the agent's CPU priority: staying at normal");
    }
    // On shutdown (what is left drains at full speed) and after a failure part-way through
    // the threads: every thread back to normal.
    let _ = apply(Policy::Normal, me);
    report(telemetry, Policy::Normal);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    fn drain(passes: u64, full_batches: u64) -> DrainSample {
        DrainSample {
            passes,
            full_batches,
        }
    }

    #[test]
    fn a_drain_that_keeps_passing_stays_idle() {
        let t0 = Instant::now();
        let mut c = Controller::new(t0, drain(0, 0));
        for i in 1..500 {
            assert_eq!(c.observe(at(t0, i * 20), drain(i, 0)), None);
        }
        assert_eq!(c.policy(), Policy::Idle);
    }

    #[test]
    fn a_stalled_drain_claims_the_cpu() {
        let t0 = Instant::now();
        let mut c = Controller::new(t0, drain(5, 0));
        assert_eq!(c.observe(at(t0, 20), drain(5, 0)), None);
        assert_eq!(c.observe(at(t0, 40), drain(5, 0)), None);
        assert_eq!(c.observe(at(t0, 60), drain(5, 0)), Some(Policy::Normal));
        assert_eq!(c.observe(at(t0, 80), drain(5, 0)), None, "already normal");
    }

    #[test]
    fn a_full_batch_claims_the_cpu_at_once() {
        let t0 = Instant::now();
        let mut c = Controller::new(t0, drain(0, 0));
        assert_eq!(c.observe(at(t0, 20), drain(1, 1)), Some(Policy::Normal));
    }

    #[test]
    fn yields_again_after_calm_and_backs_off_when_starved_again() {
        let t0 = Instant::now();
        let mut c = Controller::new(t0, drain(0, 0));
        assert_eq!(c.observe(at(t0, 20), drain(1, 1)), Some(Policy::Normal));
        // Passing, no full batches: calm for CALM_FIRST, then idle.
        assert_eq!(c.observe(at(t0, 1_000), drain(50, 1)), None);
        assert_eq!(c.observe(at(t0, 2_020), drain(100, 1)), Some(Policy::Idle));
        // Starved again 100 ms after yielding: the next calm period is doubled.
        assert_eq!(
            c.observe(at(t0, 2_120), drain(100, 2)),
            Some(Policy::Normal)
        );
        assert_eq!(
            c.observe(at(t0, 4_200), drain(200, 2)),
            None,
            "2 s is not enough now"
        );
        assert_eq!(c.observe(at(t0, 6_120), drain(300, 2)), Some(Policy::Idle));
    }

    #[test]
    fn the_backoff_is_bounded_and_resets_after_a_long_calm() {
        let t0 = Instant::now();
        let mut c = Controller::new(t0, drain(0, 0));
        let mut now = 0;
        let mut full = 0;
        for _ in 0..20 {
            full += 1;
            now += 20;
            assert_eq!(
                c.observe(at(t0, now), drain(now, full)),
                Some(Policy::Normal)
            );
            now += c.calm.as_millis() as u64;
            assert_eq!(c.observe(at(t0, now), drain(now, full)), Some(Policy::Idle));
        }
        assert_eq!(c.calm, CALM_MAX);
        // Long calm while idle, then pressure: back to the first calm period.
        now += 200_000;
        assert_eq!(
            c.observe(at(t0, now), drain(now, full + 1)),
            Some(Policy::Normal)
        );
        assert_eq!(c.calm, CALM_FIRST);
    }

    #[test]
    fn the_policy_applies_to_this_process_threads_and_back() {
        // Root, like the agent (CI runs as root): returning from idle to normal needs
        // CAP_SYS_NICE or an RLIMIT_NICE that allows nice 0.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let helper = std::thread::spawn(move || {
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            rx.recv().unwrap();
        });
        let tid = tid_rx.recv().unwrap();
        let me = unsafe { libc::gettid() };
        apply(Policy::Idle, me).unwrap();
        assert_eq!(unsafe { libc::sched_getscheduler(tid) }, libc::SCHED_IDLE);
        assert_eq!(unsafe { libc::sched_getscheduler(me) }, libc::SCHED_OTHER);
        apply(Policy::Normal, me).unwrap();
        assert_eq!(unsafe { libc::sched_getscheduler(tid) }, libc::SCHED_OTHER);
        tx.send(()).unwrap();
        helper.join().unwrap();
    }
}
