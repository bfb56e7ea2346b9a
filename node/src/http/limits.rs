//! Per-client rate limits on the routes anyone may call that cost the node work: nonces
//! (memory), sign-ins (signature recovery, ERC-1271 calls) and key requests (ownership
//! calls). Over the limit: 429 with `Retry-After`.
//!
//! A client is its IP address, or its /64 for IPv6 (one host is usually given a whole
//! /64). Each (client, route class) has a token bucket. Behind a reverse proxy every
//! request comes from the proxy's address, so the proxy should limit instead.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::ApiError;
use crate::services::fetch::lookups::client_key;

/// Clients tracked at once; past this, untracked clients share one bucket per class.
const MAX_CLIENTS: usize = 16_384;

/// A route class and its budget: a burst, then a steady rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Nonce,
    SignIn,
    Key,
}

impl Class {
    /// (burst, per second).
    fn budget(self) -> (f64, f64) {
        match self {
            Self::Nonce => (60.0, 10.0),
            Self::SignIn => (30.0, 5.0),
            // A player asks once per key; a page of players a few times a second.
            Self::Key => (120.0, 20.0),
        }
    }
}

/// The address a connection came from, put into each request by the server
/// ([`super::server`]) as [`axum::extract::ConnectInfo`].
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Whom a bucket belongs to: an IPv4 address, an IPv6 /64, or everyone untracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    Ip(IpAddr),
    Overflow,
}

fn client_of(addr: IpAddr) -> Client {
    Client::Ip(client_key(addr))
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: Mutex<HashMap<(Client, Class), Bucket>>,
}

impl RateLimits {
    /// Takes one token for `addr` in `class` at `now`; when there is none, how many
    /// seconds until there is.
    fn take(&self, addr: IpAddr, class: Class, now: Instant) -> Result<(), u64> {
        let (burst, rate) = class.budget();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let mut client = client_of(addr);
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&(client, class)) {
            // Full buckets are clients that went quiet: forget them first.
            buckets.retain(|(_, class), b| {
                let (burst, rate) = class.budget();
                b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst
            });
            if buckets.len() >= MAX_CLIENTS {
                client = Client::Overflow;
            }
        }
        let bucket = buckets.entry((client, class)).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// Middleware: one token of `class` per request, else 429 with `Retry-After`.
pub async fn limit(
    State((limits, class)): State<(Arc<RateLimits>, Class)>,
    request: Request,
    next: Next,
) -> Response {
    // Without connection info (a router served without it) there is no one to limit.
    let Some(ConnectInfo(ClientAddr(addr))) = request
        .extensions()
        .get::<ConnectInfo<ClientAddr>>()
        .copied()
    else {
        return next.run(request).await;
    };
    match limits.take(addr.ip(), class, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from this address; retry in {retry_after} s"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_a_steady_rate_per_client_and_class() {
        let limits = RateLimits::default();
        let start = Instant::now();
        let one: IpAddr = "192.0.2.1".parse().expect("ip");
        let (burst, _) = Class::Nonce.budget();
        for _ in 0..burst as usize {
            limits
                .take(one, Class::Nonce, start)
                .expect("within the burst");
        }
        let retry = limits.take(one, Class::Nonce, start).expect_err("over");
        assert!(retry >= 1);
        // Other classes and other clients are untouched.
        limits
            .take(one, Class::SignIn, start)
            .expect("another class");
        limits
            .take("192.0.2.2".parse().expect("ip"), Class::Nonce, start)
            .expect("another client");
        // Refilled with time.
        limits
            .take(one, Class::Nonce, start + Duration::from_secs(1))
            .expect("refilled");
        // An IPv6 /64 is one client.
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let b: IpAddr = "2001:db8::ffff:2".parse().expect("ip");
        for _ in 0..burst as usize {
            limits.take(a, Class::Nonce, start).expect("burst");
        }
        assert!(limits.take(b, Class::Nonce, start).is_err(), "same /64");
    }
}
