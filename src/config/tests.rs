use super::*;
use crate::keystore::StoreType;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn build_cfg(text: &str) -> (Config, Vec<String>) {
    build(&parse(text, Format::ZooCfg).unwrap()).unwrap()
}

fn err(list: &[(&str, &str)]) -> String {
    build(&pairs(list)).unwrap_err().to_string()
}

/// ZooKeeper 3.8's conf/zoo_sample.cfg.
const ZOO_SAMPLE: &str = "\
# The number of milliseconds of each tick
tickTime=2000
# The number of ticks that the initial 
# synchronization phase can take
initLimit=10
# The number of ticks that can pass between 
# sending a request and getting an acknowledgement
syncLimit=5
# the directory where the snapshot is stored.
# do not use /tmp for storage, /tmp here is just 
# example sakes.
dataDir=/tmp/zookeeper
# the port at which the clients will connect
clientPort=2181
# the maximum number of client connections.
# increase this if you need to handle more clients
#maxClientCnxns=60
#
# Be sure to read the maintenance section of the 
# administrator guide before turning on autopurge.
#
# https://zookeeper.apache.org/doc/current/zookeeperAdmin.html#sc_maintenance
#
# The number of snapshots to retain in dataDir
#autopurge.snapRetainCount=3
# Purge task interval in hours
# Set to \"0\" to disable auto purge feature
#autopurge.purgeInterval=1

## Metrics Providers
#
# https://prometheus.io/ Metrics Exporter
#metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
#metricsProvider.httpHost=0.0.0.0
#metricsProvider.httpPort=7000
#metricsProvider.exportJvmInfo=true
";

const THREE_SERVERS: &str = "\
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
4lw.commands.whitelist=stat, ruok ,conf,isro
server.1=zk1.example.com:2888:3888
server.2=10.0.0.2:2888:3888;2181
server.3=[2001:db8::3]:2888:3888:observer;0.0.0.0:2182
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider
";

#[test]
fn standalone_toml_is_the_default() {
    let text = include_str!("../../config/standalone.toml");
    assert_eq!(detect_format(Path::new("standalone.toml"), text), Format::Toml);
    let (config, warnings) = build(&parse(text, Format::Toml).unwrap()).unwrap();
    assert_eq!(config, Config::default());
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn no_file_gives_default() {
    let (config, warnings) = load(None, &[]).unwrap();
    assert_eq!(config, Config::default());
    assert!(warnings.is_empty());
    assert_eq!(config.client_listen_address(), ("127.0.0.1".to_string(), 2181));
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert!(config.is_standalone());
    assert!(config.extended_types_enabled);
}

#[test]
fn zookeeper_sample_cfg() {
    assert_eq!(detect_format(Path::new("conf/zoo.cfg"), ZOO_SAMPLE), Format::ZooCfg);
    assert_eq!(detect_format(Path::new("zoo"), ZOO_SAMPLE), Format::ZooCfg); // sniffed
    let (c, warnings) = build_cfg(ZOO_SAMPLE);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.tick_time_ms, 2000);
    assert_eq!((c.init_limit, c.sync_limit), (10, 5));
    assert_eq!(c.data_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(c.data_log_dir, PathBuf::from("/tmp/zookeeper"));
    assert_eq!(c.client_port, 2181);
    assert_eq!(c.max_client_cnxns, 60);
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (4000, 40000));
    assert_eq!(c.autopurge_purge_interval_hours, 0);
    assert!(c.is_standalone());
}

#[test]
fn three_server_cfg() {
    let (c, warnings) = build_cfg(THREE_SERVERS);
    assert_eq!(c.servers.len(), 3);
    assert_eq!(
        c.servers[0],
        ServerSpec { id: 1, host: "zk1.example.com".into(), quorum_port: 2888, election_port: 3888, role: PeerRole::Participant, client_address: None }
    );
    assert_eq!(c.servers[1].client_address, Some(("127.0.0.1".into(), 2181)));
    assert_eq!(c.servers[2].host, "2001:db8::3");
    assert_eq!(c.servers[2].role, PeerRole::Observer);
    assert_eq!(c.servers[2].client_address, Some(("0.0.0.0".into(), 2182)));
    assert!(!c.is_standalone());
    // Three JVM-only keys, each named in its warning.
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].contains("metricsProvider.className"));
    assert!(warnings[1].contains("serverCnxnFactory"));
    assert!(warnings[2].contains("authProvider.1"));
    // 4lw: the listed commands plus srvr, always.
    for cmd in ["stat", "ruok", "conf", "srvr"] {
        assert!(c.four_letter_allowed(cmd), "{cmd}");
    }
    assert!(c.four_letter_allowed("isro")); // listed explicitly
    assert!(!c.four_letter_allowed("dump"));

    let mut with_id = c.clone();
    with_id.my_id = Some(3);
    assert_eq!(with_id.client_listen_address(), ("0.0.0.0".into(), 2182));
    assert!(with_id.validate_my_id().is_ok());
    with_id.my_id = Some(7);
    assert!(with_id.validate_my_id().unwrap_err().to_string().contains("myid"));
}

#[test]
fn quorum_vs_standalone_rule() {
    let one = pairs(&[("server.1", "a:1:2")]);
    assert!(build(&one).unwrap().0.is_standalone());
    let mut forced = one.clone();
    forced.extend(pairs(&[("standaloneEnabled", "false")]));
    assert!(!build(&forced).unwrap().0.is_standalone());
    let with_observer = pairs(&[("server.1", "a:1:2"), ("server.2", "b:1:2:observer")]);
    assert!(build(&with_observer).unwrap().0.is_standalone());
}

#[test]
fn toml_file_with_tables_and_quoted_keys() {
    let text = r#"
clientPort = 2182
"4lw.commands.whitelist" = ["ruok", "mntr"]
"jute.maxbuffer" = 0x3fffff
server.1 = "a:2888:3888"
[autopurge]
purgeInterval = 24
[warden]
logFormat = "JSON"
"#;
    assert_eq!(detect_format(Path::new("warden.conf"), text), Format::Toml);
    let (c, warnings) = build(&parse(text, Format::Toml).unwrap()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.client_port, 2182);
    assert_eq!(c.jute_max_buffer_bytes, 0x3fffff);
    assert_eq!(c.autopurge_purge_interval_hours, 24);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.servers[0].host, "a");
    assert!(c.four_letter_allowed("mntr") && c.four_letter_allowed("srvr") && !c.four_letter_allowed("stat"));
    assert!(parse("a = [", Format::Toml).unwrap_err().to_string().starts_with("config: "));
}

#[test]
fn later_pairs_override_and_zookeeper_prefix() {
    let set = parse_set_flag(" clientPort = 3000 ").unwrap();
    assert_eq!(set, ("clientPort".into(), "3000".into()));
    assert!(parse_set_flag("novalue").is_err());
    let mut all = parse("clientPort=2181\ntickTime=1000", Format::ZooCfg).unwrap();
    all.push(set);
    all.extend(pairs(&[
        ("zookeeper.skipACL", "yes"),
        ("jute.maxbuffer", "0x100000"),
        ("zookeeper.extendedTypesEnabled", "no"),
        ("zookeeper.enforceQuota", "true"),
        ("readonlymode.enabled", "True"),
        ("zookeeper.DigestAuthenticationProvider.superDigest", "super:D/InIHSb7yEEbrWz8b9l71RjZJU="),
        ("znode.container.checkIntervalMs", "1000"),
        ("maxSessionTimeout", "90000"),
        ("dataDir", "/d"),
        ("dataLogDir", "/log"),
    ]));
    let (c, warnings) = build(&all).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.client_port, 3000);
    assert!(c.skip_acl);
    assert_eq!(c.jute_max_buffer_bytes, 1 << 20);
    assert!(!c.extended_types_enabled);
    assert!(c.enforce_quota && !Config::default().enforce_quota);
    assert!(c.four_letter_allowed("isro") && c.four_letter_allowed("srvr"));
    assert_eq!(c.super_digest.as_deref(), Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="));
    assert_eq!(c.container_check_interval_ms, 1000);
    assert_eq!((c.min_session_timeout_ms, c.max_session_timeout_ms), (2000, 90000));
    assert_eq!((c.data_dir.to_str(), c.data_log_dir.to_str()), (Some("/d"), Some("/log")));
}

#[test]
fn whitelist_star_and_ssl_strings() {
    let (c, w) = build(&pairs(&[
        ("4lw.commands.whitelist", "ruok, *"),
        ("ssl.keyStore.location", "/k.pem"),
        ("ssl.trustStore.location", "/ca.pem"),
        ("zookeeper.ssl.clientAuth", "need"),
        ("ssl.keyStore.password", "secret"),
        ("sslQuorum", "true"),
        ("java.security.auth.login.config", "/jaas.conf"),
        ("secureClientPort", "2281"),
    ]))
    .unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.four_letter_words, FourLetterWhitelist::All);
    assert!(c.four_letter_allowed("dump"));
    assert_eq!(c.ssl.get("ssl.clientAuth").map(String::as_str), Some("need"));
    assert_eq!(c.ssl.len(), 4);
    assert!(c.ssl_quorum);
    assert_eq!(c.jaas_config, Some(PathBuf::from("/jaas.conf")));
    assert_eq!(c.secure_client_port, Some(2281));
    // Secrets stay out of `conf`.
    assert!(!c.to_pairs().iter().any(|(k, _)| k.contains("password")));
}

#[test]
fn warnings_not_errors() {
    let (c, w) =
        build(&pairs(&[("noSuchKey", "1"), ("clientPortListenBacklog", "5"), ("autopurge.snapRetainCount", "1"), ("4lw.commands.whitelist", "ruok,bogus")]))
            .unwrap();
    assert_eq!(c.autopurge_snap_retain_count, 3);
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w[0].contains("noSuchKey") && w[0].contains("unknown"));
    assert!(w[1].contains("not supported"));
    assert!(w[2].contains("autopurge.snapRetainCount"));
    assert!(w[3].contains("bogus"));
}

#[test]
fn invalid_values_name_key_and_value() {
    assert_eq!(err(&[("clientPort", "abc")]), r#"config: clientPort: "abc" is not a port number (0-65535)"#);
    assert!(err(&[("clientPort", "70000")]).contains(r#"clientPort: "70000""#));
    assert!(err(&[("admin.serverPort", "-1")]).contains("admin.serverPort"));
    assert_eq!(err(&[("minSessionTimeout", "50000")]), r#"config: minSessionTimeout: "50000" is larger than maxSessionTimeout (40000)"#);
    assert!(err(&[("tickTime", "0")]).contains("tickTime"));
    assert!(err(&[("forceSync", "maybe")]).contains(r#"forceSync: "maybe" is not one of false, true, no, yes"#));
    assert!(err(&[("server.1", "host:2888")]).contains(r#"server.1: "host:2888" is not host:"#));
    assert!(err(&[("server.1", "host:x:3888")]).contains("bad quorum port"));
    assert!(err(&[("server.1", "h:1:2:leader")]).contains(r#"server.1: "leader" is not one of participant"#));
    assert!(err(&[("server.1", "h:1:2;a:b:c")]).contains("server.1"));
    assert!(err(&[("server.x", "h:1:2")]).contains("server.x"));
    assert!(err(&[("server.1", "a:1:2|b:1:2")]).contains("multiple addresses"));
    assert!(err(&[("electionAlg", "0")]).contains("electionAlg"));
    assert!(err(&[("peerType", "leader")]).contains("peerType"));
    assert!(err(&[("jute.maxbuffer", "0xZZ")]).contains("jute.maxbuffer"));
    assert!(err(&[("zookeeper.DigestAuthenticationProvider.superDigest", "nocolon")]).contains("superDigest"));
    assert!(err(&[("warden.logLevel", "loud")]).contains("warden.logLevel"));
    assert!(err(&[("snapCount", "0")]).contains("snapCount"));
    assert!(err(&[("dataDir", "")]).contains("dataDir"));
}

#[test]
fn java_properties_syntax() {
    let text = "  # comment\n! also comment\nkey1 = value one  \nkey2: v2\nkey3 v3\n\
                key4=a\\\n     b\\\\\nkey\\ 5=x\\ty\\u0041\nkey6\n=leading\n";
    let got = parse(text, Format::ZooCfg).unwrap();
    assert_eq!(got, pairs(&[("key1", "value one"), ("key2", "v2"), ("key3", "v3"), ("key4", "ab\\"), ("key 5", "x\tyA"), ("key6", ""), ("", "leading"),]));
    assert!(parse("k=\\u12", Format::ZooCfg).is_err());
}

#[test]
fn myid() {
    assert_eq!(parse_myid("3\n").unwrap(), 3);
    assert_eq!(parse_myid("x").unwrap_err().to_string(), r#"config: myid: "x" is not a server id (a non-negative integer)"#);
    let mut c = Config { my_id: Some(255), ..Config::default() };
    assert!(c.validate_my_id().is_err()); // extended types reserve the top byte
    c.extended_types_enabled = false;
    assert!(c.validate_my_id().is_ok());
}

#[test]
fn to_pairs_round_trips() {
    let (c, _) = build_cfg(THREE_SERVERS);
    let mut c = c;
    c.secure_client_port = Some(2281);
    c.jaas_config = Some("/j".into());
    c.ssl.insert("ssl.clientAuth".into(), "want".into());
    c.ssl.insert("ssl.keyStore.location".into(), "/k.pem".into());
    c.ssl.insert("ssl.trustStore.location".into(), "/ca.pem".into());
    c.secure_client_port_address = Some("::1".into());
    let (back, warnings) = build(&c.to_pairs()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(back, c);
    let (back, _) = build(&Config::default().to_pairs()).unwrap();
    assert_eq!(back, Config::default());
    assert_eq!(Config::default().to_pairs()[0], ("clientPort".into(), "2181".into()));
}

#[test]
fn load_reads_file_then_sets() {
    let dir = std::env::temp_dir().join(format!("warden-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("zoo.cfg");
    std::fs::write(&path, ZOO_SAMPLE).unwrap();
    let (c, _) = load(Some(&path), &pairs(&[("clientPort", "2888")])).unwrap();
    assert_eq!((c.client_port, c.tick_time_ms), (2888, 2000));
    let missing = load(Some(&dir.join("nope.cfg")), &[]).unwrap_err();
    assert!(matches!(missing, ConfigError::Io { .. }));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn skip_acl_needs_exactly_yes_as_zookeeper() {
    for (v, on) in [("yes", true), ("true", false), ("YES", false), ("no", false)] {
        let (c, _) = build(&[("skipACL".to_string(), v.to_string())]).unwrap();
        assert_eq!(c.skip_acl, on, "{v}");
    }
}

#[test]
fn tls_settings_and_refused_stores() {
    let base = [("secureClientPort", "2281"), ("ssl.keyStore.location", "/k.pem"), ("ssl.trustStore.location", "/ca.pem")];
    let with = |extra: &[(&str, &str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(extra);
        pairs(&all)
    };
    let (c, _) = build(&with(&[])).unwrap();
    let tls = c.tls().unwrap().unwrap();
    assert_eq!((tls.client_auth, tls.trust_store.as_deref()), (ClientAuth::Need, Some(Path::new("/ca.pem"))));
    assert!(!c.serve_client_port, "only secureClientPort given: TLS only, as ZooKeeper");
    assert_eq!(c.secure_listen_address(), Some(("127.0.0.1".into(), 2281)));
    let (c, _) = build(&with(&[("clientPort", "2181"), ("zookeeper.ssl.clientAuth", "WANT"), ("ssl.keyStore.type", "pem")])).unwrap();
    assert!(c.serve_client_port);
    assert_eq!(c.tls().unwrap().unwrap().client_auth, ClientAuth::Want);
    // JKS, PKCS12 and PEM, by type key or by extension as KeyStoreFileType does.
    let (c, _) = build(&with(&[("ssl.keyStore.type", "JKS"), ("ssl.trustStore.location", "/t.p12")])).unwrap();
    let tls = c.tls().unwrap().unwrap();
    assert_eq!((tls.key_store_type, tls.trust_store_type), (StoreType::Jks, StoreType::Pkcs12));
    let e = build(&with(&[("ssl.keyStore.type", "BCFKS")])).unwrap_err().to_string();
    assert!(e.contains("ssl.keyStore.type") && e.contains("BCFKS"), "{e}");
    let e = build(&with(&[("ssl.trustStore.location", "/t.P12")])).unwrap_err().to_string();
    assert!(e.contains("ssl.trustStore.location") && e.contains("ssl.trustStore.type") && e.contains("extension"), "{e}");
    let (c, _) = build(&with(&[("ssl.trustStore.location", "/t.P12"), ("ssl.trustStore.type", "pkcs12")])).unwrap();
    assert_eq!(c.tls().unwrap().unwrap().trust_store_type, StoreType::Pkcs12);
    let e = build(&with(&[("ssl.hostnameVerification", "maybe")])).unwrap_err().to_string();
    assert!(e.contains("ssl.hostnameVerification"), "{e}");
    let e = build(&pairs(&[("secureClientPort", "2281"), ("ssl.keyStore.location", "/k.pem")])).unwrap_err().to_string();
    assert!(e.contains("needs ssl.trustStore.location"), "{e}");
    let (c, _) = build(&pairs(&[("secureClientPort", "2281"), ("ssl.keyStore.location", "/k.pem"), ("ssl.clientAuth", "none")])).unwrap();
    assert_eq!(c.tls().unwrap().unwrap().client_auth, ClientAuth::None);
    assert!(err(&[("secureClientPort", "2281")]).contains("ssl.keyStore.location"));
    assert!(build(&with(&[("ssl.clientAuth", "maybe")])).unwrap_err().to_string().contains("need, want, none"));
    // Without secureClientPort the ssl keys are kept but not checked, as ZooKeeper.
    let (c, _) = build(&pairs(&[("ssl.keyStore.type", "JKS")])).unwrap();
    assert_eq!(c.tls().unwrap(), None);
}

#[test]
fn quorum_thread_is_its_own_unless_set_to_the_processors() {
    let (c, _) = build(&pairs(&[])).unwrap();
    assert_eq!(c.quorum_thread, QuorumThread::Own);
    let (shared, _) = build(&pairs(&[("warden.quorumThread", "processor")])).unwrap();
    assert_eq!(shared.quorum_thread, QuorumThread::Processor);
    assert!(shared.to_pairs().contains(&("warden.quorumThread".to_string(), "processor".to_string())));
    let e = err(&[("warden.quorumThread", "both")]);
    assert!(e.contains("warden.quorumThread") && e.contains("own"), "{e}");
}
