//! The operator's view into actors: every actor instance's mailbox counters
//! and handling times, and each actor kind's supervision policy, which can be
//! changed while the node runs (`PUT /actors/<kind>/supervision`).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Handling times are kept per kind in microseconds, 1 µs to 1 h, at two
/// significant digits (a per-instance histogram would cost ~10 KiB a session).
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// An operator-injected fault (`POST /actors/<kind>/fault`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub enum Fault {
    /// A real panic inside a handler: supervision decides.
    Panic,
    /// The actor stops: supervision decides.
    Stop,
    /// The handler blocks the actor's thread this long.
    Stall(Duration),
}

/// Delivers a fault; false if the instance no longer runs.
type Injector = Box<dyn Fn(Fault) -> bool + Send + Sync>;

pub struct ActorStats {
    pub kind: &'static str,
    pub instance: String,
    /// Messages in the mailbox now: raised at send, lowered at receipt (a
    /// batch counts as the requests or outputs it carries).
    depth: AtomicI64,
    handled: AtomicU64,
    pub policy: Arc<KindPolicy>,
    /// Delivers an injected fault to this instance.
    injector: OnceLock<Injector>,
}

impl ActorStats {
    pub fn queued(&self, n: u64) {
        self.depth.fetch_add(n as i64, Relaxed);
    }

    pub fn dequeued(&self, n: u64) {
        self.depth.fetch_sub(n as i64, Relaxed);
    }

    /// Messages waiting in the mailbox.
    pub fn depth(&self) -> u64 {
        self.depth.load(Relaxed).max(0) as u64
    }

    pub fn handled(&self) -> u64 {
        self.handled.load(Relaxed)
    }

    pub fn full(&self) -> bool {
        self.policy.over_capacity(self.depth())
    }

    pub fn handled_in(&self, elapsed: Duration) {
        self.handled.fetch_add(1, Relaxed);
        self.policy.record(elapsed);
    }

    pub fn set_injector(&self, f: impl Fn(Fault) -> bool + Send + Sync + 'static) {
        let _ = self.injector.set(Box::new(f));
    }

    pub fn inject(&self, fault: Fault) -> bool {
        self.injector.get().is_some_and(|f| f(fault))
    }
}

/// What a kind does when one of its actors fails (panics or stops).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Rebuild the actor from its source of truth (see each kind).
    Restart,
    /// Fail-stop the node (exit status 70).
    Escalate,
}

/// A kind's supervision policy. Atomics, because senders check the mailbox
/// capacity on the hot path and an operator may change it at any moment.
pub struct KindPolicy {
    pub kind: &'static str,
    pub max_restarts: AtomicU32,
    pub window_ms: AtomicU64,
    pub backoff_ms: AtomicU64,
    pub mailbox_capacity: AtomicUsize,
    /// 0 = restart, 1 = escalate.
    escalate: std::sync::atomic::AtomicBool,
    pub restarts: AtomicU64,
    recent: Mutex<VecDeque<Instant>>,
    handling_us: Mutex<hdrhistogram::Histogram<u64>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Policy {
    pub strategy: Strategy,
    pub max_restarts: u32,
    pub window_ms: u64,
    pub backoff_ms: u64,
    pub mailbox_capacity: usize,
}

/// A partial update, as sent to `PUT /actors/<kind>/supervision`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    pub strategy: Option<Strategy>,
    pub max_restarts: Option<u32>,
    pub window_ms: Option<u64>,
    pub backoff_ms: Option<u64>,
    pub mailbox_capacity: Option<usize>,
}

/// What a restart decision says.
#[derive(Debug, PartialEq, Eq)]
pub enum RestartVerdict {
    Restart {
        backoff: Duration,
    },
    /// Escalated, or too many restarts within the window: the node must stop.
    GiveUp {
        restarts_in_window: usize,
    },
}

impl KindPolicy {
    fn new(kind: &'static str, p: &Policy) -> KindPolicy {
        KindPolicy {
            kind,
            max_restarts: AtomicU32::new(p.max_restarts),
            window_ms: AtomicU64::new(p.window_ms),
            backoff_ms: AtomicU64::new(p.backoff_ms),
            mailbox_capacity: AtomicUsize::new(p.mailbox_capacity),
            escalate: std::sync::atomic::AtomicBool::new(p.strategy == Strategy::Escalate),
            restarts: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
            handling_us: Mutex::new(hdrhistogram::Histogram::new_with_max(HISTOGRAM_MAX_US, 2).expect("valid histogram bounds")),
        }
    }

    pub fn strategy(&self) -> Strategy {
        if self.escalate.load(Relaxed) {
            Strategy::Escalate
        } else {
            Strategy::Restart
        }
    }

    pub fn get(&self) -> Policy {
        Policy {
            strategy: self.strategy(),
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
        if c.strategy == Some(Strategy::Restart) && !can_restart(self.kind) {
            return Err(format!(
                "{} cannot restart: its state has no source of truth but the disk, which a process restart reads; its strategy is escalate",
                self.kind
            ));
        }
        if let Some(v) = c.strategy {
            self.escalate.store(v == Strategy::Escalate, Relaxed);
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

    /// Records a failure at `now` and decides by the current policy.
    pub fn on_restart(&self, now: Instant) -> RestartVerdict {
        self.restarts.fetch_add(1, Relaxed);
        let window = Duration::from_millis(self.window_ms.load(Relaxed));
        let mut recent = self.recent.lock().unwrap();
        recent.push_back(now);
        while recent.front().is_some_and(|t| now.duration_since(*t) > window) {
            recent.pop_front();
        }
        if self.strategy() == Strategy::Escalate || recent.len() > self.max_restarts.load(Relaxed) as usize {
            RestartVerdict::GiveUp { restarts_in_window: recent.len() }
        } else {
            RestartVerdict::Restart { backoff: Duration::from_millis(self.backoff_ms.load(Relaxed)) }
        }
    }

    pub fn over_capacity(&self, depth: u64) -> bool {
        depth >= self.mailbox_capacity.load(Relaxed) as u64
    }

    fn record(&self, elapsed: Duration) {
        let us = (elapsed.as_micros() as u64).clamp(1, HISTOGRAM_MAX_US);
        if let Ok(mut h) = self.handling_us.lock() {
            let _ = h.record(us);
        }
    }

    /// (p50, p99, max) handling time of the kind, in microseconds.
    pub fn percentiles_us(&self) -> (u64, u64, u64) {
        let h = self.handling_us.lock().unwrap();
        if h.is_empty() {
            return (0, 0, 0);
        }
        (h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max())
    }
}

#[derive(Serialize)]
pub struct ActorView {
    pub kind: &'static str,
    pub instance: String,
    pub mailbox_depth: u64,
    pub mailbox_capacity: usize,
    pub messages_handled: u64,
    /// Handling-time percentiles of the whole kind (HdrHistogram).
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

/// Kinds whose state can be rebuilt in place; the others escalate.
pub fn can_restart(kind: &str) -> bool {
    !matches!(kind, "processor" | "txn-log" | "broadcast")
}

/// Default policies: kinds that can rebuild restart a few times a minute
/// before the node gives up; session handlers are bounded by their mailbox.
pub fn default_policy(kind: &str) -> Policy {
    let capacity = match kind {
        "session" => 10_000,
        _ => 100_000,
    };
    let strategy = if can_restart(kind) { Strategy::Restart } else { Strategy::Escalate };
    Policy { strategy, max_restarts: 3, window_ms: 60_000, backoff_ms: 0, mailbox_capacity: capacity }
}

impl Registry {
    /// A registry listing `kinds` before any of their actors exists.
    pub fn with_kinds(kinds: &[&'static str]) -> Registry {
        let r = Registry::default();
        for k in kinds {
            r.kind(k);
        }
        r
    }

    pub fn kind(&self, kind: &'static str) -> Arc<KindPolicy> {
        self.kinds.lock().unwrap().entry(kind).or_insert_with(|| Arc::new(KindPolicy::new(kind, &default_policy(kind)))).clone()
    }

    pub fn find_kind(&self, kind: &str) -> Option<(&'static str, Arc<KindPolicy>)> {
        self.kinds.lock().unwrap().iter().find(|(k, _)| **k == kind).map(|(k, v)| (*k, v.clone()))
    }

    pub fn register(&self, kind: &'static str, instance: impl Into<String>) -> Arc<ActorStats> {
        let instance = instance.into();
        let stats = Arc::new(ActorStats {
            kind,
            instance: instance.clone(),
            depth: AtomicI64::new(0),
            handled: AtomicU64::new(0),
            policy: self.kind(kind),
            injector: OnceLock::new(),
        });
        self.actors.lock().unwrap().insert((kind, instance), stats.clone());
        stats
    }

    pub fn unregister(&self, stats: &ActorStats) {
        self.actors.lock().unwrap().remove(&(stats.kind, stats.instance.clone()));
    }

    /// Injects `fault` into the named instance, or the first of the kind.
    pub fn inject(&self, kind: &str, instance: Option<&str>, fault: Fault) -> Result<String, String> {
        let actors = self.actors.lock().unwrap();
        let mut candidates = actors.values().filter(|s| s.kind == kind && instance.is_none_or(|i| s.instance == i));
        match candidates.find(|s| s.inject(fault)) {
            Some(s) => Ok(s.instance.clone()),
            None => Err(format!("no running {kind} actor{}", instance.map(|i| format!(" with instance {i}")).unwrap_or_default())),
        }
    }

    /// Every instance, and a row with instance "-" for a kind with none now.
    pub fn views(&self) -> Vec<ActorView> {
        let actors = self.actors.lock().unwrap();
        let kinds = self.kinds.lock().unwrap();
        let mut out = Vec::new();
        for (kind, policy) in kinds.iter() {
            let (p50, p99, max) = policy.percentiles_us();
            let view = |instance: String, depth: u64, handled: u64| ActorView {
                kind,
                instance,
                mailbox_depth: depth,
                mailbox_capacity: policy.mailbox_capacity.load(Relaxed),
                messages_handled: handled,
                handling_p50_us: p50,
                handling_p99_us: p99,
                handling_max_us: max,
                restarts: policy.restarts.load(Relaxed),
                supervision: policy.get(),
            };
            let before = out.len();
            out.extend(actors.values().filter(|s| s.kind == *kind).map(|s| view(s.instance.clone(), s.depth(), s.handled())));
            if out.len() == before {
                out.push(view("-".into(), 0, 0));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(kind: &'static str, max_restarts: u32) -> KindPolicy {
        KindPolicy::new(kind, &Policy { strategy: Strategy::Restart, max_restarts, window_ms: 1000, backoff_ms: 5, mailbox_capacity: 10 })
    }

    #[test]
    fn restarts_beyond_the_window_budget_give_up() {
        let p = policy("dispatcher", 2);
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
    fn escalation_gives_up_at_once_and_is_the_only_choice_for_the_processor() {
        let p = policy("tracker", 5);
        p.apply(&PolicyChange { strategy: Some(Strategy::Escalate), ..Default::default() }).unwrap();
        assert!(matches!(p.on_restart(Instant::now()), RestartVerdict::GiveUp { restarts_in_window: 1 }));
        let processor = KindPolicy::new("processor", &default_policy("processor"));
        assert_eq!(processor.strategy(), Strategy::Escalate);
        assert!(processor.apply(&PolicyChange { strategy: Some(Strategy::Restart), ..Default::default() }).is_err());
    }

    #[test]
    fn policy_changes_validate_and_apply() {
        let p = KindPolicy::new("dispatcher", &default_policy("dispatcher"));
        assert!(p.apply(&PolicyChange { mailbox_capacity: Some(0), ..Default::default() }).is_err());
        let got = p.apply(&PolicyChange { mailbox_capacity: Some(7), backoff_ms: Some(20), ..Default::default() }).unwrap();
        assert_eq!((got.mailbox_capacity, got.backoff_ms, got.max_restarts), (7, 20, 3));
        assert!(p.over_capacity(7) && !p.over_capacity(6));
    }

    #[test]
    fn handling_times_depth_and_kinds_without_instances() {
        let r = Registry::with_kinds(&["processor", "session"]);
        let s = r.register("processor", "0");
        s.queued(1);
        s.queued(1);
        assert_eq!(s.depth(), 2);
        s.dequeued(1);
        s.handled_in(Duration::from_micros(3));
        s.dequeued(1);
        s.handled_in(Duration::from_micros(1000));
        assert_eq!(s.depth(), 0);
        let (p50, _, max) = s.policy.percentiles_us();
        assert_eq!(p50, 3);
        assert!((990..=1010).contains(&max), "two significant digits: {max}");
        let v = r.views();
        assert_eq!(v.len(), 2, "the session kind is listed before any session exists");
        assert_eq!((v[0].kind, v[0].messages_handled), ("processor", 2));
        assert_eq!((v[1].kind, v[1].instance.as_str()), ("session", "-"));
        r.unregister(&s);
        assert_eq!(r.views()[0].instance, "-");
    }

    #[test]
    fn faults_reach_a_registered_instance() {
        let r = Registry::default();
        let s = r.register("tracker", "0");
        assert!(r.inject("tracker", None, Fault::Stop).is_err(), "no injector yet");
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        s.set_injector(move |f| {
            g.lock().unwrap().push(f);
            true
        });
        assert_eq!(r.inject("tracker", None, Fault::Panic).unwrap(), "0");
        assert!(r.inject("tracker", Some("9"), Fault::Panic).is_err());
        assert_eq!(*got.lock().unwrap(), vec![Fault::Panic]);
    }
}
