//! warden-chaos: fault injection against a loopback Warden ensemble, then
//! linearizability, queue, lock, ephemeral and agreement checks over what
//! the clients saw. Exit 0 only if every check passes; 1 on a violation;
//! 2 if the harness itself could not run.

mod check;
mod cluster;
mod expiry;
mod history;
mod nemesis;
mod netns;
mod proxy;
mod rng;
mod soak;
mod watch;
mod workload;

use clap::Parser;
use cluster::Cluster;
use history::{Clock, History, Outcome};
use nemesis::{Kind, Nemesis};
use rng::Rng;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use workload::{Ctx, EPH, LOCK, QUEUE, ROOT};
use zookeeper_client::{Acls, Client, CreateMode};

const DEFAULT_FAULTS: &str = "kill,pause,partition,wipe,corrupt,slow-disk";
/// Added to the default faults with `--netns`.
const NETNS_FAULTS: &str = "one-way,loss,rate,netem,link-down,move,clock";

#[derive(Parser, Debug)]
#[command(about = "Fault injection with a linearizability checker against a loopback Warden ensemble")]
struct Args {
    /// Ensemble size (3 or 5).
    #[arg(long, default_value_t = 3)]
    members: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    clients: u64,
    /// Seconds of faults and load.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// RNG seed (printed; pass it again to replay the same schedule).
    #[arg(long)]
    seed: Option<u64>,
    /// The warden binary (default: `warden` next to this executable).
    #[arg(long)]
    warden_bin: Option<PathBuf>,
    /// Faults to draw from, comma separated.
    #[arg(long, default_value = DEFAULT_FAULTS, value_delimiter = ',')]
    faults: Vec<String>,
    /// Registers for compare-and-set.
    #[arg(long, default_value_t = 3)]
    registers: usize,
    /// Added one-way latency per forwarded chunk on every peer link, ms.
    #[arg(long, default_value_t = 0)]
    link_delay_ms: u64,
    #[arg(long, default_value_t = 200)]
    tick_ms: u32,
    /// Let followers answer reads locally (ZooKeeper's default, sequentially
    /// consistent only): for showing that the checker catches stale reads.
    #[arg(long)]
    local_reads: bool,
    /// Where members' dirs and reports go (default: a new temp dir).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the run dir even when every check passes.
    #[arg(long)]
    keep: bool,
    /// Every member in its own network namespace on a bridge (root; falls
    /// back to the loopback proxies, saying so, where that is impossible).
    /// Adds the network and clock faults (see README).
    #[arg(long)]
    netns: bool,
    /// Report every member's RSS, open fds and mailbox depths this often (s),
    /// and fail if they keep growing (the soak mode; 0: only at the end).
    #[arg(long, default_value_t = 60)]
    resource_every: u64,
}

fn main() {
    let args = Args::parse();
    // Namespaces are made and joined before any thread exists: setns moves
    // only the calling thread, and threads started later inherit it.
    let mut net = None;
    if args.netns {
        match netns::Netns::unavailable() {
            Some(why) => println!("warden-chaos: --netns unavailable ({why}); FALLING BACK to loopback proxies"),
            None => match netns::Netns::create(args.members) {
                Ok(n) => {
                    if let Err(e) = n.join_hub() {
                        println!("warden-chaos: --netns: {e}; FALLING BACK to loopback proxies");
                    } else {
                        println!(
                            "netns mode: hub namespace {} (10.77.0.{}), members {}",
                            n.hub,
                            netns::HUB_HOST,
                            (1..=args.members).map(|i| format!("{}={}", n.ns(i), n.addr(i))).collect::<Vec<_>>().join(" ")
                        );
                        if !n.netem {
                            println!("netns mode: this kernel has no tc netem (CONFIG_NET_SCH_NETEM): delay, jitter and corruption are skipped; duplication (nft dup), reordering (htb slow lane), loss (nft), rate (tbf), cuts, link down, moves and clocks run");
                        }
                        net = Some(n);
                    }
                }
                Err(e) => println!("warden-chaos: --netns: could not create namespaces ({e}); FALLING BACK to loopback proxies"),
            },
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let code = rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        // On a signal the run future is dropped: the cluster kills its members, then the namespaces go.
        tokio::select! {
            c = run(args, net) => c,
            _ = tokio::signal::ctrl_c() => { eprintln!("warden-chaos: SIGINT, tearing down"); 130 }
            _ = term.recv() => { eprintln!("warden-chaos: SIGTERM, tearing down"); 143 }
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(code);
}

async fn run(args: Args, net: Option<netns::Netns>) -> i32 {
    let seed = args.seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (t.as_nanos() as u64) ^ ((std::process::id() as u64) << 32)
    });
    println!("warden-chaos seed: {seed} (replay with --seed {seed})");
    let netns_on = net.is_some();
    let mut fault_names = args.faults.clone();
    if netns_on && args.faults.join(",") == DEFAULT_FAULTS {
        fault_names.extend(NETNS_FAULTS.split(',').map(str::to_string));
    }
    let kinds: Result<Vec<Kind>, String> = fault_names.iter().filter(|s| !s.is_empty()).map(|s| Kind::parse(s, netns_on)).collect();
    let mut kinds = match kinds {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => return harness_error("no faults chosen".into()),
        Err(e) => return harness_error(e),
    };
    // Without netem, netns mode still duplicates and reorders (nft, htb).
    if net.is_none() && kinds.contains(&Kind::Netem) {
        println!("fault netem dropped: it needs --netns");
        kinds.retain(|k| *k != Kind::Netem);
        if kinds.is_empty() {
            return harness_error("no faults left to inject".into());
        }
    }
    if cluster::libfaketime().is_none() && kinds.contains(&Kind::Clock) {
        println!("fault clock dropped: libfaketime not found (Debian package faketime)");
        kinds.retain(|k| *k != Kind::Clock);
        if kinds.is_empty() {
            return harness_error("no faults left to inject".into());
        }
    }
    let warden_bin = args
        .warden_bin
        .clone()
        .unwrap_or_else(|| std::env::current_exe().ok().and_then(|p| p.parent().map(|d| d.join("warden"))).unwrap_or_else(|| PathBuf::from("warden")));
    if !warden_bin.exists() {
        return harness_error(format!("{} not found (build it: cargo build -p warden, or pass --warden-bin)", warden_bin.display()));
    }
    let root = args.dir.clone().unwrap_or_else(|| std::env::temp_dir().join(format!("warden-chaos-{}-{seed}", std::process::id())));
    let _ = std::fs::remove_dir_all(&root);
    println!("run dir: {}", root.display());

    let mut rng = Rng::new(seed);
    let mut cluster =
        match Cluster::start(args.members, &warden_bin, &root, args.tick_ms, Duration::from_millis(args.link_delay_ms), !args.local_reads, net).await {
            Ok(c) => c,
            Err(e) => return harness_error(e),
        };
    if let Err(e) = cluster.wait_serving(Duration::from_secs(30)).await {
        return harness_error(e);
    }
    let connect = cluster.connect_string(&cluster.ids());
    let keys: Vec<String> = (0..args.registers).map(workload::register).collect();
    if let Err(e) = setup(&connect, &keys).await {
        return harness_error(e);
    }

    let clock = Arc::new(Clock::new());
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let ctx = Arc::new(Ctx {
        connect: cluster.client_connect.clone(),
        clock: clock.clone(),
        history: history.clone(),
        stop: stop.clone(),
        registers: args.registers,
    });
    let watch_log = watch::Log::default();
    let watch_done = Arc::new(AtomicBool::new(false));
    let watcher = match watch::watcher(ctx.clone(), watch_log.clone(), watch_done.clone()).await {
        Ok(w) => w,
        Err(e) => return harness_error(e),
    };
    let mut clients = vec![tokio::spawn(watch::writer(ctx.clone())), tokio::spawn(workload::churn(ctx.clone()))];
    for id in 0..args.clients {
        clients.push(tokio::spawn(workload::run_client(id, ctx.clone(), rng.fork())));
    }

    let start = Instant::now();
    let sample_every = (args.resource_every > 0).then(|| Duration::from_secs(args.resource_every));
    let mut nemesis = Nemesis { rng: rng.fork(), kinds, start, report: Default::default(), resources: Default::default(), sample_every };
    nemesis.run(&mut cluster, start + Duration::from_secs(args.duration)).await;
    let crashes = nemesis::heal_all(&mut cluster);
    let healed = cluster.wait_serving(Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    // The watcher gets time to see the counter's last creates.
    tokio::time::sleep(Duration::from_secs(3)).await;
    watch_done.store(true, Ordering::Relaxed);
    let _ = watcher.await;
    let mut findings: Vec<check::Finding> = crashes.into_iter().map(|text| check::Finding { check: "crash", text }).collect();
    if let Err(e) = healed {
        findings.push(check::Finding { check: "liveness", text: format!("after healing everything: {e}") });
    }

    // Final reads: pin each register's last value into the history.
    let mut passed = Vec::new();
    let connect = cluster.connect_string(&cluster.ids());
    match workload::connect(&connect, Duration::from_secs(30)).await {
        Some(client) => {
            for k in 0..args.registers {
                let _ = workload::read_register(u64::MAX, &ctx, &client, k).await;
            }
        }
        None => findings.push(check::Finding { check: "liveness", text: "no client could connect after healing".into() }),
    }
    // Sessions left unclosed expire within their timeout; then ephemerals must be gone.
    tokio::time::sleep(workload::SESSION_TIMEOUT + Duration::from_secs(3)).await;

    let mut trees = BTreeMap::new();
    for id in cluster.ids() {
        match dump_member(&cluster, id).await {
            Ok(t) => {
                trees.insert(id, t);
            }
            Err(e) => findings.push(check::Finding { check: "agreement", text: format!("member {id}: {e}") }),
        }
    }

    for id in cluster.ids() {
        if let Some(st) = cluster.exited(id) {
            findings.push(check::Finding { check: "crash", text: format!("member {id} exited by itself ({st}); log tail:\n{}", cluster.log_tail(id, 12)) });
        }
    }
    nemesis.sample(&cluster).await;
    let growth = nemesis.resources.growth();
    let h = history.lock().unwrap();
    let results = [
        if growth.is_empty() {
            Ok(format!("resources flat ({} member processes sampled)", nemesis.resources.series.len()))
        } else {
            Err(check::Finding { check: "resources", text: growth.join("\n") })
        },
        check::registers(&h, &keys),
        check::queue(&h, &queue_children(trees.values().next())),
        check::lock(&h),
        ephemerals_gone(&trees),
        check::members_agree(&trees),
        watch::check(&watch_log.lock().unwrap(), &counter_values(trees.values().next())).map_err(|text| check::Finding { check: "watch", text }),
    ];
    for r in results {
        match r {
            Ok(s) => passed.push(s),
            Err(f) => findings.push(f),
        }
    }
    for a in &nemesis.report.anomalies {
        findings.push(check::Finding { check: "nemesis", text: a.clone() });
    }

    println!("---- summary (seed {seed}) ----");
    println!("faults injected: {} {:?}", nemesis.report.total(), nemesis.report.injected);
    for ((kind, o), n) in &h.counts {
        println!("  {kind:8} {o:?}: {n}");
    }
    println!("ops ok {}, failed {}, unknown {}", h.total(Outcome::Ok), h.total(Outcome::Failed), h.total(Outcome::Unknown));
    for p in &passed {
        println!("ok: {p}");
    }
    let report = write_report(&root, seed, &args, &h, &nemesis.report, &findings);
    if findings.is_empty() {
        println!("RESULT: PASS");
        drop(cluster);
        if !args.keep {
            let _ = std::fs::remove_dir_all(&root);
        }
        0
    } else {
        for f in &findings {
            println!("VIOLATION [{}]:\n{}", f.check, f.text);
        }
        println!("RESULT: FAIL (seed {seed}); history and member logs kept: {}", report.display());
        1
    }
}

fn harness_error(e: String) -> i32 {
    eprintln!("warden-chaos: {e}");
    2
}

async fn setup(connect: &str, keys: &[String]) -> Result<(), String> {
    let zk = workload::connect(connect, Duration::from_secs(30)).await.ok_or("no client could connect")?;
    let opts = CreateMode::Persistent.with_acls(Acls::anyone_all());
    for p in [ROOT, QUEUE, EPH, watch::CTR].iter().map(|s| s.to_string()).chain(keys.iter().cloned()) {
        let data: &[u8] = if p.starts_with(&format!("{ROOT}/r")) { b"init" } else { b"" };
        zk.create(&p, data, &opts).await.map_err(|e| format!("create {p}: {e}"))?;
    }
    Ok(())
}

/// The test subtree on member `id` alone, after a sync: path -> data and stat.
async fn dump_member(c: &Cluster, id: u64) -> Result<check::Tree, String> {
    let connect = c.connect_string(&[id]);
    let zk = workload::connect(&connect, Duration::from_secs(20)).await.ok_or("cannot connect")?;
    let mut last = String::new();
    for _ in 0..5 {
        match dump(&zk).await {
            Ok(t) => return Ok(t),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(last)
}

async fn dump(zk: &Client) -> Result<check::Tree, String> {
    zk.sync(ROOT).await.map_err(|e| format!("sync: {e}"))?;
    let mut out = BTreeMap::new();
    let mut level = vec![ROOT.to_string()];
    // Level by level, many reads in flight: with linearizable reads each one
    // waits for a quorum round trip, and the tree has thousands of nodes.
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(256) {
            let mut set = tokio::task::JoinSet::new();
            for p in chunk {
                let (zk, p) = (zk.clone(), p.clone());
                set.spawn(async move {
                    let r = tokio::time::timeout(workload::OP_TIMEOUT, zk.get_data(&p)).await;
                    let (data, st) = match r {
                        Ok(Ok(x)) => x,
                        Ok(Err(zookeeper_client::Error::NoNode)) => return Ok((p, None, Vec::new())),
                        Ok(Err(e)) => return Err(format!("get {p}: {e}")),
                        Err(_) => return Err(format!("get {p}: timeout")),
                    };
                    let children = if st.num_children > 0 {
                        match tokio::time::timeout(workload::OP_TIMEOUT, zk.list_children(&p)).await {
                            Ok(Ok(c)) => c,
                            Ok(Err(e)) => return Err(format!("children {p}: {e}")),
                            Err(_) => return Err(format!("children {p}: timeout")),
                        }
                    } else {
                        Vec::new()
                    };
                    let line = format!(
                        "{:?} czxid={:#x} mzxid={:#x} pzxid={:#x} v={} cv={} owner={:#x} ctime={} mtime={} n={}",
                        String::from_utf8_lossy(&data),
                        st.czxid,
                        st.mzxid,
                        st.pzxid,
                        st.version,
                        st.cversion,
                        st.ephemeral_owner,
                        st.ctime,
                        st.mtime,
                        st.num_children
                    );
                    Ok((p, Some(line), children))
                });
            }
            while let Some(r) = set.join_next().await {
                let (p, line, children) = r.map_err(|e| e.to_string())??;
                if let Some(line) = line {
                    next.extend(children.iter().map(|c| format!("{p}/{c}")));
                    out.insert(p, line);
                }
            }
        }
        level = next;
    }
    Ok(out)
}

/// name -> data of the queue node's children, from one member's dump.
fn queue_children(tree: Option<&check::Tree>) -> BTreeMap<String, String> {
    let prefix = format!("{QUEUE}/");
    tree.into_iter()
        .flat_map(|t| t.iter())
        .filter_map(|(p, v)| {
            let name = p.strip_prefix(&prefix)?;
            // The data is the leading {:?}-quoted string of the dump line.
            let end = v.find("\" czxid=")?;
            Some((name.to_string(), v[1..end].to_string()))
        })
        .collect()
}

/// The counter's values present in one member's dump.
fn counter_values(tree: Option<&check::Tree>) -> std::collections::BTreeSet<u64> {
    let prefix = format!("{}/v", watch::CTR);
    tree.into_iter().flat_map(|t| t.keys()).filter_map(|p| p.strip_prefix(&prefix)?.parse().ok()).collect()
}

/// All sessions are closed or expired by now: no ephemeral may remain.
fn ephemerals_gone(trees: &BTreeMap<u64, check::Tree>) -> Result<String, check::Finding> {
    let mut left = Vec::new();
    for (id, t) in trees {
        for (p, v) in t {
            if p == LOCK || p.starts_with(&format!("{EPH}/")) || !v.contains("owner=0x0 ") {
                left.push(format!("member {id}: {p} {v}"));
            }
        }
    }
    if left.is_empty() {
        Ok("no ephemerals of closed or expired sessions remain".into())
    } else {
        Err(check::Finding { check: "ephemerals", text: left.join("\n") })
    }
}

fn write_report(root: &std::path::Path, seed: u64, args: &Args, h: &History, n: &nemesis::Report, findings: &[check::Finding]) -> PathBuf {
    use warden_chaos::linearizability::render_event;
    let path = root.join("report.txt");
    let mut s = format!("seed {seed}\nargs {args:?}\n\n== faults ==\n");
    for l in &n.schedule {
        s += l;
        s += "\n";
    }
    s += "\n== findings ==\n";
    for f in findings {
        s += &format!("[{}]\n{}\n", f.check, f.text);
    }
    s += "\n== register history ==\n";
    for i in 0..h.registers.len() {
        s += &render_event(&h.registers, i);
        s += "\n";
    }
    s += "\n== queue history ==\n";
    for e in &h.queue {
        s += &format!("{e:?}\n");
    }
    s += "\n== lock holds ==\n";
    for x in &h.holds {
        s += &format!("{x:?}\n");
    }
    s += "\n== trace ==\n";
    for l in &h.trace {
        s += l;
        s += "\n";
    }
    let _ = std::fs::write(&path, s);
    path
}
