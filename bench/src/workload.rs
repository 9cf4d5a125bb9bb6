//! The workloads: untimed setup (prefix, key space), then a measured phase
//! over pipelined connections, watch-storm rounds or session churn.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use warden_core::proto::op;

use crate::cli::{Config, Limit, Workload};
use crate::client::{self, body, event, flags, Incoming, Session, NODE_EXISTS};
use crate::procstat;
use crate::report::{new_histogram, Latency, Report, ServerUsage, Tally};

#[derive(Debug)]
pub enum BenchError {
    /// A connection could not be established before the measured phase.
    Connect(String),
    /// Creating the prefix or the key space failed.
    Setup(String),
    Runtime(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Connect(m) => write!(f, "connect failed: {m}"),
            BenchError::Setup(m) => write!(f, "setup failed: {m}"),
            BenchError::Runtime(m) => write!(f, "runtime: {m}"),
        }
    }
}

impl std::error::Error for BenchError {}

/// Runs the configured benchmark on its own tokio runtime (`--threads` workers).
pub fn run(cfg: &Config) -> Result<Report, BenchError> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(cfg.threads).enable_all().build().map_err(|e| BenchError::Runtime(e.to_string()))?;
    let result = rt.block_on(run_async(cfg));
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

pub async fn run_async(cfg: &Config) -> Result<Report, BenchError> {
    ensure_prefix(cfg).await?;
    let mut notes = Vec::new();
    match cfg.workload {
        Workload::Populate => {
            let layout = if cfg.parents == 0 { format!("{}/k<i>", cfg.prefix) } else { format!("{}/p<i % {}>/k<i>", cfg.prefix, cfg.parents) };
            notes.push(format!("creates exactly --keys nodes {layout} (--duration/--ops ignored)"))
        }
        Workload::WatchStorm => notes.push(format!("runs --rounds {} rounds (--duration/--ops ignored)", cfg.rounds)),
        _ => {}
    }
    if cfg.workload.needs_keys() {
        let setup = run_pipelined(cfg, Mode::Pipelined(Gen::Populate), PhaseLimit::Ops(cfg.keys), false).await?;
        let (_, _, unexpected) = setup.tally.to_report(|c| c == NODE_EXISTS);
        if unexpected > 0 || setup.ops != cfg.keys {
            return Err(BenchError::Setup(format!(
                "populating {} keys: {} replies, errors {:?}, failures {:?}",
                cfg.keys, setup.ops, setup.tally.errors, setup.tally.failures
            )));
        }
    }
    let limit = PhaseLimit::from(cfg.limit);
    let (phase, expected): (Phase, fn(i32) -> bool) = match cfg.workload {
        Workload::Create => {
            notes.push(format!("PERSISTENT_SEQUENTIAL creates of {}/c-", cfg.prefix));
            (run_pipelined(cfg, Mode::Pipelined(Gen::Create), limit, true).await?, |_| false)
        }
        Workload::Set => (run_pipelined(cfg, Mode::Pipelined(Gen::Set), limit, true).await?, |_| false),
        Workload::Get => (run_pipelined(cfg, Mode::Pipelined(Gen::Get), limit, true).await?, |_| false),
        Workload::Exists => (run_pipelined(cfg, Mode::Pipelined(Gen::Exists), limit, true).await?, |_| false),
        Workload::Mixed => {
            notes.push(format!("read fraction {}", cfg.read_fraction));
            (run_pipelined(cfg, Mode::Pipelined(Gen::Mixed), limit, true).await?, |_| false)
        }
        Workload::Multi => {
            notes.push("each op is one multi: create + setData + delete of a fresh node".into());
            (run_pipelined(cfg, Mode::Pipelined(Gen::Multi), limit, true).await?, |_| false)
        }
        Workload::Populate => (run_pipelined(cfg, Mode::Pipelined(Gen::Populate), PhaseLimit::Ops(cfg.keys), true).await?, |c| c == NODE_EXISTS),
        Workload::Delete => {
            notes.push(format!("deletes each of the --keys nodes {}/k<i> once (--duration/--ops ignored)", cfg.prefix));
            (run_pipelined(cfg, Mode::Pipelined(Gen::Delete), PhaseLimit::Ops(cfg.keys), true).await?, |_| false)
        }
        Workload::SessionChurn => {
            notes.push("each op is connect + create ephemeral + closeSession on a new connection".into());
            (run_pipelined(cfg, Mode::Churn, limit, true).await?, |_| false)
        }
        Workload::WatchStorm => {
            notes.push(format!("each op is one round: {} watchers re-arm, one setData, latency until the last notification", cfg.watchers));
            (watch_storm(cfg).await?, |_| false)
        }
    };
    let (errors, failures, unexpected_errors) = phase.tally.to_report(expected);
    let elapsed = phase.elapsed.as_secs_f64();
    let (connections, outstanding) = match cfg.workload {
        Workload::WatchStorm => (cfg.watchers + 1, 1),
        Workload::SessionChurn => (cfg.connections, 1),
        _ => (cfg.connections, cfg.outstanding),
    };
    Ok(Report {
        workload: match &cfg.workload_tag {
            Some(tag) => format!("{} {tag}", cfg.workload.name()),
            None => cfg.workload.name().to_owned(),
        },
        label: cfg.label.clone(),
        servers: cfg.servers.clone(),
        connections,
        outstanding,
        value_size: cfg.value_size,
        keys: cfg.keys,
        ops: phase.ops,
        ok: phase.ok,
        elapsed_secs: elapsed,
        ops_per_sec: if elapsed > 0.0 { phase.ops as f64 / elapsed } else { 0.0 },
        latency_us: Latency::from_histogram(&phase.hist),
        errors,
        failures,
        unexpected_errors,
        server: phase.server,
        client_cpu_secs: phase.client_cpu_secs,
        extra: phase.extra,
        notes,
    })
}

/// Creates every component of the prefix (NODEEXISTS is fine).
async fn ensure_prefix(cfg: &Config) -> Result<(), BenchError> {
    let addr = &cfg.servers[0];
    let mut s = Session::connect(addr, cfg.session_timeout_ms, cfg.request_timeout).await.map_err(|e| BenchError::Connect(format!("{addr}: {e}")))?;
    let mut path = String::new();
    for part in cfg.prefix.split('/').skip(1) {
        path.push('/');
        path.push_str(part);
        let r = s
            .call(op::CREATE, |w| body::create(w, &path, b"", flags::PERSISTENT), cfg.request_timeout)
            .await
            .map_err(|e| BenchError::Setup(format!("create {path}: {e}")))?;
        if r.err != 0 && r.err != NODE_EXISTS {
            return Err(BenchError::Setup(format!("create {path}: error {} {}", r.err, client::error_name(r.err))));
        }
    }
    if cfg.workload == Workload::Populate || cfg.workload.needs_keys() {
        ensure_parents(&mut s, cfg).await?;
    }
    if cfg.workload == Workload::WatchStorm {
        let node = storm_node(cfg);
        let r = s
            .call(op::CREATE, |w| body::create(w, &node, b"", flags::PERSISTENT), cfg.request_timeout)
            .await
            .map_err(|e| BenchError::Setup(format!("create {node}: {e}")))?;
        if r.err != 0 && r.err != NODE_EXISTS {
            return Err(BenchError::Setup(format!("create {node}: error {} {}", r.err, client::error_name(r.err))));
        }
    }
    let _ = s.close(cfg.request_timeout).await;
    Ok(())
}

/// Key `i` of a key space under `prefix`: flat, or spread over `parents` parent znodes.
pub fn tree_key(prefix: &str, parents: u64, i: u64) -> String {
    if parents == 0 {
        format!("{prefix}/k{i}")
    } else {
        format!("{prefix}/p{}/k{i}", i % parents)
    }
}

/// Creates the parents p0..p<n-1> under the prefix, pipelined (NODEEXISTS is fine).
async fn ensure_parents(s: &mut Session, cfg: &Config) -> Result<(), BenchError> {
    const WINDOW: u64 = 256;
    let mut next = 0;
    while next < cfg.parents {
        let end = (next + WINDOW).min(cfg.parents);
        let mut xids = Vec::with_capacity((end - next) as usize);
        for p in next..end {
            let path = format!("{}/p{p}", cfg.prefix);
            xids.push((
                s.send(op::CREATE, |w| body::create(w, &path, b"", flags::PERSISTENT)).map_err(|e| BenchError::Setup(format!("create {path}: {e}")))?,
                path,
            ));
        }
        for (xid, path) in xids {
            let r = s.reply_to(xid, cfg.request_timeout).await.map_err(|e| BenchError::Setup(format!("create {path}: {e}")))?;
            if r.err != 0 && r.err != NODE_EXISTS {
                return Err(BenchError::Setup(format!("create {path}: error {} {}", r.err, client::error_name(r.err))));
            }
        }
        next = end;
    }
    Ok(())
}

fn storm_node(cfg: &Config) -> String {
    format!("{}/storm", cfg.prefix)
}

/// SplitMix64: enough randomness for key choice, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gen {
    Populate,
    Delete,
    Create,
    Set,
    Get,
    Exists,
    Mixed,
    Multi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pipelined(Gen),
    Churn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PhaseLimit {
    Ops(u64),
    Duration(Duration),
}

impl From<Limit> for PhaseLimit {
    fn from(l: Limit) -> Self {
        match l {
            Limit::Ops(n) => PhaseLimit::Ops(n),
            Limit::Duration(d) => PhaseLimit::Duration(d),
        }
    }
}

/// Hands out operation indexes until the op count or the deadline is reached.
struct Budget {
    next: AtomicU64,
    ops: Option<u64>,
    until: Option<Instant>,
}

impl Budget {
    fn new(limit: PhaseLimit, start: Instant) -> Budget {
        match limit {
            PhaseLimit::Ops(n) => Budget { next: AtomicU64::new(0), ops: Some(n), until: None },
            PhaseLimit::Duration(d) => Budget { next: AtomicU64::new(0), ops: None, until: Some(start + d) },
        }
    }

    fn claim(&self) -> Option<u64> {
        if let Some(until) = self.until {
            if Instant::now() >= until {
                return None;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.ops {
            Some(n) if i >= n => None,
            _ => Some(i),
        }
    }
}

/// What a workload needs to build requests.
struct OpCtx {
    prefix: String,
    parents: u64,
    value: Vec<u8>,
    keys: u64,
    read_fraction: f64,
    session_timeout_ms: i32,
    request_timeout: Duration,
}

impl OpCtx {
    fn key(&self, i: u64) -> String {
        tree_key(&self.prefix, self.parents, i)
    }

    /// Sends the request for op `idx`; returns (xid, reply is a MultiResponse).
    fn issue(&self, gen: Gen, s: &mut Session, idx: u64, conn: usize, rng: &mut Rng) -> Result<(i32, bool), client::ClientError> {
        let v = &self.value;
        let xid = match gen {
            Gen::Populate => {
                let path = self.key(idx);
                s.send(op::CREATE, |w| body::create(w, &path, v, flags::PERSISTENT))?
            }
            Gen::Delete => {
                let path = self.key(idx);
                s.send(op::DELETE, |w| body::delete(w, &path, -1))?
            }
            Gen::Create => {
                let path = format!("{}/c-", self.prefix);
                s.send(op::CREATE, |w| body::create(w, &path, v, flags::PERSISTENT_SEQUENTIAL))?
            }
            Gen::Set => {
                let path = self.key(rng.next_u64() % self.keys);
                s.send(op::SET_DATA, |w| body::set_data(w, &path, v, -1))?
            }
            Gen::Get => {
                let path = self.key(rng.next_u64() % self.keys);
                s.send(op::GET_DATA, |w| body::path_watch(w, &path, false))?
            }
            Gen::Exists => {
                let path = self.key(rng.next_u64() % self.keys);
                s.send(op::EXISTS, |w| body::path_watch(w, &path, false))?
            }
            Gen::Mixed => {
                let read = rng.next_f64() < self.read_fraction;
                let path = self.key(rng.next_u64() % self.keys);
                if read {
                    s.send(op::GET_DATA, |w| body::path_watch(w, &path, false))?
                } else {
                    s.send(op::SET_DATA, |w| body::set_data(w, &path, v, -1))?
                }
            }
            Gen::Multi => {
                let path = format!("{}/m-{}-{}", self.prefix, conn, idx);
                return Ok((s.send(op::MULTI, |w| body::multi_create_set_delete(w, &path, v))?, true));
            }
        };
        Ok((xid, false))
    }
}

/// One connection's (or churn loop's) results.
struct Outcome {
    hist: Histogram<u64>,
    tally: Tally,
    ops: u64,
    ok: u64,
    last_done: Option<Instant>,
    /// The session is still usable (close it politely).
    alive: bool,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome { hist: new_histogram(), tally: Tally::default(), ops: 0, ok: 0, last_done: None, alive: true }
    }

    fn record(&mut self, t0: Instant, err: i32) {
        let now = Instant::now();
        self.hist.saturating_record(micros(now - t0));
        self.ops += 1;
        self.last_done = Some(now);
        if err == 0 {
            self.ok += 1;
        } else {
            self.tally.error(err);
        }
    }
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// A measured (or setup) phase's merged results.
struct Phase {
    hist: Histogram<u64>,
    tally: Tally,
    ops: u64,
    ok: u64,
    elapsed: Duration,
    server: Option<ServerUsage>,
    client_cpu_secs: Option<f64>,
    extra: BTreeMap<String, f64>,
}

/// CPU snapshots of the server (by pid) and of this process around a phase.
struct Meter {
    pids: Vec<u32>,
    server0: Option<u64>,
    client0: Option<u64>,
}

/// CPU ticks of all `pids` together; None if any cannot be read.
fn total_ticks(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|p| procstat::cpu_ticks(&p.to_string()).ok()).sum()
}

impl Meter {
    fn start(pids: Vec<u32>) -> Meter {
        let server0 = total_ticks(&pids);
        Meter { pids, server0, client0: procstat::cpu_ticks("self").ok() }
    }

    fn stop(&self, ops: u64) -> (Option<ServerUsage>, Option<f64>) {
        let tck = procstat::clk_tck() as f64;
        let server = self.pids.first().map(|&pid| {
            let cpu_secs = match (self.server0, total_ticks(&self.pids)) {
                (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / tck),
                _ => None,
            };
            ServerUsage {
                pid,
                cpu_secs,
                ops_per_cpu_sec: cpu_secs.filter(|&c| c > 0.0).map(|c| ops as f64 / c),
                rss_kb: self.pids.iter().map(|p| procstat::rss_kb(&p.to_string()).ok()).sum(),
            }
        });
        let client = match (self.client0, procstat::cpu_ticks("self").ok()) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / tck),
            _ => None,
        };
        (server, client)
    }
}

#[derive(Clone)]
enum Go {
    Run(Arc<Budget>),
    Abort,
}

/// Connects `--connections` sessions (none for churn), then starts them all at
/// once and runs until the budget is spent and every reply is in.
async fn run_pipelined(cfg: &Config, mode: Mode, limit: PhaseLimit, measure: bool) -> Result<Phase, BenchError> {
    let n = cfg.connections;
    let ctx = Arc::new(OpCtx {
        prefix: cfg.prefix.clone(),
        parents: cfg.parents,
        value: vec![b'x'; cfg.value_size],
        keys: cfg.keys,
        read_fraction: cfg.read_fraction,
        session_timeout_ms: cfg.session_timeout_ms,
        request_timeout: cfg.request_timeout,
    });
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let (go_tx, go_rx) = watch::channel::<Option<Go>>(None);
    let mut handles = Vec::with_capacity(n);
    for conn in 0..n {
        let addr = cfg.servers[conn % cfg.servers.len()].clone();
        let ctx = ctx.clone();
        let (ready_tx, done_tx, mut go_rx) = (ready_tx.clone(), done_tx.clone(), go_rx.clone());
        let outstanding = cfg.outstanding;
        let mut rng = Rng::new(cfg.seed ^ (conn as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
        handles.push(tokio::spawn(async move {
            let mut session = match mode {
                Mode::Churn => None,
                Mode::Pipelined(_) => match Session::connect(&addr, ctx.session_timeout_ms, ctx.request_timeout).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{addr}: {e}")));
                        return;
                    }
                },
            };
            let _ = ready_tx.send(Ok(()));
            let go = match go_rx.wait_for(|g| g.is_some()).await {
                Ok(g) => g.clone().unwrap(),
                Err(_) => return,
            };
            let Go::Run(budget) = go else { return };
            let outcome = match (mode, session.as_mut()) {
                (Mode::Pipelined(gen), Some(s)) => drive(&ctx, gen, s, &budget, outstanding, conn, &mut rng).await,
                _ => churn(&ctx, &addr, &budget, conn).await,
            };
            let alive = outcome.alive;
            let _ = done_tx.send(outcome);
            if let (true, Some(s)) = (alive, session) {
                let _ = s.close(Duration::from_secs(5)).await;
            }
        }));
    }
    drop((ready_tx, done_tx));
    let mut connect_errors = Vec::new();
    for _ in 0..n {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => connect_errors.push(e),
            None => break,
        }
    }
    if !connect_errors.is_empty() {
        let _ = go_tx.send(Some(Go::Abort));
        for h in handles {
            let _ = h.await;
        }
        return Err(BenchError::Connect(format!("{} of {n} connections failed, first: {}", connect_errors.len(), connect_errors[0])));
    }
    let meter = Meter::start(if measure { cfg.server_pid.clone() } else { Vec::new() });
    let start = Instant::now();
    let _ = go_tx.send(Some(Go::Run(Arc::new(Budget::new(limit, start)))));
    let mut hist = new_histogram();
    let mut tally = Tally::default();
    let (mut ops, mut ok, mut end) = (0, 0, start);
    while let Some(o) = done_rx.recv().await {
        hist.add(&o.hist).expect("same histogram bounds");
        tally.merge(&o.tally);
        ops += o.ops;
        ok += o.ok;
        if let Some(t) = o.last_done {
            end = end.max(t);
        }
    }
    let (server, client_cpu_secs) = meter.stop(ops);
    for h in handles {
        let _ = h.await;
    }
    Ok(Phase { hist, tally, ops, ok, elapsed: end - start, server, client_cpu_secs, extra: BTreeMap::new() })
}

/// Keeps up to `outstanding` requests in flight on one session.
async fn drive(ctx: &OpCtx, gen: Gen, s: &mut Session, budget: &Budget, outstanding: usize, conn: usize, rng: &mut Rng) -> Outcome {
    let mut out = Outcome::new();
    let mut pending: VecDeque<(i32, Instant, bool)> = VecDeque::with_capacity(outstanding);
    loop {
        while pending.len() < outstanding {
            let Some(idx) = budget.claim() else { break };
            let t0 = Instant::now();
            match ctx.issue(gen, s, idx, conn, rng) {
                Ok((xid, multi)) => pending.push_back((xid, t0, multi)),
                Err(e) => {
                    out.tally.failure(e.to_string(), 1);
                    out.tally.failure("requests lost in flight", pending.len() as u64);
                    out.alive = false;
                    return out;
                }
            }
        }
        let Some(&(xid, t0, multi)) = pending.front() else { return out };
        match s.recv(Some(t0 + ctx.request_timeout)).await {
            Ok(Incoming::Watch(_)) => out.tally.failure("unexpected watch notification", 1),
            Ok(Incoming::Reply(r)) => {
                if r.xid != xid {
                    out.tally.failure(format!("reply out of order (got xid {} expected {xid})", r.xid), 1);
                    out.tally.failure("requests lost in flight", pending.len() as u64);
                    out.alive = false;
                    return out;
                }
                pending.pop_front();
                let mut err = r.err;
                if err == 0 && multi {
                    match client::multi_error(r.body()) {
                        Ok(e) => err = e,
                        Err(e) => out.tally.failure(format!("undecodable multi response: {e}"), 1),
                    }
                }
                out.record(t0, err);
            }
            Err(e) => {
                out.tally.failure(e.to_string(), 1);
                out.tally.failure("requests lost in flight", pending.len() as u64 - 1);
                out.alive = false;
                return out;
            }
        }
    }
}

/// connect + create ephemeral + closeSession, once per op, on fresh connections.
async fn churn(ctx: &OpCtx, addr: &str, budget: &Budget, conn: usize) -> Outcome {
    let mut out = Outcome::new();
    while let Some(idx) = budget.claim() {
        let t0 = Instant::now();
        let path = format!("{}/e-{}-{}", ctx.prefix, conn, idx);
        let cycle = async {
            let mut s = Session::connect(addr, ctx.session_timeout_ms, ctx.request_timeout).await?;
            let r = s.call(op::CREATE, |w| body::create(w, &path, &ctx.value, flags::EPHEMERAL), ctx.request_timeout).await?;
            let close_err = s.close(ctx.request_timeout).await?;
            Ok::<i32, client::ClientError>(if r.err != 0 { r.err } else { close_err })
        };
        match cycle.await {
            Ok(err) => out.record(t0, err),
            Err(e) => out.tally.failure(format!("session-churn: {e}"), 1),
        }
    }
    out
}

enum StormEvent {
    Connected(Result<(), String>),
    Armed,
    Fired(Instant),
    Failed(String),
}

async fn storm_watcher(
    addr: String,
    node: String,
    rounds: u64,
    timeout_ms: i32,
    request_timeout: Duration,
    tx: mpsc::UnboundedSender<StormEvent>,
    mut go: watch::Receiver<Option<bool>>,
) {
    let mut s = match Session::connect(&addr, timeout_ms, request_timeout).await {
        Ok(s) => {
            let _ = tx.send(StormEvent::Connected(Ok(())));
            s
        }
        Err(e) => {
            let _ = tx.send(StormEvent::Connected(Err(format!("{addr}: {e}"))));
            return;
        }
    };
    match go.wait_for(|g| g.is_some()).await {
        Ok(g) if *g == Some(true) => {}
        _ => return,
    }
    for _ in 0..rounds {
        match s.call(op::GET_DATA, |w| body::path_watch(w, &node, true), request_timeout).await {
            Ok(r) if r.err == 0 => {}
            Ok(r) => {
                let _ = tx.send(StormEvent::Failed(format!("watch-storm getData: error {} {}", r.err, client::error_name(r.err))));
                return;
            }
            Err(e) => {
                let _ = tx.send(StormEvent::Failed(format!("watch-storm getData: {e}")));
                return;
            }
        }
        let _ = tx.send(StormEvent::Armed);
        loop {
            match s.recv(Some(Instant::now() + request_timeout * 4)).await {
                Ok(Incoming::Watch(ev)) if ev.path == node && ev.event_type == event::NODE_DATA_CHANGED => {
                    let _ = tx.send(StormEvent::Fired(Instant::now()));
                    break;
                }
                Ok(_) => continue,
                Err(e) => {
                    let _ = tx.send(StormEvent::Failed(format!("watch-storm notification: {e}")));
                    return;
                }
            }
        }
    }
    let _ = s.close(request_timeout).await;
}

/// `--watchers` sessions each watch one node; per round one setData and the
/// time until the last of the notifications arrived.
async fn watch_storm(cfg: &Config) -> Result<Phase, BenchError> {
    let node = storm_node(cfg);
    let w = cfg.watchers;
    let addr0 = &cfg.servers[0];
    let mut setter = Session::connect(addr0, cfg.session_timeout_ms, cfg.request_timeout).await.map_err(|e| BenchError::Connect(format!("{addr0}: {e}")))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel::<Option<bool>>(None);
    for i in 0..w {
        tokio::spawn(storm_watcher(
            cfg.servers[i % cfg.servers.len()].clone(),
            node.clone(),
            cfg.rounds,
            cfg.session_timeout_ms,
            cfg.request_timeout,
            tx.clone(),
            go_rx.clone(),
        ));
    }
    drop(tx);
    let mut connect_errors = Vec::new();
    for _ in 0..w {
        match rx.recv().await {
            Some(StormEvent::Connected(Ok(()))) => {}
            Some(StormEvent::Connected(Err(e))) => connect_errors.push(e),
            _ => connect_errors.push("watcher ended before connecting".into()),
        }
    }
    if !connect_errors.is_empty() {
        let _ = go_tx.send(Some(false));
        return Err(BenchError::Connect(format!("{} of {w} watchers failed, first: {}", connect_errors.len(), connect_errors[0])));
    }
    let meter = Meter::start(cfg.server_pid.clone());
    let start = Instant::now();
    let _ = go_tx.send(Some(true));
    let mut hist = new_histogram();
    let mut notif_hist = new_histogram();
    let mut tally = Tally::default();
    let (mut ops, mut ok, mut end, mut alive) = (0u64, 0u64, start, w);
    let wait = cfg.request_timeout;
    let value = vec![b'x'; cfg.value_size];
    // Watchers re-arm as soon as their notification arrives, so Armed events for
    // the next round may come in while this round's notifications are counted.
    let mut armed = 0;
    'rounds: for round in 0..cfg.rounds {
        let mut round_clean = true;
        while armed < alive {
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(StormEvent::Armed)) => armed += 1,
                Ok(Some(StormEvent::Failed(e))) => {
                    tally.failure(e, 1);
                    alive -= 1;
                    round_clean = false;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tally.failure(format!("watch-storm: watchers not re-armed within {wait:?}"), (alive - armed) as u64);
                    break 'rounds;
                }
            }
        }
        if alive == 0 {
            break;
        }
        let t0 = Instant::now();
        let xid = match setter.send(op::SET_DATA, |wr| body::set_data(wr, &node, &value, -1)) {
            Ok(x) => x,
            Err(e) => {
                tally.failure(format!("watch-storm setData: {e}"), 1);
                break;
            }
        };
        armed = 0;
        let (mut fired, mut last) = (0, t0);
        while fired < alive {
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(StormEvent::Armed)) => armed += 1,
                Ok(Some(StormEvent::Fired(t))) => {
                    fired += 1;
                    last = last.max(t);
                    notif_hist.saturating_record(micros(t.saturating_duration_since(t0)));
                }
                Ok(Some(StormEvent::Failed(e))) => {
                    tally.failure(e, 1);
                    alive -= 1;
                    round_clean = false;
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    tally.failure(format!("watch-storm round {round}: notifications missing after {wait:?}"), (alive - fired) as u64);
                    break 'rounds;
                }
            }
        }
        let err = match setter.reply_to(xid, wait).await {
            Ok(r) => r.err,
            Err(e) => {
                tally.failure(format!("watch-storm setData: {e}"), 1);
                break;
            }
        };
        hist.saturating_record(micros(last - t0));
        ops += 1;
        end = Instant::now();
        if err != 0 {
            tally.error(err);
        } else if round_clean {
            ok += 1;
        }
    }
    let (server, client_cpu_secs) = meter.stop(ops);
    let _ = go_tx.send(Some(false));
    let _ = setter.close(wait).await;
    let elapsed = end - start;
    let notifications = notif_hist.len() as f64;
    let mut extra = BTreeMap::new();
    extra.insert("notifications".into(), notifications);
    if elapsed.as_secs_f64() > 0.0 {
        extra.insert("notifications_per_sec".into(), notifications / elapsed.as_secs_f64());
    }
    if !notif_hist.is_empty() {
        extra.insert("notification_p50_us".into(), notif_hist.value_at_quantile(0.5) as f64);
        extra.insert("notification_p99_us".into(), notif_hist.value_at_quantile(0.99) as f64);
    }
    Ok(Phase { hist, tally, ops, ok, elapsed, server, client_cpu_secs, extra })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_by_ops_hands_out_exactly_n() {
        let b = Budget::new(PhaseLimit::Ops(3), Instant::now());
        let got: Vec<_> = std::iter::from_fn(|| b.claim()).collect();
        assert_eq!(got, vec![0, 1, 2]);
        assert_eq!(b.claim(), None);
    }

    #[test]
    fn budget_by_duration_stops_at_deadline() {
        let b = Budget::new(PhaseLimit::Duration(Duration::from_secs(3600)), Instant::now());
        assert_eq!(b.claim(), Some(0));
        let past = Budget::new(PhaseLimit::Duration(Duration::from_millis(1)), Instant::now() - Duration::from_secs(1));
        assert_eq!(past.claim(), None);
    }

    #[test]
    fn tree_keys_are_flat_or_spread_over_parents() {
        assert_eq!(tree_key("/b", 0, 7), "/b/k7");
        assert_eq!(tree_key("/scale", 1000, 9_999_999), "/scale/p999/k9999999");
        assert_eq!(tree_key("/scale", 3, 4), "/scale/p1/k4");
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let f = a.next_f64();
            b.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }
}
