//! Starting and stopping a node: config, logging, data dir, the listener and
//! the actors, and signal handling.

use crate::auditor::Auditor;
use crate::clock::wall_clock_ms;
use crate::delivery::DeliveryGate;
use crate::deps::Deps;
use crate::dispatcher::Dispatcher;
use crate::listener::Ports;
use crate::mailbox::Mailbox;
use crate::messages::Audit;
use crate::messages::ExpireTo;
use crate::messages::Purge;
use crate::messages::Tracking;
use crate::processor::Processor;
use crate::registry::Registry;
use crate::snapshotter::Snapshotter;
use crate::stats::ServerStats;
use crate::storage::{self, TxnLog};
use crate::tracker::Tracker;
use actix::prelude::*;
use slog::{info, o, warn, Drain, Logger};
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use warden_core::audit::{self, AuditEvent, Outcome};
use warden_core::config::{Config, LogFormat};
use warden_core::membership::Membership;
use warden_core::server::{Core, Settings};

/// Passes records at or above a level that can change while the node runs.
struct RuntimeLevel<D> {
    drain: D,
    level: Arc<AtomicUsize>,
}

impl<D: Drain> Drain for RuntimeLevel<D> {
    type Ok = ();
    type Err = D::Err;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), D::Err> {
        if record.level().as_usize() <= self.level.load(Relaxed) {
            self.drain.log(record, values)?;
        }
        Ok(())
    }
}

/// The root logger and the handle that changes its level (admin `/log/level`).
pub fn logger(config: &Config) -> (Logger, Arc<AtomicUsize>) {
    let level = Arc::new(AtomicUsize::new(slog::Level::from_str(&config.log_level).unwrap_or(slog::Level::Info).as_usize()));
    let drain = match config.log_format {
        LogFormat::Human => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            slog_async::Async::new(slog_term::FullFormat::new(decorator).build().fuse()).chan_size(4096).build().fuse()
        }
        LogFormat::Json => {
            let json = slog_json::Json::new(std::io::stderr()).add_default_keys().build().fuse();
            slog_async::Async::new(json).chan_size(4096).build().fuse()
        }
    };
    (Logger::root(RuntimeLevel { drain, level: level.clone() }.fuse(), o!()), level)
}

/// Creates the data dir if needed and proves it is writable.
fn check_data_dir(dir: &Path) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("dataDir {} is not usable: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".warden-write-probe");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)
}

/// The key for session passwords, kept in the data dir so passwords stay
/// valid for as long as the sessions do.
fn session_secret(dir: &Path) -> Result<Vec<u8>, String> {
    let path = dir.join("session-secret");
    if let Ok(bytes) = std::fs::read(&path) {
        if bytes.len() == 32 {
            return Ok(bytes);
        }
    }
    let mut secret = vec![0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no random source for the session secret: {e}"))?;
    let mut f = std::fs::File::create(&path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    f.write_all(&secret).and_then(|_| f.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(secret)
}

fn core_settings(config: &Config) -> Settings {
    Settings {
        min_session_timeout_ms: config.min_session_timeout_ms,
        max_session_timeout_ms: config.max_session_timeout_ms,
        super_digest: config.super_digest.clone(),
        extended_types_enabled: config.extended_types_enabled,
        reconfig_enabled: config.reconfig_enabled,
        standalone_enabled: config.standalone_enabled,
        server_id: config.my_id.unwrap_or(0) as u8,
        quorum_sync: !config.is_standalone(),
        local_sessions: !config.is_standalone() && config.local_sessions_enabled,
        audit: config.audit_enable,
        enforce_quota: config.enforce_quota,
    }
}

/// In a quorum the server id comes from `dataDir/myid`, as in ZooKeeper; the
/// Warden key `warden.myid` may give it instead (the file is then written),
/// and a disagreement between the two stops the start.
pub fn resolve_myid(config: &mut Config) -> Result<(), String> {
    if config.is_standalone() {
        return Ok(());
    }
    let path = config.data_dir.join("myid");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = warden_core::config::parse_myid(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(set) = config.my_id.filter(|set| *set != id) {
                return Err(format!("warden.myid={set} but {} says {id}", path.display()));
            }
            config.my_id = Some(id);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(id) = config.my_id {
                std::fs::create_dir_all(&config.data_dir).map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
                std::fs::write(&path, format!("{id}\n")).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            }
        }
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    config.validate_my_id().map_err(|e| e.to_string())
}

/// Session passwords must verify on every member, including members a
/// reconfig adds later, so an ensemble keys them with a constant (as
/// ZooKeeper does with its superSecret). Standalone servers keep a random
/// per-dataDir key.
fn ensemble_secret() -> Vec<u8> {
    use sha1::{Digest, Sha1};
    Sha1::digest(b"warden-ensemble-session-key").to_vec()
}

/// The committed membership a member starts with: the newest of the config
/// file written when a reconfig committed here (`zoo.cfg.dynamic.<version>`)
/// and the config in its snapshot; else the static `server.N` lines
/// (version 0). A reconfig logged after it is only proposed: Zab finds it in
/// the log and holds elections to both configs until it commits.
fn starting_membership(config: &Config, db: &warden_core::database::Database) -> Result<Membership, String> {
    let stored = db.tree.get(warden_core::tree::CONFIG).and_then(|n| n.data.as_deref()).and_then(|d| Membership::parse(&String::from_utf8_lossy(d)).ok());
    let committed = crate::broadcast::setup::read_dynamic_config(&config.data_dir)?
        .into_iter()
        .chain(stored)
        .filter(|m| m.version > 0 && !m.voters().is_empty())
        .max_by_key(|m| m.version);
    Ok(committed.unwrap_or_else(|| Membership::new(config.servers.iter().cloned(), config.dynamic_config_version())))
}

/// Servers of the newest reconfig in the log, for peer links before it commits.
fn logged_servers(log: &[warden_core::txn::LogEntry]) -> Vec<warden_core::config::ServerSpec> {
    use warden_core::txn::Txn;
    let logged = log.iter().rev().find_map(|e| if let Txn::Reconfig { data } = &e.txn { Membership::parse(&String::from_utf8_lossy(data)).ok() } else { None });
    logged.map(|m| m.servers.into_values().collect()).unwrap_or_default()
}

/// Runs a node (standalone or an ensemble member) until SIGINT or SIGTERM.
pub fn run(config: Config, warnings: Vec<String>) -> Result<(), String> {
    let (log, level) = logger(&config);
    for w in &warnings {
        warn!(log, "config: {}", w);
    }
    check_data_dir(&config.data_dir)?;
    check_data_dir(&config.data_log_dir)?;
    let ensemble = !config.is_standalone();
    let secret = if ensemble { ensemble_secret() } else { session_secret(&config.data_dir)? };
    if !config.force_sync {
        warn!(log, "forceSync=no: writes are acknowledged before they reach the disk and can be lost on a crash; for tests only");
    }
    let ports = Ports::bind(&config, &log)?;
    let local = ports.addresses();
    let (db, zab_start) = if ensemble {
        let r = storage::recover_log(&config.data_dir, &config.data_log_dir, &log)?;
        info!(log, "recovered data for the ensemble"; "snapshot_zxid" => format!("{:#x}", r.snapshot_zxid), "logged_txns" => r.entries.len(),
            "last_logged_zxid" => format!("{:#x}", r.entries.last().map_or(r.snapshot_zxid, |e| e.hdr.zxid)), "nodes" => r.db.tree.node_count(), "ms" => r.elapsed.as_millis() as u64);
        let durable = warden_core::zab::Durable {
            accepted_epoch: crate::broadcast::setup::read_epoch(&config.data_dir, warden_core::zab::EpochKind::Accepted)?,
            current_epoch: crate::broadcast::setup::read_epoch(&config.data_dir, warden_core::zab::EpochKind::Current)?,
            snapshot_zxid: r.snapshot_zxid,
            log: r.entries,
        };
        let mut db = r.db;
        let membership = starting_membership(&config, &db)?;
        if let (Some(zoo_cfg), true, None) = (&config.static_config_file, config.reconfig_enabled, &config.dynamic_config_file) {
            crate::broadcast::setup::backup_static_config(zoo_cfg)?;
        }
        if membership.version > 0 {
            info!(log, "membership from the last reconfig"; "version" => format!("{:x}", membership.version), "voters" => format!("{:?}", membership.voters()), "observers" => format!("{:?}", membership.observers()));
        }
        // As ZooKeeper's initConfigInZKDatabase: /zookeeper/config shows the config in use.
        db.tree.init_config(membership.to_text().into_bytes(), membership.version, wall_clock_ms());
        let proposed = logged_servers(&durable.log);
        let quorum = crate::broadcast::setup::QuorumSetup::bind(&config, &membership, &proposed, durable)?;
        (db, Some(quorum))
    } else {
        let recovered = storage::recover(&config.data_dir, &config.data_log_dir, &log)?;
        info!(log, "recovered data"; "snapshot_zxid" => recovered.snapshot_zxid.map(|z| format!("{z:#x}")), "replayed_txns" => recovered.replayed,
            "last_zxid" => format!("{:#x}", recovered.db.last_zxid()), "nodes" => recovered.db.tree.node_count(), "sessions" => recovered.db.sessions().len(), "ms" => recovered.elapsed.as_millis() as u64);
        (recovered.db, None)
    };
    let config = Arc::new(config);
    let sys = actix_rt::System::new();
    let run_log = log.clone();
    sys.block_on(async move {
        let stats = Arc::new(ServerStats::default());
        let mut kinds = vec!["processor", "dispatcher", "session", "snapshotter", "tracker", "txn-log"];
        if ensemble {
            kinds.extend(["broadcast", "election", "peer-link"]);
        }
        let registry = Arc::new(Registry::with_kinds(&kinds));
        // Threads: this one runs the listeners and the tracker; the
        // processor and the dispatcher each get an event loop of their own,
        // Zab (election, broadcast, peer links) its own or the processor's
        // (warden.quorumThread), client connections are spread over
        // warden.ioThreads more, and the snapshotter and the txn log have
        // plain threads (they block on the disk).
        let processor_thread = named(Arbiter::new(), "processor");
        let dispatcher_thread = named(Arbiter::new(), "dispatcher");
        let own_quorum_thread = config.quorum_thread == warden_core::config::QuorumThread::Own;
        let quorum_thread = (zab_start.is_some() && own_quorum_thread).then(|| named(Arbiter::new(), "quorum"));
        let io_threads = match config.io_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        };
        let io: Vec<ArbiterHandle> = (0..io_threads).map(|i| named(Arbiter::new(), &format!("io-{i}")).handle()).collect();
        let tracker = {
            let (me, tick, tlog) = (registry.register("tracker", "0"), config.tick_time_ms, log.new(o!("actor" => "tracker")));
            let stats = me.clone();
            Mailbox::new(Supervisor::start(move |_| Tracker::new(tick, me, tlog)), stats)
        };
        let delivery = Arc::new(DeliveryGate::default());
        let dispatcher = {
            let (me, s, dlog, gate) = (registry.register("dispatcher", "0"), stats.clone(), log.new(o!("actor" => "dispatcher")), delivery.clone());
            let stats = me.clone();
            Mailbox::new(Supervisor::start_in_arbiter(&dispatcher_thread.handle(), move |_| Dispatcher::new(s, me, dlog, gate)), stats)
        };
        let core = Core::restore(core_settings(&config), secret, wall_clock_ms(), db);
        let io_reads = Arc::new(crate::lin_reads::ReadIndexBoard::new(crate::lin_reads::read_index_limit(&config)));
        let local_reads = Arc::new(crate::delivery::LocalReads::new(core.db.reader(), delivery.clone(), io_reads.clone()));
        // Restored sessions get a fresh expiry clock, as in ZooKeeper. In an
        // ensemble only the leader expires, once it serves.
        if ensemble {
            tracker.do_send(Tracking::Mode { expire: false, forward_to: None });
        }
        for (session_id, timeout_ms) in core.db.sessions() {
            tracker.do_send(Tracking::Track { session_id: *session_id, timeout_ms: *timeout_ms });
        }
        let (snap_dir, log_dir) = (storage::version_dir(&config.data_dir), storage::version_dir(&config.data_log_dir));
        let retain = config.autopurge_snap_retain_count as usize;
        let snap_log = log.new(o!("actor" => "snapshotter"));
        let snap_stats = registry.register("snapshotter", "0");
        let snapshotter = {
            let me = snap_stats.clone();
            Mailbox::new(SyncArbiter::start(1, move || Snapshotter::new(snap_dir.clone(), log_dir.clone(), retain, me.clone(), snap_log.clone())), snap_stats)
        };
        if config.autopurge_purge_interval_hours > 0 {
            let every = std::time::Duration::from_secs(config.autopurge_purge_interval_hours as u64 * 3600);
            let s = snapshotter.clone();
            actix_rt::spawn(async move {
                loop {
                    s.do_send(Purge);
                    tokio::time::sleep(every).await;
                }
            });
        }
        let auditor = config.audit_enable.then(|| {
            let (path, me, alog) = (config.audit_log_file.clone(), registry.register("auditor", "0"), log.new(o!("actor" => "auditor")));
            let stats = me.clone();
            Mailbox::new(SyncArbiter::start(1, move || Auditor::new(path.clone(), me.clone(), alog.clone())), stats)
        });
        if let Some(a) = &auditor {
            a.do_send(Audit(vec![AuditEvent::server(audit::OP_START, Outcome::Success)]));
        }
        let processor_stats = registry.register("processor", "0");
        // The txn log reports to the processor standalone, to the broadcast
        // actor (which owns the log) in an ensemble.
        let make_log = {
            let (dir, prealloc, force, delay) = (storage::version_dir(&config.data_log_dir), config.pre_alloc_size_kb * 1024, config.force_sync, std::time::Duration::from_millis(config.fsync_delay_ms as u64));
            let (me, stats, llog) = (registry.register("txn-log", "0"), stats.clone(), log.new(o!("actor" => "txn-log")));
            move |synced| TxnLog::start(dir, prealloc, force, delay, synced, me, stats, llog)
        };
        let (broadcast, make_log) = match zab_start {
            Some(q) => {
                let view = crate::messages::QuorumView::default();
                let thread = quorum_thread.as_ref().unwrap_or(&processor_thread).handle();
                info!(log, "Zab runs on"; "thread" => if quorum_thread.is_some() { "w-quorum" } else { "w-processor" });
                let b = q.start(&thread, make_log, registry.clone(), view.clone(), stats.clone(), &log);
                (Some((b, view)), None)
            }
            None => (None, Some(make_log)),
        };
        let processor = {
            let (config, stats, dispatcher, tracker, snapshotter) = (config.clone(), stats.clone(), dispatcher.clone(), tracker.clone(), snapshotter.clone());
            let plog = log.new(o!("actor" => "processor"));
            let (me, broadcast, auditor) = (processor_stats.clone(), broadcast.clone(), auditor.clone());
            let addr = Supervisor::start_in_arbiter(&processor_thread.handle(), move |ctx: &mut Context<Processor>| {
                let mine = Mailbox::new(ctx.address(), me.clone());
                let txn_log = make_log.map(|start| start(mine.inbox()));
                let counter_limit = config.zxid_counter_limit;
                let processor = Processor::new(core, dispatcher, delivery, tracker, txn_log, snapshotter, me, config, stats, plog).with_auditor(auditor.clone());
                match broadcast {
                    Some((b, view)) => processor.with_zab(crate::processor::ensemble::Ensemble::new(b, view, counter_limit)),
                    None => processor,
                }
            });
            Mailbox::new(addr, processor_stats)
        };
        if let Some((b, _)) = &broadcast {
            io_reads.connect(b.inbox());
            b.do_send(crate::messages::ToZab::Start { processor: processor.inbox(), reads: io_reads });
        }
        crate::supervise::injectable(&processor);
        crate::supervise::injectable(&dispatcher);
        crate::supervise::injectable(&tracker);
        crate::supervise::injectable(&snapshotter);
        if let Some(a) = &auditor {
            crate::supervise::injectable(a);
        }
        tracker.do_send(ExpireTo { expire: processor.inbox(), retrack: processor.inbox() });
        let deps = Arc::new(Deps { processor, dispatcher, tracker, registry, config: config.clone(), stats, log: log.clone(), local_reads });
        crate::admin::start(crate::admin::AdminState { deps: deps.clone(), level, log: log.new(o!("actor" => "admin")), rate_limits: Default::default() });
        let stopping = deps.clone();
        ports.start(deps, io);
        info!(log, "Warden serving ZooKeeper clients"; "address" => local, "dataDir" => config.data_dir.display().to_string(), "version" => env!("CARGO_PKG_VERSION"), "io_threads" => io_threads);
        if let Err(e) = crate::sd_notify::ready() {
            warn!(log, "could not tell systemd the node is ready (NOTIFY_SOCKET)"; "error" => e.to_string());
        }
        actix_rt::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            info!(log, "shutting down on signal");
            // A snapshot begun just before the stop is finished, not thrown away: the
            // next start loads it instead of replaying its transactions. A second signal
            // or SNAPSHOT_FINISH_WAIT cuts this short.
            let (done, finished) = tokio::sync::oneshot::channel();
            stopping.processor.do_send(crate::messages::FinishSnapshot { done });
            tokio::select! {
                _ = finished => {},
                _ = tokio::time::sleep(SNAPSHOT_FINISH_WAIT) => warn!(log, "stopping without the snapshot in progress"; "waited_s" => SNAPSHOT_FINISH_WAIT.as_secs()),
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            if let Some(a) = &auditor {
                // Waited for, so the line is written before the process ends.
                let _ = a.send(Audit(vec![AuditEvent::server(audit::OP_STOP, Outcome::Invoked)])).await;
            }
            System::current().stop();
        });
    });
    let code = sys.run_with_code().map_err(|e| e.to_string())?;
    info!(run_log, "stopped"; "exit_code" => code);
    // Let the async drain print the last lines.
    std::thread::sleep(std::time::Duration::from_millis(50));
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// How long a graceful stop waits for a snapshot being written to finish.
const SNAPSHOT_FINISH_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Names an event loop's thread as ps, top -H and perf show it (actix's
/// default is the same "actix-rt|system" for all of them).
fn named(arbiter: Arbiter, name: &str) -> Arbiter {
    let name = std::ffi::CString::new(format!("w-{name}")).expect("thread names have no NUL");
    arbiter.spawn_fn(move || {
        // Safety: a NUL-terminated name for the calling thread; the kernel keeps 15 bytes of it.
        unsafe { libc::pthread_setname_np(libc::pthread_self(), name.as_ptr()) };
    });
    arbiter
}
