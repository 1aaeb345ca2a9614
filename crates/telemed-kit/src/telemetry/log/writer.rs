//! The one thread that owns stdout, and the bounded queue in front of it.
//!
//! Callers append finished lines to a shared byte buffer under a short lock; the writer thread swaps that
//! buffer for an empty one and writes the whole batch with one `write_all`. No line is allocated on its own,
//! the lock is held only for a copy, and a slow or blocked stdout delays nothing but the writer thread.
//! The writer lingers a millisecond after the first line of a batch (`LINGER`), so that callers rarely
//! have to wake it.
//!
//! # Overload
//! The buffer holds at most [`QueueLimits::capacity`] bytes of lines below `high`; a line that does not fit
//! is dropped and counted. `high` and `critical` lines may also use [`QueueLimits::reserve`] on top, so the
//! lines that say what went wrong survive a burst of access-log lines. Once the reserve is full they are
//! dropped too: with stdout blocked forever (a pipe nobody reads) memory stays bounded at about twice
//! `capacity + reserve` (the batch being written plus the buffer filling up), rather than growing until the
//! pod is killed. After the writer catches up it writes one `medium`/`alert` line saying how many lines were
//! dropped at each severity; [`LogGuard::dropped`] gives the running totals.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::format::{self, Clock, EventType, Header, Severity};

/// How many bytes of lines may wait for the writer thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueLimits {
    /// Bytes of queued lines of any severity. Defaults to 1 MiB (about 3000 access-log lines).
    pub capacity: usize,
    /// Further bytes only `high` and `critical` lines may use. Defaults to 4 MiB.
    pub reserve: usize,
}

impl QueueLimits {
    /// Limits of `capacity` bytes for every line plus `reserve` bytes for `high` and `critical` lines.
    pub fn new(capacity: usize, reserve: usize) -> Self {
        Self { capacity, reserve }
    }
}

impl Default for QueueLimits {
    fn default() -> Self {
        Self::new(1 << 20, 4 << 20)
    }
}

/// Lines dropped under overload, by severity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropCounts {
    /// `informational` lines dropped.
    pub informational: u64,
    /// `low` lines dropped.
    pub low: u64,
    /// `medium` lines dropped.
    pub medium: u64,
    /// `high` lines dropped (only once the reserve is full).
    pub high: u64,
    /// `critical` lines dropped (only once the reserve is full).
    pub critical: u64,
}

impl DropCounts {
    /// Lines dropped at any severity.
    pub fn total(&self) -> u64 {
        self.informational + self.low + self.medium + self.high + self.critical
    }

    /// The count for `severity`.
    pub fn get(&self, severity: Severity) -> u64 {
        self.as_array()[severity.index()]
    }

    fn as_array(&self) -> [u64; 5] {
        [
            self.informational,
            self.low,
            self.medium,
            self.high,
            self.critical,
        ]
    }

    fn from_array(counts: [u64; 5]) -> Self {
        let [informational, low, medium, high, critical] = counts;
        Self {
            informational,
            low,
            medium,
            high,
            critical,
        }
    }
}

/// Starts the writer thread for `sink` and returns the handle that queues lines and the guard that flushes.
///
/// `app` is the service name: the value of `app` in every line, including the writer's own drop reports.
/// The thread ends once every [`LogWriter`] clone is dropped and the queue is written; [`LogGuard`]s do not
/// keep it alive. Tests pass a capture buffer as `sink`; [`Logs::stdout`](super::Logs::stdout) passes stdout.
pub fn non_blocking<W: Write + Send + 'static>(
    app: &str,
    sink: W,
    limits: QueueLimits,
) -> std::io::Result<(LogWriter, LogGuard)> {
    let mut app_json = Vec::with_capacity(app.len() + 2);
    format::string(&mut app_json, app);
    let shared = Arc::new(Shared {
        app: app_json.into_boxed_slice(),
        state: Mutex::new(State::default()),
        queued: Condvar::new(),
        written: Condvar::new(),
        limits,
        dropped: Default::default(),
    });
    let thread_shared = Arc::clone(&shared);
    std::thread::Builder::new()
        .name("telemed-log".to_owned())
        .spawn(move || write_loop(&thread_shared, sink))?;
    Ok((
        LogWriter {
            producer: Arc::new(Producer {
                shared: Arc::clone(&shared),
            }),
        },
        LogGuard { shared },
    ))
}

/// Queues finished lines for the writer thread; cloning is cheap.
#[derive(Debug, Clone)]
pub struct LogWriter {
    producer: Arc<Producer>,
}

impl LogWriter {
    /// Queues `line` (one or more complete lines ending in `\n`) at `severity`; `false` if it was dropped.
    ///
    /// Never blocks on the sink: it waits at most for another caller's copy into the queue.
    pub fn write_line(&self, severity: Severity, line: &[u8]) -> bool {
        self.producer.shared.push(severity, line)
    }

    /// The service name as a JSON string, quotes included.
    pub(super) fn app_json(&self) -> &[u8] {
        &self.producer.shared.app
    }
}

/// Flushes the queue from any thread; cloning is cheap.
///
/// Dropping a guard while lines are still queued flushes them, waiting at most one second (as
/// tracing-appender's `WorkerGuard` does), so that a `main` that returns early does not lose its last lines
/// when the process ends and takes the writer thread with it. It does not wait when an earlier flush timed
/// out and nothing was written since: stdout is stuck, and the process should exit on time.
#[derive(Debug, Clone)]
pub struct LogGuard {
    shared: Arc<Shared>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // A flush that already timed out with no line written since means stdout is stuck: waiting again
        // would only push the exit past the shutdown deadline.
        let stuck = {
            let state = self.shared.lock();
            state.stalled_at == Some(state.written)
        };
        if !stuck {
            self.shared.flush(DROP_FLUSH_TIMEOUT);
        }
    }
}

/// How long dropping a [`LogGuard`] waits for queued lines: long enough for a healthy stdout, short enough
/// not to hold up an exit when stdout is stuck.
const DROP_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

impl LogGuard {
    /// Blocks until every line queued before the call is written and the sink flushed, or `timeout` passes;
    /// `true` if everything was written.
    ///
    /// It uses no async runtime, so the shutdown watchdog can call it while the runtime is stuck.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.shared.flush(timeout)
    }

    /// Lines dropped under overload so far.
    pub fn dropped(&self) -> DropCounts {
        self.shared.dropped()
    }

    /// A reader of the drop counts that, unlike a guard, does not flush when dropped.
    pub(super) fn drop_counter(&self) -> DropCounter {
        DropCounter(Arc::clone(&self.shared))
    }
}

/// Reads a writer's drop counts; see [`LogGuard::drop_counter`].
#[derive(Debug)]
pub(super) struct DropCounter(Arc<Shared>);

impl DropCounter {
    pub(super) fn dropped(&self) -> DropCounts {
        self.0.dropped()
    }
}

impl crate::shutdown::Flush for LogGuard {
    fn flush(&self, timeout: Duration) -> bool {
        LogGuard::flush(self, timeout)
    }
}

/// The producing side; dropping the last one tells the writer thread to finish.
#[derive(Debug)]
struct Producer {
    shared: Arc<Shared>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        drop(state);
        self.shared.queued.notify_one();
    }
}

#[derive(Debug)]
pub(super) struct Shared {
    /// The service name as a JSON string, quotes included.
    app: Box<[u8]>,
    state: Mutex<State>,
    /// Wakes the writer thread: lines or drops to report, or the producers are gone.
    queued: Condvar,
    /// Wakes flushers: `State::written` moved.
    written: Condvar,
    limits: QueueLimits,
    /// Running totals for [`DropCounts`], readable without the lock.
    dropped: [AtomicU64; 5],
}

#[derive(Debug, Default)]
struct State {
    /// Lines waiting for the writer thread.
    pending: Vec<u8>,
    /// Lines ever accepted; a flush waits until `written` reaches the value it saw.
    accepted: u64,
    /// Lines written and flushed to the sink.
    written: u64,
    /// Drops not yet reported in a line.
    unreported: [u64; 5],
    /// The writer thread waits on `queued` for work, so a producer must notify it.
    writer_idle: bool,
    /// The writer thread waits on `queued` for more lines to batch; only a half-full queue, a flush or
    /// closing cuts that short.
    lingering: bool,
    /// A flush waits: the writer should not linger.
    flush_requested: bool,
    /// Every producer is gone.
    closed: bool,
    /// The writer thread ended (or panicked in the sink): nothing more will be written.
    writer_gone: bool,
    /// `written` when a flush last timed out.
    stalled_at: Option<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock, and a log queue must keep working regardless.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, severity: Severity, line: &[u8]) -> bool {
        let limit = if severity >= Severity::High {
            self.limits.capacity.saturating_add(self.limits.reserve)
        } else {
            self.limits.capacity
        };
        let mut state = self.lock();
        let needed = state.pending.len() + line.len();
        let accepted = needed <= limit && !state.writer_gone;
        if accepted {
            if needed > state.pending.capacity() {
                // Grow by doubling, but never past the limit: the bound is on memory, not just on content.
                let target = (state.pending.capacity() * 2)
                    .max(needed)
                    .max(4096)
                    .min(limit);
                let additional = target - state.pending.len();
                state.pending.reserve_exact(additional);
            }
            state.pending.extend_from_slice(line);
            state.accepted += 1;
        } else {
            state.unreported[severity.index()] += 1;
            self.dropped[severity.index()].fetch_add(1, Ordering::Relaxed);
        }
        let wake = state.writer_idle
            || (state.lingering && state.pending.len() >= self.limits.capacity / 2);
        if wake {
            state.writer_idle = false;
            state.lingering = false;
        }
        drop(state);
        if wake {
            self.queued.notify_one();
        }
        accepted
    }

    fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.lock();
        let target = state.accepted;
        if state.written < target {
            state.flush_requested = true;
            self.queued.notify_one();
        }
        while state.written < target && !state.writer_gone {
            let remaining = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if remaining.is_zero() {
                state.stalled_at = Some(state.written);
                return false;
            }
            state = self
                .written
                .wait_timeout(state, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.written >= target
    }

    pub(super) fn dropped(&self) -> DropCounts {
        DropCounts::from_array(
            self.dropped
                .each_ref()
                .map(|count| count.load(Ordering::Relaxed)),
        )
    }
}

/// Marks the writer gone however the thread ends, so that flushes stop waiting for it.
struct WriterGone<'a>(&'a Shared);

impl Drop for WriterGone<'_> {
    fn drop(&mut self) {
        self.0.lock().writer_gone = true;
        self.0.written.notify_all();
    }
}

/// How long the writer thread waits for more lines after the first one arrives. Waking the thread for every
/// line would cost each caller a futex wake and a context switch, which is most of the cost of a log line;
/// waiting a millisecond turns a busy stream into one wake and one `write` per batch. A flush, closing, or a
/// half-full queue ends the wait early.
const LINGER: Duration = Duration::from_millis(1);

fn write_loop<W: Write>(shared: &Shared, mut sink: W) {
    let _gone = WriterGone(shared);
    let mut batch = Vec::new();
    let mut report = Vec::new();
    let mut clock = Clock::default();
    loop {
        let (accepted, unreported) = {
            let mut state = shared.lock();
            while state.pending.is_empty() && state.unreported == [0; 5] && !state.closed {
                state.writer_idle = true;
                state = shared
                    .queued
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.writer_idle = false;
            if state.pending.is_empty() && state.unreported == [0; 5] {
                return;
            }
            if !state.closed && !state.flush_requested {
                state.lingering = true;
                state = shared
                    .queued
                    .wait_timeout(state, LINGER)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                state.lingering = false;
            }
            state.flush_requested = false;
            std::mem::swap(&mut state.pending, &mut batch);
            (state.accepted, std::mem::take(&mut state.unreported))
        };
        // A sink that fails (stdout closed) cannot be told about it; the lines are lost either way, and
        // carrying on keeps the queue moving so that memory stays bounded and flushes return.
        let _ = sink.write_all(&batch);
        if unreported != [0; 5] {
            report.clear();
            drop_report(&mut report, &mut clock, &shared.app, unreported);
            let _ = sink.write_all(&report);
        }
        let _ = sink.flush();
        batch.clear();
        // Give back what a burst into the reserve took.
        batch.shrink_to(shared.limits.capacity);
        shared.lock().written = accepted;
        shared.written.notify_all();
    }
}

/// The line reporting `unreported` drops, written by the writer thread itself so that it cannot be dropped.
fn drop_report(buf: &mut Vec<u8>, clock: &mut Clock, app: &[u8], unreported: [u64; 5]) {
    let total: u64 = unreported.iter().sum();
    let mut body = Vec::with_capacity(48);
    body.extend_from_slice(b"dropped ");
    format::integer(&mut body, total);
    body.extend_from_slice(b" log lines under overload");
    format::begin_line(
        buf,
        clock,
        SystemTime::now(),
        &Header {
            app,
            body: &body,
            id: None,
            severity: Severity::Medium,
            subject: module_path!(),
            kind: EventType::Alert,
        },
    );
    for severity in Severity::ALL {
        buf.extend_from_slice(b",\"dropped_");
        buf.extend_from_slice(severity.as_str().as_bytes());
        buf.extend_from_slice(b"\":");
        format::integer(buf, unreported[severity.index()]);
    }
    format::end_line(buf);
}
