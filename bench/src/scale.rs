//! `warden-bench scale-clients`: many sessions on one server (issue 14, "many clients").
//! Lean sessions (a small read buffer, no writer task) so the client can hold
//! 100,000 of them; sockets are bound to source addresses 127.0.0.1..N first,
//! since loopback has ~28k ephemeral ports per source address (open+close churn
//! uses 127.0.0.(N+1)). Phases:
//!  1. open --sessions sessions (timed), memory per session, open+close churn
//!     while they are held, then close them all (timed);
//!  2. --watchers-one sessions watch one znode: memory per watch, fan-out time
//!     (setData to the last notification), median of --fanout-rounds;
//!  3. --watches data watches spread over a populated tree by --watch-sessions
//!     sessions: time to set them, memory per watch.
//!
//! Memory is the server's RSS (/proc) and, with --heap-cmd, a live-heap figure
//! that command prints in KiB (for a JVM: after a full GC). Memory freed by one
//! phase may be returned to the OS during the next (mimalloc purges lazily), so
//! bench/scale.sh runs each phase on a fresh server.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;
use tokio::sync::{mpsc, watch, Semaphore};
use warden_core::jute::Reader;
use warden_core::proto::{op, xid};

use crate::client::{self, body, event, ClientError, ConnectResponse, Session};
use crate::procstat;
use crate::workload::tree_key;

/// Watch requests in flight per session while arming (keeps both socket buffers from filling).
const ARM_WINDOW: u64 = 64;

#[derive(Args, Debug, Clone)]
pub struct ClientsArgs {
    /// host:port of the one server.
    #[arg(long)]
    pub server: String,
    /// The server's pid, for RSS.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Bind held sessions' sockets to 127.0.0.1..127.0.0.N, round-robin; churn uses 127.0.0.(N+1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=250))]
    pub sources: u8,
    /// Concurrent sessions held in phase 1 (0: skip).
    #[arg(long, default_value_t = 1000)]
    pub sessions: usize,
    /// Handshakes in flight while opening.
    #[arg(long, default_value_t = 256)]
    pub connect_parallel: usize,
    /// Seconds of open+close churn (0: none).
    #[arg(long, default_value_t = 5.0)]
    pub churn_secs: f64,
    /// Concurrent open+close loops.
    #[arg(long, default_value_t = 16)]
    pub churn_parallel: usize,
    /// Sessions watching one znode in phase 2 (0: skip).
    #[arg(long, default_value_t = 1000)]
    pub watchers_one: usize,
    #[arg(long, default_value_t = 3)]
    pub fanout_rounds: u32,
    /// Data watches in phase 3 (0: skip), spread over --tree-size znodes.
    #[arg(long, default_value_t = 10_000)]
    pub watches: u64,
    #[arg(long, default_value_t = 100)]
    pub watch_sessions: usize,
    /// The populated tree: <prefix>/p<i % parents>/k<i> for i < tree-size (see --parents of populate).
    #[arg(long, default_value = "/scale")]
    pub prefix: String,
    #[arg(long, default_value_t = 1000)]
    pub parents: u64,
    #[arg(long, default_value_t = 0)]
    pub tree_size: u64,
    /// The znode phase 2 watches (created if missing).
    #[arg(long, default_value = "/scale-one")]
    pub one_node: String,
    #[arg(long, default_value_t = 30_000)]
    pub session_timeout_ms: i32,
    /// A phase step (opening, arming, a fan-out round, closing) not done in this many seconds fails.
    #[arg(long, default_value_t = 300.0)]
    pub timeout: f64,
    /// Shell command printing the server's live heap in KiB; run at each memory checkpoint.
    #[arg(long)]
    pub heap_cmd: Option<String>,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The figures (name -> value) and failures (message -> count) of a run.
#[derive(Debug, Default, serde::Serialize)]
pub struct ScaleReport {
    pub figures: BTreeMap<String, f64>,
    pub failures: BTreeMap<String, u64>,
}

impl ScaleReport {
    fn set(&mut self, k: &str, v: f64) {
        self.figures.insert(k.to_owned(), v);
    }
    fn fail(&mut self, what: impl Into<String>, n: u64) {
        if n > 0 {
            *self.failures.entry(what.into()).or_default() += n;
        }
    }
    /// One `name value` line per figure, then `failure <count> <message>` lines.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.figures {
            s += &format!("{k} {}\n", if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.3}") });
        }
        for (k, n) in &self.failures {
            s += &format!("failure {n} {k}\n");
        }
        s
    }
}

/// Where held session `i` binds: 127.0.0.(1 + i % sources). Binding (rather than
/// letting connect pick a port) keeps the kernel's port search short: connect()
/// walks the ports already connected to the same server one by one, which with
/// tens of thousands held made every new connection cost milliseconds of CPU.
pub fn source_for(i: u64, sources: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 1 + (i % sources.max(1) as u64) as u8)
}

/// Churn connections bind to an address no held session uses, so their port
/// search does not depend on how many sessions are held.
pub fn churn_source(sources: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, sources.saturating_add(1).min(254))
}

/// The tree indexes session `s` of `sessions` watches: `per` consecutive ones from
/// s * per, wrapping at `tree`, so the watches cover the tree evenly.
pub fn spread_index(s: u64, j: u64, per: u64, tree: u64) -> u64 {
    (s * per + j) % tree
}

#[derive(Debug)]
enum Targets {
    One(Arc<str>),
    /// Session `session` watches `count` (<= `per`) znodes of the tree (prefix, parents, size).
    Spread {
        session: u64,
        per: u64,
        count: u64,
        tree: Arc<(String, u64, u64)>,
    },
}

impl Targets {
    fn count(&self) -> u64 {
        match self {
            Targets::One(_) => 1,
            Targets::Spread { count, .. } => *count,
        }
    }
    fn path(&self, j: u64) -> String {
        match self {
            Targets::One(p) => p.to_string(),
            Targets::Spread { session, per, tree, .. } => tree_key(&tree.0, tree.1, spread_index(*session, j, *per, tree.2)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Hold,
    Arm(u32),
    Close,
}

#[derive(Debug)]
enum Ev {
    Armed,
    Fired(Instant),
    Closed,
    Failed(String),
}

/// Reply header fields the lean session needs.
struct Header {
    xid: i32,
    err: i32,
    event_type: i32,
}

/// A session's socket with a small read buffer.
struct Lean {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
    pos: usize,
}

impl Lean {
    async fn fill(&mut self) -> Result<(), ClientError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.buf.capacity() > 4096 {
                self.buf.shrink_to(512);
            }
        } else if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < 256 {
            self.buf.reserve(self.buf.capacity().max(512));
        }
        if self.rd.read_buf(&mut self.buf).await? == 0 {
            return Err(ClientError::Closed);
        }
        Ok(())
    }

    /// The next whole frame in the buffer, if any.
    fn frame(&mut self) -> Result<Option<&[u8]>, ClientError> {
        let avail = &self.buf[self.pos..];
        let Some(len) = client::frame_len(avail)? else { return Ok(None) };
        if avail.len() < 4 + len {
            if self.buf.capacity() < self.pos + 4 + len {
                self.buf.reserve(4 + len);
            }
            return Ok(None);
        }
        let start = self.pos + 4;
        self.pos = start + len;
        Ok(Some(&self.buf[start..start + len]))
    }

    fn header(&mut self) -> Result<Option<Header>, ClientError> {
        let Some(f) = self.frame()? else { return Ok(None) };
        let mut r = Reader::new(f);
        let (xid, _zxid, err) = (r.i32()?, r.i64()?, r.i32()?);
        let event_type = if xid == xid::NOTIFICATION { r.i32()? } else { 0 };
        Ok(Some(Header { xid, err, event_type }))
    }

    async fn open(addr: SocketAddr, source: Ipv4Addr, timeout_ms: i32) -> Result<(Lean, i32), ClientError> {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        let stream = sock.connect(addr).await?;
        stream.set_nodelay(true)?;
        let (rd, mut wr) = stream.into_split();
        wr.write_all(&client::connect_frame(timeout_ms)).await?;
        let mut lean = Lean { rd, wr, buf: Vec::with_capacity(512), pos: 0 };
        loop {
            if let Some(f) = lean.frame()? {
                let resp = ConnectResponse::decode(f)?;
                if resp.timeout_ms <= 0 {
                    return Err(ClientError::SessionRejected);
                }
                return Ok((lean, resp.timeout_ms));
            }
            lean.fill().await?;
        }
    }

    /// closeSession, then wait for its reply and the server's close (briefly), so
    /// the server side closes first and this port is not held in TIME_WAIT.
    async fn close(&mut self, xid: i32) -> Result<(), ClientError> {
        let mut w = Vec::with_capacity(16);
        client::append_request(&mut w, xid, op::CLOSE_SESSION, |_| {});
        self.wr.write_all(&w).await?;
        let mut replied = false;
        loop {
            while let Some(h) = self.header()? {
                replied |= h.xid == xid;
            }
            let read = if replied {
                match tokio::time::timeout(Duration::from_secs(2), self.fill()).await {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                }
            } else {
                self.fill().await
            };
            match read {
                Ok(()) => {}
                Err(ClientError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// One held session: pings, arms its watches on request (pipelined), reports
/// notifications, closes on request.
struct Held {
    c: Lean,
    targets: Targets,
    ev: mpsc::UnboundedSender<Ev>,
    ping_every: Duration,
    last_send: Instant,
    next_xid: i32,
    arming: bool,
    sent: u64,
    in_flight: u64,
}

impl Held {
    fn xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid += 1;
        x
    }

    async fn top_up(&mut self) -> Result<(), ClientError> {
        let mut w = Vec::new();
        while self.arming && self.sent < self.targets.count() && self.in_flight < ARM_WINDOW {
            let path = self.targets.path(self.sent);
            let x = self.xid();
            client::append_request(&mut w, x, op::GET_DATA, |b| body::path_watch(b, &path, true));
            self.sent += 1;
            self.in_flight += 1;
        }
        if !w.is_empty() {
            self.c.wr.write_all(&w).await?;
            self.last_send = Instant::now();
        }
        Ok(())
    }

    fn on_frames(&mut self) -> Result<(), String> {
        while let Some(h) = self.c.header().map_err(|e| e.to_string())? {
            match h.xid {
                xid::PING => {}
                xid::NOTIFICATION => {
                    if h.event_type == event::NODE_DATA_CHANGED {
                        let _ = self.ev.send(Ev::Fired(Instant::now()));
                    }
                }
                _ if h.err != 0 => return Err(format!("getData with watch answered {}", client::error_name(h.err))),
                _ => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    if self.arming && self.in_flight == 0 && self.sent == self.targets.count() {
                        self.arming = false;
                        let _ = self.ev.send(Ev::Armed);
                    }
                }
            }
        }
        Ok(())
    }

    async fn run(mut self, mut stage: watch::Receiver<Stage>) {
        let outcome: Result<(), String> = loop {
            if let Err(e) = self.top_up().await {
                break Err(format!("sending watches: {e}"));
            }
            let ping_at = self.last_send + self.ping_every;
            tokio::select! {
                changed = stage.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now = *stage.borrow_and_update();
                    match now {
                        Stage::Hold => {}
                        Stage::Arm(_) => {
                            self.arming = true;
                            self.sent = 0;
                        }
                        Stage::Close => {
                            let x = self.xid();
                            break self.c.close(x).await.map_err(|e| format!("closing: {e}"));
                        }
                    }
                }
                r = self.c.fill() => {
                    if let Err(e) = r {
                        break Err(format!("held session: {e}"));
                    }
                    if let Err(e) = self.on_frames() {
                        break Err(e);
                    }
                }
                _ = tokio::time::sleep_until(ping_at.into()) => {
                    let mut w = Vec::with_capacity(12);
                    client::append_request(&mut w, xid::PING, op::PING, |_| {});
                    if let Err(e) = self.c.wr.write_all(&w).await {
                        break Err(format!("ping: {e}"));
                    }
                    self.last_send = Instant::now();
                }
            }
        };
        let _ = self.ev.send(match outcome {
            Ok(()) => Ev::Closed,
            Err(e) => Ev::Failed(e),
        });
    }
}

struct Ctx {
    args: ClientsArgs,
    addr: SocketAddr,
    timeout: Duration,
    /// Source-address round-robin counter, shared by every connect.
    next_source: AtomicU64,
}

impl Ctx {
    /// Opens a session from the next held-session source address, or from the churn one.
    async fn open(&self, churn: bool) -> Result<(Lean, i32), String> {
        let source = if churn { churn_source(self.args.sources) } else { source_for(self.next_source.fetch_add(1, Ordering::Relaxed), self.args.sources) };
        match tokio::time::timeout(self.timeout, Lean::open(self.addr, source, self.args.session_timeout_ms)).await {
            Ok(Ok(x)) => Ok(x),
            Ok(Err(e)) => Err(format!("open: {e}")),
            Err(_) => Err("open: timed out".into()),
        }
    }
}

/// A group of held sessions driven together.
struct Group {
    stage: watch::Sender<Stage>,
    ev: mpsc::UnboundedReceiver<Ev>,
    alive: usize,
}

/// Opens `n` sessions (at most --connect-parallel handshakes at once); returns the
/// group and the time until every handshake finished.
async fn open_group(ctx: &Arc<Ctx>, n: usize, targets: impl Fn(u64) -> Targets, report: &mut ScaleReport) -> (Group, Duration) {
    let (stage_tx, stage_rx) = watch::channel(Stage::Hold);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let sem = Arc::new(Semaphore::new(ctx.args.connect_parallel.max(1)));
    let start = Instant::now();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.expect("semaphore open");
        let (ctx, stage_rx, ev_tx, done_tx, t) = (ctx.clone(), stage_rx.clone(), ev_tx.clone(), done_tx.clone(), targets(i as u64));
        tokio::spawn(async move {
            let opened = ctx.open(false).await;
            drop(permit);
            match opened {
                Ok((c, timeout_ms)) => {
                    let _ = done_tx.send(Ok(()));
                    drop(done_tx);
                    let ping_every = Duration::from_millis((timeout_ms as u64 / 3).max(1));
                    let held = Held { c, targets: t, ev: ev_tx, ping_every, last_send: Instant::now(), next_xid: 1, arming: false, sent: 0, in_flight: 0 };
                    held.run(stage_rx).await;
                }
                Err(e) => {
                    let _ = done_tx.send(Err(e));
                }
            }
        });
    }
    drop(done_tx);
    let mut alive = 0;
    for _ in 0..n {
        match done_rx.recv().await {
            Some(Ok(())) => alive += 1,
            Some(Err(e)) => report.fail(e, 1),
            None => break,
        }
    }
    (Group { stage: stage_tx, ev: ev_rx, alive }, start.elapsed())
}

impl Group {
    /// Waits for `want` events matching `is` from the live sessions; a Failed one
    /// is counted (and that session is gone). Returns the matched events' times
    /// (for Fired) and whether all came in time.
    async fn collect(&mut self, want: usize, timeout: Duration, report: &mut ScaleReport, what: &str, is: impl Fn(&Ev) -> bool) -> (usize, Option<Instant>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let (mut got, mut last) = (0, None);
        while got < want.min(self.alive) {
            match tokio::time::timeout_at(deadline, self.ev.recv()).await {
                Ok(Some(Ev::Failed(e))) => {
                    report.fail(e, 1);
                    self.alive -= 1;
                }
                Ok(Some(ev)) if is(&ev) => {
                    got += 1;
                    if let Ev::Fired(t) = ev {
                        last = Some(last.map_or(t, |l: Instant| l.max(t)));
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    report.fail(format!("{what}: {} of {} sessions not done within {timeout:?}", self.alive - got, self.alive), (self.alive - got) as u64);
                    break;
                }
            }
        }
        (got, last)
    }

    /// Closes every session; the time until all closed.
    async fn close(mut self, timeout: Duration, report: &mut ScaleReport) -> Duration {
        let start = Instant::now();
        let _ = self.stage.send(Stage::Close);
        let n = self.alive;
        self.collect(n, timeout, report, "closing", |e| matches!(e, Ev::Closed)).await;
        start.elapsed()
    }
}

/// Memory checkpoint: the --heap-cmd figure, then the server's RSS, in KiB. The
/// heap command runs first so that, for a JVM, every RSS reading follows a full GC
/// (RSS read before it would include garbage the next GC gives back).
async fn memory(ctx: &Ctx, report: &mut ScaleReport, name: &str) -> (Option<f64>, Option<f64>) {
    let heap = match ctx.args.heap_cmd.clone() {
        None => None,
        Some(cmd) => {
            let out = tokio::task::spawn_blocking(move || std::process::Command::new("bash").arg("-c").arg(&cmd).output()).await;
            match out {
                Ok(Ok(o)) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok(),
                _ => None,
            }
            .or_else(|| {
                report.fail(format!("--heap-cmd printed no KiB figure at {name}"), 1);
                None
            })
        }
    };
    let rss = settled_rss(ctx.args.server_pid).await;
    if let Some(r) = rss {
        report.set(&format!("rss_kb_{name}"), r);
    }
    if let Some(h) = heap {
        report.set(&format!("heap_kb_{name}"), h);
    }
    (rss, heap)
}

/// The server's RSS once it stopped moving: two readings 0.5 s apart within 1 %
/// (allocators such as mimalloc give freed memory back with a delay), at most 15 s.
async fn settled_rss(pid: Option<u32>) -> Option<f64> {
    let read = || pid.and_then(|p| procstat::rss_kb(&p.to_string()).ok()).map(|k| k as f64);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut prev = read()?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let cur = read()?;
        if (cur - prev).abs() <= prev * 0.01 || Instant::now() >= deadline {
            return Some(cur);
        }
        prev = cur;
    }
}

/// Bytes per unit between two checkpoints.
fn per_unit(report: &mut ScaleReport, key: &str, before: (Option<f64>, Option<f64>), after: (Option<f64>, Option<f64>), units: usize) {
    if units == 0 {
        return;
    }
    if let (Some(a), Some(b)) = (before.0, after.0) {
        report.set(&format!("rss_bytes_per_{key}"), (b - a) * 1024.0 / units as f64);
    }
    if let (Some(a), Some(b)) = (before.1, after.1) {
        report.set(&format!("heap_bytes_per_{key}"), (b - a) * 1024.0 / units as f64);
    }
}

/// Open+close cycles on fresh connections for `secs`, `parallel` loops at once.
async fn churn(ctx: &Arc<Ctx>, secs: f64, parallel: usize, report: &mut ScaleReport) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut loops = Vec::new();
    for _ in 0..parallel.max(1) {
        let ctx = ctx.clone();
        loops.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, BTreeMap::<String, u64>::new());
            while Instant::now() < until {
                let cycle = async {
                    let (mut c, _) = ctx.open(true).await?;
                    tokio::time::timeout(ctx.timeout, c.close(1)).await.map_err(|_| "close: timed out".to_string())?.map_err(|e| format!("close: {e}"))
                };
                match cycle.await {
                    Ok(()) => ok += 1,
                    Err(e) => *failed.entry(format!("churn {e}")).or_default() += 1,
                }
            }
            (ok, failed)
        }));
    }
    let mut cycles = 0;
    for l in loops {
        if let Ok((ok, failed)) = l.await {
            cycles += ok;
            for (k, n) in failed {
                report.fail(k, n);
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    report.set("churn_cycles", cycles as f64);
    report.set("churn_per_sec", cycles as f64 / elapsed);
}

pub async fn run_async(args: ClientsArgs) -> Result<ScaleReport, String> {
    let addr = args.server.to_socket_addrs().map_err(|e| format!("--server {}: {e}", args.server))?.find(|a| a.is_ipv4()).ok_or("--server: no IPv4 address")?;
    if args.watches > 0 {
        if args.tree_size == 0 || args.watch_sessions == 0 {
            return Err("--watches needs --tree-size (a populated tree) and --watch-sessions".into());
        }
        if args.watches.div_ceil(args.watch_sessions as u64) > args.tree_size {
            return Err("--watches / --watch-sessions exceeds --tree-size: a session would watch a znode twice".into());
        }
    }
    let timeout = Duration::from_secs_f64(args.timeout);
    let ctx = Arc::new(Ctx { addr, timeout, next_source: AtomicU64::new(0), args });
    let a = &ctx.args;
    let mut report = ScaleReport::default();
    let none = |_| Targets::One(Arc::from(""));

    // 1. Many sessions.
    if a.sessions > 0 {
        let base = memory(&ctx, &mut report, "base").await;
        say(&format!("opening {} sessions", a.sessions));
        let (group, took) = open_group(&ctx, a.sessions, none, &mut report).await;
        say(&format!("{} sessions open in {:.1} s", group.alive, took.as_secs_f64()));
        report.set("sessions_opened", group.alive as f64);
        report.set("sessions_open_secs", took.as_secs_f64());
        report.set("sessions_open_per_sec", group.alive as f64 / took.as_secs_f64().max(1e-9));
        let held = memory(&ctx, &mut report, "sessions").await;
        per_unit(&mut report, "session", base, held, group.alive);
        if a.churn_secs > 0.0 {
            say(&format!("churn for {} s", a.churn_secs));
            churn(&ctx, a.churn_secs, a.churn_parallel, &mut report).await;
            say("closing the sessions");
        }
        let closed = group.close(timeout, &mut report).await;
        report.set("sessions_close_secs", closed.as_secs_f64());
        memory(&ctx, &mut report, "sessions_closed").await;
    }

    // 2. Watchers on one znode.
    if a.watchers_one > 0 {
        let mut setter = Session::connect(&a.server, a.session_timeout_ms, timeout).await.map_err(|e| format!("setter: {e}"))?;
        let r = setter.call(op::CREATE, |w| body::create(w, &a.one_node, b"", client::flags::PERSISTENT), timeout).await.map_err(|e| e.to_string())?;
        if r.err != 0 && r.err != client::NODE_EXISTS {
            return Err(format!("create {}: {}", a.one_node, client::error_name(r.err)));
        }
        let node: Arc<str> = Arc::from(a.one_node.as_str());
        say(&format!("opening {} sessions to watch {}", a.watchers_one, a.one_node));
        let (mut group, _) = open_group(&ctx, a.watchers_one, |_| Targets::One(node.clone()), &mut report).await;
        report.set("watchers_one_sessions", group.alive as f64);
        let before = memory(&ctx, &mut report, "watchers_one_sessions").await;
        let mut fanouts = Vec::new();
        // Server and client CPU seconds summed over the rounds (ticks are
        // 10 ms, so only the sum over rounds means anything), and the rounds.
        let mut cpu_sum = (0.0, 0.0, 0u32);
        let value = vec![b'x'; 100];
        for round in 0..a.fanout_rounds.max(1) {
            let _ = group.stage.send(Stage::Arm(round));
            let (armed, _) = group.collect(group.alive, timeout, &mut report, "arming the one-znode watch", |e| matches!(e, Ev::Armed)).await;
            if round == 0 {
                let after = memory(&ctx, &mut report, "watchers_one_armed").await;
                per_unit(&mut report, "watch_one", before, after, armed);
            }
            say(&format!("fan-out round {round}: {armed} watchers armed"));
            let cpu0 = fanout_cpu(a.server_pid);
            let t0 = Instant::now();
            let x = setter.send(op::SET_DATA, |w| body::set_data(w, &a.one_node, &value, -1)).map_err(|e| e.to_string())?;
            let (fired, last) = group.collect(armed, timeout, &mut report, "fan-out", |e| matches!(e, Ev::Fired(_))).await;
            if let (Some((s0, c0)), Some((s1, c1))) = (cpu0, fanout_cpu(a.server_pid)) {
                cpu_sum.0 += s1 - s0;
                cpu_sum.1 += c1 - c0;
                cpu_sum.2 += 1;
            }
            let r = setter.reply_to(x, timeout).await.map_err(|e| format!("setData: {e}"))?;
            if r.err != 0 {
                report.fail(format!("fan-out setData answered {}", client::error_name(r.err)), 1);
            }
            if fired == armed {
                if let Some(l) = last {
                    fanouts.push(l.saturating_duration_since(t0).as_secs_f64() * 1000.0);
                }
            }
        }
        fanouts.sort_by(f64::total_cmp);
        if let Some(&m) = fanouts.get(fanouts.len() / 2) {
            report.set("fanout_ms_median", m);
            report.set("fanout_ms_max", *fanouts.last().unwrap());
            report.set("fanout_rounds", fanouts.len() as f64);
        }
        if cpu_sum.2 > 0 {
            report.set("fanout_server_cpu_ms", cpu_sum.0 * 1000.0 / cpu_sum.2 as f64);
            report.set("fanout_client_cpu_ms", cpu_sum.1 * 1000.0 / cpu_sum.2 as f64);
        }
        let _ = setter.close(timeout).await;
        group.close(timeout, &mut report).await;
    }

    // 3. Watches spread over the tree.
    if a.watches > 0 {
        let per = a.watches.div_ceil(a.watch_sessions as u64);
        let tree = Arc::new((a.prefix.clone(), a.parents, a.tree_size));
        let total = a.watches;
        let targets = |s: u64| {
            let count = per.min(total.saturating_sub(s * per));
            Targets::Spread { session: s, per, count, tree: tree.clone() }
        };
        let sessions = a.watches.div_ceil(per) as usize;
        say(&format!("opening {sessions} sessions to set {} watches", a.watches));
        let (mut group, _) = open_group(&ctx, sessions, targets, &mut report).await;
        let before = memory(&ctx, &mut report, "watch_sessions").await;
        let t0 = Instant::now();
        let _ = group.stage.send(Stage::Arm(0));
        let (armed, _) = group.collect(group.alive, timeout, &mut report, "setting the spread watches", |e| matches!(e, Ev::Armed)).await;
        let took = t0.elapsed().as_secs_f64();
        // Sessions hold `per` watches each except possibly the last.
        let set = if armed == sessions { total } else { armed as u64 * per };
        report.set("watches_set", set as f64);
        report.set("watches_set_secs", took);
        report.set("watches_set_per_sec", set as f64 / took.max(1e-9));
        say(&format!("{set} watches set in {took:.1} s"));
        let after = memory(&ctx, &mut report, "watches").await;
        per_unit(&mut report, "watch", before, after, set as usize);
        group.close(timeout, &mut report).await;
    }
    Ok(report)
}

/// Progress on stderr (the figures go to stdout).
fn say(what: &str) {
    eprintln!("scale-clients: {what}");
}

/// Runs on its own runtime; exit code 0 clean, 2 with failures, 1 could not run.
pub fn run(args: ClientsArgs) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden-bench: runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let json = args.json.clone();
    let result = rt.block_on(run_async(args));
    rt.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(report) => {
            print!("{}", report.to_text());
            if let Some(path) = json {
                if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap_or_default() + "\n") {
                    eprintln!("warden-bench: writing {}: {e}", path.display());
                    return std::process::ExitCode::from(1);
                }
            }
            if report.failures.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("warden-bench: scale-clients: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

/// CPU seconds used so far by the server and by this client process.
fn fanout_cpu(server_pid: Option<u32>) -> Option<(f64, f64)> {
    let server = procstat::cpu_seconds(&server_pid?.to_string()).ok()?;
    Some((server, procstat::cpu_seconds("self").ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_rotate_over_loopback_addresses() {
        assert_eq!(source_for(5, 1), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_for(0, 4), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_for(3, 4), Ipv4Addr::new(127, 0, 0, 4));
        assert_eq!(source_for(4, 4), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(churn_source(4), Ipv4Addr::new(127, 0, 0, 5));
        assert_eq!(churn_source(250), Ipv4Addr::new(127, 0, 0, 251));
    }

    #[test]
    fn spread_watches_cover_the_tree_once_when_it_is_big_enough() {
        let (sessions, per, tree) = (10u64, 7u64, 70u64);
        let mut seen: Vec<u64> = (0..sessions).flat_map(|s| (0..per).map(move |j| spread_index(s, j, per, tree))).collect();
        seen.sort();
        assert_eq!(seen, (0..tree).collect::<Vec<_>>());
        // A smaller tree wraps; one session's znodes stay distinct.
        let one: std::collections::BTreeSet<u64> = (0..per).map(|j| spread_index(3, j, per, 20)).collect();
        assert_eq!(one.len(), per as usize);
    }

    #[test]
    fn text_report_lists_figures_then_failures() {
        let mut r = ScaleReport::default();
        r.set("sessions_opened", 10.0);
        r.set("fanout_ms_median", 1.5);
        r.fail("open: refused", 2);
        r.fail("ignored", 0);
        assert_eq!(r.to_text(), "fanout_ms_median 1.500\nsessions_opened 10\nfailure 2 open: refused\n");
    }
}
