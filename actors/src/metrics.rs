//! `GET /metrics`: the node's numbers as Prometheus text (format 0.0.4),
//! encoded by `prometheus-client` from one scrape-time snapshot. Latencies
//! are Prometheus histograms with fixed buckets, filled from the server's
//! HdrHistograms, so dashboards can aggregate them across members.

use crate::registry::ActorView;
use crate::stats::{Latency, ServerStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering::Relaxed;
use warden_core::fourlw::ServerSnapshot;

/// Bucket upper bounds in seconds for request and fsync latency: 50 µs to 10 s.
pub const LATENCY_BUCKETS_S: [f64; 17] = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram as encoded: sum (seconds), count, non-cumulative buckets.
#[derive(Debug)]
struct Buckets {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl From<&Latency> for Buckets {
    fn from(l: &Latency) -> Buckets {
        Buckets { sum: l.sum_seconds(), count: l.count(), buckets: l.buckets(&LATENCY_BUCKETS_S) }
    }
}

/// Everything one scrape reports, copied out of the shared stats.
#[derive(Debug)]
struct Scrape {
    s: ServerSnapshot,
    proposals: u64,
    commits: u64,
    local_reads: u64,
    indexed_reads: u64,
    op_latency: Vec<(&'static str, Buckets)>,
    fsync_latency: Buckets,
    mailboxes: Vec<(&'static str, String, u64)>,
}

pub fn render(s: ServerSnapshot, stats: &ServerStats, actors: Vec<ActorView>) -> String {
    let op_latency = stats.op_latency.lock().unwrap().by_op.iter().map(|(op, l)| (*op, Buckets::from(l))).collect();
    let fsync_latency = Buckets::from(&*stats.fsync_latency.lock().unwrap());
    let scrape = Scrape {
        s,
        proposals: stats.txns_logged.load(Relaxed),
        commits: stats.txns_applied.load(Relaxed),
        local_reads: stats.local_reads.load(Relaxed),
        indexed_reads: stats.indexed_reads.load(Relaxed),
        op_latency,
        fsync_latency,
        mailboxes: actors.into_iter().map(|a| (a.kind, a.instance, a.mailbox_depth)).collect(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: impl EncodeGaugeValue) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&v)
}

/// `name` without `_total`: the encoder appends it.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = &self.s;
        gauge(&mut e, "warden_znode_count", "Znodes in the data tree.", s.node_count)?;
        gauge(&mut e, "warden_watch_count", "Watch registrations (session, path).", s.watch_count)?;
        gauge(&mut e, "warden_sessions", "Live sessions.", s.global_sessions)?;
        gauge(&mut e, "warden_ephemerals", "Ephemeral znodes.", s.ephemerals_count)?;
        gauge(&mut e, "warden_alive_connections", "Open client connections.", s.connections)?;
        gauge(&mut e, "warden_outstanding_requests", "Requests received and not yet answered.", s.outstanding)?;
        gauge(&mut e, "warden_approximate_data_size_bytes", "Bytes of paths and data in the tree.", s.approximate_data_size)?;
        gauge(&mut e, "warden_last_zxid", "Last committed zxid.", s.last_zxid)?;
        counter(&mut e, "warden_packets_received", "Client packets received.", s.packets_received)?;
        counter(&mut e, "warden_packets_sent", "Client packets sent.", s.packets_sent)?;
        counter(&mut e, "warden_proposals", "Transactions handed to the log.", self.proposals)?;
        counter(&mut e, "warden_commits", "Transactions committed and applied to the tree.", self.commits)?;
        counter(&mut e, "warden_local_reads", "Plain reads answered on the connection's I/O thread, not the processor's.", self.local_reads)?;
        counter(
            &mut e,
            "warden_indexed_reads",
            "Linearizable reads answered on the connection's I/O thread once their read index was applied.",
            self.indexed_reads,
        )?;
        counter(&mut e, "warden_fsyncs", "Transaction log fsyncs (group commit: fewer than proposals).", s.fsync_count)?;
        // Standalone: no election has run and there are no followers to lag.
        let q = s.quorum.clone().unwrap_or_default();
        gauge(&mut e, "warden_election_time_seconds", "Duration of the last leader election (0 when standalone).", q.last_election_ms as f64 / 1000.0)?;
        let max_lag = q.learners.iter().map(|l| l.lag).max().unwrap_or(0);
        gauge(&mut e, "warden_follower_max_lag_txns", "Largest learner lag in transactions, on the leader (0 elsewhere).", max_lag)?;
        let mut m =
            e.encode_descriptor("warden_learner_lag_txns", "Proposals a learner has not acknowledged, per learner (leader only).", None, MetricType::Gauge)?;
        for l in &q.learners {
            let labels = [("server_id", l.id.to_string()), ("observer", l.observer.to_string())];
            m.encode_family(&labels)?.encode_gauge(&l.lag)?;
        }
        gauge(&mut e, "warden_quorum_epoch", "The member's current epoch (0 when standalone).", q.epoch)?;
        let help = "1 for the member's role (standalone, leader, follower, observer, looking, read-only).";
        e.encode_descriptor("warden_server_state", help, None, MetricType::Gauge)?.encode_family(&[("state", s.mode.as_str())])?.encode_gauge(&1i64)?;
        let mut m = e.encode_descriptor("warden_request_latency_seconds", "Request latency by operation, receipt to reply.", None, MetricType::Histogram)?;
        for (op, h) in &self.op_latency {
            m.encode_family(&[("op", *op)])?.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        }
        let h = &self.fsync_latency;
        e.encode_descriptor("warden_fsync_latency_seconds", "Transaction log fsync latency.", None, MetricType::Histogram)?
            .encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)?;
        // actor_instance, not instance: Prometheus owns `instance` (the scrape target).
        let mut m = e.encode_descriptor("warden_actor_mailbox_depth", "Messages waiting in each actor's mailbox.", None, MetricType::Gauge)?;
        for (kind, instance, depth) in &self.mailboxes {
            m.encode_family(&[("kind", *kind), ("actor_instance", instance.as_str())])?.encode_gauge(&(*depth as i64))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::stats::ServerStats;
    use std::time::{Duration, Instant};

    #[test]
    fn renders_prometheus_text_with_hdr_buckets() {
        let stats = ServerStats::default();
        stats.record_latency(Instant::now() - Duration::from_millis(3), "create", true);
        stats.fsync_latency.lock().unwrap().record(Duration::from_micros(700));
        let s = warden_core::fourlw::ServerSnapshot { mode: "standalone".into(), node_count: 5, ..Default::default() };
        let text = super::render(s, &stats, Vec::new());
        for line in [
            "# TYPE warden_znode_count gauge\nwarden_znode_count 5\n",
            "# TYPE warden_proposals_total counter\nwarden_proposals_total 0\n",
            "warden_server_state{state=\"standalone\"} 1\n",
            "warden_request_latency_seconds_bucket{op=\"create\",le=\"0.0025\"} 0\n",
            "warden_request_latency_seconds_bucket{op=\"create\",le=\"0.005\"} 1\n",
            "warden_request_latency_seconds_bucket{op=\"create\",le=\"+Inf\"} 1\n",
            "warden_request_latency_seconds_count{op=\"create\"} 1\n",
            "warden_fsync_latency_seconds_bucket{le=\"0.001\"} 1\n",
            "# TYPE warden_actor_mailbox_depth gauge\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }
}
