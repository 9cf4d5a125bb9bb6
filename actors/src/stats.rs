//! Counters shared by all actors, read by four-letter words. Atomics, because
//! connections update them on every packet and must not message anyone to do so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

pub struct ConnInfo {
    pub address: String,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub session_id: AtomicI64,
    pub timeout_ms: AtomicI64,
    pub established_ms: i64,
}

impl ConnInfo {
    pub fn new(address: String, established_ms: i64) -> ConnInfo {
        ConnInfo { address, received: AtomicU64::new(0), sent: AtomicU64::new(0), session_id: AtomicI64::new(0), timeout_ms: AtomicI64::new(0), established_ms }
    }
}

/// A latency histogram with power-of-two microsecond buckets, as Prometheus
/// reports it (cumulative buckets, sum, count).
#[derive(Clone, Default)]
pub struct Histogram {
    pub buckets: [u64; 24],
    pub sum_us: u64,
    pub count: u64,
}

impl Histogram {
    pub fn record(&mut self, d: std::time::Duration) {
        let us = d.as_micros() as u64;
        let i = (64 - us.leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[i] += 1;
        self.sum_us += us;
        self.count += 1;
    }

    /// Upper bound in microseconds of bucket `i`.
    pub fn bound_us(i: usize) -> u64 {
        1u64 << i
    }
}

pub struct ServerStats {
    pub started: Instant,
    pub packets_received: AtomicU64,
    pub packets_sent: AtomicU64,
    pub outstanding: AtomicI64,
    pub latency_total_ms: AtomicU64,
    pub latency_count: AtomicU64,
    pub latency_min_ms: AtomicU64,
    pub latency_max_ms: AtomicU64,
    pub watch_count: AtomicU64,
    pub auth_failed: AtomicU64,
    pub fsyncs: AtomicU64,
    /// Request latency per operation, and fsync latency, for /metrics.
    pub op_latency: Mutex<BTreeMap<&'static str, Histogram>>,
    pub fsync_latency: Mutex<Histogram>,
    pub txns_logged: AtomicU64,
    /// Transactions applied to the tree (committed), for commit rates.
    pub txns_applied: AtomicU64,
    pub connections: Mutex<BTreeMap<u64, std::sync::Arc<ConnInfo>>>,
    /// ZooKeeper's throttle counters (connection_rejected, throttled_ops, ...).
    pub connection_rejected: AtomicU64,
    pub throttled_ops: AtomicU64,
    pub stale_requests_dropped: AtomicU64,
    pub request_throttle_waits: AtomicU64,
    /// Requests waiting in the request throttler now.
    pub throttle_queue: AtomicU64,
}

impl Default for ServerStats {
    fn default() -> Self {
        ServerStats {
            started: Instant::now(),
            packets_received: AtomicU64::new(0),
            packets_sent: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            latency_total_ms: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            latency_min_ms: AtomicU64::new(u64::MAX),
            latency_max_ms: AtomicU64::new(0),
            watch_count: AtomicU64::new(0),
            auth_failed: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            op_latency: Mutex::new(BTreeMap::new()),
            fsync_latency: Mutex::new(Histogram::default()),
            txns_logged: AtomicU64::new(0),
            txns_applied: AtomicU64::new(0),
            connections: Mutex::new(BTreeMap::new()),
            connection_rejected: AtomicU64::new(0),
            throttled_ops: AtomicU64::new(0),
            stale_requests_dropped: AtomicU64::new(0),
            request_throttle_waits: AtomicU64::new(0),
            throttle_queue: AtomicU64::new(0),
        }
    }
}

impl ServerStats {
    pub fn record_latency(&self, started: Instant, op: &'static str) {
        let elapsed = started.elapsed();
        self.op_latency.lock().unwrap().entry(op).or_default().record(elapsed);
        let ms = elapsed.as_millis() as u64;
        self.latency_total_ms.fetch_add(ms, Relaxed);
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_min_ms.fetch_min(ms, Relaxed);
        self.latency_max_ms.fetch_max(ms, Relaxed);
    }

    /// `srst`: latency and packet counters start over.
    pub fn reset_server(&self) {
        for c in [&self.packets_received, &self.packets_sent, &self.latency_total_ms, &self.latency_count, &self.latency_max_ms] {
            c.store(0, Relaxed);
        }
        self.latency_min_ms.store(u64::MAX, Relaxed);
    }

    /// `crst`: per-connection counters start over.
    pub fn reset_connections(&self) {
        for c in self.connections.lock().unwrap().values() {
            c.received.store(0, Relaxed);
            c.sent.store(0, Relaxed);
        }
    }

    /// Fills the counter part of a four-letter-word snapshot.
    pub fn fill(&self, s: &mut warden_core::fourlw::ServerSnapshot) {
        let count = self.latency_count.load(Relaxed);
        s.latency_min_ms = if count == 0 { 0 } else { self.latency_min_ms.load(Relaxed) };
        s.latency_max_ms = self.latency_max_ms.load(Relaxed);
        s.latency_avg_ms = if count == 0 { 0.0 } else { self.latency_total_ms.load(Relaxed) as f64 / count as f64 };
        s.packets_received = self.packets_received.load(Relaxed);
        s.packets_sent = self.packets_sent.load(Relaxed);
        s.outstanding = self.outstanding.load(Relaxed).max(0) as u64;
        s.watch_count = self.watch_count.load(Relaxed);
        s.auth_failed_count = self.auth_failed.load(Relaxed);
        s.fsync_count = self.fsyncs.load(Relaxed);
        s.throttle = warden_core::fourlw::ThrottleCounts {
            connection_rejected: self.connection_rejected.load(Relaxed),
            throttled_ops: self.throttled_ops.load(Relaxed),
            stale_requests_dropped: self.stale_requests_dropped.load(Relaxed),
            request_throttle_wait_count: self.request_throttle_waits.load(Relaxed),
            request_throttle_queue: self.throttle_queue.load(Relaxed),
        };
        s.uptime_ms = self.started.elapsed().as_millis() as u64;
        let conns = self.connections.lock().unwrap();
        s.connections = conns.len() as u64;
        s.clients = conns
            .values()
            .map(|c| warden_core::fourlw::ClientLine {
                address: c.address.clone(),
                queued: 0,
                received: c.received.load(Relaxed),
                sent: c.sent.load(Relaxed),
                session_id: c.session_id.load(Relaxed),
                timeout_ms: c.timeout_ms.load(Relaxed) as i32,
                established_ms: c.established_ms,
            })
            .collect();
    }
}
