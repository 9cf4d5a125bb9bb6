//! Concurrent clients: compare-and-set on registers (getData then setData
//! with the version read), sequential creates under a queue node, and an
//! ephemeral-node lock. Every invocation and completion goes to the history.

use crate::history::{Clock, Enqueue, Hold, Outcome, Shared};
use crate::rng::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warden_chaos::linearizability::{Event, Op, Outcome as LinOutcome};
use zookeeper_client::{Acls, Client, CreateMode, Error};

pub const ROOT: &str = "/chaos";
pub const QUEUE: &str = "/chaos/queue";
pub const EPH: &str = "/chaos/eph";
pub const LOCK: &str = "/chaos/lock";
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn register(k: usize) -> String {
    format!("{ROOT}/r{k}")
}

pub struct Ctx {
    pub connect: Arc<std::sync::RwLock<String>>,
    pub clock: Arc<Clock>,
    pub history: Shared,
    pub stop: Arc<AtomicBool>,
    pub registers: usize,
}

/// Errors that say the operation certainly did not happen.
fn definite(e: &Error) -> bool {
    matches!(e, Error::NoNode | Error::BadVersion | Error::NodeExists | Error::NotEmpty | Error::NoAuth | Error::BadArguments(_) | Error::InvalidAcl)
}

/// Errors after which the session is unusable.
fn terminal(e: &Error) -> bool {
    matches!(e, Error::SessionExpired | Error::ClientClosed | Error::NoHosts | Error::AuthFailed)
}

/// Runs `fut` with the op timeout; a timeout is reported as `Error::Timeout`.
async fn timed<T>(fut: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    tokio::time::timeout(OP_TIMEOUT, fut).await.unwrap_or(Err(Error::Timeout))
}

pub async fn connect(connect: &str, deadline: Duration) -> Option<Client> {
    let end = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < end {
        let c = Client::connector().with_session_timeout(SESSION_TIMEOUT).connect(connect);
        if let Ok(Ok(c)) = tokio::time::timeout(Duration::from_secs(8), c).await {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

struct Session {
    client: Client,
    /// Whether the session may be damaged (an unknown lock op): start a new one.
    poisoned: bool,
}

pub async fn run_client(id: u64, ctx: Arc<Ctx>, mut rng: Rng) {
    let mut serial = 0u64;
    let mut sess: Option<Session> = None;
    while !ctx.stop.load(Ordering::Relaxed) {
        if sess.as_ref().is_none_or(|s| s.poisoned) {
            // Dropping a client closes its session (its ephemerals go).
            sess = None;
            let addrs = ctx.connect.read().unwrap().clone();
            let Some(client) = connect(&addrs, Duration::from_secs(5)).await else { continue };
            // A marker tied to the session: must be gone once it ends.
            let marker = format!("{EPH}/c{id}-{:x}", client.session_id().0);
            let _ = timed(client.create(&marker, b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all()))).await;
            sess = Some(Session { client, poisoned: false });
        }
        let s = sess.as_mut().unwrap();
        serial += 1;
        let roll = rng.below(100);
        let err = if roll < 8 {
            pipelined_reads(id, &ctx, s, rng.below(ctx.registers as u64) as usize).await
        } else if roll < 55 {
            cas(id, serial, &ctx, s, rng.below(ctx.registers as u64) as usize).await
        } else if roll < 80 {
            enqueue(id, serial, &ctx, s).await
        } else {
            lock(id, serial, &ctx, s, &mut rng).await
        };
        if let Some(e) = err {
            if terminal(&e) {
                s.poisoned = true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.range(0, 20))).await;
    }
}

/// Session churn, as service registries produce it: a session opens, creates
/// an ephemeral and closes, over and over. The end-of-run check finds any
/// ephemeral that outlived its session; members' memory must not grow with
/// the sessions they have seen (the soak's resource samples).
pub async fn churn(ctx: Arc<Ctx>) {
    while !ctx.stop.load(Ordering::Relaxed) {
        let addrs = ctx.connect.read().unwrap().clone();
        let Some(client) = connect(&addrs, Duration::from_secs(5)).await else { continue };
        let marker = format!("{EPH}/churn-{:x}", client.session_id().0);
        let r = timed(client.create(&marker, b"", &CreateMode::Ephemeral.with_acls(Acls::anyone_all()))).await;
        let o = match &r {
            Ok(_) => Outcome::Ok,
            Err(e) if definite(e) => Outcome::Failed,
            Err(_) => Outcome::Unknown,
        };
        ctx.history.lock().unwrap().count("churn", o);
        // Dropping the client closes its session.
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn trace(ctx: &Ctx, line: String) {
    ctx.history.lock().unwrap().trace.push(line);
}

/// Records one register event; returns the error if any.
fn record_reg(ctx: &Ctx, kind: &'static str, ev: Event) {
    let o = match ev.outcome {
        LinOutcome::Unknown => Outcome::Unknown,
        LinOutcome::BadVersion | LinOutcome::NoNode | LinOutcome::NodeExists => Outcome::Failed,
        _ => Outcome::Ok,
    };
    let mut h = ctx.history.lock().unwrap();
    h.count(kind, o);
    h.registers.push(ev);
}

/// A read of register `k`, recorded; Some(version) when it answered.
pub async fn read_register(id: u64, ctx: &Ctx, client: &Client, k: usize) -> Result<Option<(String, i32)>, Error> {
    let key = register(k);
    let invoke = ctx.clock.now();
    let r = timed(client.get_data(&key)).await;
    let complete = ctx.clock.now();
    let (outcome, ret) = match r {
        Ok((data, stat)) => {
            let v = (String::from_utf8_lossy(&data).into_owned(), stat.version);
            (LinOutcome::Read(Some(v.clone())), Ok(Some(v)))
        }
        Err(Error::NoNode) => (LinOutcome::Read(None), Ok(None)),
        Err(e) => (LinOutcome::Unknown, Err(e)),
    };
    let done = if outcome == LinOutcome::Unknown { None } else { Some(complete) };
    record_reg(ctx, "read", Event { client: id, invoke, complete: done, op: Op::Read { key }, outcome });
    ret
}

/// Three reads in flight on one session (sent before any answer): they
/// queue behind each other's barriers, a path plain CAS never takes.
async fn pipelined_reads(id: u64, ctx: &Ctx, s: &mut Session, k: usize) -> Option<Error> {
    let c = &s.client;
    let (a, b, d) = tokio::join!(read_register(id, ctx, c, k), read_register(id, ctx, c, k), read_register(id, ctx, c, k));
    [a, b, d].into_iter().find_map(|r| r.err())
}

async fn cas(id: u64, serial: u64, ctx: &Ctx, s: &mut Session, k: usize) -> Option<Error> {
    let version = match read_register(id, ctx, &s.client, k).await {
        Ok(Some((_, v))) => v,
        Ok(None) => return None,
        Err(e) => return Some(e),
    };
    let key = register(k);
    let value = format!("c{id}-{serial}");
    let invoke = ctx.clock.now();
    let r = timed(s.client.set_data(&key, value.as_bytes(), Some(version))).await;
    let complete = ctx.clock.now();
    let (outcome, err) = match r {
        Ok(stat) => (LinOutcome::Written(stat.version), None),
        Err(Error::BadVersion) => (LinOutcome::BadVersion, None),
        Err(Error::NoNode) => (LinOutcome::NoNode, None),
        Err(e) => (LinOutcome::Unknown, Some(e)),
    };
    let done = if outcome == LinOutcome::Unknown { None } else { Some(complete) };
    record_reg(ctx, "cas", Event { client: id, invoke, complete: done, op: Op::Write { key, value, expected_version: Some(version) }, outcome });
    err
}

async fn enqueue(id: u64, serial: u64, ctx: &Ctx, s: &mut Session) -> Option<Error> {
    let value = format!("c{id}-{serial}");
    let invoke = ctx.clock.now();
    let r = timed(s.client.create(&format!("{QUEUE}/q-"), value.as_bytes(), &CreateMode::PersistentSequential.with_acls(Acls::anyone_all()))).await;
    let complete = ctx.clock.now();
    let (outcome, seq, err) = match r {
        Ok((_, seq)) => (Outcome::Ok, Some(seq.into_i64()), None),
        Err(e) if definite(&e) => (Outcome::Failed, None, Some(e)),
        Err(e) => (Outcome::Unknown, None, Some(e)),
    };
    let mut h = ctx.history.lock().unwrap();
    h.count("enqueue", outcome);
    h.queue.push(Enqueue { client: id, invoke, complete, value, outcome, seq });
    err
}

async fn lock(id: u64, serial: u64, ctx: &Ctx, s: &mut Session, rng: &mut Rng) -> Option<Error> {
    let token = format!("c{id}-{serial}");
    let session = s.client.session_id().0;
    let r = timed(s.client.create(LOCK, token.as_bytes(), &CreateMode::Ephemeral.with_acls(Acls::anyone_all()))).await;
    let acquired = ctx.clock.now();
    let stat = match r {
        Ok((stat, _)) => stat,
        Err(Error::NodeExists) => {
            ctx.history.lock().unwrap().count("lock", Outcome::Failed);
            return None;
        }
        Err(e) => {
            // We may hold the lock without knowing: only ending the session
            // releases it safely.
            ctx.history.lock().unwrap().count("lock", Outcome::Unknown);
            trace(ctx, format!("c{id} lock create {token} unknown: {e}; dropping session {session:#x}"));
            s.poisoned = true;
            return Some(e);
        }
    };
    tokio::time::sleep(Duration::from_millis(rng.range(5, 60))).await;
    let release_invoke = ctx.clock.now();
    let r = timed(s.client.delete(LOCK, None)).await;
    let released_ok = r.is_ok();
    let release_err = r.as_ref().err().map(|e| format!("{e:?}"));
    let outcome = if released_ok { Outcome::Ok } else { Outcome::Unknown };
    let mut h = ctx.history.lock().unwrap();
    h.count("lock", outcome);
    h.holds.push(Hold { client: id, session, czxid: stat.czxid, acquired, release_invoke: Some(release_invoke), released_ok, release_err });
    drop(h);
    if let Err(e) = r {
        trace(ctx, format!("c{id} lock release {token} failed: {e}; dropping session {session:#x}"));
        s.poisoned = true;
        return Some(e);
    }
    None
}
