//! Warden's configuration, in ZooKeeper's language.
//!
//! Sources, later overriding earlier: the embedded default, then a Warden TOML
//! file or an unchanged ZooKeeper zoo.cfg, then `--set key=value` flags. Keys are
//! ZooKeeper's names in both syntaxes. Everything here is pure except [`load`].
//!
//! Deliberate differences from ZooKeeper 3.8 (also documented in
//! config/standalone.toml): clientPortAddress and admin.serverAddress default to
//! 127.0.0.1, not all interfaces; dataDir defaults to `./data`;
//! zookeeper.extendedTypesEnabled defaults to true (TTL nodes on); a bad boolean
//! is an error, not false; unknown keys warn instead of silently becoming Java
//! system properties.

pub mod dynamic;
mod keys;
mod parse;
mod ssl;
#[cfg(test)]
mod tests;

pub use keys::{build, parse_server};
pub use parse::{detect_format, parse, parse_set_flag};
pub use ssl::{ClientAuth, TlsSettings};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

type R<T> = Result<T, ConfigError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    ZooCfg,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Io { path: PathBuf, message: String },
    Syntax { message: String },
    Invalid { key: String, value: String, reason: String },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, message } => write!(f, "config: {}: {message}", path.display()),
            Self::Syntax { message } => write!(f, "config: {message}"),
            Self::Invalid { key, value, reason } => write!(f, "config: {key}: {value:?} {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(key: &str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    let (key, value, reason) = (key.to_string(), value.to_string(), reason.into());
    ConfigError::Invalid { key, value, reason }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FourLetterWhitelist {
    All,
    Set(BTreeSet<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    Participant,
    Observer,
}

/// `warden.quorumThread`: where an ensemble member runs Zab (election,
/// broadcast, peer links).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumThread {
    /// A thread of its own (the default): heartbeats and ACKs never wait
    /// behind client requests.
    Own,
    /// The processor's thread: a write crosses no thread between the
    /// processor and Zab. On a small VM, where each crossing is a sleep and
    /// a wake-up of an idle vCPU, that costs less CPU per write.
    Processor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// One `server.N=host:quorumPort:electionPort[:role][;[clientAddr:]clientPort]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: u64,
    /// Without IPv6 brackets.
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub role: PeerRole,
    /// A bare `;clientPort` takes clientPortAddress (ZooKeeper would use 0.0.0.0).
    pub client_address: Option<(String, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub client_port: u16,
    pub client_port_address: String,
    pub secure_client_port: Option<u16>,
    /// Host of the TLS port; clientPortAddress when unset.
    pub secure_client_port_address: Option<String>,
    /// False when only secureClientPort was given: then no plaintext port, as ZooKeeper.
    pub serve_client_port: bool,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub tick_time_ms: u32,
    pub init_limit: u32,
    pub sync_limit: u32,
    /// Per client IP; 0 = unlimited.
    pub max_client_cnxns: u32,
    /// Resolved: `-1`/unset became 2 × tickTime.
    pub min_session_timeout_ms: u32,
    /// Resolved: `-1`/unset became 20 × tickTime.
    pub max_session_timeout_ms: u32,
    pub global_outstanding_limit: u32,
    /// zookeeper.commitLogCount: committed proposals the leader keeps in
    /// memory so a lagging learner gets a DIFF instead of a SNAP.
    pub commit_log_count: u32,
    pub snap_count: u64,
    pub pre_alloc_size_kb: u64,
    pub force_sync: bool,
    pub autopurge_snap_retain_count: u32,
    /// 0 = autopurge off.
    pub autopurge_purge_interval_hours: u32,
    pub four_letter_words: FourLetterWhitelist,
    pub admin_enable_server: bool,
    pub admin_server_address: String,
    pub admin_server_port: u16,
    /// Bearer token the admin endpoint requires (`warden.adminToken`); needed
    /// when it listens beyond loopback.
    pub admin_token: Option<String>,
    /// Allow `POST /actors/<kind>/fault` (`warden.adminFaultInjection`), for tests.
    pub admin_fault_injection: bool,
    /// Ensemble: every read first waits for a read index (the leader's commit
    /// index, confirmed by a heartbeat round), so reads are linearizable, not
    /// just sequential.
    pub linearizable_reads: bool,
    /// Test knob: the zxid counter value at which the leader bumps the epoch
    /// (normally just below 2^32), to exercise counter exhaustion quickly.
    pub zxid_counter_limit: u32,
    /// Fault injection: sleep this long before every log fsync (a slow disk).
    pub fsync_delay_ms: u32,
    /// `warden.ioThreads`: event-loop threads for client connections; 0
    /// means one per core.
    pub io_threads: u32,
    /// `warden.quorumThread`: own (default) or processor.
    pub quorum_thread: QuorumThread,
    /// Sorted by id.
    pub servers: Vec<ServerSpec>,
    pub peer_type: PeerRole,
    /// From `dataDir/myid`, filled in by the caller (see [`parse_myid`]).
    pub my_id: Option<u64>,
    pub standalone_enabled: bool,
    pub reconfig_enabled: bool,
    pub local_sessions_enabled: bool,
    pub local_sessions_upgrading_enabled: bool,
    /// Every `ssl.*` key verbatim (minus any `zookeeper.` prefix), for the TLS code.
    pub ssl: BTreeMap<String, String>,
    pub ssl_quorum: bool,
    /// quorum.auth.*: DIGEST-MD5 between members, credentials from the JAAS
    /// sections named by the login contexts.
    pub quorum_sasl_enabled: bool,
    pub quorum_learner_require_sasl: bool,
    pub quorum_server_require_sasl: bool,
    pub quorum_learner_login_context: String,
    pub quorum_server_login_context: String,
    pub jaas_config: Option<PathBuf>,
    pub jute_max_buffer_bytes: usize,
    /// `user:base64(sha1(user:password))`.
    pub super_digest: Option<String>,
    /// zookeeper.superUser: the SASL user that is also the super user.
    pub sasl_super_user: Option<String>,
    /// zookeeper.X509AuthenticationProvider.superUser: the certificate
    /// subject (as the x509 identity reads it) that is also the super user.
    pub x509_super_user: Option<String>,
    pub extended_types_enabled: bool,
    /// zookeeper.enforceQuota: quota hard limits refuse creates and sets.
    pub enforce_quota: bool,
    pub read_only_mode_enabled: bool,
    pub container_check_interval_ms: u64,
    pub container_max_per_minute: u32,
    pub skip_acl: bool,
    /// zookeeper.audit.enable (zoo.cfg audit.enable): log every state change.
    pub audit_enable: bool,
    /// zookeeper.auditlog.file: the audit log's own file (ZooKeeper's RFAAUDIT
    /// appender, 10 MB × 10 files); unset: audit lines go to the server log.
    pub audit_log_file: Option<PathBuf>,
    /// zookeeper.admin.snapshot.enabled / restore.enabled (3.9's backup and
    /// restore commands) and the one-per-interval limit they share.
    pub admin_snapshot_enabled: bool,
    pub admin_restore_enabled: bool,
    pub admin_rate_limiter_interval_ms: u64,
    /// dynamicConfigFile: where the member list (`server.N`) lives; its name
    /// ends in the config's hex version.
    pub dynamic_config_file: Option<PathBuf>,
    /// The static config file `load` read (not a key): rewritten to point at
    /// the new dynamic file when a reconfig commits, as ZooKeeper does.
    pub static_config_file: Option<PathBuf>,
    /// zookeeper.connection_throttle_*, request_throttle_*, throttled_op_wait_time.
    pub throttle: crate::throttle::ThrottleSettings,
    /// error, warn, info, debug, trace or off.
    pub log_level: String,
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            client_port: 2181,
            client_port_address: "127.0.0.1".into(),
            secure_client_port: None,
            secure_client_port_address: None,
            serve_client_port: true,
            data_dir: "./data".into(),
            data_log_dir: "./data".into(),
            tick_time_ms: 2000,
            init_limit: 10,
            sync_limit: 5,
            max_client_cnxns: 60,
            min_session_timeout_ms: 4000,
            max_session_timeout_ms: 40000,
            global_outstanding_limit: 1000,
            commit_log_count: 500,
            snap_count: 100_000,
            pre_alloc_size_kb: 65_536,
            force_sync: true,
            autopurge_snap_retain_count: 3,
            autopurge_purge_interval_hours: 0,
            four_letter_words: FourLetterWhitelist::Set(["srvr".to_string()].into()),
            admin_enable_server: true,
            admin_server_address: "127.0.0.1".into(),
            admin_server_port: 8080,
            admin_token: None,
            admin_fault_injection: false,
            linearizable_reads: false,
            zxid_counter_limit: u32::MAX - 1,
            fsync_delay_ms: 0,
            io_threads: 0,
            quorum_thread: QuorumThread::Own,
            servers: Vec::new(),
            peer_type: PeerRole::Participant,
            my_id: None,
            standalone_enabled: true,
            reconfig_enabled: false,
            local_sessions_enabled: false,
            local_sessions_upgrading_enabled: false,
            ssl: BTreeMap::new(),
            ssl_quorum: false,
            jaas_config: None,
            jute_max_buffer_bytes: 0xfffff,
            quorum_sasl_enabled: false,
            quorum_learner_require_sasl: false,
            quorum_server_require_sasl: false,
            quorum_learner_login_context: "QuorumLearner".into(),
            quorum_server_login_context: "QuorumServer".into(),
            super_digest: None,
            sasl_super_user: None,
            x509_super_user: None,
            extended_types_enabled: true,
            enforce_quota: false,
            read_only_mode_enabled: false,
            container_check_interval_ms: 60_000,
            container_max_per_minute: 10_000,
            skip_acl: false,
            audit_enable: false,
            audit_log_file: None,
            admin_snapshot_enabled: true,
            admin_restore_enabled: true,
            admin_rate_limiter_interval_ms: 300_000,
            dynamic_config_file: None,
            static_config_file: None,
            throttle: Default::default(),
            log_level: "info".into(),
            log_format: LogFormat::Human,
        }
    }
}

fn read_text(path: &Path) -> R<String> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::Io { path: path.into(), message: e.to_string() })
}

/// The one I/O function: reads and parses `path` (if any), then the
/// `dynamicConfigFile` it names (its `server.N` lines), then applies `sets`.
pub fn load(path: Option<&Path>, sets: &[(String, String)]) -> R<(Config, Vec<String>)> {
    let mut pairs = Vec::new();
    if let Some(path) = path {
        let text = read_text(path)?;
        pairs = parse(&text, detect_format(path, &text)).map_err(|e| match e {
            ConfigError::Syntax { message } => ConfigError::Syntax { message: format!("{}: {message}", path.display()) },
            other => other,
        })?;
    }
    pairs.extend_from_slice(sets);
    let dynamic_file = pairs.iter().rev().find(|(k, _)| k.trim() == "dynamicConfigFile").map(|(_, v)| v.trim().to_string());
    if let Some(file) = dynamic_file.filter(|f| !f.is_empty()) {
        if let Some((key, _)) = pairs.iter().find(|(k, _)| dynamic::is_dynamic_key(k.trim())) {
            return Err(invalid(key, "", "must be in a separate dynamic config file (dynamicConfigFile is set)"));
        }
        let text = read_text(Path::new(&file))?;
        pairs.extend(dynamic::dynamic_pairs(&file, &text)?);
    }
    let (mut config, warnings) = build(&pairs)?;
    config.static_config_file = path.map(Path::to_path_buf);
    Ok((config, warnings))
}

/// Contents of `dataDir/myid`: a server id, surrounding whitespace ignored.
pub fn parse_myid(text: &str) -> R<u64> {
    let t = text.trim();
    t.parse().map_err(|_| invalid("myid", t, "is not a server id (a non-negative integer)"))
}

impl Config {
    pub fn four_letter_allowed(&self, cmd: &str) -> bool {
        match &self.four_letter_words {
            FourLetterWhitelist::All => true,
            FourLetterWhitelist::Set(set) => set.contains(cmd),
        }
    }

    /// The version of the member list at start: the dynamic file's, else 0
    /// (server.N lines in the static file).
    pub fn dynamic_config_version(&self) -> i64 {
        self.dynamic_config_file.as_ref().and_then(|p| dynamic::version_from_filename(&p.to_string_lossy())).unwrap_or(0)
    }

    /// ZooKeeper's rule: a quorum needs server.N lines and either more than one
    /// voting member or standaloneEnabled=false.
    pub fn is_standalone(&self) -> bool {
        let voters = self.servers.iter().filter(|s| s.role == PeerRole::Participant);
        self.servers.is_empty() || (self.standalone_enabled && voters.count() <= 1)
    }

    /// Where to accept clients: this server's `;client` part of its server.N
    /// line if any, else clientPortAddress:clientPort.
    pub fn client_listen_address(&self) -> (String, u16) {
        let own = self.my_id.and_then(|id| self.servers.iter().find(|s| s.id == id));
        let own = own.and_then(|s| s.client_address.clone());
        own.unwrap_or_else(|| (self.client_port_address.clone(), self.client_port))
    }

    /// Where the TLS port listens, if secureClientPort is set.
    pub fn secure_listen_address(&self) -> Option<(String, u16)> {
        let host = self.secure_client_port_address.clone().unwrap_or_else(|| self.client_port_address.clone());
        self.secure_client_port.map(|port| (host, port))
    }

    /// Checks `my_id` once the caller has filled it in from `dataDir/myid`.
    pub fn validate_my_id(&self) -> R<()> {
        let id = match self.my_id {
            None if self.is_standalone() => return Ok(()),
            None => return Err(invalid("myid", "", "is required in a quorum")),
            Some(id) => id,
        };
        // Extended (TTL) session ids keep the server id in the top byte; 0xff is reserved.
        if self.extended_types_enabled && id > 254 {
            let reason = "must be at most 254 when zookeeper.extendedTypesEnabled is true";
            return Err(invalid("myid", id, reason));
        }
        if !self.is_standalone() && !self.servers.iter().any(|s| s.id == id) {
            return Err(invalid("myid", id, "has no server.N line"));
        }
        Ok(())
    }

    /// ZooKeeper-named `key=value` pairs, for the `conf` command. `build` of
    /// these gives back the same Config, except that secrets (superDigest,
    /// ssl.*password*) are left out and `my_id` is not a config key.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        keys::to_pairs(self)
    }
}
