//! Counters shared by all actors, read by four-letter words. Atomics, because
//! connections update them on every packet and must not message anyone to do so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use warden_core::fourlw::LatencySummary;

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

/// Latencies are kept in microseconds, 1 µs to 1 h, at two significant
/// digits (quantiles within 1%, ~26 KiB per histogram), as the registry does.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// A latency histogram (HdrHistogram) plus the exact sum Prometheus wants.
#[derive(Clone)]
pub struct Latency {
    hdr: hdrhistogram::Histogram<u64>,
    sum_us: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency { hdr: hdrhistogram::Histogram::new_with_max(LATENCY_MAX_US, 2).expect("valid histogram bounds"), sum_us: 0 }
    }
}

impl Latency {
    pub fn record(&mut self, d: Duration) {
        self.record_n(d, 1);
    }

    /// `n` requests that each took `d`.
    pub fn record_n(&mut self, d: Duration, n: u64) {
        let us = d.as_micros().min(u128::from(LATENCY_MAX_US)) as u64;
        self.hdr.saturating_record_n(us.max(1), n);
        self.sum_us += us * n;
    }

    pub fn count(&self) -> u64 {
        self.hdr.len()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// The value at quantile `q` (0..=1) in microseconds; 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        if self.hdr.is_empty() {
            0
        } else {
            self.hdr.value_at_quantile(q)
        }
    }

    pub fn min_us(&self) -> u64 {
        if self.hdr.is_empty() {
            0
        } else {
            self.hdr.min()
        }
    }

    pub fn max_us(&self) -> u64 {
        self.hdr.max()
    }

    /// Non-cumulative counts per upper bound (seconds), for Prometheus
    /// buckets; values above the last bound are left for `+Inf`.
    pub fn buckets(&self, bounds_s: &[f64]) -> Vec<(f64, u64)> {
        let mut lower = 0u64;
        bounds_s
            .iter()
            .map(|&b| {
                let upper = (b * 1e6) as u64;
                let n = if upper < lower { 0 } else { self.hdr.count_between(lower, upper) };
                lower = self.hdr.next_non_equivalent(upper);
                (b, n)
            })
            .collect()
    }

    /// ZooKeeper's summary in milliseconds (AvgMinMaxPercentileCounter).
    pub fn summary_ms(&self) -> LatencySummary {
        let ms = |us: u64| (us + 500) / 1000;
        LatencySummary {
            count: self.count(),
            sum: self.sum_us / 1000,
            min: ms(self.min_us()),
            max: ms(self.max_us()),
            p50: ms(self.quantile_us(0.5)),
            p95: ms(self.quantile_us(0.95)),
            p99: ms(self.quantile_us(0.99)),
            p999: ms(self.quantile_us(0.999)),
        }
    }
}

#[derive(Default)]
pub struct OpLatency {
    pub by_op: BTreeMap<&'static str, Latency>,
    pub read: Latency,
    pub update: Latency,
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
    /// Request latency per operation, and fsync latency, for /metrics; reads
    /// and updates as ZooKeeper splits them (readlatency, updatelatency) for mntr.
    pub op_latency: Mutex<OpLatency>,
    pub fsync_latency: Mutex<Latency>,
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
    /// Plain reads answered on I/O threads (`LocalReads`).
    pub local_reads: AtomicU64,
    /// Linearizable reads answered on their I/O thread behind a read index (`lin_reads`).
    pub indexed_reads: AtomicU64,
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
            op_latency: Mutex::new(OpLatency::default()),
            fsync_latency: Mutex::new(Latency::default()),
            txns_logged: AtomicU64::new(0),
            txns_applied: AtomicU64::new(0),
            connections: Mutex::new(BTreeMap::new()),
            connection_rejected: AtomicU64::new(0),
            throttled_ops: AtomicU64::new(0),
            stale_requests_dropped: AtomicU64::new(0),
            request_throttle_waits: AtomicU64::new(0),
            throttle_queue: AtomicU64::new(0),
            local_reads: AtomicU64::new(0),
            indexed_reads: AtomicU64::new(0),
        }
    }
}

impl ServerStats {
    /// `update`: the request wrote (ZooKeeper: it carried a txn header).
    pub fn record_latency(&self, started: Instant, op: &'static str, update: bool) {
        self.record_each(&[(started, op, update)]);
    }

    /// Requests answered together, each with when it was received, its
    /// operation and whether it wrote: one clock read and one lock for all.
    pub fn record_each(&self, answered: &[(Instant, &'static str, bool)]) {
        let Some(now) = (!answered.is_empty()).then(Instant::now) else { return };
        let (mut total_ms, mut min_ms, mut max_ms) = (0, u64::MAX, 0);
        {
            let mut l = self.op_latency.lock().unwrap();
            for &(received, op, update) in answered {
                let elapsed = now.saturating_duration_since(received);
                l.by_op.entry(op).or_default().record(elapsed);
                if update { &mut l.update } else { &mut l.read }.record(elapsed);
                let ms = elapsed.as_millis() as u64;
                (total_ms, min_ms, max_ms) = (total_ms + ms, min_ms.min(ms), max_ms.max(ms));
            }
        }
        self.latency_total_ms.fetch_add(total_ms, Relaxed);
        self.latency_count.fetch_add(answered.len() as u64, Relaxed);
        self.latency_min_ms.fetch_min(min_ms, Relaxed);
        self.latency_max_ms.fetch_max(max_ms, Relaxed);
    }

    /// Requests answered together, each `ops` entry one operation and how
    /// many of it, all received at `started`: one lock and one clock read.
    pub fn record_latencies(&self, started: Instant, ops: &[(&'static str, u64)], update: bool) {
        let elapsed = started.elapsed();
        let mut n = 0;
        {
            let mut l = self.op_latency.lock().unwrap();
            for &(op, count) in ops {
                l.by_op.entry(op).or_default().record_n(elapsed, count);
                n += count;
            }
            if update { &mut l.update } else { &mut l.read }.record_n(elapsed, n);
        }
        let ms = elapsed.as_millis() as u64;
        self.latency_total_ms.fetch_add(ms * n, Relaxed);
        self.latency_count.fetch_add(n, Relaxed);
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
        {
            let l = self.op_latency.lock().unwrap();
            s.read_latency = l.read.summary_ms();
            s.update_latency = l.update.summary_ms();
        }
        s.fsync_time = self.fsync_latency.lock().unwrap().summary_ms();
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

#[cfg(test)]
mod tests {
    use super::Latency;
    use std::time::Duration;

    fn uniform_1_to_10ms() -> Latency {
        let mut l = Latency::default();
        for us in 1..=10_000 {
            l.record(Duration::from_micros(us));
        }
        l
    }

    #[test]
    fn quantiles_are_within_hdr_precision() {
        let l = uniform_1_to_10ms();
        assert_eq!(l.count(), 10_000);
        // Two significant digits: within 1% (a power-of-two bucket would say 16384 for p99).
        for (q, want) in [(0.5, 5_000.0), (0.99, 9_900.0), (0.999, 9_990.0)] {
            let got = l.quantile_us(q) as f64;
            assert!((got - want).abs() / want <= 0.01, "p{q}: {got} vs {want}");
        }
        assert_eq!(l.min_us(), 1);
        assert!((l.max_us() as f64 - 10_000.0).abs() <= 100.0);
        assert!((l.sum_seconds() - 50.005).abs() < 1e-9, "exact sum, not from buckets");
    }

    #[test]
    fn buckets_split_the_count_without_double_counting() {
        let l = uniform_1_to_10ms();
        let b = l.buckets(&[0.001, 0.005, 0.01]);
        let total: u64 = b.iter().map(|(_, n)| n).sum();
        assert_eq!(total, 10_000);
        // ≤1 ms holds ~1000 values, ≤5 ms ~5000 (HDR resolution at the edges).
        assert!(b[0].1.abs_diff(1_000) <= 10, "{b:?}");
        assert!((b[0].1 + b[1].1).abs_diff(5_000) <= 50, "{b:?}");
        // Values beyond the last bound are left for +Inf.
        assert_eq!(l.buckets(&[0.001]).iter().map(|(_, n)| n).sum::<u64>(), b[0].1);
    }

    #[test]
    fn zookeeper_summary_is_in_milliseconds() {
        let s = uniform_1_to_10ms().summary_ms();
        assert_eq!((s.count, s.sum, s.min), (10_000, 50_005, 0));
        assert_eq!((s.p50, s.p99), (5, 10));
        assert_eq!(Latency::default().summary_ms().p99, 0);
    }

    #[test]
    fn requests_answered_together_count_once_each_under_their_own_operation() {
        let stats = super::ServerStats::default();
        let received = std::time::Instant::now() - Duration::from_millis(2);
        stats.record_latencies(received, &[("getData", 3), ("exists", 2)], false);
        stats.record_latency(received, "setData", true);
        stats.record_each(&[(received, "create", true), (received + Duration::from_millis(1), "getData", false)]);
        let l = stats.op_latency.lock().unwrap();
        assert_eq!((l.by_op["getData"].count(), l.by_op["exists"].count(), l.by_op["setData"].count(), l.by_op["create"].count()), (4, 2, 1, 1));
        assert_eq!((l.read.count(), l.update.count()), (6, 2));
        assert!(l.by_op["exists"].min_us() >= 2_000, "each counted from when its batch was read");
        assert!(l.read.min_us() >= 1_000, "each from its own arrival: {}", l.read.min_us());
        assert!(l.read.sum_seconds() >= 5.0 * 0.002, "the sum counts every request");
        drop(l);
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(stats.latency_count.load(Relaxed), 8);
        assert!(stats.latency_total_ms.load(Relaxed) >= 15, "seven of 2 ms, one of 1 ms");
    }
}
