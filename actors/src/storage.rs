//! Disk I/O for durability: crash recovery at start (newest valid snapshot +
//! log replay) and the transaction log writer thread with group commit.
//! Formats and decisions live in the core (`record`, `txnlog`, `snapshot`).

pub use crate::data_files::{check_not_foreign, fsync_dir, list, list_warden, read_segment, version_dir};
use crate::mailbox::Inbox;
use crate::messages::Synced;
use crate::registry::ActorStats;
use crate::stats::ServerStats;
use crossbeam_channel::{Receiver, Sender};
use slog::{error, info, warn, Logger};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_core::database::Database;
use warden_core::snapshot;
use warden_core::txn::LogEntry;
use warden_core::txnlog::{self, LOG_PREFIX, SNAPSHOT_PREFIX};

pub struct Recovered {
    pub db: Database,
    pub snapshot_zxid: Option<i64>,
    pub replayed: usize,
    pub elapsed: Duration,
}

/// A damaged record: a torn write at the very end of the last segment is cut
/// off (it was never acknowledged); damage anywhere else stops the start.
fn cut_torn_tail(path: &Path, bad: &warden_core::record::BadRecord, good_bytes: usize, last_segment: bool, log: &Logger) -> Result<(), String> {
    if !(bad.torn && last_segment) {
        return Err(format!("{} is damaged at byte {}: {}", path.display(), bad.offset, bad.reason));
    }
    warn!(log, "cutting a torn tail off the log (a write interrupted by a crash, never acknowledged)"; "file" => path.display().to_string(), "offset" => bad.offset, "reason" => &bad.reason);
    let f = OpenOptions::new().write(true).open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    f.set_len(good_bytes as u64).and_then(|_| f.sync_all()).map_err(|e| format!("cannot truncate {}: {e}", path.display()))
}

/// What an ensemble member has on disk: the newest snapshot that verifies
/// and every logged entry after it, *not* applied — whether they are
/// committed is for the leader to say.
pub struct RecoveredLog {
    pub db: Database,
    pub snapshot_zxid: i64,
    pub entries: Vec<LogEntry>,
    pub elapsed: Duration,
}

/// Recovery for an ensemble member (see `RecoveredLog`). Entries must rise
/// strictly; across epochs zxids jump, so there is no +1 continuity check.
pub fn recover_log(data_dir: &Path, log_dir: &Path, log: &Logger) -> Result<RecoveredLog, String> {
    recover_log_with(data_dir, log_dir, true, log)
}

/// `recover_log`; with `cut_torn` false nothing on disk changes (offline tools).
pub fn recover_log_with(data_dir: &Path, log_dir: &Path, cut_torn: bool, log: &Logger) -> Result<RecoveredLog, String> {
    let started = Instant::now();
    let start = |base: Base| {
        let snapshot_zxid = base.snapshot_zxid.unwrap_or(0);
        let mut db = base.db;
        db.mark_sessions_from_zookeeper(base.zookeeper_sessions);
        let entries = base.zookeeper_entries;
        let after = entries.last().map_or(snapshot_zxid, |e| e.hdr.zxid);
        Ok((RecoveredLog { db, snapshot_zxid, entries, elapsed: Duration::ZERO }, after))
    };
    let mut recovered = load_base_and_log(data_dir, log_dir, cut_torn, log, start, |r: &mut RecoveredLog, seg| {
        for entry in seg.entries {
            if let Some(prev) = r.entries.last() {
                if entry.hdr.zxid <= prev.hdr.zxid {
                    return Err(format!("{}: zxid {:#x} after {:#x}: the log is out of order", seg.path.display(), entry.hdr.zxid, prev.hdr.zxid));
                }
            }
            r.entries.push(entry);
        }
        Ok(())
    })?;
    recovered.elapsed = started.elapsed();
    Ok(recovered)
}

/// One log segment's entries after the replay point, in order.
struct LoggedSegment {
    path: PathBuf,
    first: i64,
    entries: Vec<LogEntry>,
}

/// Reads, in order, the log segments that can hold entries after zxid
/// `after`, and hands each one's later entries to `each`. A torn tail is cut
/// (with `cut_torn`); other damage stops the read, naming file and offset.
fn read_log_after(log_dir: &Path, after: i64, cut_torn: bool, log: &Logger, mut each: impl FnMut(LoggedSegment) -> Result<(), String>) -> Result<(), String> {
    let segments = list_warden(&version_dir(log_dir), LOG_PREFIX);
    let last_index = segments.len().saturating_sub(1);
    let mut last = after;
    for (i, (first, path)) in segments.iter().enumerate() {
        // Skip segments that end before the replay point.
        if let Some((next_first, _)) = segments.get(i + 1) {
            if *next_first <= last + 1 {
                continue;
            }
        }
        let bytes = read_segment(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let scan = txnlog::scan_segment_after(&bytes, last).map_err(|b| format!("{} at byte {}: {}", path.display(), b.offset, b.reason))?;
        drop(bytes);
        last = scan.entries.last().map_or(last, |e| e.hdr.zxid.max(last));
        let bad = scan.bad.as_ref().filter(|bad| cut_torn || !(bad.torn && i == last_index));
        let cut = bad.map(|bad| cut_torn_tail(path, bad, scan.good_bytes, i == last_index, log));
        each(LoggedSegment { path: path.clone(), first: *first, entries: scan.entries })?;
        cut.transpose()?;
    }
    Ok(())
}

/// Recovery's two halves side by side: the newest snapshot loads on this
/// thread while another reads the log after it (the snapshot's file name
/// gives its zxid), a few segments ahead at most. `start` turns the base
/// into the recovery's state and says where replay starts; when that is not
/// the newest snapshot's zxid (it is damaged, or there is none), the log is
/// read again from there.
fn load_base_and_log<S>(
    data_dir: &Path,
    log_dir: &Path,
    cut_torn: bool,
    log: &Logger,
    start: impl FnOnce(Base) -> Result<(S, i64), String>,
    mut each: impl FnMut(&mut S, LoggedSegment) -> Result<(), String>,
) -> Result<S, String> {
    let newest = list_warden(&version_dir(data_dir), SNAPSHOT_PREFIX).last().map(|(zxid, _)| *zxid);
    std::thread::scope(|scope| {
        let (tx, rx) = crossbeam_channel::bounded::<LoggedSegment>(2);
        let reader = newest.map(|after| {
            let send = move |seg| tx.send(seg).map_err(|_| "recovery stopped reading the log".to_string());
            std::thread::Builder::new()
                .name("w-recover-log".into())
                .spawn_scoped(scope, move || read_log_after(log_dir, after, cut_torn, log, send))
                .expect("a thread can be started at start-up")
        });
        let (mut state, after) = start(load_base(data_dir, log_dir, log)?)?;
        match reader {
            Some(reader) if newest == Some(after) => {
                for seg in rx.iter() {
                    each(&mut state, seg)?;
                }
                reader.join().expect("the log reader does not panic")?;
            }
            reader => {
                drop(rx);
                let _ = reader.map(|r| r.join());
                read_log_after(log_dir, after, cut_torn, log, |seg| each(&mut state, seg))?;
            }
        }
        Ok(state)
    })
}

/// Where recovery starts: the newest Warden snapshot that verifies, else
/// ZooKeeper's data in place (its snapshot, and its logged transactions
/// still to replay), else an empty database.
struct Base {
    snapshot_zxid: Option<i64>,
    db: Database,
    zookeeper_entries: Vec<LogEntry>,
    zookeeper_sessions: Vec<i64>,
    damaged: Vec<String>,
}

fn load_base(data_dir: &Path, log_dir: &Path, log: &Logger) -> Result<Base, String> {
    let snap_dir = version_dir(data_dir);
    let log_dir = version_dir(log_dir);
    for d in [&snap_dir, &log_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let mut damaged = Vec::new();
    for (zxid, path) in list_warden(&snap_dir, SNAPSHOT_PREFIX).into_iter().rev() {
        let file = File::open(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        match snapshot::load_from(std::io::BufReader::with_capacity(1 << 20, file)) {
            Ok(s) => {
                info!(log, "loaded snapshot"; "file" => path.display().to_string(), "zxid" => format!("{:#x}", s.zxid), "nodes" => s.nodes, "skipped_without_parent" => s.skipped);
                return Ok(Base { snapshot_zxid: Some(s.zxid), db: s.db, zookeeper_entries: Vec::new(), zookeeper_sessions: Vec::new(), damaged });
            }
            Err(e) => {
                // Fall back to an older snapshot; the replay's continuity check
                // refuses to start if that would lose transactions.
                warn!(log, "snapshot does not verify, trying an older one"; "file" => path.display().to_string(), "zxid" => format!("{zxid:#x}"), "error" => e.to_string());
                damaged.push(format!("snapshot {} is damaged {e}", path.display()));
            }
        }
    }
    if damaged.is_empty() {
        if let Some(zk) = crate::zk_import::import(&snap_dir, &log_dir, log)? {
            info!(log, "starting from Apache ZooKeeper's data in place (its files are only read)"; "snapshot_zxid" => format!("{:#x}", zk.snapshot_zxid), "logged_txns" => zk.entries.len());
            return Ok(Base { snapshot_zxid: Some(zk.snapshot_zxid), db: zk.db, zookeeper_entries: zk.entries, zookeeper_sessions: zk.sessions, damaged });
        }
    }
    Ok(Base { snapshot_zxid: None, db: Database::default(), zookeeper_entries: Vec::new(), zookeeper_sessions: Vec::new(), damaged })
}

/// Work files a stop cut short: snapshots being written or received
/// (`snapshot.*.tmp`), restore bodies (`restore.*.tmp`) and backups being
/// made (`backup.*.walk`, `backup.*.zk`). Nothing reads them after a restart.
fn remove_leftovers(data_dir: &Path, log_dir: &Path, log: &Logger) {
    let leftover = |name: &str| {
        let parts: Vec<&str> = name.split('.').collect();
        match (parts.first(), parts.last()) {
            (Some(&"snapshot" | &"restore"), Some(&"tmp")) => parts.len() >= 3,
            (Some(&"backup"), Some(&"walk" | &"zk")) => parts.len() >= 3,
            _ => false,
        }
    };
    for dir in [version_dir(data_dir), version_dir(log_dir)] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if leftover(&name) && std::fs::remove_file(entry.path()).is_ok() {
                slog::info!(log, "removed a work file a stop cut short"; "file" => entry.path().display().to_string());
            }
        }
    }
}

/// Loads the newest snapshot that verifies and replays the log after it.
/// A torn tail is cut off; damage anywhere else stops the start, naming the
/// file and offset.
pub fn recover(data_dir: &Path, log_dir: &Path, log: &Logger) -> Result<Recovered, String> {
    recover_with(data_dir, log_dir, true, log)
}

/// `recover`; with `cut_torn` false nothing on disk changes (offline tools).
pub fn recover_with(data_dir: &Path, log_dir: &Path, cut_torn: bool, log: &Logger) -> Result<Recovered, String> {
    let started = Instant::now();
    if cut_torn {
        remove_leftovers(data_dir, log_dir, log);
    }
    let start = |base: Base| {
        let Base { snapshot_zxid, mut db, zookeeper_entries, zookeeper_sessions, damaged } = base;
        // ZooKeeper's logged transactions (checked for order when read).
        for entry in &zookeeper_entries {
            db.apply(&entry.hdr, &entry.txn, &mut Vec::new());
        }
        db.mark_sessions_from_zookeeper(zookeeper_sessions);
        let after = db.last_zxid();
        Ok(((Recovered { db, snapshot_zxid, replayed: zookeeper_entries.len(), elapsed: Duration::ZERO }, damaged), after))
    };
    let (mut recovered, damaged) = load_base_and_log(data_dir, log_dir, cut_torn, log, start, |(r, damaged): &mut (Recovered, Vec<String>), seg| {
        for entry in &seg.entries {
            let (zxid, last) = (entry.hdr.zxid, r.db.last_zxid());
            if zxid <= last {
                continue;
            }
            if zxid != last + 1 {
                return Err(format!(
                    "{}: log jumps from zxid {last:#x} to {zxid:#x} (segment starts at {:#x}); transactions are missing{}",
                    seg.path.display(),
                    seg.first,
                    damaged.iter().map(|d| format!("; {d}")).collect::<String>()
                ));
            }
            r.db.apply(&entry.hdr, &entry.txn, &mut Vec::new());
            r.replayed += 1;
        }
        Ok(())
    })?;
    if recovered.snapshot_zxid.is_none() && !damaged.is_empty() && recovered.db.last_zxid() == 0 {
        return Err(damaged.join("; ") + "; and no log to rebuild from");
    }
    recovered.elapsed = started.elapsed();
    Ok(recovered)
}

pub enum LogCommand {
    Append(Vec<Arc<LogEntry>>),
    /// Start a new segment now, for transactions from `next_zxid` on (after a
    /// snapshot began): recovery can then skip the old one without reading it.
    Roll {
        next_zxid: i64,
    },
    /// Ensemble (Zab TRUNC): drop every entry after `to_zxid`.
    Truncate {
        to_zxid: i64,
    },
    /// Ensemble (Zab SNAP): a snapshot at `zxid` arrives in pieces; it is
    /// written aside in `snap_dir` until it is installed.
    BeginSnapshot {
        zxid: i64,
        snap_dir: PathBuf,
    },
    SnapshotChunk(Vec<u8>),
    /// The received snapshot (`bytes` long, crc32c `crc`) becomes the
    /// snapshot at its zxid and the log starts over empty; `ready` gets its file.
    InstallSnapshot {
        zxid: i64,
        bytes: u64,
        crc: u32,
        ready: tokio::sync::oneshot::Sender<Result<PathBuf, String>>,
    },
    /// An operator-injected fault (`POST /actors/txn-log/fault`).
    Fault(crate::registry::Fault),
}

/// The transaction log: a thread that appends what the processor sends and
/// makes it durable with one fsync per batch (group commit).
/// Its queue is counted like an actor's mailbox (kind "txn-log"); its
/// strategy is escalate: a log thread that failed cannot vouch for what it
/// made durable, so the node fail-stops (status 70) and recovers from disk.
#[derive(Clone)]
pub struct TxnLog {
    tx: Sender<LogCommand>,
    shared: Arc<Shared>,
    snapshot_backlog: Arc<Backlog>,
    pub me: Arc<ActorStats>,
    log: Logger,
}

/// The writer, held by whoever writes: the log thread for a batch, or the
/// processor writing an append itself while the thread has nothing to do.
struct Shared {
    writer: std::sync::Mutex<SegmentWriter>,
    /// Commands sent and not yet written (counted down under the writer's lock).
    in_flight: std::sync::atomic::AtomicU64,
    /// warden.fsyncDelayMs set: a slow disk stays the log thread's, never the processor's.
    thread_only: bool,
}

/// Bytes of received snapshot queued for the log thread, with a ceiling the
/// sender waits under.
struct Backlog {
    bytes: std::sync::Mutex<usize>,
    drained: std::sync::Condvar,
}

/// How much of a received snapshot may wait in memory for the disk.
const SNAPSHOT_BACKLOG_BYTES: usize = 32 << 20;

impl Backlog {
    fn add(&self, n: usize) {
        let mut queued = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        while *queued > SNAPSHOT_BACKLOG_BYTES {
            queued = self.drained.wait(queued).unwrap_or_else(|e| e.into_inner());
        }
        *queued += n;
    }

    fn done(&self, n: usize) {
        let mut queued = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        *queued = queued.saturating_sub(n);
        self.drained.notify_all();
    }
}

/// Whether writes come one at a time: not within `QUIET` of one that came
/// with others (another request in the server, a batch, a busy log thread).
/// A lone write may be written on its caller's thread (`append_if_idle`);
/// under load the log thread syncs one batch while the caller gathers the
/// next, and a burst amid many must not stall the rest behind an fsync there.
#[derive(Default)]
pub struct LoneWrites {
    crowded_at: Option<Instant>,
}

impl LoneWrites {
    const QUIET: Duration = Duration::from_millis(20);

    /// `crowded`: this write comes with others.
    pub fn alone(&mut self, crowded: bool) -> bool {
        self.alone_at(crowded, Instant::now())
    }

    fn alone_at(&mut self, crowded: bool, now: Instant) -> bool {
        if crowded {
            self.crowded_at = Some(now);
            return false;
        }
        self.crowded_at.is_none_or(|at| now.duration_since(at) > Self::QUIET)
    }
}

/// Fail-stop: a log we cannot write must not acknowledge anything.
fn fail_stop(log: &Logger, e: &std::io::Error) -> ! {
    error!(log, "transaction log failed; stopping the node"; "error" => %e);
    eprintln!("warden: transaction log failed: {e}");
    std::thread::sleep(Duration::from_millis(100));
    std::process::exit(2);
}

impl TxnLog {
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        dir: PathBuf,
        prealloc_bytes: u64,
        force_sync: bool,
        fsync_delay: Duration,
        synced: Inbox<Synced>,
        me: Arc<ActorStats>,
        stats: Arc<ServerStats>,
        log: Logger,
    ) -> TxnLog {
        let (tx, rx) = crossbeam_channel::unbounded();
        let stats_of_me = me.clone();
        let snapshot_backlog = Arc::new(Backlog { bytes: std::sync::Mutex::new(0), drained: std::sync::Condvar::new() });
        let writer = SegmentWriter {
            dir,
            prealloc_bytes: prealloc_bytes.max(4096),
            segment_max_bytes: SEGMENT_MAX_BYTES,
            force_sync,
            fsync_delay,
            current: None,
            buf: Vec::new(),
            stats,
            receiving: None,
            backlog: snapshot_backlog.clone(),
            fsyncs: 0,
            ops: 0,
            durable_zxid: 0,
        };
        let shared =
            Arc::new(Shared { writer: std::sync::Mutex::new(writer), in_flight: std::sync::atomic::AtomicU64::new(0), thread_only: !fsync_delay.is_zero() });
        let (thread_shared, thread_log) = (shared.clone(), log.clone());
        std::thread::Builder::new()
            .name("txn-log".into())
            .spawn(move || {
                let log = thread_log;
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&thread_shared, rx, &|s| synced.do_send(s), &stats_of_me, &log)));
                match run {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => crate::supervise::escalate(&stats_of_me, &log, &e.to_string()),
                    Ok(Err(e)) => fail_stop(&log, &e),
                    Err(_) => {
                        stats_of_me.policy.restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        crate::supervise::escalate(&stats_of_me, &log, "the log thread panicked")
                    }
                }
            })
            .expect("spawn the log thread");
        let handle = TxnLog { tx, shared, snapshot_backlog, me, log };
        let injector = handle.clone();
        handle.me.set_injector(move |f| {
            injector.send(LogCommand::Fault(f));
            true
        });
        handle
    }

    fn send(&self, cmd: LogCommand) {
        self.me.queued(1);
        self.shared.in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.tx.send(cmd).is_err() {
            self.me.dequeued(1);
            self.shared.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// `append_now`, or if the log thread has work, `append` (and the
    /// writes are not alone for a while).
    pub fn append_if_idle(&self, entries: Vec<Arc<LogEntry>>, lone: &mut LoneWrites) -> Option<Synced> {
        match self.append_now(entries) {
            Ok(done) => Some(done),
            Err(entries) => {
                lone.alone(true);
                self.append(entries);
                None
            }
        }
    }

    /// Writes and syncs `entries` on this thread when the log thread has
    /// nothing sent to it still unwritten (so the order on disk is the
    /// order sent), saving the two thread hand-offs of a lone write; or
    /// gives them back. Only the caller of `append` may use this.
    pub fn append_now(&self, entries: Vec<Arc<LogEntry>>) -> Result<Synced, Vec<Arc<LogEntry>>> {
        if self.shared.thread_only {
            return Err(entries);
        }
        let Ok(mut w) = self.shared.writer.try_lock() else { return Err(entries) };
        // Read under the lock: the thread counts a batch down before it lets go.
        if self.shared.in_flight.load(std::sync::atomic::Ordering::SeqCst) != 0 {
            return Err(entries);
        }
        let started = Instant::now();
        let written = w.append(entries).and_then(|last| {
            w.flush()?;
            w.ops += 1;
            Ok(w.made_durable(last))
        });
        match written {
            Ok(synced) => {
                self.me.handled_in(started.elapsed());
                Ok(synced)
            }
            Err(e) => fail_stop(&self.log, &e),
        }
    }

    pub fn append(&self, entries: Vec<Arc<LogEntry>>) {
        self.send(LogCommand::Append(entries));
    }

    pub fn roll(&self, next_zxid: i64) {
        self.send(LogCommand::Roll { next_zxid });
    }

    pub fn truncate(&self, to_zxid: i64) {
        self.send(LogCommand::Truncate { to_zxid });
    }

    pub fn begin_snapshot(&self, zxid: i64, snap_dir: PathBuf) {
        self.send(LogCommand::BeginSnapshot { zxid, snap_dir });
    }

    /// Queues a piece of a received snapshot. Waits while the pieces queued
    /// but not yet written pass a bound, so a disk slower than the network
    /// holds the link (TCP then slows the leader) instead of filling memory.
    pub fn snapshot_chunk(&self, data: Vec<u8>) {
        self.snapshot_backlog.add(data.len());
        self.send(LogCommand::SnapshotChunk(data));
    }

    pub fn install_snapshot(&self, zxid: i64, bytes: u64, crc: u32, ready: tokio::sync::oneshot::Sender<Result<PathBuf, String>>) {
        self.send(LogCommand::InstallSnapshot { zxid, bytes, crc, ready });
    }
}

struct Segment {
    file: File,
    written: u64,
    allocated: u64,
}

/// A segment is closed and a new one begun once it holds this many bytes,
/// so no log file grows without bound between snapshots.
const SEGMENT_MAX_BYTES: u64 = 256 << 20;

struct SegmentWriter {
    dir: PathBuf,
    prealloc_bytes: u64,
    segment_max_bytes: u64,
    force_sync: bool,
    /// warden.fsyncDelayMs: a slow disk, for fault injection.
    fsync_delay: Duration,
    current: Option<Segment>,
    /// Records for the current segment not yet written.
    buf: Vec<u8>,
    stats: Arc<ServerStats>,
    /// A leader's snapshot being received.
    receiving: Option<Receiving>,
    backlog: Arc<Backlog>,
    /// fsyncs and operations (appends, truncations, installs) done so far,
    /// and the zxid durable since the last of them.
    fsyncs: u64,
    ops: u64,
    durable_zxid: i64,
}

struct Receiving {
    zxid: i64,
    snap_dir: PathBuf,
    tmp: PathBuf,
    out: std::io::BufWriter<File>,
    bytes: u64,
    crc: u32,
}

/// The log thread: each command received, with everything queued behind
/// it, written under the writer's lock and made durable by one fsync.
fn run(shared: &Shared, rx: Receiver<LogCommand>, synced: &dyn Fn(Synced), me: &ActorStats, log: &Logger) -> std::io::Result<()> {
    while let Ok(first) = rx.recv() {
        let mut w = shared.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut last_zxid = None;
        let ops_before = w.ops;
        let mut handled = 0;
        // Everything queued while the last fsync ran shares the next one.
        for cmd in std::iter::once(first).chain(rx.try_iter()) {
            me.dequeued(1);
            handled += 1;
            let started = std::time::Instant::now();
            w.handle(cmd, &mut last_zxid, log)?;
            me.handled_in(started.elapsed());
        }
        w.flush()?;
        let done = w.made_durable(last_zxid);
        // Before the lock goes: the processor then sees nothing in flight.
        shared.in_flight.fetch_sub(handled, std::sync::atomic::Ordering::SeqCst);
        drop(w);
        if done.ops > ops_before {
            synced(done);
        }
    }
    info!(log, "transaction log closed");
    Ok(())
}

impl SegmentWriter {
    /// Queues `entries` for the next flush; the last one's zxid.
    fn append(&mut self, entries: Vec<Arc<LogEntry>>) -> std::io::Result<Option<i64>> {
        let mut last_zxid = None;
        for e in entries {
            if self.current.as_ref().is_some_and(|s| s.written + self.buf.len() as u64 >= self.segment_max_bytes) {
                self.flush()?;
                self.current = None;
            }
            if self.current.is_none() {
                self.open(e.hdr.zxid)?;
            }
            warden_core::record::encode(&e.encode(), &mut self.buf);
            last_zxid = Some(e.hdr.zxid);
            self.stats.txns_logged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(last_zxid)
    }

    /// After a flush: what is now durable, counting the fsync if entries were written.
    fn made_durable(&mut self, last_zxid: Option<i64>) -> Synced {
        if let Some(zxid) = last_zxid {
            self.fsyncs += 1;
            self.durable_zxid = zxid;
        }
        Synced { zxid: self.durable_zxid, fsyncs: self.fsyncs, ops: self.ops }
    }

    fn handle(&mut self, cmd: LogCommand, last_zxid: &mut Option<i64>, log: &Logger) -> std::io::Result<()> {
        match cmd {
            LogCommand::Append(entries) => {
                if let Some(zxid) = self.append(entries)? {
                    *last_zxid = Some(zxid);
                }
                self.ops += 1;
            }
            LogCommand::Roll { next_zxid } => {
                self.flush()?;
                self.open(next_zxid)?;
            }
            LogCommand::Truncate { to_zxid } => {
                self.flush()?;
                self.current = None;
                self.truncate(to_zxid, log)?;
                self.durable_zxid = to_zxid;
                *last_zxid = None;
                self.ops += 1;
            }
            LogCommand::BeginSnapshot { zxid, snap_dir } => self.begin_snapshot(zxid, snap_dir, log)?,
            LogCommand::SnapshotChunk(data) => {
                let written = self.snapshot_chunk(&data);
                self.backlog.done(data.len());
                written?;
            }
            LogCommand::InstallSnapshot { zxid, bytes, crc, ready } => {
                self.flush()?;
                self.current = None;
                match self.install_snapshot(zxid, bytes, crc, log)? {
                    Ok(path) => {
                        let _ = ready.send(Ok(path));
                        self.durable_zxid = zxid;
                        *last_zxid = None;
                        self.ops += 1;
                    }
                    // Not this disk's fault: the processor stops the node with the reason.
                    Err(reason) => {
                        let _ = ready.send(Err(reason));
                    }
                }
            }
            LogCommand::Fault(f) => {
                slog::warn!(log, "fault injected by the operator"; "fault" => format!("{f:?}"));
                match f {
                    crate::registry::Fault::Panic => panic!("fault injected by the operator"),
                    crate::registry::Fault::Stop => return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "stopped by the operator")),
                    crate::registry::Fault::Stall(d) => std::thread::sleep(d),
                }
            }
        }
        Ok(())
    }

    /// Cuts the log after `to_zxid`: later segments go, the one holding it
    /// is cut just past it. New entries start a new segment.
    fn truncate(&mut self, to_zxid: i64, log: &Logger) -> std::io::Result<()> {
        for (first, path) in list_warden(&self.dir, LOG_PREFIX).into_iter().rev() {
            if first > to_zxid {
                std::fs::remove_file(&path)?;
                info!(log, "TRUNC removed a log segment"; "file" => path.display().to_string());
                continue;
            }
            let bytes = read_segment(&path)?;
            let cut = txnlog::truncate_point(&bytes, to_zxid);
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(cut as u64)?;
            f.sync_all()?;
            info!(log, "TRUNC cut a log segment"; "file" => path.display().to_string(), "to_zxid" => format!("{to_zxid:#x}"), "bytes" => cut);
            break;
        }
        fsync_dir(&self.dir)
    }

    /// Starts writing a leader's snapshot aside (`snapshot.<zxid>.received.tmp`); a
    /// stream cut off before (a lost link) is discarded.
    fn begin_snapshot(&mut self, zxid: i64, snap_dir: PathBuf, log: &Logger) -> std::io::Result<()> {
        if let Some(old) = self.receiving.take() {
            info!(log, "discarding a snapshot stream that never ended"; "zxid" => format!("{:#x}", old.zxid));
            drop(old.out);
            let _ = std::fs::remove_file(&old.tmp);
        }
        let name = txnlog::snapshot_name(zxid);
        check_not_foreign(&snap_dir.join(&name))?;
        // Not the snapshotter's temp name: it may be writing one of its own.
        let tmp = snap_dir.join(format!("{name}.received.tmp"));
        let out = std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        self.receiving = Some(Receiving { zxid, snap_dir, tmp, out, bytes: 0, crc: 0 });
        Ok(())
    }

    fn snapshot_chunk(&mut self, data: &[u8]) -> std::io::Result<()> {
        // No stream: its begin was refused or it was discarded; the install will say so.
        let Some(r) = self.receiving.as_mut() else { return Ok(()) };
        r.bytes += data.len() as u64;
        r.crc = crc32c::crc32c_append(r.crc, data);
        r.out.write_all(data)
    }

    /// Makes the received snapshot durable and visible, then removes every
    /// log segment: the history they hold is either in the snapshot or not
    /// the leader's. The outer error is the disk's; the inner one says the
    /// stream did not arrive whole (nothing was changed then).
    fn install_snapshot(&mut self, zxid: i64, bytes: u64, crc: u32, log: &Logger) -> std::io::Result<Result<PathBuf, String>> {
        let Some(r) = self.receiving.take().filter(|r| r.zxid == zxid) else {
            return Ok(Err(format!("no snapshot stream at {zxid:#x} was received")));
        };
        if (r.bytes, r.crc) != (bytes, crc) {
            let _ = std::fs::remove_file(&r.tmp);
            return Ok(Err(format!(
                "the snapshot stream at {zxid:#x} arrived damaged: {} bytes crc {:#x}, the leader sent {bytes} crc {crc:#x}",
                r.bytes, r.crc
            )));
        }
        let file = r.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let path = r.snap_dir.join(txnlog::snapshot_name(zxid));
        std::fs::rename(&r.tmp, &path)?;
        fsync_dir(&r.snap_dir)?;
        for (_, seg) in list_warden(&self.dir, LOG_PREFIX) {
            std::fs::remove_file(&seg)?;
        }
        fsync_dir(&self.dir)?;
        info!(log, "installed the leader's snapshot"; "zxid" => format!("{zxid:#x}"), "bytes" => bytes);
        Ok(Ok(path))
    }

    /// Where a segment starting at `first_zxid` goes: `log.<first_zxid>`, or if
    /// ZooKeeper's file holds that name (a log it created but wrote no record
    /// to before it was killed), the nearest free lower name that still sorts
    /// after Warden's previous segment (a name is only a lower bound of its
    /// segment's zxids).
    fn segment_path(&self, first_zxid: i64) -> std::io::Result<PathBuf> {
        let path = self.dir.join(txnlog::log_name(first_zxid));
        let Err(taken) = check_not_foreign(&path) else { return Ok(path) };
        let floor = list_warden(&self.dir, LOG_PREFIX).into_iter().map(|(z, _)| z).filter(|z| *z < first_zxid).max().unwrap_or(0);
        (floor + 1..first_zxid).rev().map(|z| self.dir.join(txnlog::log_name(z))).find(|p| !p.exists()).ok_or(taken)
    }

    fn open(&mut self, first_zxid: i64) -> std::io::Result<()> {
        let path = self.segment_path(first_zxid)?;
        // A Warden file of this name can only be a segment that got no record before
        // a crash (else recovery would have moved the zxid past it): reuse it.
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
        file.write_all(txnlog::MAGIC)?;
        file.set_len(self.prealloc_bytes)?;
        file.sync_all()?;
        fsync_dir(&self.dir)?;
        self.current = Some(Segment { file, written: txnlog::MAGIC.len() as u64, allocated: self.prealloc_bytes });
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let Some(seg) = self.current.as_mut() else { return Ok(()) };
        if self.buf.is_empty() {
            return Ok(());
        }
        let end = seg.written + self.buf.len() as u64;
        let grew = end > seg.allocated;
        if grew {
            // Preallocate whole chunks so most fsyncs need not update the file size.
            seg.allocated = end.div_ceil(self.prealloc_bytes) * self.prealloc_bytes;
            seg.file.set_len(seg.allocated)?;
        }
        // One pwrite, not a seek and a write: a syscall less per append on the write path.
        std::os::unix::fs::FileExt::write_all_at(&seg.file, &self.buf, seg.written)?;
        seg.written = end;
        self.buf.clear();
        if self.force_sync {
            let started = Instant::now();
            if !self.fsync_delay.is_zero() {
                std::thread::sleep(self.fsync_delay);
            }
            if grew {
                seg.file.sync_all()?;
            } else {
                seg.file.sync_data()?;
            }
            self.stats.fsync_latency.lock().unwrap().record(started.elapsed());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::txn::{Txn, TxnHeader};
    use warden_core::zkfiles;

    fn test_writer(dir: PathBuf, segment_max_bytes: u64) -> SegmentWriter {
        SegmentWriter {
            dir,
            prealloc_bytes: 4096,
            segment_max_bytes,
            force_sync: false,
            fsync_delay: Duration::ZERO,
            current: None,
            buf: Vec::new(),
            stats: Arc::new(ServerStats::default()),
            receiving: None,
            backlog: Arc::new(Backlog { bytes: std::sync::Mutex::new(0), drained: std::sync::Condvar::new() }),
            fsyncs: 0,
            ops: 0,
            durable_zxid: 0,
        }
    }

    fn shared(w: SegmentWriter, thread_only: bool) -> Arc<Shared> {
        Arc::new(Shared { writer: std::sync::Mutex::new(w), in_flight: std::sync::atomic::AtomicU64::new(0), thread_only })
    }

    /// A log whose thread reports to a channel instead of the processor.
    fn started_log(w: SegmentWriter, thread_only: bool) -> (TxnLog, crossbeam_channel::Receiver<Synced>, std::thread::JoinHandle<()>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (synced_tx, synced_rx) = crossbeam_channel::unbounded();
        let me = crate::registry::Registry::default().register("txn-log", "0");
        let log = Logger::root(slog::Discard, slog::o!());
        let shared = shared(w, thread_only);
        let (s, m, l) = (shared.clone(), me.clone(), log.clone());
        let thread = std::thread::spawn(move || run(&s, rx, &|done| synced_tx.send(done).unwrap(), &m, &l).unwrap());
        let snapshot_backlog = Arc::new(Backlog { bytes: std::sync::Mutex::new(0), drained: std::sync::Condvar::new() });
        (TxnLog { tx, shared, snapshot_backlog, me, log }, synced_rx, thread)
    }

    #[test]
    fn a_write_on_the_callers_thread_waits_its_turn_behind_what_the_log_thread_holds() {
        let dir = std::env::temp_dir().join(format!("warden-now-{}-{}", std::process::id(), line!()));
        let logs = version_dir(&dir);
        std::fs::create_dir_all(&logs).unwrap();
        let (txn_log, synced, thread) = started_log(test_writer(logs.clone(), 1 << 20), false);
        // Idle: written and durable here, no message from the thread.
        let first = txn_log.append_now(vec![entry(1)]).expect("the log thread is idle");
        assert_eq!((first.zxid, first.ops, first.fsyncs), (1, 1, 1));
        // The thread holds a command: a write here would pass it, so it is given back.
        txn_log.send(LogCommand::Fault(crate::registry::Fault::Stall(Duration::from_millis(200))));
        txn_log.append(vec![entry(2)]);
        let back = txn_log.append_now(vec![entry(3)]).expect_err("the thread has 2 unwritten");
        assert_eq!(back[0].hdr.zxid, 3);
        txn_log.append(back);
        let mut last = synced.recv_timeout(Duration::from_secs(5)).unwrap();
        while last.zxid < 3 {
            last = synced.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        assert_eq!(last.ops, 3, "one count of operations across both writers");
        // Idle again: the next write is this thread's, numbered after the thread's.
        let fourth = txn_log.append_now(vec![entry(4)]).expect("idle again");
        assert_eq!((fourth.zxid, fourth.ops), (4, 4));
        drop(txn_log);
        thread.join().unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut zxids = Vec::new();
        read_log_after(&dir, 0, false, &log, |seg| {
            zxids.extend(seg.entries.iter().map(|e| e.hdr.zxid));
            Ok(())
        })
        .unwrap();
        assert_eq!(zxids, vec![1, 2, 3, 4], "on disk in the order sent");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn writes_are_alone_only_once_none_came_with_others_for_the_quiet_time() {
        let mut lone = LoneWrites::default();
        let t0 = Instant::now();
        assert!(lone.alone_at(false, t0), "nothing crowded yet");
        assert!(!lone.alone_at(true, t0 + Duration::from_millis(1)));
        assert!(!lone.alone_at(false, t0 + Duration::from_millis(2)), "just after a crowd");
        assert!(!lone.alone_at(false, t0 + LoneWrites::QUIET), "still within the quiet time");
        assert!(lone.alone_at(false, t0 + LoneWrites::QUIET + Duration::from_millis(2)));
    }

    #[test]
    fn a_slow_disk_set_by_fsync_delay_stays_on_the_log_thread() {
        let dir = std::env::temp_dir().join(format!("warden-now-{}-{}", std::process::id(), line!()));
        let logs = version_dir(&dir);
        std::fs::create_dir_all(&logs).unwrap();
        let (txn_log, _synced, thread) = started_log(test_writer(logs, 1 << 20), true);
        assert!(txn_log.append_now(vec![entry(1)]).is_err());
        drop(txn_log);
        thread.join().unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_received_snapshot_is_installed_only_when_it_arrived_whole() {
        let dir = std::env::temp_dir().join(format!("warden-recv-{}-{}", std::process::id(), line!()));
        let v = version_dir(&dir);
        std::fs::create_dir_all(&v).unwrap();
        let log = Logger::root(slog::Discard, slog::o!());
        let mut w = test_writer(v.clone(), 1 << 20);
        std::fs::write(v.join(txnlog::log_name(1)), txnlog::MAGIC).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let crc = crc32c::crc32c(&data);
        // Damaged in transit: refused, nothing changed.
        w.begin_snapshot(9, v.clone(), &log).unwrap();
        w.snapshot_chunk(&data[..5000]).unwrap();
        let refused = w.install_snapshot(9, data.len() as u64, crc, &log).unwrap().unwrap_err();
        assert!(refused.contains("arrived damaged"), "{refused}");
        assert!(!v.join("snapshot.9.received.tmp").exists() && !v.join("snapshot.9").exists());
        assert_eq!(list_warden(&v, LOG_PREFIX).len(), 1, "the log is kept");
        // A stream cut off by a lost link is discarded by the next one.
        w.begin_snapshot(9, v.clone(), &log).unwrap();
        w.snapshot_chunk(&data[..100]).unwrap();
        w.begin_snapshot(9, v.clone(), &log).unwrap();
        for piece in data.chunks(3000) {
            w.snapshot_chunk(piece).unwrap();
        }
        let path = w.install_snapshot(9, data.len() as u64, crc, &log).unwrap().unwrap();
        assert_eq!(path, v.join("snapshot.9"));
        assert_eq!(std::fs::read(&path).unwrap(), data);
        assert!(list_warden(&v, LOG_PREFIX).is_empty(), "the log starts over");
        assert!(!v.join("snapshot.9.received.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn entry(zxid: i64) -> Arc<LogEntry> {
        let txn = Txn::Create { path: format!("/n{zxid}"), data: Some(vec![7; 200]), acl: vec![], ephemeral_owner: 0, parent_cversion: zxid as i32 };
        Arc::new(LogEntry { hdr: TxnHeader { session_id: 1, cxid: 0, zxid, time_ms: 0 }, txn })
    }

    /// A ZooKeeper data dir: snapshot.3 (after 3 txns) and log.1 holding 1..=6.
    fn zookeeper_dir(dir: &Path) -> Vec<LogEntry> {
        use warden_core::proto::Acl;
        let v = version_dir(dir);
        std::fs::create_dir_all(&v).unwrap();
        let mk = |zxid: i64, txn: Txn| LogEntry { hdr: TxnHeader { session_id: 0x42, cxid: 0, zxid, time_ms: 100 + zxid }, txn };
        let create = |p: &str, owner: i64, pcv: i32| Txn::Create {
            path: p.into(),
            data: Some(p.as_bytes().to_vec()),
            acl: vec![Acl::world_all()],
            ephemeral_owner: owner,
            parent_cversion: pcv,
        };
        let entries = vec![
            mk(1, Txn::CreateSession { timeout_ms: 30_000 }),
            mk(2, create("/a", 0, 1)),
            mk(3, create("/a/e", 0x42, 1)),
            mk(4, Txn::SetData { path: "/a".into(), data: Some(b"x".to_vec()), version: 1 }),
            mk(5, create("/b", 0, 2)),
            mk(6, Txn::Delete { path: "/b".into() }),
        ];
        let mut db = Database::default();
        for e in &entries[..3] {
            db.apply(&e.hdr, &e.txn, &mut Vec::new());
        }
        std::fs::write(v.join("snapshot.3"), zkfiles::snap::write(&db)).unwrap();
        std::fs::write(v.join("log.1"), zkfiles::log::encode_file(&entries, true, 4096)).unwrap();
        entries
    }

    #[test]
    fn zookeeper_files_are_read_in_place_and_never_changed() {
        let dir = std::env::temp_dir().join(format!("warden-zkdir-{}-{}", std::process::id(), line!()));
        let _ = std::fs::remove_dir_all(&dir);
        let entries = zookeeper_dir(&dir);
        let v = version_dir(&dir);
        let before: Vec<Vec<u8>> = ["snapshot.3", "log.1"].iter().map(|n| std::fs::read(v.join(n)).unwrap()).collect();
        let log = Logger::root(slog::Discard, slog::o!());
        let r = recover(&dir, &dir, &log).unwrap();
        let mut expected = Database::default();
        for e in &entries {
            expected.apply(&e.hdr, &e.txn, &mut Vec::new());
        }
        assert_eq!(r.db.last_zxid(), 6);
        assert_eq!(r.replayed, 3, "only the transactions after the snapshot");
        for p in ["/", "/a", "/a/e"] {
            assert_eq!(r.db.tree.get(p).unwrap().stat(), expected.tree.get(p).unwrap().stat(), "{p}");
        }
        assert!(r.db.tree.get("/b").is_none());
        assert!(r.db.is_zookeeper_session(0x42));
        // Warden's files are told apart by magic; ZooKeeper's are never overwritten.
        assert!(list_warden(&v, SNAPSHOT_PREFIX).is_empty() && list_warden(&v, LOG_PREFIX).is_empty());
        std::fs::write(v.join("snapshot.2"), b"not a snapshot").unwrap();
        assert_eq!(list_warden(&v, SNAPSHOT_PREFIX).len(), 1, "garbage is Warden's to report");
        std::fs::remove_file(v.join("snapshot.2")).unwrap();
        assert!(check_not_foreign(&v.join("snapshot.3")).is_err());
        assert!(check_not_foreign(&v.join("snapshot.7")).is_ok());
        // Warden's own log continues after ZooKeeper's.
        let (tx, rx) = crossbeam_channel::unbounded();
        let me = crate::registry::Registry::default().register("txn-log", "0");
        let w = shared(test_writer(v.clone(), 1 << 20), false);
        // ZooKeeper created log.7 and was killed before its first record: Warden's segment takes log.6.
        let zk_stub = zkfiles::log::encode_file(&[], true, 512);
        std::fs::write(v.join("log.7"), &zk_stub).unwrap();
        tx.send(LogCommand::Append(vec![entry(7)])).unwrap();
        drop(tx);
        w.in_flight.store(1, std::sync::atomic::Ordering::SeqCst);
        run(&w, rx, &|_| {}, &me, &log).unwrap();
        assert_eq!(std::fs::read(v.join("log.7")).unwrap(), zk_stub);
        assert_eq!(list_warden(&v, LOG_PREFIX).iter().map(|s| s.0).collect::<Vec<_>>(), vec![6]);
        let r = recover(&dir, &dir, &log).unwrap();
        assert_eq!((r.db.last_zxid(), r.replayed), (7, 4));
        assert!(r.db.tree.get("/n7").is_some());
        let ensemble = recover_log(&dir, &dir, &log).unwrap();
        assert_eq!((ensemble.snapshot_zxid, ensemble.entries.iter().map(|e| e.hdr.zxid).collect::<Vec<_>>()), (3, vec![4, 5, 6, 7]));
        std::fs::remove_file(v.join("log.7")).unwrap();
        let after: Vec<Vec<u8>> = ["snapshot.3", "log.1"].iter().map(|n| std::fs::read(v.join(n)).unwrap()).collect();
        assert!(before == after, "ZooKeeper's files changed");
        // A torn last record (cut, then zeros) ends ZooKeeper's log, which stays as it is.
        let scan = zkfiles::log::scan(&before[1]).unwrap();
        let last = scan.records.last().unwrap().offset;
        let mut torn = before[1][..last + 20].to_vec();
        torn.resize(before[1].len(), 0);
        std::fs::write(v.join("log.1"), &torn).unwrap();
        for (_, p) in list_warden(&v, LOG_PREFIX) {
            std::fs::remove_file(p).unwrap();
        }
        let r = recover(&dir, &dir, &log).unwrap();
        assert_eq!(r.db.last_zxid(), 5, "the torn txn 6 is not applied");
        assert_eq!(std::fs::read(v.join("log.1")).unwrap(), torn, "ZooKeeper's torn log is not cut");
        // Damage in ZooKeeper's log stops the start with the file and offset.
        let mut bad = before[1].clone();
        bad[zkfiles::HEADER_BYTES + 60] ^= 0x20;
        std::fs::write(v.join("log.1"), &bad).unwrap();
        let err = recover(&dir, &dir, &log).err().unwrap();
        assert!(err.contains("log.1") && err.contains("at byte"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn segments_roll_by_size_and_recovery_reads_them_all() {
        let dir = std::env::temp_dir().join(format!("warden-seg-{}-{}", std::process::id(), line!()));
        let logs = version_dir(&dir);
        std::fs::create_dir_all(&logs).unwrap();
        let (tx, rx) = crossbeam_channel::unbounded();
        let me = crate::registry::Registry::default().register("txn-log", "0");
        let log = Logger::root(slog::Discard, slog::o!());
        let w = shared(test_writer(logs.clone(), 8 << 10), false);
        for z in 1..=200 {
            tx.send(LogCommand::Append(vec![entry(z)])).unwrap();
        }
        drop(tx);
        w.in_flight.store(200, std::sync::atomic::Ordering::SeqCst);
        run(&w, rx, &|_| {}, &me, &log).unwrap();
        let segments = list(&logs, LOG_PREFIX);
        assert!(segments.len() > 3, "{} segments", segments.len());
        let recovered = recover(&dir, &dir, &log).unwrap();
        assert_eq!(recovered.db.last_zxid(), 200);
        assert_eq!(recovered.replayed, 200);
        assert!(recovered.db.tree.get("/n137").is_some());
        let _ = std::fs::remove_dir_all(dir);
    }
}
