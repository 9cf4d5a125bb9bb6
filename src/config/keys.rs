//! The key vocabulary: `(key, value)` pairs → [`Config`] and back.

use super::{invalid, Config, ConfigError, FourLetterWhitelist, LogFormat, PeerRole, QuorumThread, ServerSpec, R};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{Debug, Display};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Keys stored in exactly one field: `key => field: parser / printer`. Both
/// `build` and `to_pairs` come from this table, so they cannot drift apart.
/// Keys are ZooKeeper's, minus any "zookeeper." prefix.
macro_rules! plain_keys {
    ($($key:literal => $($field:ident).+: $parse:ident / $show:ident,)*) => {
        fn apply_plain(c: &mut Config, key: &str, s: &Setting) -> R<bool> {
            match key {
                $($key => c.$($field).+ = s.$parse()?,)*
                _ => return Ok(false),
            }
            Ok(true)
        }

        /// Printers return "" for "leave this key out".
        fn plain_pairs(c: &Config) -> Vec<(String, String)> {
            let all = [$(($key, $show(&c.$($field).+))),*];
            all.into_iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.into(), v)).collect()
        }
    };
}

plain_keys! {
    "clientPort" => client_port: port / show,
    "clientPortAddress" => client_port_address: text / show,
    "secureClientPort" => secure_client_port: some_port / show_some,
    "secureClientPortAddress" => secure_client_port_address: some_text / show_some,
    "dataDir" => data_dir: path / show_path,
    "dataLogDir" => data_log_dir: path / show_path,
    "tickTime" => tick_time_ms: positive / show,
    "initLimit" => init_limit: positive / show,
    "syncLimit" => sync_limit: positive / show,
    "maxClientCnxns" => max_client_cnxns: number / show,
    "globalOutstandingLimit" => global_outstanding_limit: positive / show,
    "commitLogCount" => commit_log_count: positive / show,
    "snapCount" => snap_count: positive / show,
    "preAllocSize" => pre_alloc_size_kb: positive / show,
    "forceSync" => force_sync: boolean / yes_no,
    "autopurge.purgeInterval" => autopurge_purge_interval_hours: number / show,
    "admin.enableServer" => admin_enable_server: boolean / show,
    "admin.serverAddress" => admin_server_address: text / show,
    "admin.serverPort" => admin_server_port: port / show,
    "warden.adminToken" => admin_token: some_text / secret,
    "warden.adminFaultInjection" => admin_fault_injection: boolean / show,
    "warden.linearizableReads" => linearizable_reads: boolean / show,
    "warden.zxidCounterLimit" => zxid_counter_limit: positive / show,
    "warden.fsyncDelayMs" => fsync_delay_ms: number / show,
    "warden.ioThreads" => io_threads: number / show,
    "warden.quorumThread" => quorum_thread: quorum_thread / lower,
    "peerType" => peer_type: role / lower,
    "standaloneEnabled" => standalone_enabled: boolean / show,
    "reconfigEnabled" => reconfig_enabled: boolean / show,
    "localSessionsEnabled" => local_sessions_enabled: boolean / show,
    "localSessionsUpgradingEnabled" => local_sessions_upgrading_enabled: boolean / show,
    "sslQuorum" => ssl_quorum: boolean / show,
    "quorum.auth.enableSasl" => quorum_sasl_enabled: boolean / show,
    "quorum.auth.learnerRequireSasl" => quorum_learner_require_sasl: boolean / show,
    "quorum.auth.serverRequireSasl" => quorum_server_require_sasl: boolean / show,
    "quorum.auth.learner.saslLoginContext" => quorum_learner_login_context: text / show,
    "quorum.auth.server.saslLoginContext" => quorum_server_login_context: text / show,
    "java.security.auth.login.config" => jaas_config: some_path / show_some_path,
    "jute.maxbuffer" => jute_max_buffer_bytes: byte_count / show,
    "DigestAuthenticationProvider.superDigest" => super_digest: some_digest / secret,
    "superUser" => sasl_super_user: some_text / show_some,
    "X509AuthenticationProvider.superUser" => x509_super_user: some_text / show_some,
    "extendedTypesEnabled" => extended_types_enabled: boolean / show,
    "enforceQuota" => enforce_quota: boolean / show,
    "readonlymode.enabled" => read_only_mode_enabled: boolean / show,
    "znode.container.checkIntervalMs" => container_check_interval_ms: positive / show,
    "znode.container.maxPerMinute" => container_max_per_minute: positive / show,
    "skipACL" => skip_acl: exactly_yes / yes_no,
    "audit.enable" => audit_enable: boolean / show,
    "connection_throttle_tokens" => throttle.connection_tokens: number / show,
    "connection_throttle_fill_time" => throttle.connection_fill_time_ms: positive / show,
    "connection_throttle_fill_count" => throttle.connection_fill_count: number / show,
    "connection_throttle_freeze_time" => throttle.connection_freeze_time_ms: number / show,
    "connection_throttle_drop_increase" => throttle.connection_drop_increase: real / show,
    "connection_throttle_drop_decrease" => throttle.connection_drop_decrease: real / show,
    "connection_throttle_decrease_ratio" => throttle.connection_decrease_ratio: real / show,
    "connection_throttle_weight_enabled" => throttle.connection_weight_enabled: boolean / show,
    "connection_throttle_global_session_weight" => throttle.global_session_weight: number / show,
    "connection_throttle_local_session_weight" => throttle.local_session_weight: number / show,
    "connection_throttle_renew_session_weight" => throttle.renew_session_weight: number / show,
    "request_throttle_max_requests" => throttle.request_max_requests: number / show,
    "request_throttle_stall_time" => throttle.request_stall_time_ms: number / show,
    "request_throttle_drop_stale" => throttle.request_drop_stale: boolean / show,
    "throttled_op_wait_time" => throttle.throttled_op_wait_time_ms: number / show,
    "auditlog.file" => audit_log_file: some_path / show_some_path,
    "dynamicConfigFile" => dynamic_config_file: some_path / show_some_path,
    "admin.snapshot.enabled" => admin_snapshot_enabled: boolean / show,
    "admin.restore.enabled" => admin_restore_enabled: boolean / show,
    "admin.rateLimiterIntervalInMS" => admin_rate_limiter_interval_ms: number / show,
    "warden.logLevel" => log_level: log_level / show,
    "warden.logFormat" => log_format: log_format / lower,
    "warden.myid" => my_id: some_number / show_some,
}

const FOUR_LETTER_WORDS: &str = "conf cons crst dirs dump envi gtmk hash isro mntr ruok srst srvr stat stmk wchc wchp wchs";

/// Prefixes of keys only a JVM understands: class names, metrics plugins, JMX, JVM flags.
const JVM_ONLY: &str = "serverCnxnFactory authProvider. metricsProvider. jmx clientCnxnSocket java. sun. -X";

/// Prefixes of real ZooKeeper settings Warden does not implement.
const UNSUPPORTED: &str = "clientPortListenBacklog maxCnxns \
    quorumListenOnAllIPs syncEnabled connectToLearnerMasterLimit quorum.auth.kerberos. \
    multiAddress. group. weight. admin.commandURL admin.idleTimeout \
    snapshot. leaderServes";

fn starts_with_any(key: &str, prefixes: &str) -> bool {
    prefixes.split_whitespace().any(|p| key.starts_with(p))
}

/// Reads `pairs` over the embedded default; later pairs win. Returns warnings
/// for ignored keys (never printed here).
pub fn build(pairs: &[(String, String)]) -> R<(Config, Vec<String>)> {
    let mut c = Config::default();
    let mut warnings = Vec::new();
    // Settings whose final value depends on other keys, resolved after the loop.
    let (mut min_session, mut max_session, mut data_log_dir_set) = (None, None, false);
    let mut whitelist = None;
    let mut servers = BTreeMap::new();
    let mut client_port_set = false;
    for (key, value) in pairs {
        let s = Setting { key: key.trim(), value: value.trim() };
        let warn = |why: &str| format!("config: {}: {why}", s.key);
        // ZooKeeper turns unknown zoo.cfg keys into "zookeeper.<key>" system
        // properties, so `skipACL` and `zookeeper.skipACL` are one setting.
        let key = s.key.strip_prefix("zookeeper.").unwrap_or(s.key);
        if apply_plain(&mut c, key, &s)? {
            data_log_dir_set |= key == "dataLogDir";
            client_port_set |= key == "clientPort";
            continue;
        }
        match key {
            "minSessionTimeout" => min_session = s.timeout()?,
            "maxSessionTimeout" => max_session = s.timeout()?,
            "4lw.commands.whitelist" => whitelist = Some(s.value),
            "electionAlg" if s.value != "3" => return Err(s.err("is not supported: only 3 (fast leader election) exists")),
            "electionAlg" => {}
            "autopurge.snapRetainCount" => {
                // As ZooKeeper: below 3 is raised to 3, with a warning.
                let count: u32 = s.number()?;
                if count < 3 {
                    warnings.push(warn("is below the minimum; using 3"));
                }
                c.autopurge_snap_retain_count = count.max(3);
            }
            k if k.starts_with("server.") => {
                let id = k["server.".len()..].parse().map_err(|_| s.err("needs a numeric N"))?;
                servers.insert(id, s.server(id)?);
            }
            k if k.starts_with("ssl.") => {
                c.ssl.insert(k.into(), s.value.into());
            }
            k if starts_with_any(k, JVM_ONLY) => warnings.push(warn("ignored (only meaningful to the Java ZooKeeper)")),
            k if starts_with_any(k, UNSUPPORTED) => warnings.push(warn("ZooKeeper setting not supported by Warden; ignored")),
            _ => warnings.push(warn("unknown key; ignored")),
        }
    }

    // As ZooKeeper: with only secureClientPort given, no plaintext port.
    c.serve_client_port = client_port_set || c.secure_client_port.is_none();
    c.tls()?;
    if !data_log_dir_set {
        c.data_log_dir = c.data_dir.clone();
    }
    c.min_session_timeout_ms = min_session.unwrap_or(c.tick_time_ms.saturating_mul(2));
    c.max_session_timeout_ms = max_session.unwrap_or(c.tick_time_ms.saturating_mul(20));
    let (min, max) = (c.min_session_timeout_ms, c.max_session_timeout_ms);
    if min > max {
        let reason = format!("is larger than maxSessionTimeout ({max})");
        return Err(invalid("minSessionTimeout", min, reason));
    }
    c.four_letter_words = four_letter_words(whitelist, c.read_only_mode_enabled, &mut warnings);
    c.servers = servers.into_values().collect();
    for (host, _) in c.servers.iter_mut().filter_map(|s| s.client_address.as_mut()) {
        if host.is_empty() {
            host.clone_from(&c.client_port_address);
        }
    }
    Ok((c, warnings))
}

/// As ZooKeeper: comma separated, "*" = all; "srvr" is always allowed
/// (zkServer.sh status uses it) and "isro" whenever read-only mode is on.
fn four_letter_words(list: Option<&str>, read_only: bool, warnings: &mut Vec<String>) -> FourLetterWhitelist {
    let mut set = BTreeSet::from(["srvr".to_string()]);
    for cmd in list.unwrap_or("").split(',').map(str::trim).filter(|c| !c.is_empty()) {
        if cmd == "*" {
            return FourLetterWhitelist::All;
        }
        if !FOUR_LETTER_WORDS.split_whitespace().any(|w| w == cmd) {
            warnings.push(format!("config: 4lw.commands.whitelist: unknown command {cmd:?}; ignored"));
        }
        set.insert(cmd.into());
    }
    if read_only {
        set.insert("isro".into());
    }
    FourLetterWhitelist::Set(set)
}

pub(super) fn to_pairs(c: &Config) -> Vec<(String, String)> {
    let mut out = plain_pairs(c);
    if !c.serve_client_port {
        out.retain(|(k, _)| k != "clientPort");
    }
    out.push(("minSessionTimeout".into(), show(&c.min_session_timeout_ms)));
    out.push(("maxSessionTimeout".into(), show(&c.max_session_timeout_ms)));
    let whitelist = match &c.four_letter_words {
        FourLetterWhitelist::All => "*".to_string(),
        FourLetterWhitelist::Set(set) => set.iter().cloned().collect::<Vec<_>>().join(","),
    };
    out.push(("4lw.commands.whitelist".into(), whitelist));
    for s in &c.servers {
        let mut line = format!("{}:{}:{}:{}", bracket(&s.host), s.quorum_port, s.election_port, lower(&s.role));
        if let Some((host, port)) = &s.client_address {
            line += &format!(";{}:{port}", bracket(host));
        }
        out.push((format!("server.{}", s.id), line));
    }
    let public = c.ssl.iter().filter(|(k, _)| !k.to_ascii_lowercase().contains("password"));
    out.extend(public.map(|(k, v)| (k.clone(), v.clone())));
    out
}

fn show<T: Display>(v: &T) -> String {
    v.to_string()
}
fn show_some<T: Display>(v: &Option<T>) -> String {
    v.as_ref().map(show).unwrap_or_default()
}
fn show_path(p: &Path) -> String {
    p.display().to_string()
}
fn show_some_path(p: &Option<PathBuf>) -> String {
    p.as_deref().map(show_path).unwrap_or_default()
}
/// ZooKeeper reads forceSync and skipACL as "yes"/"no" only.
fn yes_no(b: &bool) -> String {
    (if *b { "yes" } else { "no" }).into()
}
fn lower<T: Debug>(v: &T) -> String {
    format!("{v:?}").to_ascii_lowercase()
}
fn secret<T>(_: &T) -> String {
    String::new()
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.into()
    }
}

/// One key/value being applied; its parsers name both in errors.
struct Setting<'a> {
    key: &'a str,
    value: &'a str,
}

impl Setting<'_> {
    fn err(&self, reason: impl Into<String>) -> ConfigError {
        invalid(self.key, self.value, reason)
    }

    fn check<T>(&self, parsed: Option<T>, reason: &str) -> R<T> {
        parsed.ok_or_else(|| self.err(reason))
    }

    fn text(&self) -> R<String> {
        self.check(Some(self.value.to_string()).filter(|v| !v.is_empty()), "must not be empty")
    }

    fn some_text(&self) -> R<Option<String>> {
        Ok(Some(self.value.to_string()).filter(|v| !v.is_empty()))
    }

    fn path(&self) -> R<PathBuf> {
        self.text().map(PathBuf::from)
    }

    fn some_path(&self) -> R<Option<PathBuf>> {
        self.path().map(Some)
    }

    fn port(&self) -> R<u16> {
        self.check(self.value.parse().ok(), "is not a port number (0-65535)")
    }

    fn some_number<T: FromStr>(&self) -> R<Option<T>> {
        self.number().map(Some)
    }

    fn some_port(&self) -> R<Option<u16>> {
        self.port().map(Some)
    }

    fn number<T: FromStr>(&self) -> R<T> {
        self.check(self.value.parse().ok(), "is not a non-negative integer")
    }

    fn positive<T: FromStr + PartialOrd + Default>(&self) -> R<T> {
        let n = self.value.parse().ok().filter(|n| *n > T::default());
        self.check(n, "is not a positive integer")
    }

    /// Negative (ZooKeeper writes -1) means "derive from tickTime".
    fn timeout(&self) -> R<Option<u32>> {
        let n: i64 = self.check(self.value.parse().ok(), "is not a number of milliseconds")?;
        self.check(if n < 0 { Some(None) } else { u32::try_from(n).ok().map(Some) }, "is too large")
    }

    /// Index of the value in `options`, ignoring case.
    fn one_of(&self, options: &[&str]) -> R<usize> {
        let found = options.iter().position(|o| o.eq_ignore_ascii_case(self.value));
        self.check(found, &format!("is not one of {}", options.join(", ")))
    }

    /// A real number, as Double.parseDouble reads the drop rates.
    fn real(&self) -> R<f64> {
        self.check(self.value.parse().ok().filter(|v: &f64| v.is_finite()), "is not a number")
    }

    fn boolean(&self) -> R<bool> {
        Ok(self.one_of(&["false", "true", "no", "yes"])? % 2 == 1)
    }

    /// ZooKeeper turns skipACL on only for exactly "yes"; "true" must not
    /// silently disable ACLs that ZooKeeper would enforce.
    fn exactly_yes(&self) -> R<bool> {
        Ok(self.value == "yes")
    }

    fn role(&self) -> R<PeerRole> {
        Ok([PeerRole::Participant, PeerRole::Observer][self.one_of(&["participant", "observer"])?])
    }

    /// Decimal or 0x hex, like Java's Integer.decode; at most i32::MAX since
    /// jute lengths are signed 32-bit on the wire.
    fn byte_count(&self) -> R<usize> {
        let v = self.value;
        let n = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => usize::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        };
        let n = n.filter(|n| (1..=i32::MAX as usize).contains(n));
        self.check(n, "is not a byte count (1..=2147483647, decimal or 0x hex)")
    }

    /// `user:base64(sha1)`, as printed by DigestAuthenticationProvider.generateDigest.
    fn some_digest(&self) -> R<Option<String>> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let ok = self.value.split_once(':').is_some_and(|(user, digest)| !user.is_empty() && b64.decode(digest).is_ok_and(|d| d.len() == 20));
        self.check(ok.then(|| Some(self.value.into())), "is not user:base64(sha1), e.g. super:...")
    }

    fn log_level(&self) -> R<String> {
        let levels = ["error", "warn", "info", "debug", "trace", "off"];
        Ok(levels[self.one_of(&levels)?].into())
    }

    fn quorum_thread(&self) -> R<QuorumThread> {
        Ok([QuorumThread::Own, QuorumThread::Processor][self.one_of(&["own", "processor"])?])
    }

    fn log_format(&self) -> R<LogFormat> {
        Ok([LogFormat::Human, LogFormat::Json][self.one_of(&["human", "json"])?])
    }

    /// `host:quorumPort:electionPort[:participant|:observer][;[clientAddr:]clientPort]`,
    /// IPv6 hosts in brackets.
    fn server(&self, id: u64) -> R<ServerSpec> {
        let shape = "is not host:quorumPort:electionPort[:participant|:observer][;[clientAddress:]clientPort]";
        if self.value.contains('|') {
            return Err(self.err("has multiple addresses (|), which Warden does not support"));
        }
        let (peer, client) = match self.value.split_once(';') {
            Some((p, c)) => (p.trim(), Some(c.trim())),
            None => (self.value, None),
        };
        let (host, ports) = match peer.strip_prefix('[') {
            Some(bracketed) => bracketed.split_once("]:"),
            None => peer.split_once(':'),
        }
        .filter(|(host, _)| !host.is_empty())
        .ok_or_else(|| self.err(shape))?;
        let ports: Vec<&str> = ports.split(':').map(str::trim).collect();
        let peer_port = |p: &str, what: &str| {
            let port = p.parse().ok().filter(|&n: &u16| n > 0);
            self.check(port, &format!("has a bad {what} port {p:?}"))
        };
        let role = match ports[..] {
            [_, _] => PeerRole::Participant,
            [_, _, r] => Setting { key: self.key, value: r }.role()?,
            _ => return Err(self.err(shape)),
        };
        let client_address = match client.map(|c| c.rsplit_once(':').unwrap_or(("", c))) {
            None => None,
            // An empty host means clientPortAddress, filled in by `build`.
            Some((host, port)) => {
                let host = host.trim().trim_start_matches('[').trim_end_matches(']');
                let port = port.trim().parse().ok();
                Some((host.to_string(), self.check(port, "has a bad client port")?))
            }
        };
        Ok(ServerSpec {
            id,
            host: host.trim().into(),
            quorum_port: peer_port(ports[0], "quorum")?,
            election_port: peer_port(ports[1], "election")?,
            role,
            client_address,
        })
    }
}

/// One `server.N` value (`host:quorumPort:electionPort[:role][;[clientAddr:]clientPort]`),
/// as a reconfig request or a dynamic config carries it.
pub fn parse_server(id: u64, value: &str) -> Result<ServerSpec, String> {
    let key = format!("server.{id}");
    Setting { key: &key, value }.server(id).map_err(|e| e.to_string())
}
