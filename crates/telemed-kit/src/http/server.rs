//! The HTTP server: a dual-stack listener and an accept loop that stops accepting and drains on the shutdown
//! sequence's signal.
//!
//! axum's own `serve` can be run through the sequence too ([`Runner`](crate::shutdown::Runner) says how), but the
//! kit also needs hyper's header-read timeout and header size limit (slow-loris clients, oversized headers), a
//! bound on how long a client may take to send anything at all, and a count of the connections still open at
//! the drain deadline. So the loop is written on hyper-util directly, in the shape of axum's `serve`: one task
//! per connection, watched by a `GracefulShutdown` that sends each connection `graceful_shutdown` (idle
//! keep-alive connections close, HTTP/2 gets a GOAWAY) and waits until every one is gone.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, Service, ServiceExt};
use tower_http::timeout::TimeoutBody;

use super::Problem;
use crate::shutdown::Shutdown;

/// A client must send its complete request head within this time, or the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection accepted before draining started may still take to send its first bytes.
const FIRST_BYTES_AFTER_STOP: Duration = Duration::from_millis(250);
/// A request body that stalls this long between two chunks gets 408 and the connection is closed.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted; larger heads get 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Binds `port` on every interface: one dual-stack IPv6 socket that also accepts IPv4, or IPv4 alone on hosts
/// without IPv6.
pub fn bind(port: u16) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let dual_stack = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
        Ok(socket)
    };
    let socket = match dual_stack() {
        Ok(socket) => socket,
        Err(error) if error.kind() == io::ErrorKind::AddrInUse => return Err(error),
        Err(_) => {
            let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
            socket
        }
    };
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket.into())
}

/// Applies [`BodyReadTimeout`]: a request body that stalls for [`BODY_READ_TIMEOUT`] gets 408.
///
/// # Example
///
/// ```
/// use axum::{Router, routing::post};
/// use telemed_kit::http::BodyReadTimeoutLayer;
///
/// let app: Router = Router::new()
///     .route("/upload", post(|body: String| async move { body.len().to_string() }))
///     .layer(BodyReadTimeoutLayer);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyReadTimeoutLayer;

impl<S> Layer<S> for BodyReadTimeoutLayer {
    type Service = BodyReadTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyReadTimeout { inner }
    }
}

/// Answers 408 when the request body stalls for [`BODY_READ_TIMEOUT`].
///
/// A handler reading the body otherwise waits for as long as the client likes to send it, holding the task and
/// the connection. tower-http's `TimeoutBody` turns the stall into a body error, which axum's extractors report
/// as a generic 400; the flag lets the answer say what happened instead. A request without a body (most of
/// them) passes straight through, without the wrapping or an allocation.
#[derive(Debug, Clone)]
pub struct BodyReadTimeout<S> {
    inner: S,
}

impl<S> Service<Request> for BodyReadTimeout<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BodyReadTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if request.body().is_end_stream() {
            return BodyReadTimeoutFuture {
                inner: self.inner.call(request),
                stalled: None,
            };
        }
        let stalled = Arc::new(AtomicBool::new(false));
        let (parts, body) = request.into_parts();
        let body = TimeoutBody::new(BODY_READ_TIMEOUT, body).map_err({
            let stalled = stalled.clone();
            move |error| {
                stalled.store(true, Ordering::Release);
                axum::Error::new(error)
            }
        });
        BodyReadTimeoutFuture {
            inner: self
                .inner
                .call(Request::from_parts(parts, axum::body::Body::new(body))),
            stalled: Some(stalled),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`BodyReadTimeout`].
    #[derive(Debug)]
    pub struct BodyReadTimeoutFuture<F> {
        #[pin]
        inner: F,
        // Set when the body stalled; `None` for a request without a body.
        stalled: Option<Arc<AtomicBool>>,
    }
}

impl<F, E> Future for BodyReadTimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let stalled = this
            .stalled
            .as_ref()
            .is_some_and(|stalled| stalled.load(Ordering::Acquire));
        if !stalled {
            return Poll::Ready(Ok(response));
        }
        let mut response = Problem::new(StatusCode::REQUEST_TIMEOUT)
            .detail("the request body stalled")
            .into_response();
        // The rest of the body may still arrive: this connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Poll::Ready(Ok(response))
    }
}

/// Serves `app` on `listener` through the shutdown sequence: accepts connections until `shutdown`'s
/// [drain signal](Shutdown::drain_signal), then asks every connection to finish and completes once every one has
/// closed. Give the future to [`Runner::run`](crate::shutdown::Runner::run).
///
/// Each connection is counted in [`Shutdown::open_connections`] while it is open. A client must send its first
/// bytes within [`HEADER_READ_TIMEOUT`], and its whole request head within it too, at most
/// [`MAX_HEADER_BYTES`] (431 beyond); HTTP/1.1 and HTTP/2 are served on the one port.
pub fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: &Shutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let shutdown = shutdown.clone();
    async move {
        let graceful = GracefulShutdown::new();
        accept_until_drain(&listener, &app, &shutdown, &graceful).await;
        drop(listener);
        graceful.shutdown().await;
        shutdown.all_connections_closed().await;
    }
}

/// The accept loop: one task per connection, each watched by `graceful`.
async fn accept_until_drain(
    listener: &TcpListener,
    app: &Router,
    shutdown: &Shutdown,
    graceful: &GracefulShutdown,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    let builder = Arc::new(builder);
    let drain = shutdown.drain_signal();
    tokio::pin!(drain);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut drain => break,
            accepted = accept(listener) => accepted,
        };
        let service = app
            .clone()
            .map_request(|request: Request<Incoming>| request.map(axum::body::Body::new));
        let service = TowerToHyperService::new(service.map_err(|never: Infallible| match never {}));
        let (builder, watcher) = (builder.clone(), graceful.watcher());
        let guard = shutdown.track_connection();
        let drained = shutdown.drain_signal();
        tokio::spawn(async move {
            // Biased towards the bytes: a request already in the socket when the drain starts is served, and
            // one from a client that connected just before gets a moment to arrive.
            let speaks = tokio::select! {
                biased;
                first = tokio::time::timeout(HEADER_READ_TIMEOUT, first_bytes(&stream)) => {
                    matches!(first, Ok(Ok(true)))
                }
                () = async {
                    drained.await;
                    tokio::time::sleep(FIRST_BYTES_AFTER_STOP).await;
                } => false,
            };
            if speaks {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                // Errors here are the client's doing (reset, timeout, malformed request); hyper has already
                // answered what can be answered.
                let _ = watcher.watch(connection).await;
            }
            // The count goes down before the graceful watcher inside the connection is dropped at the end of
            // the task: a drain that has seen every watcher go must not then count this connection as cut off.
            drop(guard);
        });
    }
}

/// Waits until the client has sent enough to tell HTTP/1 from HTTP/2; `false` if it closed first.
///
/// hyper-util's HTTP/1-or-2 detection reads the first bytes without a time limit and hyper's header read timeout
/// only starts after it, so a client that connects and sends nothing, or a prefix of the HTTP/2 preface, would
/// hold its connection and task for as long as it liked. The caller bounds this wait instead. Peeking leaves the
/// bytes in the socket for hyper to read.
async fn first_bytes(stream: &TcpStream) -> io::Result<bool> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut seen = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut seen).await?;
        if n == 0 {
            return Ok(false);
        }
        if n == PREFACE.len() || seen[..n] != PREFACE[..n] {
            return Ok(true);
        }
        // Part of the preface: peek returns at once while those bytes wait, so poll for the rest. Real HTTP/2
        // clients send the preface in one segment; only a stalling client gets here.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                return stream;
            }
            // A connection that failed between SYN and accept concerns that client only.
            Err(error) if is_connection_error(&error) => {}
            Err(error) => {
                // Out of file descriptors, typically: back off instead of spinning, as axum's serve does.
                tracing::error!(%error, "accept failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
