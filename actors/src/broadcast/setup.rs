//! Ensemble startup: the quorum port is bound and the Zab peer built before
//! anything runs; the epoch files ZooKeeper keeps in `dataDir/version-2`.

use crate::broadcast::Broadcast;
use crate::mailbox::{Inbox, Mailbox};
use crate::messages::{Incoming, PeerEvent};
use crate::messages::{QuorumView, Synced};
use crate::peer_link::{self, PeerLink};
use crate::registry::Registry;
use crate::stats::ServerStats;
use crate::storage::TxnLog;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::config::ServerSpec;
use warden_core::membership::Membership;
use warden_core::zab::{EpochKind, Replica, ServerId};

/// Reads `acceptedEpoch` / `currentEpoch` (decimal text, as ZooKeeper); 0 if absent.
pub fn read_epoch(data_dir: &Path, kind: EpochKind) -> Result<u32, String> {
    let path = crate::storage::version_dir(data_dir).join(epoch_file(kind));
    match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().parse().map_err(|_| format!("{} does not hold an epoch number: {:?}", path.display(), t.trim())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

pub(crate) fn epoch_file(kind: EpochKind) -> &'static str {
    match kind {
        EpochKind::Accepted => "acceptedEpoch",
        EpochKind::Current => "currentEpoch",
    }
}

pub fn write_epoch(dir: &Path, kind: EpochKind, epoch: u32) -> std::io::Result<()> {
    let path = dir.join(epoch_file(kind));
    let tmp = dir.join(format!("{}.tmp", epoch_file(kind)));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(epoch.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    crate::storage::fsync_dir(dir)
}

/// Largest peer frame: a proposal or forwarded request holds at most one
/// client packet (jute.maxbuffer), a SNAP piece about `SNAP_PIECE_BYTES` plus
/// one node; room for both twice over. No frame grows with the tree.
pub fn max_peer_frame_bytes(jute_max_buffer_bytes: usize) -> usize {
    2 * jute_max_buffer_bytes + crate::processor::ensemble::SNAP_PIECE_BYTES + (1 << 20)
}

/// The ensemble part of startup: the quorum port is bound before anything
/// runs (a port in use stops the start), links start with the processor.
pub struct QuorumSetup {
    listener: std::net::TcpListener,
    replica: Replica,
    members: BTreeMap<ServerId, String>,
    data_dir: PathBuf,
    /// The zoo.cfg the node started from, kept as ZooKeeper keeps it on reconfig.
    zoo_cfg: Option<PathBuf>,
    tls: Option<crate::tls::QuorumTls>,
    sasl: Option<Arc<crate::peer_link::sasl::QuorumSasl>>,
    allow_joiners: bool,
    max_frame_bytes: usize,
}

impl QuorumSetup {
    /// `membership`: the static server lines, or the last committed
    /// reconfig's; `proposed`: servers of a reconfig logged after it.
    pub fn bind(
        config: &warden_core::config::Config,
        membership: &Membership,
        proposed: &[ServerSpec],
        durable: warden_core::zab::Durable,
    ) -> Result<QuorumSetup, String> {
        let my_id = config.my_id.ok_or("myid is required in a quorum")?;
        // A member a reconfig removed still listens where its own config says.
        let me = membership.servers.get(&my_id).or_else(|| config.servers.iter().find(|s| s.id == my_id)).ok_or_else(|| format!("no server.{my_id} line"))?;
        let listener = std::net::TcpListener::bind((me.host.as_str(), me.quorum_port))
            .map_err(|e| format!("cannot listen on quorum port {}:{}: {e}", me.host, me.quorum_port))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut cfg = warden_core::zab::Config::new(my_id, membership.voters(), membership.observers());
        cfg.allow_joiners = config.reconfig_enabled;
        cfg.config_version = membership.version;
        if membership.version > 0 {
            cfg.config_data = membership.to_text().into_bytes();
        }
        cfg.tick_ms = config.tick_time_ms as u64;
        cfg.init_limit_ticks = config.init_limit as u64;
        cfg.sync_limit_ticks = config.sync_limit as u64;
        // A quorum that agrees is rarely beaten by a late vote on one host's
        // loopback or a LAN; a short wait keeps fail-over fast.
        cfg.finalize_wait_ms = 50;
        cfg.notify_min_ms = 50;
        cfg.notify_max_ms = 2_000;
        // Clients are throttled before this (globalOutstandingLimit, mailbox
        // capacities); Busy from Zab would otherwise drop a forwarded write.
        cfg.max_outstanding = 1_000_000;
        cfg.diff_window = config.commit_log_count as usize;
        cfg.counter_limit = config.zxid_counter_limit;
        let mut members: BTreeMap<ServerId, String> = proposed.iter().map(|s| (s.id, quorum_addr(s))).collect();
        members.extend(membership.servers.values().map(|s| (s.id, quorum_addr(s))));
        members.remove(&my_id);
        let tls = match config.quorum_tls().map_err(|e| e.to_string())? {
            Some(settings) => Some(crate::tls::quorum_tls(&settings)?),
            None => None,
        };
        let sasl = crate::peer_link::sasl::QuorumSasl::from_config(config)?;
        Ok(QuorumSetup {
            listener,
            replica: Replica::new(cfg, durable),
            members,
            data_dir: config.data_dir.clone(),
            zoo_cfg: config.static_config_file.clone().filter(|_| config.reconfig_enabled),
            tls,
            sasl,
            allow_joiners: config.reconfig_enabled,
            max_frame_bytes: max_peer_frame_bytes(config.jute_max_buffer_bytes),
        })
    }

    /// Starts the broadcast actor on `thread` (the quorum thread or the
    /// processor's, `warden.quorumThread`), with the election actor, the
    /// peer links and the quorum listener. `txn_log` starts the log thread
    /// reporting to it. Nothing runs before `ToZab::Start`.
    pub fn start(
        self,
        thread: &ArbiterHandle,
        txn_log: impl FnOnce(Inbox<Synced>) -> TxnLog + Send + 'static,
        registry: Arc<Registry>,
        view: QuorumView,
        stats: Arc<ServerStats>,
        log: &slog::Logger,
    ) -> Mailbox<Broadcast> {
        let me = registry.register("broadcast", "0");
        let blog = log.new(slog::o!("actor" => "broadcast"));
        if let Some(tls) = &self.tls {
            slog::info!(log, "quorum links use TLS (sslQuorum)");
            for w in &tls.warnings {
                slog::warn!(log, "{}", w);
            }
        }
        if self.sasl.is_some() {
            slog::info!(log, "quorum links authenticate with SASL DIGEST-MD5 (quorum.auth.enableSasl)");
        }
        let election = {
            let ems = registry.register("election", "0");
            let (cfg, elog, ems2) = (self.replica.config().clone(), log.new(slog::o!("actor" => "election")), ems.clone());
            let mb = Mailbox::new(Supervisor::start_in_arbiter(thread, move |_| crate::election::ElectionActor::new(cfg, ems2, elog)), ems);
            crate::supervise::injectable(&mb);
            mb
        };
        let (link_log, me2, election2) = (log.clone(), me.clone(), election.clone());
        let thread2 = thread.clone();
        let addr = Supervisor::start_in_arbiter(thread, move |ctx: &mut Context<Broadcast>| {
            let mine = Mailbox::new(ctx.address(), me2.clone());
            let factory = LinkFactory {
                my_id: self.replica.id(),
                tls: self.tls.clone(),
                sasl: self.sasl.clone(),
                zab: mine.inbox(),
                election: election2.inbox(),
                registry,
                thread: thread2,
                allow_joiners: self.allow_joiners,
                max_frame_bytes: self.max_frame_bytes,
                log: link_log.clone(),
            };
            let listener = QuorumListener {
                listener: self.listener,
                tls: self.tls,
                sasl: self.sasl,
                max_frame_bytes: self.max_frame_bytes,
                log: link_log.new(slog::o!("actor" => "peer-listener")),
            };
            Broadcast::new(self.replica, election2, txn_log(mine.inbox()), factory, listener, self.members, self.data_dir, view, stats, me2, blog)
                .with_zoo_cfg(self.zoo_cfg)
        });
        let mb = Mailbox::new(addr, me);
        crate::supervise::injectable(&mb);
        election.do_send(crate::messages::ToElection::Start { broadcast: mb.inbox() });
        mb
    }
}

/// The bound quorum port; accepts on the thread that runs it.
pub struct QuorumListener {
    listener: std::net::TcpListener,
    tls: Option<crate::tls::QuorumTls>,
    sasl: Option<Arc<crate::peer_link::sasl::QuorumSasl>>,
    max_frame_bytes: usize,
    log: slog::Logger,
}

impl QuorumListener {
    pub fn run(self, incoming: Inbox<Incoming>) {
        let listener = tokio::net::TcpListener::from_std(self.listener).expect("quorum listener joins the runtime");
        peer_link::accept_loop(listener, incoming, self.tls, self.sasl, self.max_frame_bytes, self.log);
    }
}

/// Makes peer links: at start for the configured members, later for
/// servers a reconfig adds or that connect to join.
pub struct LinkFactory {
    my_id: ServerId,
    tls: Option<crate::tls::QuorumTls>,
    sasl: Option<Arc<crate::peer_link::sasl::QuorumSasl>>,
    zab: Inbox<PeerEvent>,
    election: Inbox<PeerEvent>,
    registry: Arc<Registry>,
    thread: ArbiterHandle,
    /// reconfigEnabled: servers outside the config may connect to join.
    pub allow_joiners: bool,
    max_frame_bytes: usize,
    log: slog::Logger,
}

impl LinkFactory {
    /// A link to `id` at `addr` (dialed when our id is the larger; empty
    /// for a joiner that dialed us).
    pub fn link(&self, id: ServerId, addr: String) -> Mailbox<PeerLink> {
        let me = self.registry.register("peer-link", id.to_string());
        let llog = self.log.new(slog::o!("actor" => "peer-link", "peer" => id));
        let link = PeerLink::new(
            self.my_id,
            id,
            addr,
            self.tls.clone(),
            self.sasl.clone(),
            self.max_frame_bytes,
            self.zab.clone(),
            self.election.clone(),
            me.clone(),
            llog,
        );
        let mb = Mailbox::new(Supervisor::start_in_arbiter(&self.thread, move |_| link), me);
        crate::supervise::injectable(&mb);
        mb
    }
}

/// The committed config is kept as ZooKeeper keeps it, a properties file
/// `zoo.cfg.dynamic.<hex version>` (here in dataDir), rewritten at each
/// reconfig this member applies; the newest one is read at start.
const DYNAMIC_PREFIX: &str = "zoo.cfg.dynamic.";

pub fn read_dynamic_config(data_dir: &Path) -> Result<Option<Membership>, String> {
    let Ok(entries) = std::fs::read_dir(data_dir) else { return Ok(None) };
    let newest = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = i64::from_str_radix(name.strip_prefix(DYNAMIC_PREFIX)?, 16).ok()?;
            Some((version, e.path()))
        })
        .max();
    let Some((_, path)) = newest else { return Ok(None) };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Membership::parse(&text).map(Some).map_err(|e| format!("{}: {e}", path.display()))
}

/// Writes the config durably (temp file, fsync, rename), then removes older ones.
pub fn write_dynamic_config(data_dir: &Path, m: &Membership) -> std::io::Result<()> {
    let name = format!("{DYNAMIC_PREFIX}{:x}", m.version);
    let tmp = data_dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(m.to_text().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(&name))?;
    crate::storage::fsync_dir(data_dir)?;
    for e in std::fs::read_dir(data_dir)?.flatten() {
        let other = e.file_name().to_string_lossy().into_owned();
        if other.starts_with(DYNAMIC_PREFIX) && other != name {
            let _ = std::fs::remove_file(e.path());
        }
    }
    Ok(())
}

/// ZooKeeper's files for a committed config, when the node was started from
/// a zoo.cfg: `<zoo.cfg>.dynamic.<hex version>` beside it (temp file, fsync,
/// rename), then the static file rewritten to point at it, so an operator's
/// files stay as ZooKeeper keeps them. A TOML config is left alone.
pub fn write_zookeeper_dynamic_config(zoo_cfg: &Path, my_id: u64, m: &Membership) -> Result<(), String> {
    use warden_core::config::{detect_format, dynamic, Format};
    let fail = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    let text = std::fs::read_to_string(zoo_cfg).map_err(|e| fail("cannot read", zoo_cfg, e))?;
    if detect_format(zoo_cfg, &text) != Format::ZooCfg {
        return Ok(());
    }
    let dynamic_path = PathBuf::from(format!("{}.dynamic.{:x}", zoo_cfg.display(), m.version));
    atomic_write(&dynamic_path, dynamic::dynamic_file_text(m).as_bytes()).map_err(|e| fail("cannot write", &dynamic_path, e))?;
    let canonical = dynamic_path.canonicalize().map_err(|e| fail("cannot resolve", &dynamic_path, e))?;
    // needEraseClientInfoFromStaticConfig: the member's own line now says where clients connect.
    let erase_client = m.servers.get(&my_id).is_some_and(|s| s.client_address.is_some());
    let rewritten = dynamic::rewrite_static(&text, &canonical.to_string_lossy(), erase_client);
    atomic_write(zoo_cfg, rewritten.as_bytes()).map_err(|e| fail("cannot rewrite", zoo_cfg, e))
}

/// QuorumPeerConfig.backupOldConfig: a reconfig-enabled ensemble whose
/// members are still in zoo.cfg keeps a copy, `zoo.cfg.bak`, before any
/// reconfig rewrites it.
pub fn backup_static_config(zoo_cfg: &Path) -> Result<(), String> {
    let bak = PathBuf::from(format!("{}.bak", zoo_cfg.display()));
    let bytes = std::fs::read(zoo_cfg).map_err(|e| format!("cannot read {}: {e}", zoo_cfg.display()))?;
    atomic_write(&bak, &bytes).map_err(|e| format!("cannot write {}: {e}", bak.display()))
}

fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => crate::storage::fsync_dir(dir),
        None => crate::storage::fsync_dir(Path::new(".")),
    }
}

/// Where a member's quorum port is.
pub fn quorum_addr(s: &ServerSpec) -> String {
    if s.host.contains(':') {
        format!("[{}]:{}", s.host, s.quorum_port)
    } else {
        format!("{}:{}", s.host, s.quorum_port)
    }
}
