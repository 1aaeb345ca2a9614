//! What the team wrote before it adopted telemed-kit, and keeps through every step: a `tracing` layer of its
//! own, its state and its routes. Every step's `main` includes this file.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use opentelemetry::trace::Tracer as _;
use tracing_subscriber::Layer;

/// A layer of the team's own: it counts every event it sees, and `/events` shows the count.
#[derive(Debug, Clone, Default)]
pub struct EventCounter(Arc<AtomicU64>);

impl EventCounter {
    /// Events seen so far.
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl<S: tracing::Subscriber> Layer<S> for EventCounter {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Clone)]
struct Team {
    greeting: Arc<str>,
    events: EventCounter,
}

/// `GET /` greets; `GET /events` tells how many events the team's layer has seen.
pub fn routes(greeting: &str, events: EventCounter) -> Router {
    Router::new()
        .route("/", get(hello))
        .route("/events", get(events_seen))
        .with_state(Team {
            greeting: greeting.into(),
            events,
        })
}

async fn hello(State(team): State<Team>) -> String {
    // The team instrumented this with OpenTelemetry's global tracer long ago. Until the kit installs a tracer
    // provider, the span goes nowhere; from step 2 on, it is exported as a child of the request's server span.
    let tracer = opentelemetry::global::tracer("existing-service");
    tracer.in_span("compose greeting", |_| render(&team.greeting))
}

/// Instrumented with `tracing`, too: from step 2 on, its span is exported as a child of the span around it.
#[tracing::instrument(skip_all)]
fn render(greeting: &str) -> String {
    tracing::info!("greeting composed");
    format!("{greeting}\n")
}

async fn events_seen(State(team): State<Team>) -> String {
    team.events.count().to_string()
}
