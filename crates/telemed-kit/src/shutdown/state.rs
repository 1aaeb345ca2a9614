//! [`Shutdown`]: the state every piece of the sequence shares, and the signal thread with its watchdog.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::settings::ShutdownSettings;

/// Why shutdown started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trigger {
    /// SIGTERM, as sent by the kubelet.
    Sigterm,
    /// SIGINT, as sent by Ctrl-C.
    Sigint,
    /// The service itself asked to stop ([`Shutdown::trigger`]), or its server ended on its own.
    Internal,
}

impl Trigger {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sigterm => "SIGTERM",
            Self::Sigint => "SIGINT",
            Self::Internal => "internal",
        }
    }

    /// The signal's number (15 for [`Trigger::Internal`]): a process ended by a second signal exits with
    /// 128 plus it, as a shell reports a process killed by that signal.
    pub fn signal_number(self) -> i32 {
        match self {
            Self::Sigint => 2,
            Self::Sigterm | Self::Internal => 15,
        }
    }
}

/// Why the signal handlers could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// Another [`Shutdown`] of this process has installed them: a second set would start a second sequence on
    /// the same signal.
    #[error(
        "the shutdown signal handlers are already installed in this process: one Shutdown per process"
    )]
    AlreadyInstalled,
    /// The operating system refused the handlers, or the thread that receives signals could not start.
    #[error("could not install the shutdown signal handlers: {0}")]
    Io(#[from] std::io::Error),
}

/// Set by the first [`Shutdown::install_signal_handlers`].
static SIGNALS_INSTALLED: AtomicBool = AtomicBool::new(false);

/// The shared shutdown state: when it started and why, the drain token, the requests in flight and the
/// connections open. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) settings: ShutdownSettings,
    pub(super) started: watch::Sender<Option<(Instant, Trigger)>>,
    pub(super) draining: CancellationToken,
    pub(super) in_flight: AtomicUsize,
    /// Connections a server has reported open ([`Shutdown::track_connection`]), and the wake-up for
    /// [`Shutdown::all_connections_closed`].
    connections: AtomicUsize,
    connections_closed: Notify,
    /// A failure inside the service (a startup task) asked for the shutdown: the exit code is 1.
    failed: AtomicBool,
    // Set with the signal handlers; taken and armed by whichever trigger comes first.
    on_deadline: Mutex<Option<DeadlineHandler>>,
}

type DeadlineHandler = Box<dyn FnOnce(usize) + Send>;

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("settings", &self.settings)
            .field("in_flight", &self.in_flight)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl Shutdown {
    /// Shutdown state with no signal handlers installed yet.
    pub fn new(settings: ShutdownSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                started: watch::Sender::new(None),
                draining: CancellationToken::new(),
                in_flight: AtomicUsize::new(0),
                connections: AtomicUsize::new(0),
                connections_closed: Notify::new(),
                failed: AtomicBool::new(false),
                on_deadline: Mutex::new(None),
            }),
        }
    }

    /// The configured timing.
    pub fn settings(&self) -> &ShutdownSettings {
        &self.inner.settings
    }

    /// Installs the SIGTERM and SIGINT handlers on a dedicated OS thread; [`Runner::run`](super::Runner::run)
    /// does this for you.
    ///
    /// The first signal (or [`Shutdown::trigger`]) starts shutdown and arms the watchdog, which calls
    /// `on_deadline` with the number of requests still in flight if the process is still running at the deadline;
    /// `on_deadline` must end the process. A second signal calls `on_second_signal`, which must end the process
    /// too. Only one set of handlers may be installed per process: a second call returns
    /// [`SignalError::AlreadyInstalled`].
    pub fn install_signal_handlers(
        &self,
        on_deadline: impl FnOnce(usize) + Send + 'static,
        on_second_signal: impl FnOnce(Trigger) + Send + 'static,
    ) -> Result<(), SignalError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        if SIGNALS_INSTALLED.swap(true, Ordering::AcqRel) {
            return Err(SignalError::AlreadyInstalled);
        }
        let installed = (|| {
            let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
            if let Ok(mut slot) = self.inner.on_deadline.lock() {
                *slot = Some(Box::new(on_deadline));
            }
            let this = self.clone();
            std::thread::Builder::new()
                .name("shutdown-signals".into())
                .spawn(move || {
                    for signal in signals.forever() {
                        let trigger = if signal == SIGINT {
                            Trigger::Sigint
                        } else {
                            Trigger::Sigterm
                        };
                        if this.is_started() {
                            on_second_signal(trigger);
                            return;
                        }
                        this.start(trigger);
                    }
                })?;
            Ok::<_, std::io::Error>(())
        })();
        if installed.is_err() {
            SIGNALS_INSTALLED.store(false, Ordering::Release);
        }
        Ok(installed?)
    }

    /// Starts shutdown from inside the service. Only the first call (or signal) counts.
    pub fn trigger(&self) {
        self.start(Trigger::Internal);
    }

    /// Starts shutdown because the service cannot work (a startup task failed): the sequence runs as for a
    /// signal, and ends with exit code 1 so that the platform restarts the container.
    pub fn fail(&self) {
        self.inner.failed.store(true, Ordering::Release);
        self.trigger();
    }

    /// Whether [`Shutdown::fail`] was called.
    pub fn has_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    pub(super) fn start(&self, trigger: Trigger) {
        let first = self.inner.started.send_if_modified(|started| {
            if started.is_some() {
                return false;
            }
            *started = Some((Instant::now(), trigger));
            true
        });
        let on_deadline = self
            .inner
            .on_deadline
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let (true, Some(on_deadline)) = (first, on_deadline) {
            self.arm_watchdog(on_deadline);
        }
    }

    // The watchdog sleeps on its own thread so that it fires even when every runtime worker is blocked.
    fn arm_watchdog(&self, on_deadline: DeadlineHandler) {
        let Some((started, _)) = *self.inner.started.borrow() else {
            return;
        };
        let deadline = self.inner.settings.timeline(started).deadline;
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("shutdown-watchdog".into())
            .spawn(move || {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                on_deadline(this.in_flight());
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "could not start the shutdown watchdog thread");
        }
    }

    /// Whether shutdown has started: readiness is 503 from this instant.
    pub fn is_started(&self) -> bool {
        self.inner.started.borrow().is_some()
    }

    /// Waits until shutdown starts, and returns when and why.
    pub async fn started(&self) -> (Instant, Trigger) {
        let mut receiver = self.inner.started.subscribe();
        loop {
            if let Some(started) = *receiver.borrow_and_update() {
                return started;
            }
            // The sender lives in `self`, so the channel cannot close while we wait.
            if receiver.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Marks the start of draining: cancels every [`ShutdownToken`](super::ShutdownToken) and
    /// [`Shutdown::drain_signal`].
    pub fn begin_drain(&self) {
        self.inner.draining.cancel();
    }

    /// Completes when draining starts, `SHUTDOWN_DELAY` after the signal: the moment a server stops accepting.
    ///
    /// Give it to `axum::serve(..).with_graceful_shutdown(..)` to run a plain axum server through the
    /// sequence (see [`Runner`](super::Runner) for what that gives and what it cannot).
    pub fn drain_signal(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.draining.clone().cancelled_owned()
    }

    /// Requests currently being handled under [`Shutdown::layer`].
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Connections open on a server that reports them ([`http::serve`](crate::http::serve) does).
    ///
    /// After draining, idle keep-alive connections are gone, so a connection still open is one whose response
    /// has not been delivered yet (a slow reader, a stream): the sequence counts it as cut off, like an
    /// unfinished handler.
    pub fn open_connections(&self) -> usize {
        self.inner.connections.load(Ordering::Acquire)
    }

    /// Counts a connection as open until the returned guard is dropped: for a server of your own that wants
    /// its connections counted as [`http::serve`](crate::http::serve)'s are.
    pub fn track_connection(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard(Arc::clone(&self.inner))
    }

    /// Completes when no tracked connection is open.
    pub async fn all_connections_closed(&self) {
        loop {
            let notified = self.inner.connections_closed.notified();
            tokio::pin!(notified);
            // Registered before the check, so that a close between the check and the await is not missed.
            notified.as_mut().enable();
            if self.open_connections() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Keeps a connection counted in [`Shutdown::open_connections`] until dropped.
#[derive(Debug)]
#[must_use = "the connection counts as open only while the guard lives"]
pub struct ConnectionGuard(Arc<Inner>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.connections_closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_trigger_counts() {
        let shutdown = Shutdown::new(ShutdownSettings::default());
        assert!(!shutdown.is_started());
        shutdown.trigger();
        let first = *shutdown.inner.started.borrow();
        shutdown.start(Trigger::Sigterm);
        assert_eq!(*shutdown.inner.started.borrow(), first);
        assert!(matches!(first, Some((_, Trigger::Internal))));
        assert!(!shutdown.has_failed());
        shutdown.fail();
        assert!(shutdown.has_failed());
    }

    #[tokio::test]
    async fn all_connections_closed_waits_for_the_last_connection() {
        let shutdown = Shutdown::new(ShutdownSettings::default());
        shutdown.all_connections_closed().await;
        let first = shutdown.track_connection();
        let second = shutdown.track_connection();
        let waiting = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.all_connections_closed().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "one connection is still open");
        drop(second);
        waiting.await.unwrap();
        assert_eq!(shutdown.open_connections(), 0);
    }

    #[test]
    fn signal_handlers_are_installed_once_per_process() {
        // The only test of this binary that installs them: the rule is process-wide.
        let first = Shutdown::new(ShutdownSettings::default());
        first.install_signal_handlers(|_| {}, |_| {}).unwrap();
        let second = Shutdown::new(ShutdownSettings::default());
        let error = second.install_signal_handlers(|_| {}, |_| {}).unwrap_err();
        assert!(matches!(error, SignalError::AlreadyInstalled), "{error}");
        assert!(error.to_string().contains("one Shutdown per process"));
    }
}
