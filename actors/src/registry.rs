//! The operator's view into actors: every actor instance's mailbox counters
//! and handling times, and each actor kind's supervision policy, which can be
//! changed while the node runs (`PUT /actors/<kind>/supervision`).

use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Handling-time buckets: bucket i counts handlings under 2^i microseconds.
const BUCKETS: usize = 32;

pub struct ActorStats {
    pub kind: &'static str,
    pub instance: String,
    enqueued: AtomicU64,
    handled: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
    pub policy: Arc<KindPolicy>,
}

impl ActorStats {
    /// A message was put in this actor's mailbox.
    pub fn sent(&self) {
        self.enqueued.fetch_add(1, Relaxed);
    }

    /// Messages waiting in the mailbox (sent but not yet handled).
    pub fn depth(&self) -> u64 {
        self.enqueued.load(Relaxed).saturating_sub(self.handled.load(Relaxed))
    }

    /// Call at the top of a handler; counts and times the handling.
    pub fn track(&self) -> HandlingTimer<'_> {
        HandlingTimer { stats: self, started: Instant::now() }
    }

    fn handled_in(&self, elapsed: Duration) {
        self.handled.fetch_add(1, Relaxed);
        let us = elapsed.as_micros().max(1) as u64;
        let bucket = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
    }

    /// Upper bound, in microseconds, under which `q` of handlings finished.
    pub fn percentile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return 1u64 << i;
            }
        }
        1u64 << (BUCKETS - 1)
    }
}

pub struct HandlingTimer<'a> {
    stats: &'a ActorStats,
    started: Instant,
}

impl Drop for HandlingTimer<'_> {
    fn drop(&mut self) {
        self.stats.handled_in(self.started.elapsed());
    }
}

/// A kind's supervision policy. Atomics, because senders check the mailbox
/// capacity on the hot path and an operator may change it at any moment.
pub struct KindPolicy {
    pub max_restarts: AtomicU32,
    pub window_ms: AtomicU64,
    pub backoff_ms: AtomicU64,
    pub mailbox_capacity: AtomicUsize,
    pub restarts: AtomicU64,
    recent: Mutex<VecDeque<Instant>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Policy {
    pub max_restarts: u32,
    pub window_ms: u64,
    pub backoff_ms: u64,
    pub mailbox_capacity: usize,
}

/// A partial update, as sent to `PUT /actors/<kind>/supervision`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    pub max_restarts: Option<u32>,
    pub window_ms: Option<u64>,
    pub backoff_ms: Option<u64>,
    pub mailbox_capacity: Option<usize>,
}

/// What a restart decision says.
#[derive(Debug, PartialEq, Eq)]
pub enum RestartVerdict {
    Restart { backoff: Duration },
    /// Too many restarts within the window: the node must stop (fail-stop).
    GiveUp { restarts_in_window: usize },
}

impl KindPolicy {
    fn new(p: &Policy) -> KindPolicy {
        KindPolicy {
            max_restarts: AtomicU32::new(p.max_restarts),
            window_ms: AtomicU64::new(p.window_ms),
            backoff_ms: AtomicU64::new(p.backoff_ms),
            mailbox_capacity: AtomicUsize::new(p.mailbox_capacity),
            restarts: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn get(&self) -> Policy {
        Policy {
            max_restarts: self.max_restarts.load(Relaxed),
            window_ms: self.window_ms.load(Relaxed),
            backoff_ms: self.backoff_ms.load(Relaxed),
            mailbox_capacity: self.mailbox_capacity.load(Relaxed),
        }
    }

    pub fn apply(&self, c: &PolicyChange) -> Result<Policy, String> {
        if c.mailbox_capacity == Some(0) {
            return Err("mailbox_capacity must be at least 1".into());
        }
        if c.window_ms == Some(0) {
            return Err("window_ms must be at least 1".into());
        }
        if let Some(v) = c.max_restarts {
            self.max_restarts.store(v, Relaxed);
        }
        if let Some(v) = c.window_ms {
            self.window_ms.store(v, Relaxed);
        }
        if let Some(v) = c.backoff_ms {
            self.backoff_ms.store(v, Relaxed);
        }
        if let Some(v) = c.mailbox_capacity {
            self.mailbox_capacity.store(v, Relaxed);
        }
        Ok(self.get())
    }

    /// Records a restart at `now` and decides by the current policy.
    pub fn on_restart(&self, now: Instant) -> RestartVerdict {
        self.restarts.fetch_add(1, Relaxed);
        let window = Duration::from_millis(self.window_ms.load(Relaxed));
        let mut recent = self.recent.lock().unwrap();
        recent.push_back(now);
        while recent.front().is_some_and(|t| now.duration_since(*t) > window) {
            recent.pop_front();
        }
        if recent.len() > self.max_restarts.load(Relaxed) as usize {
            RestartVerdict::GiveUp { restarts_in_window: recent.len() }
        } else {
            RestartVerdict::Restart { backoff: Duration::from_millis(self.backoff_ms.load(Relaxed)) }
        }
    }

    pub fn over_capacity(&self, depth: u64) -> bool {
        depth >= self.mailbox_capacity.load(Relaxed) as u64
    }
}

#[derive(Serialize)]
pub struct ActorView {
    pub kind: &'static str,
    pub instance: String,
    pub mailbox_depth: u64,
    pub mailbox_capacity: usize,
    pub messages_handled: u64,
    pub handling_p50_us: u64,
    pub handling_p99_us: u64,
    pub handling_max_us: u64,
    pub restarts: u64,
    pub supervision: Policy,
}

#[derive(Default)]
pub struct Registry {
    actors: Mutex<BTreeMap<(&'static str, String), Arc<ActorStats>>>,
    kinds: Mutex<BTreeMap<&'static str, Arc<KindPolicy>>>,
}

/// Default policies: core actors restart a few times a minute before the
/// node gives up; session handlers are bounded by their mailbox.
pub fn default_policy(kind: &str) -> Policy {
    let capacity = match kind {
        "session" => 10_000,
        _ => 100_000,
    };
    Policy { max_restarts: 3, window_ms: 60_000, backoff_ms: 0, mailbox_capacity: capacity }
}

impl Registry {
    pub fn kind(&self, kind: &'static str) -> Arc<KindPolicy> {
        self.kinds.lock().unwrap().entry(kind).or_insert_with(|| Arc::new(KindPolicy::new(&default_policy(kind)))).clone()
    }

    pub fn find_kind(&self, kind: &str) -> Option<(&'static str, Arc<KindPolicy>)> {
        self.kinds.lock().unwrap().iter().find(|(k, _)| **k == kind).map(|(k, v)| (*k, v.clone()))
    }

    pub fn register(&self, kind: &'static str, instance: impl Into<String>) -> Arc<ActorStats> {
        let instance = instance.into();
        let stats = Arc::new(ActorStats {
            kind,
            instance: instance.clone(),
            enqueued: AtomicU64::new(0),
            handled: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            policy: self.kind(kind),
        });
        self.actors.lock().unwrap().insert((kind, instance), stats.clone());
        stats
    }

    pub fn unregister(&self, stats: &ActorStats) {
        self.actors.lock().unwrap().remove(&(stats.kind, stats.instance.clone()));
    }

    pub fn views(&self) -> Vec<ActorView> {
        self.actors
            .lock()
            .unwrap()
            .values()
            .map(|s| ActorView {
                kind: s.kind,
                instance: s.instance.clone(),
                mailbox_depth: s.depth(),
                mailbox_capacity: s.policy.mailbox_capacity.load(Relaxed),
                messages_handled: s.handled.load(Relaxed),
                handling_p50_us: s.percentile_us(0.5),
                handling_p99_us: s.percentile_us(0.99),
                handling_max_us: s.percentile_us(1.0),
                restarts: s.policy.restarts.load(Relaxed),
                supervision: s.policy.get(),
            })
            .collect()
    }
}

/// An actor's address that counts what is put in its mailbox.
pub struct Mailbox<A: Actor> {
    pub addr: Addr<A>,
    pub stats: Arc<ActorStats>,
}

impl<A: Actor> Clone for Mailbox<A> {
    fn clone(&self) -> Self {
        Mailbox { addr: self.addr.clone(), stats: self.stats.clone() }
    }
}

impl<A: Actor> Mailbox<A> {
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        self.stats.sent();
        self.addr.do_send(msg);
    }

    pub fn send<M>(&self, msg: M) -> actix::dev::Request<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
    {
        self.stats.sent();
        self.addr.send(msg)
    }

    /// Whether the mailbox holds at least its configured capacity.
    pub fn full(&self) -> bool {
        self.stats.policy.over_capacity(self.stats.depth())
    }
}

/// Operator-injected fault: the actor stops, and its supervisor decides.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectFault;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_beyond_the_window_budget_give_up() {
        let p = KindPolicy::new(&Policy { max_restarts: 2, window_ms: 1000, backoff_ms: 5, mailbox_capacity: 10 });
        let t0 = Instant::now();
        assert_eq!(p.on_restart(t0), RestartVerdict::Restart { backoff: Duration::from_millis(5) });
        assert!(matches!(p.on_restart(t0), RestartVerdict::Restart { .. }));
        assert_eq!(p.on_restart(t0), RestartVerdict::GiveUp { restarts_in_window: 3 });
        // Outside the window the old restarts no longer count.
        let later = t0 + Duration::from_millis(1500);
        assert!(matches!(p.on_restart(later), RestartVerdict::Restart { .. }));
        p.apply(&PolicyChange { max_restarts: Some(0), ..Default::default() }).unwrap();
        assert!(matches!(p.on_restart(later), RestartVerdict::GiveUp { .. }));
        assert_eq!(p.restarts.load(Relaxed), 5);
    }

    #[test]
    fn policy_changes_validate_and_apply() {
        let p = KindPolicy::new(&default_policy("processor"));
        assert!(p.apply(&PolicyChange { mailbox_capacity: Some(0), ..Default::default() }).is_err());
        let got = p.apply(&PolicyChange { mailbox_capacity: Some(7), backoff_ms: Some(20), ..Default::default() }).unwrap();
        assert_eq!((got.mailbox_capacity, got.backoff_ms, got.max_restarts), (7, 20, 3));
        assert!(p.over_capacity(7) && !p.over_capacity(6));
    }

    #[test]
    fn handling_times_and_depth() {
        let r = Registry::default();
        let s = r.register("processor", "0");
        s.sent();
        s.sent();
        assert_eq!(s.depth(), 2);
        s.handled_in(Duration::from_micros(3));
        s.handled_in(Duration::from_micros(1000));
        assert_eq!(s.depth(), 0);
        assert_eq!(s.percentile_us(0.5), 4);
        assert_eq!(s.percentile_us(1.0), 1024);
        let v = r.views();
        assert_eq!((v.len(), v[0].messages_handled), (1, 2));
        r.unregister(&s);
        assert!(r.views().is_empty());
    }
}
