//! A linearizability checker (Wing & Gong search with Lowe's memoization, as
//! in Porcupine) for histories of a ZooKeeper-like register model: named keys
//! holding `(value, version)` or nothing, with reads, conditional writes
//! (setData with an expected version) and creates.
//!
//! Operations on different keys never interact, so the history is split by key
//! (P-compositionality) and each key is checked on its own. An operation whose
//! outcome the client never learned (timeout, connection loss) may have taken
//! effect at any point after its invocation, or never: it is given an infinite
//! completion time and accepts any result. The search is bounded; when the
//! bound is hit the answer is `Violation::Unknown`, never a hang.
//!
//! Pure: times are whatever monotonic numbers the caller recorded.
#![allow(clippy::result_large_err)] // a violation ends a checking run; its detail is the point

use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// One operation on a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Op {
    Read {
        key: String,
    },
    /// `expected_version` None (or Some(-1), as in ZooKeeper) writes unconditionally.
    Write {
        key: String,
        value: String,
        expected_version: Option<i32>,
    },
    Create {
        key: String,
        value: String,
    },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Read { key } | Op::Write { key, .. } | Op::Create { key, .. } => key,
        }
    }
}

/// What the client was told.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A read's answer: None if the node did not exist.
    Read(Option<(String, i32)>),
    /// A write succeeded; the node's new version.
    Written(i32),
    BadVersion,
    NoNode,
    Created,
    NodeExists,
    /// Never learned (same as `complete: None`).
    Unknown,
}

/// One operation in a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub client: u64,
    pub invoke: u64,
    /// None when the outcome is indeterminate.
    pub complete: Option<u64>,
    pub op: Op,
    pub outcome: Outcome,
}

impl Event {
    pub fn is_indeterminate(&self) -> bool {
        self.complete.is_none() || self.outcome == Outcome::Unknown
    }
}

/// The register's state for one key.
pub type State = Option<(String, i32)>;

/// Applies `op` to `state`: the new state and the result a correct server gives.
pub fn step(state: &State, op: &Op) -> (State, Outcome) {
    match op {
        Op::Read { .. } => (state.clone(), Outcome::Read(state.clone())),
        Op::Write { value, expected_version, .. } => match state {
            None => (None, Outcome::NoNode),
            Some((_, v)) => match expected_version {
                Some(e) if *e != -1 && e != v => (state.clone(), Outcome::BadVersion),
                _ => (Some((value.clone(), v + 1)), Outcome::Written(v + 1)),
            },
        },
        Op::Create { value, .. } => match state {
            Some(_) => (state.clone(), Outcome::NodeExists),
            None => (Some((value.clone(), 0)), Outcome::Created),
        },
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Per key: stop and answer Unknown after this many distinct search states.
    pub max_states: u64,
    /// Initial state of keys (absent keys start as "no node").
    pub initial: BTreeMap<String, State>,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_states: 1_000_000, initial: BTreeMap::new() }
    }
}

/// Why an op could not be the next linearized one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// Index into the history.
    pub event: usize,
    /// What the model answers in the state at that point.
    pub expected: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// No linearization exists for this key's operations.
    NotLinearizable {
        key: String,
        /// The longest order of this key's ops (history indices) the search
        /// could build; the violation lies just after it.
        longest_prefix: Vec<usize>,
        /// The key's state after that prefix.
        state: State,
        /// Ops that could have gone next (by real time) but whose outcome does
        /// not match the model in that state.
        stuck: Vec<Stuck>,
        /// Ops that had to go next but never could (a completed op was
        /// overtaken): all un-linearized ops invoked before the earliest pending completion.
        pending: Vec<usize>,
    },
    /// The search bound was hit before an answer.
    Unknown { key: String, states_explored: u64 },
    /// The history itself is ill-formed.
    Malformed { event: usize, reason: String },
}

impl Violation {
    pub fn is_unknown(&self) -> bool {
        matches!(self, Violation::Unknown { .. })
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::NotLinearizable { key, longest_prefix, stuck, .. } => {
                write!(f, "key {key:?} is not linearizable: after {} ops, none of {} candidate ops fits", longest_prefix.len(), stuck.len())
            }
            Violation::Unknown { key, states_explored } => {
                write!(f, "key {key:?}: gave up after {states_explored} states (unknown)")
            }
            Violation::Malformed { event, reason } => write!(f, "event {event} is malformed: {reason}"),
        }
    }
}

pub fn check(history: &[Event]) -> Result<(), Violation> {
    check_with(history, &Options::default())
}

pub fn check_with(history: &[Event], opts: &Options) -> Result<(), Violation> {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in history.iter().enumerate() {
        if let Some(c) = e.complete {
            if c < e.invoke {
                return Err(Violation::Malformed { event: i, reason: format!("completes at {c} before its invocation at {}", e.invoke) });
            }
        }
        let shape_ok = e.is_indeterminate()
            || matches!(
                (&e.op, &e.outcome),
                (Op::Read { .. }, Outcome::Read(_))
                    | (Op::Write { .. }, Outcome::Written(_) | Outcome::BadVersion | Outcome::NoNode)
                    | (Op::Create { .. }, Outcome::Created | Outcome::NodeExists)
            );
        if !shape_ok {
            return Err(Violation::Malformed { event: i, reason: format!("outcome {:?} cannot answer {:?}", e.outcome, e.op) });
        }
        // An indeterminate read changes nothing and accepts anything.
        if matches!(e.op, Op::Read { .. }) && e.is_indeterminate() {
            continue;
        }
        by_key.entry(e.op.key()).or_default().push(i);
    }
    // Unknown on one key must not hide a definite violation on another.
    let mut unknown = None;
    for (key, ids) in by_key {
        let init = opts.initial.get(key).cloned().unwrap_or(None);
        match check_key(history, key, &ids, init, opts.max_states) {
            Ok(()) => {}
            Err(v @ Violation::Unknown { .. }) => {
                unknown.get_or_insert(v);
            }
            Err(v) => return Err(v),
        }
    }
    unknown.map_or(Ok(()), Err)
}

struct Entry {
    id: usize,
    invoke: u64,
    /// u64::MAX when indeterminate.
    complete: u64,
    /// None when any result is accepted.
    outcome: Option<Outcome>,
}

struct Frame {
    /// The entry linearized to reach this frame, and the state before it.
    applied: Option<(usize, State)>,
    cands: Vec<usize>,
    next: usize,
}

fn check_key(history: &[Event], key: &str, ids: &[usize], init: State, max_states: u64) -> Result<(), Violation> {
    let mut entries: Vec<Entry> = ids
        .iter()
        .map(|&id| {
            let e = &history[id];
            let ind = e.is_indeterminate();
            Entry {
                id,
                invoke: e.invoke,
                complete: if ind { u64::MAX } else { e.complete.unwrap() },
                outcome: if ind { None } else { Some(e.outcome.clone()) },
            }
        })
        .collect();
    // By invocation; determinate ops first on ties so they are tried first.
    entries.sort_by_key(|e| (e.invoke, e.outcome.is_none(), e.id));
    let n = entries.len();
    let words = n.div_ceil(64);
    let mut lin = vec![0u64; words];
    let is_set = |lin: &[u64], i: usize| lin[i / 64] >> (i % 64) & 1 == 1;

    // Ops that may go next: un-linearized, invoked no later than the earliest
    // completion among un-linearized ops (ties count as concurrent).
    let candidates = |lin: &[u64]| -> Vec<usize> {
        let min_ret = (0..n).filter(|&i| !is_set(lin, i)).map(|i| entries[i].complete).min().unwrap_or(u64::MAX);
        (0..n).filter(|&i| !is_set(lin, i)).take_while(|&i| entries[i].invoke <= min_ret).collect()
    };

    let mut state = init;
    let mut depth = 0usize;
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut explored = 0u64;
    let mut best: Option<(Vec<usize>, State, Vec<usize>)> = None;
    let mut stack = vec![Frame { applied: None, cands: candidates(&lin), next: 0 }];
    let mut order: Vec<usize> = Vec::new();
    loop {
        if depth == n {
            return Ok(());
        }
        let top = stack.last_mut().unwrap();
        if top.next == 0 && best.as_ref().is_none_or(|b| b.0.len() < depth) {
            best = Some((order.clone(), state.clone(), top.cands.clone()));
        }
        if top.next >= top.cands.len() {
            let frame = stack.pop().unwrap();
            match frame.applied {
                None => break,
                Some((i, prev)) => {
                    lin[i / 64] &= !(1 << (i % 64));
                    state = prev;
                    depth -= 1;
                    order.pop();
                }
            }
            continue;
        }
        let i = top.cands[top.next];
        top.next += 1;
        let (new_state, result) = step(&state, &history[entries[i].id].op);
        if entries[i].outcome.as_ref().is_some_and(|o| *o != result) {
            continue;
        }
        lin[i / 64] |= 1 << (i % 64);
        if !seen.insert((lin.clone(), new_state.clone())) {
            lin[i / 64] &= !(1 << (i % 64));
            continue;
        }
        explored += 1;
        if explored > max_states {
            return Err(Violation::Unknown { key: key.to_owned(), states_explored: explored - 1 });
        }
        let prev = std::mem::replace(&mut state, new_state);
        depth += 1;
        order.push(i);
        let cands = candidates(&lin);
        stack.push(Frame { applied: Some((i, prev)), cands, next: 0 });
    }
    let (prefix, state, cands) = best.expect("the root frame is always recorded");
    let stuck = cands
        .iter()
        .filter(|&&i| entries[i].outcome.is_some())
        .map(|&i| Stuck { event: entries[i].id, expected: step(&state, &history[entries[i].id].op).1 })
        .collect();
    Err(Violation::NotLinearizable {
        key: key.to_owned(),
        longest_prefix: prefix.iter().map(|&i| entries[i].id).collect(),
        state,
        stuck,
        pending: cands.iter().map(|&i| entries[i].id).collect(),
    })
}

fn show_state(s: &State) -> String {
    match s {
        None => "no node".into(),
        Some((v, ver)) => format!("{v:?} @v{ver}"),
    }
}

fn show_op(op: &Op) -> String {
    match op {
        Op::Read { .. } => "read".into(),
        Op::Write { value, expected_version: None, .. } => format!("write {value:?}"),
        Op::Write { value, expected_version: Some(v), .. } => format!("write {value:?} if v{v}"),
        Op::Create { value, .. } => format!("create {value:?}"),
    }
}

fn show_outcome(o: &Outcome) -> String {
    match o {
        Outcome::Read(s) => show_state(s),
        Outcome::Written(v) => format!("ok v{v}"),
        Outcome::BadVersion => "BadVersion".into(),
        Outcome::NoNode => "NoNode".into(),
        Outcome::Created => "created".into(),
        Outcome::NodeExists => "NodeExists".into(),
        Outcome::Unknown => "?".into(),
    }
}

/// One event as a line: `#12 c3 [100, 140] write "x" if v2 -> ok v3`.
pub fn render_event(history: &[Event], i: usize) -> String {
    let e = &history[i];
    let done = match e.complete {
        Some(c) if !e.is_indeterminate() => c.to_string(),
        _ => "?".into(),
    };
    let out = if e.is_indeterminate() { "? (indeterminate)".into() } else { show_outcome(&e.outcome) };
    format!("#{i} c{} [{}, {}] {} {} -> {}", e.client, e.invoke, done, e.op.key(), show_op(&e.op), out)
}

/// A readable account of a violation, for logs and saved failure reports.
pub fn render(history: &[Event], violation: &Violation) -> String {
    let mut s = format!("{violation}\n");
    if let Violation::Malformed { event, .. } = violation {
        if *event < history.len() {
            s += &format!("  {}\n", render_event(history, *event));
        }
    }
    if let Violation::NotLinearizable { longest_prefix, state, stuck, pending, .. } = violation {
        const TAIL: usize = 8;
        s += &format!("longest linearizable prefix ({} ops):\n", longest_prefix.len());
        if longest_prefix.len() > TAIL {
            s += &format!("  ... {} earlier ops\n", longest_prefix.len() - TAIL);
        }
        for &i in &longest_prefix[longest_prefix.len().saturating_sub(TAIL)..] {
            s += &format!("  {}\n", render_event(history, i));
        }
        s += &format!("state after it: {}\n", show_state(state));
        s += "ops that cannot go next:\n";
        for st in stuck {
            s += &format!("  {}   (model says {})\n", render_event(history, st.event), show_outcome(&st.expected));
        }
        for &i in pending.iter().filter(|i| !stuck.iter().any(|st| st.event == **i)) {
            s += &format!("  {}   (indeterminate; fits, but what follows does not)\n", render_event(history, i));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(client: u64, invoke: u64, complete: Option<u64>, op: Op, outcome: Outcome) -> Event {
        Event { client, invoke, complete, op, outcome }
    }
    fn read(c: u64, a: u64, b: u64, v: Option<(&str, i32)>) -> Event {
        ev(c, a, Some(b), Op::Read { key: "k".into() }, Outcome::Read(v.map(|(s, n)| (s.to_string(), n))))
    }
    fn write(c: u64, a: u64, b: Option<u64>, val: &str, exp: Option<i32>, out: Outcome) -> Event {
        ev(c, a, b, Op::Write { key: "k".into(), value: val.into(), expected_version: exp }, out)
    }
    fn create(c: u64, a: u64, b: Option<u64>, val: &str, out: Outcome) -> Event {
        ev(c, a, b, Op::Create { key: "k".into(), value: val.into() }, out)
    }

    fn assert_violation(h: &[Event]) -> Violation {
        let v = check(h).expect_err("history should not be linearizable");
        assert!(matches!(v, Violation::NotLinearizable { .. }), "{v}");
        let text = render(h, &v);
        assert!(text.contains("cannot go next"), "{text}");
        v
    }

    #[test]
    fn concurrent_writes_in_either_order() {
        let h = vec![
            create(0, 0, Some(1), "a", Outcome::Created),
            write(1, 2, Some(10), "x", None, Outcome::Written(2)),
            write(2, 3, Some(9), "y", None, Outcome::Written(1)),
            read(0, 11, 12, Some(("x", 2))),
        ];
        check(&h).unwrap();
    }

    #[test]
    fn reads_overlapping_a_write_see_old_or_new() {
        let h = vec![
            create(0, 0, Some(1), "a", Outcome::Created),
            write(1, 2, Some(10), "b", None, Outcome::Written(1)),
            read(2, 3, 4, Some(("a", 0))),
            read(3, 5, 6, Some(("b", 1))),
            // Once a read saw the new value, a later read must too.
            read(2, 7, 8, Some(("b", 1))),
        ];
        check(&h).unwrap();
        let mut bad = h.clone();
        bad[4] = read(2, 7, 8, Some(("a", 0)));
        assert_violation(&bad);
    }

    #[test]
    fn indeterminate_writes_that_did_and_did_not_take_effect() {
        let took = vec![create(0, 0, Some(1), "a", Outcome::Created), write(1, 2, None, "b", None, Outcome::Unknown), read(0, 100, 101, Some(("b", 1)))];
        check(&took).unwrap();
        let did_not = vec![
            create(0, 0, Some(1), "a", Outcome::Created),
            write(1, 2, None, "b", None, Outcome::Unknown),
            read(0, 100, 101, Some(("a", 0))),
            write(0, 102, Some(103), "c", Some(0), Outcome::Written(1)),
        ];
        check(&did_not).unwrap();
        // Took effect late: after a read that still saw the old value.
        let late = vec![
            create(0, 0, Some(1), "a", Outcome::Created),
            write(1, 2, Some(3), "b", None, Outcome::Unknown),
            read(0, 100, 101, Some(("a", 0))),
            read(0, 102, 103, Some(("b", 1))),
        ];
        check(&late).unwrap();
        // But an indeterminate op cannot take effect before it was invoked.
        let early = vec![create(0, 0, Some(1), "a", Outcome::Created), read(0, 2, 3, Some(("b", 1))), write(1, 10, None, "b", None, Outcome::Unknown)];
        assert_violation(&early);
        // An indeterminate create may explain a node appearing.
        let created = vec![create(1, 0, None, "z", Outcome::Unknown), read(0, 5, 6, Some(("z", 0)))];
        check(&created).unwrap();
    }

    #[test]
    fn cas_with_versions() {
        let h = vec![
            create(0, 0, Some(1), "a", Outcome::Created),
            write(1, 2, Some(5), "b", Some(0), Outcome::Written(1)),
            write(2, 3, Some(6), "c", Some(0), Outcome::BadVersion),
            write(3, 7, Some(8), "d", Some(1), Outcome::Written(2)),
            write(3, 9, Some(10), "e", Some(-1), Outcome::Written(3)),
            read(0, 11, 12, Some(("e", 3))),
        ];
        check(&h).unwrap();
        let nonode = vec![write(0, 0, Some(1), "x", Some(0), Outcome::NoNode), create(0, 2, Some(3), "y", Outcome::Created)];
        check(&nonode).unwrap();
    }

    #[test]
    fn stale_read_after_completed_write() {
        let h = vec![create(0, 0, Some(1), "a", Outcome::Created), write(1, 2, Some(3), "b", None, Outcome::Written(1)), read(2, 4, 5, Some(("a", 0)))];
        let v = assert_violation(&h);
        let Violation::NotLinearizable { key, stuck, .. } = &v else { unreachable!() };
        assert_eq!(key, "k");
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].event, 2);
        assert_eq!(stuck[0].expected, Outcome::Read(Some(("b".into(), 1))));
    }

    #[test]
    fn lost_acknowledged_write() {
        let h = vec![
            create(0, 0, Some(1), "a", Outcome::Created),
            write(1, 2, Some(3), "b", None, Outcome::Written(1)),
            write(1, 4, Some(5), "c", None, Outcome::Written(2)),
            // Version 2 was acknowledged, but a later read sees version 1.
            read(2, 6, 7, Some(("b", 1))),
        ];
        assert_violation(&h);
    }

    #[test]
    fn two_successful_cas_from_the_same_version() {
        let h = vec![
            create(0, 0, Some(1), "a", Outcome::Created),
            write(1, 2, Some(10), "b", Some(0), Outcome::Written(1)),
            write(2, 3, Some(11), "c", Some(0), Outcome::Written(1)),
        ];
        assert_violation(&h);
    }

    #[test]
    fn read_of_a_value_never_written() {
        let h = vec![create(0, 0, Some(1), "a", Outcome::Created), write(1, 2, Some(10), "b", None, Outcome::Written(1)), read(2, 3, 4, Some(("zzz", 1)))];
        assert_violation(&h);
        // Two creates both succeeding.
        let h = vec![create(0, 0, Some(5), "a", Outcome::Created), create(1, 1, Some(6), "b", Outcome::Created)];
        assert_violation(&h);
    }

    #[test]
    fn keys_are_independent_and_named_in_the_violation() {
        let mut h = vec![
            ev(0, 0, Some(1), Op::Create { key: "a".into(), value: "1".into() }, Outcome::Created),
            ev(0, 2, Some(3), Op::Read { key: "b".into() }, Outcome::Read(None)),
            ev(1, 4, Some(5), Op::Read { key: "a".into() }, Outcome::Read(Some(("1".into(), 0)))),
        ];
        check(&h).unwrap();
        h.push(ev(1, 6, Some(7), Op::Read { key: "b".into() }, Outcome::Read(Some(("1".into(), 0)))));
        match check(&h) {
            Err(Violation::NotLinearizable { key, .. }) => assert_eq!(key, "b"),
            other => panic!("{other:?}"),
        }
        let mut opts = Options::default();
        opts.initial.insert("b".into(), Some(("1".into(), 0)));
        let without_first_b_read = vec![h[0].clone(), h[2].clone(), h[3].clone()];
        check_with(&without_first_b_read, &opts).unwrap();
        assert!(check_with(&h, &opts).is_err());
    }

    #[test]
    fn malformed_events_are_reported() {
        let h = vec![read(0, 5, 4, None)];
        assert!(matches!(check(&h), Err(Violation::Malformed { event: 0, .. })));
        let h = vec![ev(0, 0, Some(1), Op::Read { key: "k".into() }, Outcome::Created)];
        assert!(matches!(check(&h), Err(Violation::Malformed { .. })));
    }

    #[test]
    fn search_bound_answers_unknown() {
        // Many fully concurrent indeterminate writes blow up the state space.
        let mut h = vec![create(0, 0, Some(1), "a", Outcome::Created)];
        for c in 0..20 {
            h.push(write(c + 1, 2, None, &format!("v{c}"), None, Outcome::Unknown));
        }
        h.push(read(99, 3, 4, Some(("nope", 7))));
        let opts = Options { max_states: 500, ..Default::default() };
        let v = check_with(&h, &opts).unwrap_err();
        assert!(v.is_unknown(), "{v}");
        assert!(render(&h, &v).contains("unknown"));
    }

    /// splitmix64: a tiny deterministic PRNG.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_op(rng: &mut Rng, key: &str, serial: usize, cur_version: Option<i32>) -> Op {
        match rng.below(4) {
            0 => Op::Read { key: key.into() },
            1 => Op::Create { key: key.into(), value: format!("v{serial}") },
            _ => {
                let expected_version = match rng.below(3) {
                    0 => None,
                    1 => cur_version.or(Some(0)),
                    _ => Some(rng.below(4) as i32),
                };
                Op::Write { key: key.into(), value: format!("v{serial}"), expected_version }
            }
        }
    }

    /// A concurrent history from a real register: each op takes effect at a
    /// random instant inside its interval; some outcomes are then forgotten.
    fn concurrent_history(rng: &mut Rng, ops: usize, keys: usize) -> Vec<Event> {
        let mut planned: Vec<(u64, u64, u64, u64, String)> = Vec::new(); // (point, invoke, complete, client, key)
        let clients = 4;
        let mut clock = vec![0u64; clients];
        for _ in 0..ops {
            let c = rng.below(clients as u64) as usize;
            let invoke = clock[c] + rng.below(5);
            let point = invoke + rng.below(10);
            let complete = point + rng.below(10);
            clock[c] = complete + 1;
            planned.push((point, invoke, complete, c as u64, format!("k{}", rng.below(keys as u64))));
        }
        planned.sort();
        let mut regs: BTreeMap<String, State> = BTreeMap::new();
        let mut out = Vec::new();
        for (serial, (_, invoke, complete, client, key)) in planned.into_iter().enumerate() {
            let st = regs.entry(key.clone()).or_insert(None);
            let op = random_op(rng, &key, serial, st.as_ref().map(|s| s.1));
            let forget = rng.below(10) == 0;
            let applies = !forget || rng.below(2) == 0;
            let (next, outcome) = step(st, &op);
            if applies {
                *st = next;
            }
            let (complete, outcome) = if forget { (None, Outcome::Unknown) } else { (Some(complete), outcome) };
            out.push(Event { client, invoke, complete, op, outcome });
        }
        out
    }

    #[test]
    fn random_concurrent_histories_from_a_real_register_pass() {
        let mut rng = Rng(0x5eed);
        for round in 0..200 {
            let h = concurrent_history(&mut rng, 60, 3);
            if let Err(v) = check(&h) {
                panic!("round {round}: {}", render(&h, &v));
            }
        }
    }

    #[test]
    fn perturbed_sequential_histories_fail() {
        let mut rng = Rng(42);
        let mut caught = 0;
        for round in 0..300 {
            let mut st: State = None;
            let mut h = Vec::new();
            for i in 0..30u64 {
                let op = random_op(&mut rng, "k", i as usize, st.as_ref().map(|s| s.1));
                let (next, outcome) = step(&st, &op);
                st = next;
                h.push(Event { client: i % 3, invoke: i * 10, complete: Some(i * 10 + 5), op, outcome });
            }
            check(&h).unwrap_or_else(|v| panic!("round {round}: {}", render(&h, &v)));
            let at = rng.below(h.len() as u64) as usize;
            let e = &mut h[at];
            e.outcome = match (&e.op, &e.outcome) {
                (_, Outcome::Read(None)) => Outcome::Read(Some(("ghost".into(), 0))),
                (_, Outcome::Read(Some((v, n)))) => {
                    if rng.below(2) == 0 {
                        Outcome::Read(Some((format!("{v}'"), *n)))
                    } else {
                        Outcome::Read(Some((v.clone(), n + 1)))
                    }
                }
                (_, Outcome::Written(n)) => {
                    if rng.below(2) == 0 {
                        Outcome::Written(n + 1)
                    } else {
                        Outcome::BadVersion
                    }
                }
                (_, Outcome::BadVersion) => Outcome::Written(7),
                (_, Outcome::NoNode) => Outcome::Written(0),
                (_, Outcome::Created) => Outcome::NodeExists,
                (_, Outcome::NodeExists) => Outcome::Created,
                (_, Outcome::Unknown) => unreachable!(),
            };
            match check(&h) {
                Err(Violation::NotLinearizable { .. }) => caught += 1,
                Err(Violation::Unknown { .. }) => {}
                other => panic!("round {round}: perturbing #{at} was accepted: {other:?}"),
            }
        }
        assert!(caught > 250, "only {caught} of 300 perturbations proven non-linearizable");
    }
}
