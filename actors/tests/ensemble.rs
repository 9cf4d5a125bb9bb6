//! Multi-process ensemble tests: real `warden` members on loopback with free
//! ports and temp dirs, crashed with SIGKILL, hung with SIGSTOP, restarted
//! behind; every process is stopped by its pid.

mod common;

use common::ensemble::Ensemble;
use common::{eventually, run_warden, unique_dir, within};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zookeeper_client::{Acls, Client, CreateMode, EventType};

const SERVE: Duration = Duration::from_secs(20);

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn ephemeral() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Ephemeral.with_acls(Acls::anyone_all())
}

async fn connect(e: &Ensemble, ids: &[u64]) -> Client {
    Client::connector()
        .with_session_timeout(Duration::from_secs(6))
        .connect(&e.connect_string(ids))
        .await
        .unwrap_or_else(|err| panic!("connect to {ids:?}: {err}"))
}

/// The children of `path` as member `id` sees them after a sync.
async fn children_on(e: &Ensemble, id: u64, path: &str) -> BTreeSet<String> {
    let zk = connect(e, &[id]).await;
    zk.sync(path).await.unwrap();
    zk.list_children(path).await.unwrap().into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_elect_one_leader_and_replicate_through_any_member() {
    let e = Ensemble::start(3, 0, &[]);
    let leader = e.wait_serving(SERVE);
    let followers: Vec<u64> = e.all_ids().into_iter().filter(|id| *id != leader).collect();
    within(60, "replication", async {
        // A write through a follower is forwarded to the leader and seen everywhere.
        let zf = connect(&e, &[followers[0]]).await;
        zf.create("/via-follower", b"f", &persistent()).await.unwrap();
        let zl = connect(&e, &[leader]).await;
        zl.create("/via-leader", b"l", &persistent()).await.unwrap();
        for id in e.all_ids() {
            let zk = connect(&e, &[id]).await;
            zk.sync("/").await.unwrap();
            assert_eq!(zk.get_data("/via-follower").await.unwrap().0, b"f", "member {id}");
            assert_eq!(zk.get_data("/via-leader").await.unwrap().0, b"l", "member {id}");
        }
        // A failed write is answered by the member the client is on.
        let err = zf.create("/via-follower", b"", &persistent()).await.unwrap_err();
        assert!(matches!(err, zookeeper_client::Error::NodeExists), "{err:?}");
        let err = zf.set_data("/via-leader", b"x", Some(7)).await.unwrap_err();
        assert!(matches!(err, zookeeper_client::Error::BadVersion), "{err:?}");
        // Watches fire on every member from committed transactions.
        let zw = connect(&e, &[followers[1]]).await;
        let (_, _, watcher) = zw.get_and_watch_data("/via-leader").await.unwrap();
        zf.set_data("/via-leader", b"changed", None).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), watcher.changed()).await.expect("watch fires on a third member");
        assert_eq!(event.event_type, EventType::NodeDataChanged);
    })
    .await;
    let srvr = e.member(leader).server.as_ref().unwrap().four_letter("mntr").unwrap();
    assert!(srvr.contains("zk_server_state\tleader"), "{srvr}");
    assert!(srvr.contains("zk_synced_followers\t2"), "{srvr}");
    assert!(srvr.contains("zk_peer_state\tleading - broadcast"), "{srvr}");
    let f = e.member(followers[0]).server.as_ref().unwrap().four_letter("mntr").unwrap();
    assert!(f.contains(&format!("zk_warden_leader_id\t{leader}")), "{f}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_under_write_load_loses_no_acknowledged_write() {
    let mut e = Ensemble::start(3, 0, &[]);
    let leader = e.wait_serving(SERVE);
    let all = e.all_ids();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let zk = within(30, "connect", connect(&e, &all)).await;
    zk.create("/load", b"", &persistent()).await.unwrap();
    let writer = {
        let (zk, acked) = (zk.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            let mut failures = 0u64;
            while acked.lock().unwrap().len() < 600 && failures < 2000 {
                let path = format!("/load/n{i:06}");
                i += 1;
                match zk.create(&path, b"v", &persistent()).await {
                    Ok(_) => acked.lock().unwrap().push(path),
                    // Indeterminate (connection lost): may or may not exist later.
                    Err(_) => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        })
    };
    assert!(eventually(Duration::from_secs(30), || async { acked.lock().unwrap().len() >= 200 }).await, "writes before the crash");
    let killed_at = Instant::now();
    e.kill(leader, "KILL");
    let new_leader = e.wait_leader(SERVE);
    assert_ne!(new_leader, leader);
    eprintln!("new leader {new_leader} serving {} ms after SIGKILL of {leader}", killed_at.elapsed().as_millis());
    within(60, "writer finishes on the new leader", writer).await.unwrap();
    let acked: BTreeSet<String> = acked.lock().unwrap().iter().map(|p| p.trim_start_matches("/load/").to_string()).collect();
    assert!(acked.len() >= 600, "only {} writes acknowledged", acked.len());
    for id in e.running() {
        let seen = within(30, "read back", children_on(&e, id, "/load")).await;
        let missing: Vec<_> = acked.difference(&seen).collect();
        assert!(missing.is_empty(), "member {id} lost acknowledged writes: {missing:?}");
    }
    // The old leader comes back as a follower and catches up.
    e.start_member(leader);
    e.wait_serving(SERVE);
    assert_ne!(e.mode(leader).as_deref(), Some("leader"));
    let seen = within(30, "restarted member", children_on(&e, leader, "/load")).await;
    assert!(acked.is_subset(&seen), "the restarted old leader lacks acknowledged writes");
    let survivor = e.running().into_iter().find(|id| *id != leader).unwrap();
    assert_eq!(seen, within(30, "survivor", children_on(&e, survivor, "/load")).await, "members disagree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_leader_steps_down_and_its_uncommitted_proposal_is_discarded() {
    let e = Ensemble::start(3, 0, &[("tickTime", "100")]);
    let leader = e.wait_serving(SERVE);
    let others: Vec<u64> = e.all_ids().into_iter().filter(|id| *id != leader).collect();
    let zl = within(30, "connect", connect(&e, &[leader])).await;
    zl.create("/before", b"", &persistent()).await.unwrap();
    let pid = e.member(leader).server.as_ref().unwrap().pid();
    assert!(std::process::Command::new("kill").arg("-STOP").arg(pid.to_string()).status().unwrap().success());
    // Sent to the hung leader: it will log (propose) it on waking, with no quorum left.
    let orphan = {
        let zl = zl.clone();
        tokio::spawn(async move { zl.create("/orphan", b"", &persistent()).await })
    };
    let end = Instant::now() + SERVE;
    let new_leader = loop {
        if let Some(id) = others.iter().copied().find(|id| e.mode(*id).as_deref() == Some("leader")) {
            break id;
        }
        assert!(Instant::now() < end, "no new leader while the old one is hung");
        std::thread::sleep(Duration::from_millis(20));
    };
    let zn = within(30, "connect to new leader", connect(&e, &[new_leader])).await;
    zn.create("/during", b"", &persistent()).await.unwrap();
    assert!(std::process::Command::new("kill").arg("-CONT").arg(pid.to_string()).status().unwrap().success());
    let result = within(30, "the orphan write resolves", orphan).await.unwrap();
    assert!(result.is_err(), "a write to a leader without quorum must not succeed: {result:?}");
    let end = Instant::now() + SERVE;
    while e.mode(leader).as_deref() != Some("follower") {
        assert!(Instant::now() < end, "the old leader did not rejoin as a follower: {:?}", e.mode(leader));
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in e.all_ids() {
        let seen = within(30, "read back", children_on(&e, id, "/")).await;
        assert!(seen.contains("before") && seen.contains("during"), "member {id}: {seen:?}");
        assert!(!seen.contains("orphan"), "member {id} holds a write that never had a quorum");
    }
}

fn member_log(e: &Ensemble, id: u64) -> String {
    e.member(id).server.as_ref().map(|s| s.log()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lagging_follower_catches_up_by_diff_and_by_snap() {
    let mut e = Ensemble::start(3, 0, &[("commitLogCount", "50")]);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    let others: Vec<u64> = e.all_ids().into_iter().filter(|id| *id != follower).collect();
    let zk = within(30, "connect", connect(&e, &others)).await;
    zk.create("/c", b"", &persistent()).await.unwrap();
    // Behind by less than commitLogCount: DIFF.
    e.kill(follower, "KILL");
    for i in 0..30 {
        zk.create(&format!("/c/d{i}"), b"", &persistent()).await.unwrap();
    }
    e.start_member(follower);
    e.wait_serving(SERVE);
    let seen = within(30, "diff catch-up", children_on(&e, follower, "/c")).await;
    assert_eq!(seen.len(), 30);
    assert!(!member_log(&e, follower).contains("installing the leader's snapshot"), "30 behind must not need a SNAP");
    // Behind by more than commitLogCount: SNAP.
    e.kill(follower, "KILL");
    for i in 0..200 {
        zk.create(&format!("/c/s{i}"), b"", &persistent()).await.unwrap();
    }
    e.start_member(follower);
    e.wait_serving(SERVE);
    let seen = within(30, "snap catch-up", children_on(&e, follower, "/c")).await;
    assert_eq!(seen.len(), 230);
    assert!(member_log(&e, follower).contains("installing the leader's snapshot"), "200 behind needs a SNAP");
    // And it keeps up afterwards, also across its own restart from the snapshot.
    zk.create("/c/after", b"", &persistent()).await.unwrap();
    e.kill(follower, "TERM");
    e.start_member(follower);
    e.wait_serving(SERVE);
    assert!(within(30, "after restart", children_on(&e, follower, "/c")).await.contains("after"));
}

/// Creates `n` children of `parent`, 500 requests in flight at a time.
async fn create_many(zk: &Client, parent: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let creates = chunk.iter().map(|i| {
            let path = format!("{parent}/n{i:06}");
            async move { zk.create(&path, b"0123456789", &persistent()).await.map(|_| ()) }
        });
        for r in futures_util::future::join_all(creates).await {
            r.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snap_streamed_while_writes_commit_is_exact_once_the_learner_caught_up() {
    // The leader streams a SNAP in pieces and serves clients, commits
    // included, between them: the learner gets a fuzzy tree and the
    // proposals after it. It must end up with every write and must not
    // compare digests while still fuzzy (a mismatch fail-stops it).
    let mut e = Ensemble::start(3, 0, &[("commitLogCount", "50")]);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    let others: Vec<u64> = e.all_ids().into_iter().filter(|id| *id != follower).collect();
    let zk = within(30, "connect", connect(&e, &others)).await;
    within(120, "a tree of 25,000 nodes", async {
        zk.create("/big", b"", &persistent()).await.unwrap();
        zk.create("/during", b"", &persistent()).await.unwrap();
        create_many(&zk, "/big", 25_000).await;
    })
    .await;
    e.kill(follower, "KILL");
    for i in 0..100 {
        zk.set_data("/big", format!("v{i}").as_bytes(), None).await.unwrap();
    }
    // Writes through the leader's side while the follower syncs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (zk, stop) = (zk.clone(), stop.clone());
        tokio::spawn(async move {
            let mut acked = BTreeSet::new();
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/during/w{i:05}");
                i += 1;
                if zk.create(&path, b"", &persistent()).await.is_ok() {
                    acked.insert(format!("w{:05}", i - 1));
                }
            }
            acked
        })
    };
    e.start_member(follower);
    e.wait_serving(SERVE);
    within(60, "the follower syncs by SNAP", async {
        assert!(
            eventually(Duration::from_secs(50), || async { member_log(&e, follower).contains("installing the leader's snapshot") }).await,
            "25,000 nodes and 100 writes behind needs a SNAP"
        );
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acked = within(30, "the writer stops", writer).await.unwrap();
    assert!(!acked.is_empty(), "writes went on during the sync");
    within(60, "the follower holds the leader's tree", async {
        assert_eq!(children_on(&e, follower, "/big").await.len(), 25_000);
        let during = children_on(&e, follower, "/during").await;
        assert!(acked.is_subset(&during), "{} acknowledged writes made during the sync missing on the follower", acked.difference(&during).count());
        let f = connect(&e, &[follower]).await;
        f.sync("/big").await.unwrap();
        assert_eq!(f.get_data("/big").await.unwrap().0, b"v99");
    })
    .await;
    let pieces = log_numbers(&member_log(&e, leader), "sent a snapshot to a learner", "pieces").into_iter().max();
    assert!(pieces.unwrap_or(0) >= 2, "the snapshot went in several pieces: {pieces:?}");
    assert!(e.mode(follower).is_some(), "the follower still serves (no digest mismatch)");
    assert!(!member_log(&e, follower).contains("differs from the leader"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_values_under_a_64_mib_jute_maxbuffer_go_everywhere() {
    // jute.maxbuffer=64 MiB end to end: client frames, the log, proposals
    // between members, a SNAP to a wiped follower, recovery from the log.
    let mut e = Ensemble::start(3, 0, &[("jute.maxbuffer", "67108864")]);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    let others: Vec<u64> = e.all_ids().into_iter().filter(|id| *id != follower).collect();
    let zk = within(30, "connect", connect(&e, &others)).await;
    let value = |i: u8| -> Vec<u8> { (0..10 << 20).map(|j: usize| (j % 249) as u8 ^ i).collect() };
    within(120, "three 10 MiB values", async {
        for i in 0..3u8 {
            zk.create(&format!("/ten{i}"), &value(i), &persistent()).await.unwrap();
        }
        zk.set_data("/ten2", &value(7), None).await.unwrap();
    })
    .await;
    let check = |f: Client| async move {
        for (path, want) in [("/ten0", value(0)), ("/ten1", value(1)), ("/ten2", value(7))] {
            f.sync(path).await.unwrap();
            let (data, stat) = f.get_data(path).await.unwrap();
            assert!(data == want, "{path} differs");
            assert_eq!(stat.data_length as usize, 10 << 20);
        }
    };
    // Replicated by proposals to the follower.
    within(60, "the follower has them", check(connect(&e, &[follower]).await)).await;
    // A wiped follower gets them by SNAP.
    e.kill(follower, "KILL");
    std::fs::remove_dir_all(e.member(follower).dir.join("data")).unwrap();
    e.start_member(follower);
    within(60, "the wiped follower rejoins", async {
        assert!(eventually(Duration::from_secs(50), || async { e.mode(follower).as_deref() == Some("follower") }).await);
    })
    .await;
    within(60, "the wiped follower has them", check(connect(&e, &[follower]).await)).await;
    // The leader recovers them from its log after a crash.
    e.kill(leader, "KILL");
    e.start_member(leader);
    e.wait_serving(SERVE);
    within(60, "the restarted leader has them", check(connect(&e, &[leader]).await)).await;
}

/// The values of `key` on the log lines that contain `what`.
fn log_numbers(log: &str, what: &str, key: &str) -> Vec<u64> {
    let key = format!("{key}: ");
    log.lines().filter(|l| l.contains(what)).filter_map(|l| l.split(key.as_str()).nth(1)?.split(',').next()?.trim().parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_rejoins_by_a_snapshot_larger_than_any_peer_frame() {
    // jute.maxbuffer=100000 keeps the peer frame limit near 5 MiB; 100
    // values of 95,000 bytes make a 9.5 MB snapshot. A SNAP in one frame
    // (as before streaming) could never reach the wiped follower.
    let jute_max = 100_000;
    let mut e = Ensemble::start(3, 0, &[("jute.maxbuffer", "100000"), ("commitLogCount", "20")]);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    let others: Vec<u64> = e.all_ids().into_iter().filter(|id| *id != follower).collect();
    let zk = within(30, "connect", connect(&e, &others)).await;
    let value = |i: usize| -> Vec<u8> { (0..95_000).map(|j| ((i * 7 + j) % 251) as u8).collect() };
    within(120, "100 large values", async {
        zk.create("/large", b"", &persistent()).await.unwrap();
        for i in 0..100 {
            zk.create(&format!("/large/v{i:03}"), &value(i), &persistent()).await.unwrap();
        }
    })
    .await;
    e.kill(follower, "KILL");
    std::fs::remove_dir_all(e.member(follower).dir.join("data")).unwrap();
    e.start_member(follower);
    within(90, "the wiped follower serves again", async {
        assert!(eventually(Duration::from_secs(80), || async { e.mode(follower).as_deref() == Some("follower") }).await, "the wiped follower rejoined");
    })
    .await;
    let f = within(30, "connect to the follower", connect(&e, &[follower])).await;
    within(60, "every value intact on the follower", async {
        f.sync("/large").await.unwrap();
        assert_eq!(f.get_children("/large").await.unwrap().0.len(), 100);
        for i in 0..100 {
            let (data, stat) = f.get_data(&format!("/large/v{i:03}")).await.unwrap();
            assert!(data == value(i), "/large/v{i:03} differs on the follower");
            let (_, leader_stat) = zk.get_data(&format!("/large/v{i:03}")).await.unwrap();
            assert_eq!(stat, leader_stat, "/large/v{i:03}'s Stat");
        }
    })
    .await;
    let log = member_log(&e, leader);
    let bytes = log_numbers(&log, "sent a snapshot to a learner", "bytes").into_iter().max().unwrap_or(0);
    let frame_limit = (2 * jute_max + (4 << 20) + (1 << 20)) as u64;
    assert!(bytes > frame_limit, "the snapshot ({bytes} bytes) is larger than the peer frame limit ({frame_limit})");
    let pieces = log_numbers(&log, "sent a snapshot to a learner", "pieces").into_iter().max().unwrap_or(0);
    assert!(pieces >= 3, "{pieces} pieces");
    // And the follower keeps up afterwards, across its own restart from the received snapshot.
    zk.create("/after", b"x", &persistent()).await.unwrap();
    e.kill(follower, "KILL");
    e.start_member(follower);
    e.wait_serving(SERVE);
    let f = within(30, "reconnect to the follower", connect(&e, &[follower])).await;
    within(30, "read after restart", async {
        f.sync("/after").await.unwrap();
        assert_eq!(f.get_data("/after").await.unwrap().0, b"x");
        assert_eq!(f.get_data("/large/v099").await.unwrap().0, value(99));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_between_members_with_its_ephemerals() {
    let e = Ensemble::start(3, 0, &[]);
    e.wait_serving(SERVE);
    within(60, "session move", async {
        let a = Client::connector().with_session_timeout(Duration::from_secs(10)).with_detached().connect(&e.connect_string(&[1])).await.unwrap();
        a.create("/eph-a", b"", &ephemeral()).await.unwrap();
        let id = a.session_id();
        let session = a.into_session();
        let b = Client::connector().with_session(session).connect(&e.connect_string(&[3])).await.unwrap();
        assert_eq!(b.session_id(), id, "the same session, reattached on another member");
        let (_, stat) = b.get_data("/eph-a").await.unwrap();
        assert_eq!(stat.ephemeral_owner, id.0, "the ephemeral still belongs to the session");
        b.create("/eph-b", b"", &ephemeral()).await.unwrap();
        drop(b); // closes the session
        let zk = connect(&e, &[2]).await;
        assert!(
            eventually(Duration::from_secs(10), || async {
                zk.sync("/").await.unwrap();
                zk.check_stat("/eph-a").await.unwrap().is_none() && zk.check_stat("/eph-b").await.unwrap().is_none()
            })
            .await,
            "closing the session removes its ephemerals everywhere"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_member_serves_no_one_until_quorum_returns() {
    let mut e = Ensemble::start(3, 0, &[]);
    let leader = e.wait_serving(SERVE);
    let zk = within(30, "connect", connect(&e, &e.all_ids())).await;
    zk.create("/kept", b"", &persistent()).await.unwrap();
    drop(zk);
    let lone = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    for id in e.all_ids().into_iter().filter(|id| *id != lone) {
        e.kill(id, "KILL");
    }
    let end = Instant::now() + SERVE;
    while e.mode(lone).is_some() {
        assert!(Instant::now() < end, "a lone member still serves");
        std::thread::sleep(Duration::from_millis(20));
    }
    let srvr = e.member(lone).server.as_ref().unwrap().four_letter("srvr").unwrap();
    assert_eq!(srvr.trim(), "This ZooKeeper instance is not currently serving requests");
    let lone_addr = e.connect_string(&[lone]);
    let attempt = Client::connector().with_connection_timeout(Duration::from_millis(500)).with_session_timeout(Duration::from_secs(4)).connect(&lone_addr);
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
        panic!("a member without quorum accepted a session")
    }
    // Quorum returns: the data is all there and writes work again.
    e.start_member(leader);
    e.wait_serving(SERVE);
    let zk = within(30, "reconnect", connect(&e, &[lone])).await;
    zk.create("/again", b"", &persistent()).await.unwrap();
    assert!(zk.check_stat("/kept").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_members_survive_two_crashes_and_an_observer_serves_reads() {
    let mut e = Ensemble::start(5, 1, &[]);
    let leader = e.wait_serving(SERVE);
    assert_eq!(e.mode(6).as_deref(), Some("observer"));
    let zo = within(30, "connect observer", connect(&e, &[6])).await;
    zo.create("/via-observer", b"o", &persistent()).await.unwrap();
    let victim = e.all_ids().into_iter().find(|id| *id != leader && *id != 6).unwrap();
    e.kill(leader, "KILL");
    e.kill(victim, "KILL");
    e.wait_serving(SERVE);
    let survivors: Vec<u64> = e.running().into_iter().filter(|id| *id != 6).collect();
    let zk = within(30, "connect survivors", connect(&e, &survivors)).await;
    zk.create("/after-two-crashes", b"", &persistent()).await.unwrap();
    let zo = within(30, "reconnect observer", connect(&e, &[6])).await;
    zo.sync("/").await.unwrap();
    assert!(zo.check_stat("/after-two-crashes").await.unwrap().is_some(), "the observer receives commits");
    assert_eq!(zo.get_data("/via-observer").await.unwrap().0, b"o");
}

#[test]
fn myid_file_and_warden_myid_must_agree() {
    let dir = unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("myid"), "2\n").unwrap();
    let data = format!("dataDir={}", dir.display());
    let (status, out) = run_warden(
        &["server", "--set", &data, "--set", "server.1=127.0.0.1:1:2", "--set", "server.2=127.0.0.1:3:4", "--set", "warden.myid=1"],
        Duration::from_secs(10),
    );
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("myid"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

/// The newest snapshot file in a member's data dir.
fn newest_snapshot(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    let mut snaps: Vec<(i64, std::path::PathBuf)> = std::fs::read_dir(dir.join("data/version-2"))
        .ok()?
        .flatten()
        .filter_map(|e| Some((warden_core::txnlog::parse_name(e.file_name().to_str()?, warden_core::txnlog::SNAPSHOT_PREFIX)?, e.path())))
        .collect();
    snaps.sort();
    snaps.pop().map(|s| s.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_tree_diverged_stops_loudly() {
    let mut e = Ensemble::start(3, 0, &[("snapCount", "10")]);
    let leader = e.wait_serving(SERVE);
    let victim = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    let zk = within(30, "connect", connect(&e, &[leader])).await;
    zk.create("/x", b"original", &persistent()).await.unwrap();
    for i in 0..40 {
        zk.create(&format!("/fill{i}"), b"", &persistent()).await.unwrap();
    }
    let dir = e.member(victim).dir.clone();
    assert!(eventually(Duration::from_secs(10), || async { newest_snapshot(&dir).is_some() }).await, "the follower took a snapshot");
    e.kill(victim, "TERM");
    // Tamper with the follower's newest snapshot behind the checksums' back:
    // the file verifies, but its tree is not the ensemble's.
    let path = newest_snapshot(&dir).unwrap();
    let mut loaded = warden_core::snapshot::load(&std::fs::read(&path).unwrap()).unwrap();
    let stat = loaded.db.tree.get("/x").expect("/x is in the snapshot").stat;
    loaded.db.tree.set_data("/x", Some(b"tampered".to_vec()), stat.version, stat.mzxid, stat.mtime, &mut Vec::new()).unwrap();
    std::fs::write(&path, warden_core::snapshot::encode_all(&loaded.db)).unwrap();
    if let Err(early) = e.try_start_member(victim) {
        // It found the divergence before it answered its first ruok.
        assert!(early.contains("exit status: 3") && early.contains("differs from the leader's"), "{early}");
        assert_eq!(zk.get_data("/x").await.unwrap().0, b"original");
        return;
    }
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        zk.set_data("/fill0", b"tick", None).await.unwrap();
        if let Some(status) = e.server(victim).exited() {
            break status;
        }
        assert!(Instant::now() < end, "the diverged member kept running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(3), "fail-stop exit code");
    assert!(e.server(victim).log().contains("differs from the leader's"), "the log names the divergence");
    assert_eq!(zk.get_data("/x").await.unwrap().0, b"original", "the ensemble's data is untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_see_every_write_completed_before_them() {
    // Zab on a thread of its own: the stall below holds the processor alone,
    // and the member keeps acknowledging with a commit it has not applied.
    let settings = [("warden.linearizableReads", "true"), ("warden.adminFaultInjection", "true"), ("warden.quorumThread", "own")];
    let e = Ensemble::start(3, 0, &settings);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    within(60, "write here, read there", async {
        let writer = connect(&e, &[leader]).await;
        let reader = connect(&e, &[follower]).await;
        writer.create("/reg", b"0", &persistent()).await.unwrap();
        for i in 1..=300 {
            let v = i.to_string();
            writer.set_data("/reg", v.as_bytes(), None).await.unwrap();
            // No sync: the read index behind every read makes it see the write.
            assert_eq!(reader.get_data("/reg").await.unwrap().0, v.as_bytes(), "stale read at {i}");
        }
        // A read index costs no log write: the reads took no zxids.
        let (stat, _) = writer.create("/end", b"", &persistent()).await.unwrap();
        assert!(stat.czxid as u32 <= 305, "only the 302 writes took zxids, yet the next is {:#x}", stat.czxid);
        // A read pipelined between two writes of its session sees the first, never the second.
        reader.create("/own", b"", &persistent()).await.unwrap();
        for i in 0..100 {
            let (a, b) = (format!("a{i}"), format!("b{i}"));
            let (first, read, second) =
                tokio::join!(reader.set_data("/own", a.as_bytes(), None), reader.get_data("/own"), reader.set_data("/own", b.as_bytes(), None));
            first.unwrap();
            second.unwrap();
            assert_eq!(read.unwrap().0, a.as_bytes(), "round {i}: the read is between its session's writes");
        }
        // A read, a write and a read pipelined by one session: the first
        // read (waiting on its I/O thread) goes with the write to the
        // processor, and never sees it; the read after always does.
        for i in 0..100 {
            // The loop above left b99.
            let (old, new) = (if i == 0 { "b99".to_string() } else { format!("c{}", i - 1) }, format!("c{i}"));
            let (before, write, after) = tokio::join!(reader.get_data("/own"), reader.set_data("/own", new.as_bytes(), None), reader.get_data("/own"));
            write.unwrap();
            assert_eq!(before.unwrap().0, old.as_bytes(), "round {i}: the read ahead of the write");
            assert_eq!(after.unwrap().0, new.as_bytes(), "round {i}: the read behind the write");
        }
        // Reads of other kinds go through the read index too and still answer.
        assert_eq!(reader.list_children("/").await.unwrap().len(), 4);
        assert!(reader.check_stat("/missing").await.unwrap().is_none());
        // A read whose index this member has not applied yet (its processor
        // stalls with the commit in its mailbox) waits on its I/O thread
        // until it is: it sees the write, never the value before.
        let indexed = counter(&e.admin_get(follower, "/metrics"), "warden_indexed_reads_total");
        let (status, body) = e.admin_post(follower, "/actors/processor/fault?mode=stall&ms=1500");
        assert_eq!(status, 202, "{body}");
        writer.set_data("/reg", b"while-stalled", None).await.unwrap();
        assert_eq!(reader.get_data("/reg").await.unwrap().0, b"while-stalled");
        let now_indexed = counter(&e.admin_get(follower, "/metrics"), "warden_indexed_reads_total");
        assert_eq!(now_indexed, indexed + 1, "answered on its I/O thread once applied, not by the processor");
    })
    .await;
    let metrics = e.admin_get(follower, "/metrics");
    assert_eq!(counter(&metrics, "warden_local_reads_total"), 0, "no read skips the read index");
    // The 300 one-at-a-time reads waited for their index on their I/O thread, not in the processor.
    assert!(counter(&metrics, "warden_indexed_reads_total") >= 300, "{metrics}");
}

/// A counter from a member's /metrics.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')).unwrap_or_else(|| panic!("{name} in {metrics}")).parse().unwrap()
}

/// Messages a member's dispatcher has handled, from its /actors table.
fn dispatcher_handled(e: &Ensemble, id: u64) -> u64 {
    let actors: serde_json::Value = serde_json::from_str(&e.admin_get(id, "/actors")).unwrap();
    let all = actors.as_array().or_else(|| actors["actors"].as_array()).unwrap_or_else(|| panic!("{actors}"));
    all.iter().filter(|a| a["kind"] == "dispatcher").map(|a| a["messages_handled"].as_u64().unwrap()).sum()
}

fn last_zxid(e: &Ensemble, id: u64) -> u64 {
    let m = e.admin_get(id, "/metrics");
    m.lines().find_map(|l| l.strip_prefix("warden_last_zxid ")).unwrap_or_else(|| panic!("{m}")).parse::<f64>().unwrap() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_members_writes_wake_a_dispatcher_only_to_fire_watches() {
    let e = Ensemble::start(3, 0, &[]);
    let leader = e.wait_serving(SERVE);
    let ids = e.all_ids();
    let follower = ids.iter().copied().find(|id| *id != leader).unwrap();
    let quiet = ids.iter().copied().find(|id| *id != leader && *id != follower).unwrap();
    let zk = within(30, "connect", connect(&e, &[follower])).await;
    let (stat, _) = zk.create("/quiet", b"", &persistent()).await.unwrap();
    let before = dispatcher_handled(&e, quiet);
    let mut zxid = stat.czxid;
    for i in 0..30 {
        zxid = zk.set_data("/quiet", format!("{i}").as_bytes(), None).await.unwrap().mzxid;
    }
    assert!(eventually(Duration::from_secs(30), || async { last_zxid(&e, quiet) >= zxid as u64 }).await, "the quiet member applies the writes");
    let woken = dispatcher_handled(&e, quiet) - before;
    assert!(woken < 10, "a member with no watch and no session woke its dispatcher {woken} times for 30 writes");
    // With a watch set there, another member's write fires it.
    let watcher = within(30, "connect", connect(&e, &[quiet])).await;
    let (_, _, watch) = watcher.get_and_watch_data("/quiet").await.unwrap();
    zk.set_data("/quiet", b"fire", None).await.unwrap();
    let ev = within(10, "NodeDataChanged on the quiet member", watch.changed()).await;
    assert_eq!((ev.event_type, ev.path.as_str()), (EventType::NodeDataChanged, "/quiet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_actor_tables_show_the_ensemble() {
    let e = Ensemble::start(3, 0, &[]);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    let zk = within(30, "connect", connect(&e, &[follower])).await;
    for i in 0..20 {
        zk.create(&format!("/m{i}"), b"", &persistent()).await.unwrap();
    }
    let metrics = e.admin_get(leader, "/metrics");
    assert!(metrics.contains("warden_server_state{state=\"leader\"} 1"), "{metrics}");
    assert_eq!(metrics.matches("warden_learner_lag_txns{server_id=").count(), 2, "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("warden_quorum_epoch ") && !l.ends_with(" 0")), "{metrics}");
    let commits: u64 = metrics.lines().find_map(|l| l.strip_prefix("warden_commits_total ")).unwrap().parse().unwrap();
    assert!(commits >= 20, "{commits}");
    // The follower's plain reads are answered on its I/O threads: the replies
    // to the forwarded writes above left its connection with nothing unanswered.
    for i in 0..20 {
        zk.get_data(&format!("/m{i}")).await.unwrap();
    }
    let fm = e.admin_get(follower, "/metrics");
    assert!(fm.contains("warden_server_state{state=\"follower\"} 1"), "{fm}");
    assert!(counter(&fm, "warden_local_reads_total") >= 15, "{fm}");
    let actors = e.admin_get(follower, "/actors");
    assert_eq!(actors.matches("\"peer-link\"").count(), 2, "a link actor per peer: {actors}");
    let addr = format!("127.0.0.1:{}", e.member(follower).admin_port);
    let (status, table) = run_warden(&["admin", "--address", &addr, "actors"], Duration::from_secs(10));
    assert!(status.success(), "{table}");
    for kind in ["election", "broadcast", "processor", "dispatcher", "session", "peer-link", "snapshotter", "tracker", "txn-log"] {
        assert!(table.lines().any(|l| l.starts_with(kind)), "{kind} in the actor table:\n{table}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_zxid_counters_bumps_the_epoch_without_dropping_clients() {
    // The leader bumps the epoch every 40 transactions instead of at 2^32.
    // tickTime 500: a slow shared machine must not look like a lost quorum.
    let e = Ensemble::start(3, 0, &[("warden.zxidCounterLimit", "40"), ("tickTime", "500")]);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    within(90, "writes across epoch bumps", async {
        let zk = connect(&e, &[follower]).await;
        let session = zk.session_id();
        let (first, _) = zk.create("/bump", b"", &persistent()).await.unwrap();
        let mut last = first.czxid;
        for i in 0..300 {
            // Every write succeeds: no ConnectionLoss, no re-election.
            let (stat, _) = zk.create(&format!("/bump/n{i}"), b"", &persistent()).await.unwrap_or_else(|err| panic!("write {i}: {err}"));
            assert!(stat.czxid > last, "zxids keep rising across epochs");
            assert!((stat.czxid as u32) <= 41, "counter {} past the limit", stat.czxid as u32);
            last = stat.czxid;
        }
        let epochs = (last >> 32) - (first.czxid >> 32);
        assert!(epochs >= 5, "only {epochs} epoch bumps for 300 writes");
        assert_eq!(zk.session_id(), session);
        assert_eq!(zk.list_children("/bump").await.unwrap().len(), 300);
        // Pipelined writes across bumps: the processor numbers them ahead
        // of the broadcast actor, which must agree on every zxid.
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let zk = zk.clone();
                tokio::spawn(async move {
                    for i in 0..40 {
                        zk.create(&format!("/bump/w{w}-{i}"), b"", &persistent()).await.unwrap_or_else(|err| panic!("writer {w} write {i}: {err}"));
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(zk.list_children("/bump").await.unwrap().len(), 620);
        assert_eq!(zk.session_id(), session, "no step-down dropped the session's connection");
    })
    .await;
    assert_eq!(e.mode(leader).as_deref(), Some("leader"), "the same leader throughout");
    for id in e.all_ids() {
        assert_eq!(within(30, "read back", children_on(&e, id, "/bump")).await.len(), 620, "member {id}");
    }
}

/// A CA and a member certificate for 127.0.0.1 signed by it (openssl), as
/// (key store PEM with key + certificate, CA PEM).
/// Creates `/name` through member 1 and checks that every member has it.
async fn write_and_read_everywhere(e: &Ensemble, name: &str) {
    let zk = within(30, "connect", connect(e, &[1])).await;
    zk.create(&format!("/{name}"), b"x", &persistent()).await.unwrap();
    for id in e.all_ids() {
        assert!(within(30, "read back", children_on(e, id, "/")).await.contains(name), "member {id}");
    }
}

/// The names of a member's threads (/proc/PID/task/*/comm).
fn thread_names(e: &Ensemble, id: u64) -> BTreeSet<String> {
    let pid = e.member(id).server.as_ref().expect("running").pid();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("proc");
    tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok()).map(|n| n.trim().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zab_runs_on_its_own_thread_or_the_processors_as_warden_quorum_thread_says() {
    let mut e = Ensemble::start(3, 0, &[("warden.quorumThread", "own")]);
    e.wait_serving(SERVE);
    // Member 2 runs Zab on its processor's thread; 1 and 3 give it a thread of its own.
    e.set_member_extra(2, &[("warden.quorumThread", "processor")]);
    e.kill(2, "KILL");
    e.start_member(2);
    let leader = e.wait_serving(SERVE);
    for id in [1, 3] {
        assert!(thread_names(&e, id).contains("w-quorum"), "member {id}: {:?}", thread_names(&e, id));
    }
    let names = thread_names(&e, 2);
    assert!(!names.contains("w-quorum") && names.contains("w-processor"), "member 2: {names:?}");
    write_and_read_everywhere(&e, "both-layouts").await;
    // Whichever layout leads, losing the leader elects another that takes writes.
    e.kill(leader, "KILL");
    let next = e.wait_leader(SERVE);
    let survivors: Vec<u64> = e.running();
    within(60, "a write after the fail-over", async {
        let zk = connect(&e, &[next]).await;
        zk.create("/after-failover", b"y", &persistent()).await.unwrap();
        for id in &survivors {
            assert!(children_on(&e, *id, "/").await.contains("after-failover"), "member {id}");
        }
    })
    .await;
}

/// Restarts member `id` with `extra`, checks that it stays out of the
/// ensemble, and returns the other members' logs.
fn restart_refused(e: &mut Ensemble, id: u64, extra: &[(&str, &str)], what: &str) -> String {
    e.kill(id, "KILL");
    e.set_member_extra(id, extra);
    e.start_member(id);
    // A refusal shows as nothing happening: give it the time a join takes.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(e.mode(id), None, "{what} must not join");
    e.all_ids().into_iter().filter(|o| *o != id).map(|o| e.server(o).log()).collect()
}

fn quorum_certs(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let (ca_key, ca, key, csr, crt, ext) =
        (format!("{name}-ca.key"), format!("{name}-ca.pem"), format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.ext"));
    std::fs::write(dir.join(&ext), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key, "-out", &ca, "-days", "2", "-subj", &format!("/CN={name} test CA")]);
    run(&["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", "/CN=warden member"]);
    run(&["x509", "-req", "-in", &csr, "-CA", &ca, "-CAkey", &ca_key, "-CAcreateserial", "-out", &crt, "-days", "2", "-extfile", &ext]);
    let store = dir.join(format!("{name}-store.pem"));
    let pem = std::fs::read_to_string(dir.join(&key)).unwrap() + &std::fs::read_to_string(dir.join(&crt)).unwrap();
    std::fs::write(&store, pem).unwrap();
    (store, dir.join(ca))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_links_run_over_tls_and_refuse_an_untrusted_member() {
    let dir = unique_dir();
    let (store, ca) = quorum_certs(&dir, "good");
    let (rogue_store, _) = quorum_certs(&dir, "rogue");
    let (store, ca, rogue_store) = (store.display().to_string(), ca.display().to_string(), rogue_store.display().to_string());
    // Member 1 holds a certificate from another CA: the others refuse it.
    let mut e = Ensemble::start(3, 0, &[("sslQuorum", "true"), ("ssl.quorum.keyStore.location", &store), ("ssl.quorum.trustStore.location", &ca)]);
    let leader = e.wait_serving(SERVE);
    write_and_read_everywhere(&e, "over-tls").await;
    assert!(e.server(leader).log().contains("quorum links use TLS"));
    let logs = restart_refused(&mut e, 1, &[("ssl.quorum.keyStore.location", &rogue_store)], "a member with an untrusted certificate");
    assert!(logs.contains("TLS handshake"), "the refusal is logged");
    let _ = std::fs::remove_dir_all(dir);
}

fn keytool(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("keytool").args(args).current_dir(dir).output().expect("keytool runs");
    assert!(out.status.success(), "keytool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A JKS key store (keytool, from an openssl PKCS12) with an X.509 v1
/// certificate for `subject` (`openssl x509 -req` without extensions, as the
/// ZooKeeper SSL guide and kazoo's harness make them) signed by dir's ca.pem.
fn v1_member_jks(dir: &std::path::Path, name: &str, subject: &str) -> String {
    let (key, csr, crt, p12, jks) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"), format!("{name}.p12"), format!("{name}.jks"));
    openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &["x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", &crt, "-days", "2"]);
    openssl(dir, &["pkcs12", "-export", "-in", &crt, "-inkey", &key, "-name", "member", "-passout", "pass:storepass", "-out", &p12]);
    let jks_args = ["-destkeystore", &jks, "-deststoretype", "JKS", "-deststorepass", "storepass", "-destkeypass", "storepass"];
    keytool(
        dir,
        &[&["-importkeystore", "-noprompt", "-srckeystore", &p12, "-srcstoretype", "PKCS12", "-srcstorepass", "storepass"][..], &jks_args[..]].concat(),
    );
    dir.join(jks).display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_tls_with_jks_stores_v1_certificates_and_host_verification() {
    let dir = unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    openssl(&dir, &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=JKS test CA"]);
    keytool(
        &dir,
        &["-importcert", "-noprompt", "-alias", "ca", "-file", "ca.pem", "-storetype", "JKS", "-keystore", "truststore.jks", "-storepass", "trustpass"],
    );
    // No alternative names: members are checked by their address's reverse DNS name (127.0.0.1: localhost) against the CN.
    let good = v1_member_jks(&dir, "member", "/CN=localhost");
    let elsewhere = v1_member_jks(&dir, "elsewhere", "/CN=elsewhere.invalid");
    let trust = dir.join("truststore.jks").display().to_string();
    let settings = [
        ("sslQuorum", "true"),
        ("ssl.quorum.keyStore.location", good.as_str()),
        ("ssl.quorum.keyStore.password", "storepass"),
        ("ssl.quorum.trustStore.location", trust.as_str()),
        ("ssl.quorum.trustStore.password", "trustpass"),
        // TLS 1.2's signatures (ServerKeyExchange, CertificateVerify) with the v1 certificates' keys; the client port tests use 1.3.
        ("ssl.quorum.enabledProtocols", "TLSv1.2"),
    ];
    let mut e = Ensemble::start(3, 0, &settings);
    let leader = e.wait_serving(SERVE);
    write_and_read_everywhere(&e, "over-jks").await;
    assert!(e.server(leader).log().contains("quorum links use TLS"));
    // A trusted certificate naming another host is refused (ssl.quorum.hostnameVerification defaults to true).
    let logs = restart_refused(&mut e, 1, &[("ssl.quorum.keyStore.location", &elsewhere)], "a member whose certificate names another host");
    assert!(logs.contains("host verification"), "the refusal is logged as a host mismatch");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_loses_its_member_keeps_session_ephemerals_and_watches() {
    let mut e = Ensemble::start(3, 0, &[]);
    e.wait_serving(SERVE);
    let zk = within(30, "connect", connect(&e, &[1, 2])).await;
    let session = zk.session_id();
    zk.create("/moving", b"v0", &persistent()).await.unwrap();
    zk.create("/moving-eph", b"", &ephemeral()).await.unwrap();
    // A one-shot data watch: the client re-registers it with setWatches on the
    // new member. (zookeeper-client 0.11.2 does not resend persistent watches:
    // its resend_watches never raises its opcode index past SetWatches.)
    let (_, _, watcher) = zk.get_and_watch_data("/moving").await.unwrap();
    // Kill the member the client is on; it moves to the other one it knows.
    let sid = format!("sid=0x{:x}", session.0);
    let on = [1, 2]
        .into_iter()
        .find(|id| e.member(*id).server.as_ref().unwrap().four_letter("cons").unwrap().contains(&sid))
        .expect("the client is on member 1 or 2");
    e.kill(on, "KILL");
    // Back on the other member before the change is made.
    within(30, "reconnect", async {
        while zk.check_stat("/moving").await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let other = within(30, "connect elsewhere", connect(&e, &[3])).await;
    other.set_data("/moving", b"v1", None).await.unwrap();
    let ev = within(30, "the watch fires after the move", watcher.changed()).await;
    assert_eq!((ev.event_type, ev.path.as_str()), (EventType::NodeDataChanged, "/moving"));
    assert_eq!(zk.session_id(), session, "the same session on the new member");
    let (_, stat) = within(30, "read on the new member", zk.get_data("/moving-eph")).await.unwrap();
    assert_eq!(stat.ephemeral_owner, session.0);
}

/// Found by warden-chaos (seed 1795566104434550682, reading a member's tree
/// with many reads in flight): on the leader, a read queued behind the
/// session's previous barrier got its own barrier prepared while committed
/// transactions were applied, but not proposed; the next transaction was then
/// prepared under the same zxid and the leader stopped ("prepared zxid N but
/// Zab assigned N+1"). Pipelined reads on one session, on the leader and on a
/// follower, with writes from another session meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_linearizable_reads_on_the_leader_keep_it_alive() {
    let e = Ensemble::start(3, 0, &[("warden.linearizableReads", "true")]);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    within(60, "pipelined reads", async {
        let writer = connect(&e, &[leader]).await;
        writer.create("/p", b"0", &persistent()).await.unwrap();
        for id in [leader, follower] {
            let reader = connect(&e, &[id]).await;
            for round in 0..20 {
                let reads: Vec<_> = (0..64).map(|_| reader.get_data("/p")).collect();
                writer.set_data("/p", round.to_string().as_bytes(), None).await.unwrap();
                for r in reads {
                    r.await.unwrap_or_else(|err| panic!("member {id} round {round}: {err}"));
                }
            }
        }
    })
    .await;
    for id in e.all_ids() {
        assert!(e.mode(id).is_some(), "member {id} stopped serving:\n{}", e.member(id).server.as_ref().map(|s| s.log()).unwrap_or_default());
    }
}

/// A tmpfs of `kib` KiB mounted at `dir` (root only), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, kib: u64) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"]).arg(dir).status().ok()?.success();
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_disk_fills_stops_and_the_ensemble_goes_on() {
    let mut e = Ensemble::start(3, 0, &[("preAllocSize", "64")]);
    let leader = e.wait_serving(SERVE);
    let victim = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    let mount = e.member(victim).dir.join("small-disk");
    e.kill(victim, "KILL");
    let Some(_disk) = SmallDisk::mount(&mount, 2048) else {
        eprintln!("SKIPPED: mounting a tmpfs needs root; the full-disk case was not exercised");
        return;
    };
    let data = mount.display().to_string();
    e.set_member_extra(victim, &[("dataDir", &data)]);
    e.start_member(victim);
    e.wait_serving(SERVE);
    let survivors: Vec<u64> = e.all_ids().into_iter().filter(|id| *id != victim).collect();
    let zk = within(30, "connect", connect(&e, &survivors)).await;
    let value = vec![b'x'; 16 * 1024];
    let mut acked = Vec::new();
    // 2 MiB of disk cannot hold 300 writes of 16 KiB: the victim's log fills.
    for i in 0..300 {
        let path = format!("/full{i:03}");
        zk.create(&path, &value, &persistent()).await.unwrap_or_else(|err| panic!("write {i} with one member's disk full: {err}"));
        acked.push(path);
    }
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = e.server(victim).exited() {
            break status;
        }
        assert!(Instant::now() < end, "the member with a full disk kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "a full disk stops the member: {status}");
    assert!(e.server(victim).log().contains("No space left on device"), "the log says why");
    for id in &survivors {
        let seen = within(30, "read back", children_on(&e, *id, "/")).await;
        assert!(acked.iter().all(|p| seen.contains(p.trim_start_matches('/'))), "member {id} lost acknowledged writes");
    }
    // The disk is unmounted (drop) before the ensemble's dirs are removed.
}

#[test]
fn warden_ensemble_up_starts_members_that_serve_and_stops_them_on_sigterm() {
    let dir = unique_dir();
    // Each is the first of three (members count up from it).
    let (cp, qp, ep, ap) = (common::free_ports(3), common::free_ports(3), common::free_ports(3), common::free_ports(3));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["ensemble", "up", "3", "--dir"])
        .arg(&dir)
        .args([
            "--client-port",
            &cp.to_string(),
            "--quorum-port",
            &qp.to_string(),
            "--election-port",
            &ep.to_string(),
            "--admin-port",
            &ap.to_string(),
            "--tick-ms",
            "200",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn warden ensemble up");
    // A failed assertion still stops `up` (and so its members) by pid: a CI
    // run once left them running.
    let mut guard = TermOnDrop(Some(child));
    let up = guard.0.as_mut().unwrap();
    let srvr = |port: u16| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        std::io::Write::write_all(&mut s, b"srvr").ok()?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).ok()?;
        text.lines().find_map(|l| l.strip_prefix("Mode: ")).map(str::to_string)
    };
    let end = Instant::now() + SERVE;
    let modes = loop {
        let modes: Vec<Option<String>> = (0..3).map(|i| srvr(cp + i)).collect();
        if modes.iter().all(Option::is_some) {
            break modes;
        }
        assert!(Instant::now() < end, "the members did not all serve: {modes:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(modes.iter().filter(|m| m.as_deref() == Some("leader")).count(), 1, "{modes:?}");
    for i in 1..=3 {
        assert!(dir.join(format!("node{i}.toml")).exists() && dir.join(format!("node{i}/myid")).exists());
    }
    assert!(std::process::Command::new("kill").arg("-TERM").arg(up.id().to_string()).status().unwrap().success());
    let status = up.wait().unwrap();
    assert!(status.success(), "{status}");
    let mut out = String::new();
    std::io::Read::read_to_string(up.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert_eq!(out.matches("stopped").count(), 3, "every member stopped: {out}");
    assert!((0..3).all(|i| std::net::TcpStream::connect(("127.0.0.1", cp + i)).is_err()), "no member is left listening");
    let _ = std::fs::remove_dir_all(dir);
}

/// SIGTERM to a child still running when dropped, then SIGKILL after 10 s.
struct TermOnDrop(Option<std::process::Child>);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else { return };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// `super:test`, as kazoo's and ZooKeeper's own test harnesses configure it.
const SUPER_DIGEST: &str = "super:D/InIHSb7yEEbrWz8b9l71RjZJU=";

async fn reconfig(zk: &Client, joining: &[&str], leaving: &[&str]) -> Result<String, zookeeper_client::Error> {
    let update = zookeeper_client::EnsembleUpdate::Incremental { joinings: joining.iter().copied(), leavings: leaving.iter().copied() };
    zk.update_ensemble(update, None).await.map(|(data, _)| String::from_utf8(data).unwrap())
}

/// /zookeeper/config as member `id` sees it after a sync.
async fn config_on(e: &Ensemble, id: u64) -> String {
    let zk = connect(e, &[id]).await;
    zk.sync("/").await.unwrap();
    String::from_utf8(zk.get_data("/zookeeper/config").await.unwrap().0).unwrap()
}

async fn wait_mode(e: &Ensemble, id: u64, mode: &str) {
    assert!(eventually(SERVE, || async { e.mode(id).as_deref() == Some(mode) }).await, "member {id} is {:?}, not {mode}", e.mode(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconfig_under_write_load_adds_a_member_promotes_an_observer_and_removes_the_leader() {
    let mut e = Ensemble::start_with_spares(
        3,
        0,
        &["participant", "observer"],
        &[("reconfigEnabled", "true"), ("zookeeper.DigestAuthenticationProvider.superDigest", SUPER_DIGEST), ("tickTime", "200")],
    );
    let first_leader = e.wait_serving(SERVE);
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let zk = within(30, "connect", connect(&e, &[1, 2, 3])).await;
    zk.create("/load", b"", &persistent()).await.unwrap();
    let writer = {
        let (zk, acked, stop) = (zk.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = format!("/load/n{i:06}");
                i += 1;
                match zk.create(&path, b"v", &persistent()).await {
                    Ok(_) => acked.lock().unwrap().push(path),
                    // Indeterminate (connection lost): may or may not exist later.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
    };
    // The joiners sync as non-voting learners before any reconfig.
    e.start_member(4);
    e.start_member(5);
    e.wait_serving(SERVE);
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != first_leader).collect();
    let admin = within(30, "connect", connect(&e, &followers)).await;
    admin.auth("digest", b"super:test").await.unwrap();
    let count = |acked: &Arc<Mutex<Vec<String>>>| acked.lock().unwrap().len();

    let before = count(&acked);
    let data = within(30, "add 4", reconfig(&admin, &[&e.join_spec(4, "participant")], &[])).await.expect("add participant 4");
    assert!(data.contains(&e.join_spec(4, "participant")), "{data}");
    let data = within(30, "add 5", reconfig(&admin, &[&e.join_spec(5, "observer")], &[])).await.expect("add observer 5");
    assert!(data.contains(&e.join_spec(5, "observer")), "{data}");
    wait_mode(&e, 5, "observer").await;
    let data = within(30, "promote 5", reconfig(&admin, &[&e.join_spec(5, "participant")], &[])).await.expect("observer 5 to participant");
    assert!(data.contains(&e.join_spec(5, "participant")), "{data}");
    wait_mode(&e, 5, "follower").await;
    assert!(eventually(Duration::from_secs(30), || async { count(&acked) > before + 50 }).await, "writes go on through the reconfigs");

    // Remove the leader; a member of the new config leads.
    let leader = e.wait_leader(SERVE);
    let removal = within(60, "remove the leader", reconfig(&admin, &[], &[&leader.to_string()])).await;
    let new_leader = e.wait_leader(SERVE);
    let config = within(30, "config", config_on(&e, new_leader)).await;
    assert!(!config.contains(&format!("server.{leader}=")), "the leader left: {config} ({removal:?})");
    assert_ne!(new_leader, leader);
    let after = count(&acked);
    assert!(eventually(Duration::from_secs(30), || async { count(&acked) > after + 50 }).await, "writes go on after the leader left");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    within(60, "writer stops", writer).await.unwrap();

    let acked: BTreeSet<String> = acked.lock().unwrap().iter().map(|p| p.trim_start_matches("/load/").to_string()).collect();
    for id in e.running() {
        let seen = within(30, "read back", children_on(&e, id, "/load")).await;
        let missing: Vec<_> = acked.difference(&seen).collect();
        assert!(missing.is_empty(), "member {id} lost {} acknowledged writes: {:?}", missing.len(), &missing[..missing.len().min(5)]);
        if id != leader {
            assert_eq!(within(30, "config", config_on(&e, id)).await, config, "member {id} has another config");
        }
    }
    let voters: Vec<&str> = config.lines().filter(|l| l.contains(":participant")).collect();
    assert_eq!(voters.len(), 4, "1..=5 without the old leader: {config}");
    eprintln!("{} acknowledged writes survived 4 reconfigs; leader {leader} -> {new_leader}", acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconfigured_ensemble_restarts_with_its_new_config() {
    let mut e = Ensemble::start_with_spares(
        3,
        0,
        &["participant", "participant"],
        &[("reconfigEnabled", "true"), ("zookeeper.DigestAuthenticationProvider.superDigest", SUPER_DIGEST), ("tickTime", "200")],
    );
    e.wait_serving(SERVE);
    e.start_member(4);
    e.start_member(5);
    e.wait_serving(SERVE);
    let admin = within(30, "connect", connect(&e, &[3])).await;
    admin.auth("digest", b"super:test").await.unwrap();
    let (j4, j5) = (e.join_spec(4, "participant"), e.join_spec(5, "participant"));
    within(30, "swap", reconfig(&admin, &[&j4, &j5], &["1", "2"])).await.ok();
    let leader = e.wait_leader(SERVE);
    let config = within(30, "config", config_on(&e, leader)).await;
    assert!(config.contains(&j4) && config.contains(&j5) && !config.contains("server.1=") && !config.contains("server.2="), "{config}");
    within(30, "write", async { connect(&e, &[leader]).await.create("/after-swap", b"x", &persistent()).await.unwrap() }).await;
    // Everyone down; only the new voters come back. By their static config
    // 3 would still need 1 or 2 for a quorum; by the logged one 3, 4, 5 are it.
    for id in e.all_ids() {
        e.kill(id, "KILL");
    }
    for id in [3, 4, 5] {
        e.start_member(id);
    }
    let leader = e.wait_serving(SERVE);
    assert!([3, 4, 5].contains(&leader));
    let zk = within(30, "connect", connect(&e, &[3, 4, 5])).await;
    assert_eq!(within(30, "read", zk.get_data("/after-swap")).await.unwrap().0, b"x");
    assert_eq!(within(30, "config", config_on(&e, 3)).await, config, "the restarted members kept the config");
    within(30, "write after restart", zk.create("/after-restart", b"y", &persistent())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_sasl_lets_members_with_the_right_credentials_in_only() {
    let dir = unique_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let jaas = |name: &str, learner_password: &str| {
        let path = dir.join(name);
        let text = format!(
            "QuorumServer {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  user_quorum=\"s3cret\";\n}};\n\
             QuorumLearner {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  username=\"quorum\"\n  password=\"{learner_password}\";\n}};\n"
        );
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (good, bad) = (jaas("good.jaas", "s3cret"), jaas("bad.jaas", "guess"));
    let sasl = [("quorum.auth.enableSasl", "true"), ("quorum.auth.learnerRequireSasl", "true"), ("quorum.auth.serverRequireSasl", "true")];
    let mut extra: Vec<(&str, &str)> = sasl.to_vec();
    extra.push(("java.security.auth.login.config", &good));
    let mut e = Ensemble::start(3, 0, &extra);
    let leader = e.wait_serving(SERVE);
    write_and_read_everywhere(&e, "over-sasl").await;
    assert!(e.server(leader).log().contains("quorum links authenticate with SASL"));
    // Member 3 dials 1 and 2 with a wrong password: both refuse it.
    let logs = restart_refused(&mut e, 3, &[("java.security.auth.login.config", &bad)], "a member with wrong quorum credentials");
    assert!(logs.contains("refused peer connection: quorum SASL") && logs.contains("wrong password"), "the refusal is logged");
    // With the right password it joins and catches up.
    e.kill(3, "KILL");
    e.set_member_extra(3, &[("java.security.auth.login.config", &good)]);
    e.start_member(3);
    e.wait_serving(SERVE);
    assert!(within(30, "read back", children_on(&e, 3, "/")).await.contains("over-sasl"));
    let _ = std::fs::remove_dir_all(dir);
}
