//! Checks over the recorded history and the members' final trees. Every
//! check is conservative about unknown outcomes: an op whose answer was lost
//! may or may not have happened, and is never counted either way.

use crate::history::{Enqueue, History, Outcome};
use std::collections::{BTreeMap, BTreeSet};
use warden_chaos::linearizability::{self, Options};

pub struct Finding {
    pub check: &'static str,
    pub text: String,
}

/// Registers: linearizability of reads and compare-and-sets per key.
pub fn registers(h: &History, keys: &[String]) -> Result<String, Finding> {
    let mut opts = Options { max_states: 2_000_000, ..Default::default() };
    for k in keys {
        opts.initial.insert(k.clone(), Some(("init".into(), 0)));
    }
    match linearizability::check_with(&h.registers, &opts) {
        Ok(()) => Ok(format!("{} register ops linearizable", h.registers.len())),
        Err(v) => Err(Finding { check: "linearizability", text: linearizability::render(&h.registers, &v) }),
    }
}

/// A child of the queue node: name `q-<seq>` and data.
pub fn parse_seq(name: &str) -> Option<i64> {
    name.strip_prefix("q-")?.parse().ok()
}

/// Queue: every acknowledged create present with its data; nothing that
/// definitely failed or was never sent; no value twice; sequence numbers
/// increase with real-time order of acknowledged creates.
pub fn queue(h: &History, children: &BTreeMap<String, String>) -> Result<String, Finding> {
    let mut problems = Vec::new();
    let mut by_value: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, data) in children {
        by_value.entry(data.as_str()).or_default().push(name);
        if parse_seq(name).is_none() {
            problems.push(format!("unexpected queue child {name:?}"));
        }
    }
    for (v, names) in &by_value {
        if names.len() > 1 {
            problems.push(format!("value {v:?} enqueued once but present as {names:?}"));
        }
    }
    let invoked: BTreeMap<&str, &Enqueue> = h.queue.iter().map(|e| (e.value.as_str(), e)).collect();
    for (v, names) in &by_value {
        match invoked.get(v) {
            None => problems.push(format!("{names:?} holds {v:?}, which no client created")),
            Some(e) if e.outcome == Outcome::Failed => problems.push(format!("{names:?} holds {v:?}, whose create definitely failed")),
            _ => {}
        }
    }
    let mut acked: Vec<&Enqueue> = h.queue.iter().filter(|e| e.outcome == Outcome::Ok).collect();
    let mut seqs = BTreeSet::new();
    for e in &acked {
        let seq = e.seq.unwrap();
        let name = format!("q-{seq:010}");
        if !seqs.insert(seq) {
            problems.push(format!("sequence {seq} acknowledged twice"));
        }
        match children.get(&name) {
            None => problems.push(format!("acknowledged create c{} {:?} -> {name} is lost", e.client, e.value)),
            Some(d) if d != &e.value => problems.push(format!("{name} acknowledged for {:?} holds {d:?}", e.value)),
            _ => {}
        }
    }
    // Real-time order: a create acknowledged before another was sent must
    // have the smaller sequence number. Sorted by completion, compare each
    // op with the largest seq among ops completed before its invocation.
    acked.sort_by_key(|e| e.complete);
    let mut by_invoke: Vec<&Enqueue> = acked.clone();
    by_invoke.sort_by_key(|e| e.invoke);
    let (mut i, mut max_before): (usize, Option<&Enqueue>) = (0, None);
    for e in &by_invoke {
        while i < acked.len() && acked[i].complete < e.invoke {
            if max_before.is_none_or(|m| acked[i].seq > m.seq) {
                max_before = Some(acked[i]);
            }
            i += 1;
        }
        if let Some(m) = max_before {
            if m.seq >= e.seq {
                problems.push(format!(
                    "c{} {:?} got seq {} after c{} {:?} (seq {}) was acknowledged",
                    e.client,
                    e.value,
                    e.seq.unwrap(),
                    m.client,
                    m.value,
                    m.seq.unwrap()
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(format!("{} acknowledged enqueues present, {} children, sequence order ok", acked.len(), children.len()))
    } else {
        Err(Finding { check: "queue", text: problems.join("\n") })
    }
}

/// Lock: holds proven exclusive (create and delete acknowledged on the same
/// live session) must not overlap in real time: [acquired, release_invoke].
/// A release answered NoNode means our ephemeral vanished while its session
/// lived. Holds sorted by the lock node's czxid must follow real time.
pub fn lock(h: &History) -> Result<String, Finding> {
    let mut problems = Vec::new();
    for hold in &h.holds {
        if hold.release_err.as_deref() == Some("NoNode") {
            problems.push(format!(
                "c{} session {:#x}: its lock node (czxid {:#x}) was gone at release while the session lived",
                hold.client, hold.session, hold.czxid
            ));
        }
    }
    let mut proven: Vec<_> = h.holds.iter().filter(|x| x.released_ok).collect();
    proven.sort_by_key(|x| x.acquired);
    for w in proven.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.acquired < a.release_invoke.unwrap() {
            problems.push(format!(
                "c{} (czxid {:#x}) held the lock over [{}, {}] and c{} (czxid {:#x}) from {}",
                a.client,
                a.czxid,
                a.acquired,
                a.release_invoke.unwrap(),
                b.client,
                b.czxid,
                b.acquired
            ));
        }
        if b.czxid <= a.czxid {
            problems.push(format!("lock czxids go backwards: c{} {:#x} then c{} {:#x}", a.client, a.czxid, b.client, b.czxid));
        }
    }
    if problems.is_empty() {
        Ok(format!("{} lock holds ({} proven exclusive), no overlap", h.holds.len(), proven.len()))
    } else {
        Err(Finding { check: "lock", text: problems.join("\n") })
    }
}

/// One node of a member's tree, as compared across members.
pub type Tree = BTreeMap<String, String>;

/// Every member's tree of the test subtree must be identical.
pub fn members_agree(trees: &BTreeMap<u64, Tree>) -> Result<String, Finding> {
    let mut it = trees.iter();
    let Some((first_id, first)) = it.next() else { return Err(Finding { check: "agreement", text: "no member answered".into() }) };
    let mut problems = Vec::new();
    for (id, t) in it {
        if t != first {
            let keys: BTreeSet<&String> = first.keys().chain(t.keys()).collect();
            for k in keys {
                if first.get(k) != t.get(k) {
                    problems.push(format!("{k}: member {first_id} {:?} vs member {id} {:?}", first.get(k), t.get(k)));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(format!("{} members hold identical trees of {} nodes", trees.len(), first.len()))
    } else {
        problems.truncate(40);
        Err(Finding { check: "agreement", text: problems.join("\n") })
    }
}
