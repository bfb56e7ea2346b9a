//! The HTTP server: HTTP/1.1 only, with the limits a server on the internet needs.
//!
//! - **Connections**: at most `api.max_connections` (and never more than half the descriptor
//!   limit). A new connection at the cap closes the connection idle longest, as nginx does
//!   with kept-alive connections; when every connection has a request in flight, the new
//!   one gets a canned `503` and is closed.
//! - **Timeouts**: a connection without a request in flight is closed after
//!   `header_timeout_secs` (before its first request, or while a request head trickles in)
//!   or `keep_alive_secs` (between requests); a client that takes no response bytes for
//!   `send_timeout_secs` is dropped; a request body that sends nothing for
//!   `body_timeout_secs` ends with an error.
//! - **Requests**: at most `api.max_requests_in_flight` across every route; more get `503`
//!   with `Retry-After` at once, never a wait. After `max_requests_per_connection` the answer
//!   carries `Connection: close`.
//!
//! An idle connection is one with no request in flight, so closing it never cuts a response.

use std::{
    collections::HashMap,
    convert::Infallible,
    io::{self, IoSlice},
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderValue, Request, Response, StatusCode, header},
    response::IntoResponse,
};
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use streamgate_api::v1::HttpStatus;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
    time::Instant,
};
use tower::ServiceExt;

use super::{ApiError, limits::ClientAddr};
use crate::{config::ApiConfig, zerocopy::SendfileStream};

/// Largest request head and read buffer per connection: bounds the memory each holds.
const MAX_BUF_BYTES: usize = 64 * 1024;
/// Connections open at once that count as a flood, after which memory is handed back.
const FLOOD_CONNECTIONS: usize = 256;

pub use streamgate_api::v1::HttpLimits as ServerLimits;

/// The configured limits, with connections capped at half of `descriptors` so that store
/// files, hot segments and the swarm always have descriptors left.
pub fn limits(config: &ApiConfig, descriptors: u64) -> ServerLimits {
    let by_descriptors = usize::try_from(descriptors / 2)
        .unwrap_or(usize::MAX)
        .max(16);
    ServerLimits {
        max_connections: config.max_connections.clamp(1, by_descriptors),
        max_requests_in_flight: config.max_requests_in_flight.max(1),
        header_timeout_secs: config.header_timeout_secs.max(1),
        keep_alive_secs: config.keep_alive_secs.max(1),
        send_timeout_secs: config.send_timeout_secs.max(1),
        body_timeout_secs: config.body_timeout_secs.max(1),
        max_requests_per_connection: config.max_requests_per_connection.max(1),
    }
}

/// What the server has done since the node started, and its limits, for
/// `GET /api/v1/status`.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub limits: ServerLimits,
    pub connections_accepted: AtomicU64,
    /// New connections answered 503 because every connection had a request in flight.
    pub connections_refused: AtomicU64,
    /// Idle connections closed to make room for a new one.
    pub idle_evicted: AtomicU64,
    /// Connections closed by the header or keep-alive timeout.
    pub idle_timed_out: AtomicU64,
    /// Connections dropped because the client took no bytes for `send_timeout_secs`.
    pub send_timed_out: AtomicU64,
    pub requests: AtomicU64,
    /// Requests answered 503 because `max_requests_in_flight` were being handled.
    pub requests_refused: AtomicU64,
    /// Response body bytes handed to connections (sent with sendfile or written).
    pub body_bytes_sent: AtomicU64,
    open: AtomicUsize,
    in_flight: AtomicUsize,
}

impl ServerStats {
    pub fn new(limits: ServerLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    pub fn status(&self) -> HttpStatus {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        HttpStatus {
            open_connections: self.open.load(Ordering::Relaxed),
            requests_in_flight: self.in_flight.load(Ordering::Relaxed),
            connections_accepted: read(&self.connections_accepted),
            connections_refused: read(&self.connections_refused),
            idle_evicted: read(&self.idle_evicted),
            idle_timed_out: read(&self.idle_timed_out),
            send_timed_out: read(&self.send_timed_out),
            requests: read(&self.requests),
            requests_refused: read(&self.requests_refused),
            body_bytes_sent: read(&self.body_bytes_sent),
            limits: self.limits,
        }
    }
}

/// Milliseconds on the server's clock.
fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One connection, as the accept loop and its own task see it.
#[derive(Debug)]
struct Connection {
    /// A request is in flight: accepted and its response body not yet fully written.
    busy: AtomicBool,
    /// When it last became idle (accepted, or a response finished), in server ms.
    idle_since: AtomicU64,
    /// Requests seen on it.
    requests: AtomicU64,
    /// Since when a write has been waiting for the client to take bytes (0: none waiting).
    write_blocked_since: AtomicU64,
    close: Notify,
    /// A request began or ended: the task's deadline needs recomputing.
    state_changed: Notify,
}

#[derive(Debug)]
struct Shared {
    limits: ServerLimits,
    stats: Arc<ServerStats>,
    clock: Instant,
    connections: Mutex<HashMap<u64, Arc<Connection>>>,
    /// Most connections open at once since memory was last handed back.
    peak: AtomicUsize,
}

impl Shared {
    fn now(&self) -> u64 {
        millis_since(self.clock)
    }

    /// After a flood of connections ebbs (down to a quarter of its peak), the memory their
    /// buffers held goes back to the system rather than staying with the allocator.
    fn after_close(&self, open: usize) {
        let peak = self.peak.load(Ordering::Relaxed);
        if peak >= FLOOD_CONNECTIONS
            && open <= peak / 4
            && self
                .peak
                .compare_exchange(peak, open, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tokio::task::spawn_blocking(crate::memory::release_free_memory);
        }
    }

    /// Makes room for one more connection: nothing to do under the cap; at it, the
    /// connection idle longest is told to close. False when every connection is busy.
    fn make_room(&self) -> bool {
        let Ok(connections) = self.connections.lock() else {
            return false;
        };
        if connections.len() < self.limits.max_connections {
            return true;
        }
        let oldest_idle = connections
            .values()
            .filter(|c| !c.busy.load(Ordering::Acquire))
            .min_by_key(|c| c.idle_since.load(Ordering::Relaxed));
        match oldest_idle {
            Some(connection) => {
                // Marked busy so that the next accept picks another one.
                connection.busy.store(true, Ordering::Release);
                connection.close.notify_one();
                self.stats.idle_evicted.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves; then lets requests in flight
/// finish while closing idle connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stats: Arc<ServerStats>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let shared = Arc::new(Shared {
        limits: stats.limits,
        stats,
        clock: Instant::now(),
        connections: Mutex::new(HashMap::new()),
        peak: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: back off rather than spin, and free
                    // an idle connection's descriptor for the next try.
                    tracing::error!("accepting an HTTP connection failed: {e}");
                    shared.make_room();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if !shared.make_room() {
            shared
                .stats
                .connections_refused
                .fetch_add(1, Ordering::Relaxed);
            refuse(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let open = shared.stats.open.load(Ordering::Relaxed) + 1;
        shared.peak.fetch_max(open, Ordering::Relaxed);
        next_id += 1;
        let connection = Arc::new(Connection {
            busy: AtomicBool::new(false),
            idle_since: AtomicU64::new(shared.now()),
            requests: AtomicU64::new(0),
            write_blocked_since: AtomicU64::new(0),
            close: Notify::new(),
            state_changed: Notify::new(),
        });
        if let Ok(mut connections) = shared.connections.lock() {
            connections.insert(next_id, connection.clone());
        }
        shared.stats.open.fetch_add(1, Ordering::Relaxed);
        shared
            .stats
            .connections_accepted
            .fetch_add(1, Ordering::Relaxed);
        let (shared, router, stop) = (shared.clone(), router.clone(), stop_rx.clone());
        let id = next_id;
        tokio::spawn(async move {
            run_connection(&shared, &connection, stream, peer, router, stop).await;
            if let Ok(mut connections) = shared.connections.lock() {
                connections.remove(&id);
            }
            let open = shared.stats.open.fetch_sub(1, Ordering::Relaxed) - 1;
            shared.after_close(open);
        });
    }
    let _ = stop_tx.send(true);
    // Requests in flight finish; idle connections close at once. The caller bounds the wait.
    while shared.stats.open.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A canned answer for a connection the node has no room for, written without waiting.
fn refuse(stream: TcpStream) {
    const BODY: &str = r#"{"error":"too_many_connections","message":"this node holds as many connections as it allows (config key api.max_connections); retry shortly"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

async fn run_connection(
    shared: &Arc<Shared>,
    connection: &Arc<Connection>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched {
        inner: SendfileStream::new(stream),
        connection: connection.clone(),
        shared: shared.clone(),
    });
    let service = {
        let (shared, connection) = (shared.clone(), connection.clone());
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let (shared, connection, router) = (shared.clone(), connection.clone(), router.clone());
            async move { Ok::<_, Infallible>(handle(&shared, &connection, peer, router, request).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // hyper's own header timer also runs between kept-alive requests; ours tells the
        // two apart.
        .header_read_timeout(None)
        .max_buf_size(MAX_BUF_BYTES)
        .keep_alive(true);
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let mut stopping = *stop.borrow();
    if stopping {
        served.as_mut().graceful_shutdown();
    }
    loop {
        let deadline = expiry(shared, connection);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, "HTTP connection ended: {e}");
                }
                return;
            }
            () = connection.close.notified() => return,
            () = connection.state_changed.notified() => {}
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_err() || *stop.borrow() {
                    served.as_mut().graceful_shutdown();
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if let Some(counter) = timed_out(shared, connection) {
                    counter.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// When the connection's current state next needs a look (server ms), and the counter a
/// close then counts under; no counter when that moment is only a re-check (a request in
/// flight whose writes are not waiting on the client).
fn deadline<'a>(shared: &'a Shared, connection: &Connection) -> (u64, Option<&'a AtomicU64>) {
    let limits = &shared.limits;
    if connection.busy.load(Ordering::Acquire) {
        let send_ms = limits.send_timeout_secs * 1000;
        match connection.write_blocked_since.load(Ordering::Relaxed) {
            0 => (shared.now() + send_ms, None),
            since => (since + send_ms, Some(&shared.stats.send_timed_out)),
        }
    } else {
        let allowed = if connection.requests.load(Ordering::Relaxed) == 0 {
            limits.header_timeout_secs
        } else {
            limits.keep_alive_secs
        };
        let at = connection.idle_since.load(Ordering::Relaxed) + allowed * 1000;
        (at, Some(&shared.stats.idle_timed_out))
    }
}

fn expiry(shared: &Shared, connection: &Connection) -> Instant {
    shared.clock + Duration::from_millis(deadline(shared, connection).0)
}

/// The counter to bump if the connection has run out of time now.
fn timed_out<'a>(shared: &'a Shared, connection: &Connection) -> Option<&'a AtomicU64> {
    let (at, counter) = deadline(shared, connection);
    // A millisecond of slack: the timer may fire just before the deadline it was set for.
    counter.filter(|_| shared.now() + 1 >= at)
}

async fn handle(
    shared: &Arc<Shared>,
    connection: &Arc<Connection>,
    peer: SocketAddr,
    router: Router,
    request: Request<Incoming>,
) -> Response<Body> {
    connection.busy.store(true, Ordering::Release);
    connection.state_changed.notify_one();
    let served_here = connection.requests.fetch_add(1, Ordering::Relaxed) + 1;
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let in_flight = InFlight {
        shared: shared.clone(),
        connection: connection.clone(),
    };
    let mut response = if shared.stats.in_flight.fetch_add(1, Ordering::AcqRel)
        >= shared.limits.max_requests_in_flight
    {
        shared
            .stats
            .requests_refused
            .fetch_add(1, Ordering::Relaxed);
        busy()
    } else {
        let timeout = Duration::from_secs(shared.limits.body_timeout_secs);
        let mut request =
            request.map(|body| Body::new(tower_http::timeout::TimeoutBody::new(timeout, body)));
        request
            .extensions_mut()
            .insert(ConnectInfo(ClientAddr(peer)));
        let routed = router.oneshot(request);
        match crate::services::fetch::lookups::as_client(peer.ip(), routed).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    };
    if served_here >= shared.limits.max_requests_per_connection {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response.map(|body| {
        Body::new(Counted {
            inner: body,
            _in_flight: in_flight,
        })
    })
}

fn busy() -> Response<Body> {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "this node is handling as many requests as it allows (config key api.max_requests_in_flight); retry shortly",
    )
    .into_response()
}

/// A request in flight, until its response body is written or dropped.
struct InFlight {
    shared: Arc<Shared>,
    connection: Arc<Connection>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.stats.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.connection
            .idle_since
            .store(self.shared.now(), Ordering::Relaxed);
        self.connection
            .write_blocked_since
            .store(0, Ordering::Relaxed);
        self.connection.busy.store(false, Ordering::Release);
        self.connection.state_changed.notify_one();
    }
}

/// A response body that counts its bytes and ends the request's [`InFlight`] when done.
struct Counted {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self._in_flight
                .shared
                .stats
                .body_bytes_sent
                .fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's socket, noting when a write waits on the client.
struct Watched {
    inner: SendfileStream,
    connection: Arc<Connection>,
    shared: Arc<Shared>,
}

impl Watched {
    fn note_write<T>(&self, polled: &Poll<io::Result<T>>) {
        let blocked = &self.connection.write_blocked_since;
        match polled {
            Poll::Pending => {
                if blocked.load(Ordering::Relaxed) == 0 {
                    blocked.store(self.shared.now().max(1), Ordering::Relaxed);
                }
            }
            Poll::Ready(_) => blocked.store(0, Ordering::Relaxed),
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.note_write(&polled);
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
