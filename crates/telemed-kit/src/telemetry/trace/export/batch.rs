//! The span processor: each sampled span is encoded as it ends, on the thread that ends it, into the batch
//! being filled; a poster thread posts each batch once it holds [`EXPORT_BATCH_SIZE`] spans, or has waited
//! [`EXPORT_INTERVAL`].
//!
//! # Why not the SDK's `BatchSpanProcessor`
//! It sends every `SpanData` through a channel to its own thread, which encodes a whole batch and posts it in
//! one go. On a service with one core, that burst (about 0.2 ms of work every 128 spans at 60,000 requests per
//! second) is time every request in flight waits for, and it set the kit's p99 latency
//! (docs/performance.md). Encoding as each span ends spreads the same work evenly over the requests, frees the
//! span's allocations on the thread that made them, and leaves the poster thread one write of a finished body
//! per batch. What the SDK's processor promises is kept: a bounded queue ([`MAX_QUEUED_SPANS`]; a span that
//! does not fit is dropped and counted, never waited for), a periodic export, and a flush that waits until
//! everything ended before it has been posted, within a time limit.
//!
//! # Failures
//! A down or slow collector costs spans, nothing else. The poster writes one `alert` line when posting starts
//! to fail, and one line when it works again, with the number of spans lost meanwhile (in failed posts or
//! dropped from the full queue); spans dropped while posting works (a collector too slow for the load) are
//! reported the same way after the next post.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use super::BatchSettings;

/// Emptied batch buffers kept for reuse: enough for the batch being filled and the one being posted.
///
/// Reusing them is not only about allocating less. A buffer is filled on a request thread and would be
/// freed on the poster thread, in the request thread's allocator arena: glibc then takes that arena's lock
/// and may give memory back to the system while holding it (`madvise`, seen with strace under load), so
/// the request thread's next allocation waited for the poster's system call.
const SPARE_BUFFERS: usize = 4;

/// How long [`SpanProcessor::force_flush`](opentelemetry_sdk::trace::SpanProcessor::force_flush), which has no
/// time limit of its own, waits for the collector.
pub(crate) const FORCE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// At most one line about lost spans or a failing collector per this interval: a collector that stays down
/// or too slow must not flood the log it shares with the service.
pub(crate) const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What a batch holds: Zipkin JSON encoded as each span ended, or the SDK's spans for a `SpanExporter`.
pub(crate) trait Batch: Send + 'static {
    /// An empty batch with room for `spans` spans.
    fn with_room_for(spans: usize) -> Self;
    /// Empties a posted batch, keeping its allocation for the next one.
    fn clear(&mut self);
    /// Ends the batch before it is posted.
    fn seal(&mut self) {}
}

/// Spans lost since the start, by reason: what `spans_dropped_total` reports.
#[derive(Debug, Default)]
pub(crate) struct Drops {
    /// Dropped when they ended because the queue was full.
    pub(crate) queue_full: AtomicU64,
    /// In a post the collector did not take.
    pub(crate) export_failed: AtomicU64,
}

/// A bounded queue of batches and the thread that posts them.
#[derive(Debug)]
pub(crate) struct BatchProcessor<B: Batch> {
    shared: Arc<Shared<B>>,
}

impl<B: Batch + std::fmt::Debug> BatchProcessor<B> {
    /// Starts the poster thread, which calls `post` with each sealed batch.
    pub(crate) fn start<E: std::fmt::Display>(
        settings: &BatchSettings,
        mut post: impl FnMut(&mut B) -> Result<(), E> + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            settings: settings.clone(),
            state: Mutex::new(State::default()),
            sealed: Condvar::new(),
            posted: Condvar::new(),
            drops: Arc::default(),
        });
        let poster = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("telemed-spans".to_owned())
            .spawn(move || poster.post_loop(&mut post))?;
        Ok(Self { shared })
    }

    /// The counters of lost spans.
    pub(crate) fn drops(&self) -> Arc<Drops> {
        Arc::clone(&self.shared.drops)
    }

    /// Adds a span to the batch being filled with `append` (given whether it is the batch's first span), unless
    /// the queue is full or the processor shut down; never waits for the poster.
    pub(crate) fn push(&self, append: impl FnOnce(&mut B, bool)) {
        let mut state = self.shared.lock();
        if state.push(&self.shared, append) {
            drop(state);
            self.shared.sealed.notify_one();
        }
    }

    /// Seals the batch being filled and waits until every batch sealed so far is posted (or given up).
    pub(crate) fn flush(&self, timeout: Duration) -> OTelSdkResult {
        // A timeout too long to add to the clock (`Duration::MAX`) means no deadline.
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.shared.lock();
        state.seal();
        let target = state.sealed;
        self.shared.sealed.notify_one();
        while state.done < target {
            let left = deadline.map_or(timeout, |deadline| {
                deadline.saturating_duration_since(Instant::now())
            });
            if left.is_zero() {
                return Err(OTelSdkError::Timeout(timeout));
            }
            state = self
                .shared
                .posted
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Ok(())
    }

    /// Flushes within `timeout`, then lets the poster end.
    pub(crate) fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        let flushed = self.flush(timeout);
        let mut state = self.shared.lock();
        state.closed = true;
        drop(state);
        self.shared.sealed.notify_one();
        flushed
    }
}

#[derive(Debug)]
struct Shared<B> {
    settings: BatchSettings,
    state: Mutex<State<B>>,
    /// Wakes the poster: a batch was sealed, or the processor closed.
    sealed: Condvar,
    /// Wakes flushers: a batch was posted or given up.
    posted: Condvar,
    drops: Arc<Drops>,
}

#[derive(Debug)]
struct State<B> {
    /// The batch being filled; `None` while it holds no span.
    filling: Option<B>,
    filling_spans: usize,
    /// Sealed batches, oldest first, waiting for the poster.
    waiting: VecDeque<Sealed<B>>,
    /// Emptied batch buffers, for the next batches to fill.
    spare: Vec<B>,
    /// Spans in `filling` and `waiting`: what the queue size bounds.
    queued_spans: usize,
    /// Batches sealed and batches posted (or given up) since the start: what a flush waits on.
    sealed: u64,
    done: u64,
    /// Spans dropped or in failed posts since the poster last reported.
    lost: u64,
    /// Shut down: spans that end now are not exported, and the poster ends once `waiting` is empty.
    closed: bool,
}

impl<B> Default for State<B> {
    fn default() -> Self {
        Self {
            filling: None,
            filling_spans: 0,
            waiting: VecDeque::new(),
            spare: Vec::new(),
            queued_spans: 0,
            sealed: 0,
            done: 0,
            lost: 0,
            closed: false,
        }
    }
}

#[derive(Debug)]
struct Sealed<B> {
    batch: B,
    spans: usize,
}

impl<B: Batch> State<B> {
    /// Adds a span; `true` when that sealed the batch and the poster should wake.
    fn push(&mut self, shared: &Shared<B>, append: impl FnOnce(&mut B, bool)) -> bool {
        if self.closed {
            return false;
        }
        let settings = &shared.settings;
        if self.queued_spans >= settings.max_queue_size {
            self.lost += 1;
            shared.drops.queue_full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let first = self.filling.is_none();
        let filling = self.filling.get_or_insert_with(|| {
            self.spare
                .pop()
                .unwrap_or_else(|| B::with_room_for(settings.max_export_batch_size))
        });
        append(filling, first);
        self.filling_spans += 1;
        self.queued_spans += 1;
        if self.filling_spans < settings.max_export_batch_size {
            return false;
        }
        self.seal();
        true
    }

    /// Closes the batch being filled and queues it for the poster, unless it is empty.
    fn seal(&mut self) {
        let Some(mut batch) = self.filling.take() else {
            return;
        };
        batch.seal();
        self.waiting.push_back(Sealed {
            batch,
            spans: std::mem::take(&mut self.filling_spans),
        });
        self.sealed += 1;
    }
}

/// What the poster has told the log, so that it says something at most once per [`REPORT_INTERVAL`].
#[derive(Debug, Default)]
struct Reports {
    /// The last post failed, and why.
    failing: Option<String>,
    /// The log was told that posting fails, and not yet that it works again.
    told_failing: bool,
    last_line: Option<Instant>,
}

/// A line the poster writes.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    Failing { error: String, spans_lost: u64 },
    Recovered { spans_lost: u64 },
    Dropped { spans_lost: u64 },
    LostAtShutdown { spans_lost: u64 },
}

impl Line {
    fn write(&self) {
        match self {
            Self::Failing { error, spans_lost } => crate::alert!(
                %error,
                spans_lost,
                "span export failed: spans are lost until the collector takes them again"
            ),
            Self::Recovered { spans_lost } => {
                tracing::info!(spans_lost, "span export works again");
            }
            Self::Dropped { spans_lost } => crate::alert!(
                spans_lost,
                "{spans_lost} spans dropped: the collector took them slower than the service made them"
            ),
            Self::LostAtShutdown { spans_lost } => crate::alert!(
                spans_lost,
                "{spans_lost} spans lost: the collector did not take them before the service stopped"
            ),
        }
    }
}

impl Reports {
    /// The line due at `now`, if any and if the last one is old enough (or `final_line`, at shutdown); the spans
    /// it reports are taken out of `lost`.
    fn due(&mut self, lost: &mut u64, final_line: bool, now: Instant) -> Option<Line> {
        if !final_line
            && self
                .last_line
                .is_some_and(|last| now.saturating_duration_since(last) < REPORT_INTERVAL)
        {
            return None;
        }
        let spans_lost = *lost;
        let line = match (&self.failing, self.told_failing) {
            (Some(error), false) => {
                self.told_failing = true;
                Line::Failing {
                    error: error.clone(),
                    spans_lost,
                }
            }
            (None, true) => {
                self.told_failing = false;
                Line::Recovered { spans_lost }
            }
            (None, false) if spans_lost > 0 => Line::Dropped { spans_lost },
            _ if final_line && spans_lost > 0 => Line::LostAtShutdown { spans_lost },
            _ => return None,
        };
        *lost = 0;
        self.last_line = Some(now);
        Some(line)
    }
}

impl<B: Batch> Shared<B> {
    fn lock(&self) -> MutexGuard<'_, State<B>> {
        // Nothing panics while holding the lock; if something did, the counters are still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn post_loop<E: std::fmt::Display>(&self, post: &mut impl FnMut(&mut B) -> Result<(), E>) {
        let mut reports = Reports::default();
        let mut last_post = Instant::now();
        let mut state = self.lock();
        loop {
            if let Some(mut sealed) = state.waiting.pop_front() {
                drop(state);
                let result = post(&mut sealed.batch);
                last_post = Instant::now();
                sealed.batch.clear();
                state = self.lock();
                if state.spare.len() < SPARE_BUFFERS {
                    state.spare.push(sealed.batch);
                }
                state.queued_spans -= sealed.spans;
                state.done += 1;
                self.posted.notify_all();
                reports.failing = match result {
                    Err(error) => {
                        state.lost += sealed.spans as u64;
                        self.drops
                            .export_failed
                            .fetch_add(sealed.spans as u64, Ordering::Relaxed);
                        Some(error.to_string())
                    }
                    Ok(()) => None,
                };
                if let Some(line) = reports.due(&mut state.lost, false, Instant::now()) {
                    drop(state);
                    line.write();
                    state = self.lock();
                }
                continue;
            }
            if state.closed {
                break;
            }
            let wait = self
                .settings
                .schedule_delay
                .saturating_sub(last_post.elapsed());
            if wait.is_zero() {
                state.seal();
                last_post = Instant::now();
                continue;
            }
            state = self
                .sealed
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let line = reports.due(&mut state.lost, true, Instant::now());
        drop(state);
        if let Some(line) = line {
            line.write();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanProcessor};

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);
    const BATCH: usize = 16;
    const QUEUE: usize = 64;

    /// Span names, standing in for an encoded batch.
    #[derive(Debug)]
    struct Names(Vec<String>);

    impl Batch for Names {
        fn with_room_for(spans: usize) -> Self {
            Self(Vec::with_capacity(spans))
        }

        fn clear(&mut self) {
            self.0.clear();
        }
    }

    #[derive(Debug)]
    struct Recorder(BatchProcessor<Names>);

    impl SpanProcessor for Recorder {
        fn on_start(
            &self,
            _span: &mut opentelemetry_sdk::trace::Span,
            _cx: &opentelemetry::Context,
        ) {
        }

        fn on_end(&self, span: SpanData) {
            self.0.push(|batch, _| batch.0.push(span.name.to_string()));
        }

        fn force_flush(&self) -> OTelSdkResult {
            self.0.flush(FORCE_FLUSH_TIMEOUT)
        }

        fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
            self.0.shutdown(timeout)
        }
    }

    fn settings() -> BatchSettings {
        BatchSettings {
            max_queue_size: QUEUE,
            schedule_delay: Duration::from_secs(3600),
            max_export_batch_size: BATCH,
            export_timeout: WAIT,
        }
    }

    /// A provider whose processor sends each posted batch to the returned receiver; each post first waits for
    /// a permit from `gate` when one is given.
    fn provider(
        gate: Option<mpsc::Receiver<()>>,
    ) -> (SdkTracerProvider, mpsc::Receiver<Vec<String>>, Arc<Drops>) {
        let (posted, batches) = mpsc::channel();
        let processor = BatchProcessor::start(&settings(), move |batch: &mut Names| {
            if let Some(gate) = &gate {
                gate.recv().map_err(|_| "gate closed")?;
            }
            posted.send(batch.0.clone()).map_err(|_| "test ended")
        })
        .unwrap();
        let drops = processor.drops();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Recorder(processor))
            .build();
        (provider, batches, drops)
    }

    fn end_spans(provider: &SdkTracerProvider, count: usize) {
        let tracer = provider.tracer("test");
        for n in 0..count {
            let mut span = tracer.start(format!("span {n}"));
            span.end();
        }
    }

    #[test]
    fn a_full_batch_is_posted_at_once_and_the_rest_at_a_flush() {
        let (provider, batches, _) = provider(None);
        end_spans(&provider, BATCH + 3);
        let full = batches.recv_timeout(WAIT).expect("no batch posted");
        assert_eq!(full.len(), BATCH);
        assert_eq!(full[0], "span 0");
        // The three left wait for the interval, or for a flush.
        assert!(batches.recv_timeout(Duration::from_millis(100)).is_err());
        provider.force_flush().unwrap();
        let rest = batches
            .try_recv()
            .expect("the flush returned before the post");
        assert_eq!(
            rest,
            [BATCH, BATCH + 1, BATCH + 2].map(|n| format!("span {n}"))
        );
        // Nothing is posted empty.
        provider.force_flush().unwrap();
        assert!(batches.try_recv().is_err());
        // A time limit too long for the clock is no limit, not a panic.
        end_spans(&provider, 1);
        provider.shutdown_with_timeout(Duration::MAX).unwrap();
        assert_eq!(batches.try_recv().map(|batch| batch.len()), Ok(1));
    }

    #[test]
    fn spans_beyond_the_queue_are_dropped_counted_and_the_rest_posted_once_the_collector_takes_them()
     {
        let (permits, gate) = mpsc::channel();
        let (provider, batches, drops) = provider(Some(gate));
        // The poster takes the first batch and waits in its post; the queue holds the rest up to its limit.
        end_spans(&provider, QUEUE + 50);
        assert_eq!(drops.queue_full.load(Ordering::Relaxed), 50);
        for _ in 0..QUEUE / BATCH {
            permits.send(()).unwrap();
        }
        let mut posted = 0;
        while posted < QUEUE {
            posted += batches
                .recv_timeout(WAIT)
                .expect("a batch went missing")
                .len();
        }
        assert_eq!(posted, QUEUE);
        // The queue has room again.
        end_spans(&provider, 1);
        permits.send(()).unwrap();
        provider.force_flush().unwrap();
        assert_eq!(batches.try_recv().map(|batch| batch.len()), Ok(1));
        assert_eq!(drops.export_failed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn spans_of_a_failed_post_are_counted() {
        let (gate_sender, gate) = mpsc::channel::<()>();
        let (provider, _batches, drops) = provider(Some(gate));
        drop(gate_sender);
        end_spans(&provider, BATCH);
        provider.force_flush().unwrap();
        assert_eq!(drops.export_failed.load(Ordering::Relaxed), BATCH as u64);
    }

    #[test]
    fn shutdown_gives_up_on_a_collector_that_never_answers_within_its_time() {
        let (_permits, gate) = mpsc::channel::<()>();
        let (provider, _batches, _) = provider(Some(gate));
        end_spans(&provider, 1);
        let started = Instant::now();
        let result = provider.shutdown_with_timeout(Duration::from_millis(200));
        assert!(result.is_err(), "{result:?}");
        assert!(started.elapsed() < WAIT);
    }

    #[test]
    fn the_log_hears_of_lost_spans_at_most_once_per_interval() {
        let mut reports = Reports::default();
        let start = Instant::now();
        let mut lost = 0;
        let later = |seconds| start + Duration::from_secs(seconds);
        // Drops while posting works: one line, then silence for the interval while they pile up.
        lost += 5;
        assert_eq!(
            reports.due(&mut lost, false, start),
            Some(Line::Dropped { spans_lost: 5 })
        );
        lost += 7;
        assert_eq!(reports.due(&mut lost, false, later(1)), None);
        lost += 1;
        assert_eq!(
            reports.due(&mut lost, false, later(10)),
            Some(Line::Dropped { spans_lost: 8 })
        );
        // The collector fails: said once the interval allows, then not again while it stays down.
        reports.failing = Some("connection refused".into());
        lost += 16;
        assert_eq!(reports.due(&mut lost, false, later(15)), None);
        let failing = reports.due(&mut lost, false, later(20));
        assert_eq!(
            failing,
            Some(Line::Failing {
                error: "connection refused".into(),
                spans_lost: 16
            })
        );
        lost += 16;
        assert_eq!(reports.due(&mut lost, false, later(40)), None);
        // It recovers: said once, with what was lost meanwhile.
        reports.failing = None;
        assert_eq!(
            reports.due(&mut lost, false, later(41)),
            Some(Line::Recovered { spans_lost: 16 })
        );
        assert_eq!(reports.due(&mut lost, false, later(60)), None);
        // At shutdown, whatever is left, whatever the interval.
        lost += 3;
        assert_eq!(
            reports.due(&mut lost, true, later(61)),
            Some(Line::Dropped { spans_lost: 3 })
        );
        reports.failing = Some("timeout".into());
        assert!(reports.due(&mut lost, true, later(61)).is_some());
        lost += 2;
        assert_eq!(
            reports.due(&mut lost, true, later(61)),
            Some(Line::LostAtShutdown { spans_lost: 2 })
        );
        assert_eq!(reports.due(&mut lost, true, later(61)), None);
    }
}
