//! What the clients did and were told, with monotonic microsecond times
//! taken before sending a request and after its answer arrived.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;
use warden_chaos::linearizability::Event;

pub struct Clock(Instant);

impl Clock {
    pub fn new() -> Clock {
        Clock(Instant::now())
    }
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    /// A definite failure: the operation did not take effect.
    Failed,
    /// Connection loss, timeout, expired session: it may or may not have.
    Unknown,
}

/// A sequential create under the queue node.
#[derive(Clone, Debug)]
pub struct Enqueue {
    pub client: u64,
    pub invoke: u64,
    pub complete: u64,
    pub value: String,
    pub outcome: Outcome,
    /// The sequence number the server answered (Ok only).
    pub seq: Option<i64>,
}

/// One lock acquisition whose create was acknowledged.
#[derive(Clone, Debug)]
pub struct Hold {
    pub client: u64,
    pub session: i64,
    pub czxid: i64,
    /// When the create was acknowledged: the lock is certainly held from here.
    pub acquired: u64,
    /// When the delete was sent.
    pub release_invoke: Option<u64>,
    /// The delete was acknowledged on the same session: the node existed,
    /// still ours, until at least `release_invoke`.
    pub released_ok: bool,
    /// The release's error, if any (NoNode on a live session is an anomaly:
    /// our ephemeral vanished while its session lived).
    pub release_err: Option<String>,
}

#[derive(Default)]
pub struct History {
    pub registers: Vec<Event>,
    pub queue: Vec<Enqueue>,
    pub holds: Vec<Hold>,
    /// (op kind, outcome) -> count.
    pub counts: BTreeMap<(&'static str, Outcome), u64>,
    /// Human-readable trace, written out with a failure report.
    pub trace: Vec<String>,
}

impl History {
    pub fn count(&mut self, kind: &'static str, o: Outcome) {
        *self.counts.entry((kind, o)).or_default() += 1;
    }

    pub fn total(&self, o: Outcome) -> u64 {
        self.counts.iter().filter(|((_, oc), _)| *oc == o).map(|(_, n)| n).sum()
    }
}

pub type Shared = std::sync::Arc<Mutex<History>>;
