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
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use opentelemetry::Context;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use super::zipkin::{Encoder, SPAN_SIZE_HINT};
use super::{EXPORT_BATCH_SIZE, EXPORT_INTERVAL, MAX_QUEUED_SPANS};
use crate::telemetry::json;

/// Emptied batch buffers kept for reuse: enough for the batch being filled and the one being posted.
///
/// Reusing them is not only about allocating less. A buffer is filled on a request thread and would be
/// freed on the poster thread, in the request thread's allocator arena: glibc then takes that arena's lock
/// and may give memory back to the system while holding it (`madvise`, seen with strace under load), so
/// the request thread's next allocation waited for the poster's system call.
const SPARE_BUFFERS: usize = 4;

/// How long [`SpanProcessor::force_flush`], which has no time limit of its own, waits for the collector.
const FORCE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Encodes spans as they end and hands full batches to a poster thread.
#[derive(Debug)]
pub(crate) struct BatchProcessor {
    shared: Arc<Shared>,
}

impl BatchProcessor {
    /// Starts the poster thread, which calls `post` with each batch: a JSON array of encoded spans.
    pub(crate) fn start<E: std::fmt::Display>(
        encoder: Encoder,
        mut post: impl FnMut(&[u8]) -> Result<(), E> + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            encoder,
            state: Mutex::new(State::default()),
            sealed: Condvar::new(),
            posted: Condvar::new(),
        });
        let poster = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("telemed-spans".to_owned())
            .spawn(move || poster.post_loop(&mut post))?;
        Ok(Self { shared })
    }

    /// Seals the batch being filled and waits until every batch sealed so far is posted (or given up).
    fn flush(&self, timeout: Duration) -> OTelSdkResult {
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
}

impl SpanProcessor for BatchProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        thread_local! {
            static ENCODED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // Encoded outside the lock, so that threads ending spans at once wait only for each other's copy.
        json::with_thread_buffers(&ENCODED, |encoded: &mut Vec<u8>| {
            encoded.clear();
            self.shared.encoder.span(encoded, &span);
            let mut state = self.shared.lock();
            if state.push(encoded) {
                drop(state);
                self.shared.sealed.notify_one();
            }
        });
        // `span` is dropped here, on the thread that allocated it.
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.flush(FORCE_FLUSH_TIMEOUT)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        let flushed = self.flush(timeout);
        let mut state = self.shared.lock();
        state.closed = true;
        drop(state);
        self.shared.sealed.notify_one();
        flushed
    }
}

#[derive(Debug)]
struct Shared {
    encoder: Encoder,
    state: Mutex<State>,
    /// Wakes the poster: a batch was sealed, or the processor closed.
    sealed: Condvar,
    /// Wakes flushers: a batch was posted or given up.
    posted: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// `[` and the spans of the batch being filled, comma-separated; empty, with no buffer, when it holds
    /// none.
    filling: Vec<u8>,
    filling_spans: usize,
    /// Sealed batches, oldest first, waiting for the poster.
    waiting: VecDeque<Batch>,
    /// Emptied batch buffers, for the next batches to fill.
    spare: Vec<Vec<u8>>,
    /// Spans in `filling` and `waiting`: what [`MAX_QUEUED_SPANS`] bounds.
    queued_spans: usize,
    /// Batches sealed and batches posted (or given up) since the start: what a flush waits on.
    sealed: u64,
    done: u64,
    /// Spans dropped or in failed posts since the poster last reported.
    lost: u64,
    /// Shut down: spans that end now are not exported, and the poster ends once `waiting` is empty.
    closed: bool,
}

#[derive(Debug)]
struct Batch {
    body: Vec<u8>,
    spans: usize,
}

impl State {
    /// Adds an encoded span; `true` when that sealed the batch and the poster should wake.
    fn push(&mut self, encoded: &[u8]) -> bool {
        if self.closed {
            return false;
        }
        if self.queued_spans >= MAX_QUEUED_SPANS {
            self.lost += 1;
            return false;
        }
        if self.filling_spans == 0 {
            // `seal` left an empty vector without a buffer.
            self.filling = self
                .spare
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(EXPORT_BATCH_SIZE * SPAN_SIZE_HINT));
            self.filling.push(b'[');
        } else {
            self.filling.push(b',');
        }
        self.filling.extend_from_slice(encoded);
        self.filling_spans += 1;
        self.queued_spans += 1;
        if self.filling_spans < EXPORT_BATCH_SIZE {
            return false;
        }
        self.seal();
        true
    }

    /// Closes the batch being filled and queues it for the poster, unless it is empty.
    fn seal(&mut self) {
        if self.filling_spans == 0 {
            return;
        }
        let mut body = std::mem::take(&mut self.filling);
        body.push(b']');
        self.waiting.push_back(Batch {
            body,
            spans: std::mem::take(&mut self.filling_spans),
        });
        self.sealed += 1;
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something did, the counters are still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn post_loop<E: std::fmt::Display>(&self, post: &mut impl FnMut(&[u8]) -> Result<(), E>) {
        let mut failing = false;
        let mut last_post = Instant::now();
        let mut state = self.lock();
        loop {
            if let Some(batch) = state.waiting.pop_front() {
                drop(state);
                let result = post(&batch.body);
                last_post = Instant::now();
                let mut body = batch.body;
                body.clear();
                state = self.lock();
                if state.spare.len() < SPARE_BUFFERS {
                    state.spare.push(body);
                }
                state.queued_spans -= batch.spans;
                state.done += 1;
                self.posted.notify_all();
                match result {
                    Err(error) => {
                        state.lost += batch.spans as u64;
                        if !failing {
                            failing = true;
                            drop(state);
                            crate::alert!(
                                %error,
                                "span export failed: spans are lost until the collector takes them again"
                            );
                            state = self.lock();
                        }
                    }
                    Ok(()) => {
                        let lost = std::mem::take(&mut state.lost);
                        if failing || lost > 0 {
                            drop(state);
                            report(std::mem::take(&mut failing), lost);
                            state = self.lock();
                        }
                    }
                }
                continue;
            }
            if state.closed {
                break;
            }
            let wait = EXPORT_INTERVAL.saturating_sub(last_post.elapsed());
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
        let lost = std::mem::take(&mut state.lost);
        drop(state);
        if lost > 0 {
            report(false, lost);
        }
    }
}

/// The line after a post that went through, or at shutdown, when spans were lost since the last one.
fn report(recovered: bool, spans_lost: u64) {
    if recovered {
        tracing::info!(spans_lost, "span export works again");
    } else {
        crate::alert!(
            spans_lost,
            "{spans_lost} spans dropped: the collector took them slower than the service made them"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use opentelemetry::trace::{Span as _, Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    /// A provider whose processor sends each posted batch, parsed, to the returned receiver; each post first
    /// waits for a permit from `gate` when one is given.
    fn provider(
        gate: Option<mpsc::Receiver<()>>,
    ) -> (SdkTracerProvider, mpsc::Receiver<Vec<serde_json::Value>>) {
        let (posted, batches) = mpsc::channel();
        let processor = BatchProcessor::start(Encoder::new("batch-test"), move |body: &[u8]| {
            if let Some(gate) = &gate {
                gate.recv().map_err(|_| "gate closed")?;
            }
            let spans: Vec<serde_json::Value> =
                serde_json::from_slice(body).map_err(|_| "not a JSON array")?;
            posted.send(spans).map_err(|_| "test ended")
        })
        .unwrap();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .build();
        (provider, batches)
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
        let (provider, batches) = provider(None);
        end_spans(&provider, EXPORT_BATCH_SIZE + 3);
        let full = batches.recv_timeout(WAIT).expect("no batch posted");
        assert_eq!(full.len(), EXPORT_BATCH_SIZE);
        assert_eq!(full[0]["name"], "span 0");
        assert_eq!(full[0]["localEndpoint"]["serviceName"], "batch-test");
        // The three left wait for the interval, or for a flush.
        assert!(batches.recv_timeout(Duration::from_millis(100)).is_err());
        provider.force_flush().unwrap();
        let rest = batches
            .try_recv()
            .expect("the flush returned before the post");
        let names: Vec<&str> = rest
            .iter()
            .filter_map(|span| span["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                EXPORT_BATCH_SIZE,
                EXPORT_BATCH_SIZE + 1,
                EXPORT_BATCH_SIZE + 2
            ]
            .map(|n| format!("span {n}"))
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
    fn spans_beyond_the_queue_are_dropped_and_the_rest_posted_once_the_collector_takes_them() {
        let (permits, gate) = mpsc::channel();
        let (provider, batches) = provider(Some(gate));
        // The poster takes the first batch and waits in its post; the queue holds the rest up to its limit.
        end_spans(&provider, MAX_QUEUED_SPANS + 500);
        for _ in 0..MAX_QUEUED_SPANS / EXPORT_BATCH_SIZE {
            permits.send(()).unwrap();
        }
        let mut posted = 0;
        while posted < MAX_QUEUED_SPANS {
            posted += batches
                .recv_timeout(WAIT)
                .expect("a batch went missing")
                .len();
        }
        assert_eq!(posted, MAX_QUEUED_SPANS);
        // The queue has room again.
        end_spans(&provider, 1);
        permits.send(()).unwrap();
        provider.force_flush().unwrap();
        assert_eq!(batches.try_recv().map(|batch| batch.len()), Ok(1));
    }

    #[test]
    fn shutdown_gives_up_on_a_collector_that_never_answers_within_its_time() {
        let (_permits, gate) = mpsc::channel::<()>();
        let (provider, _batches) = provider(Some(gate));
        end_spans(&provider, 1);
        let started = Instant::now();
        let result = provider.shutdown_with_timeout(Duration::from_millis(200));
        assert!(result.is_err(), "{result:?}");
        assert!(started.elapsed() < WAIT);
    }
}
