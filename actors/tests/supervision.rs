//! Supervision and mailboxes on running nodes: panics injected into every
//! actor kind (through `POST /actors/<kind>/fault`) are handled by the
//! kind's policy — restart, or fail-stop with status 70 — with no
//! acknowledged write lost; a stalled actor's mailbox depth is exact.

mod common;

use common::ensemble::Ensemble;
use common::{admin, eventually, unique_dir, within, Server};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zookeeper_client::{Acls, Client, CreateMode};

const SERVE: Duration = Duration::from_secs(20);

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn actors(body: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("/actors is not JSON ({e}): {body}"));
    v["actors"].as_array().cloned().unwrap_or_default()
}

fn restarts(body: &str, kind: &str) -> u64 {
    actors(body).iter().find(|a| a["kind"] == kind).map(|a| a["restarts"].as_u64().unwrap()).unwrap_or_else(|| panic!("no {kind} in {body}"))
}

async fn connect(addr: &str) -> Client {
    Client::connector().with_session_timeout(Duration::from_secs(6)).connect(addr).await.unwrap_or_else(|err| panic!("connect to {addr}: {err}"))
}

/// A write and a read through `addr`, retried while the member recovers.
async fn serves(addr: &str, path: &str) -> bool {
    eventually(Duration::from_secs(30), || async {
        let Ok(zk) = Client::connector().with_session_timeout(Duration::from_secs(6)).connect(addr).await else { return false };
        match zk.create(path, b"ok", &persistent()).await {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => matches!(zk.get_data(path).await, Ok((data, _)) if data == b"ok"),
            Err(_) => false,
        }
    })
    .await
}

/// Writes /load/<i> through every member until stopped; the acknowledged ones.
fn write_load(connect_string: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<BTreeSet<String>> {
    tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        let mut zk = connect(&connect_string).await;
        let _ = zk.create("/load", b"", &persistent()).await;
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let path = format!("/load/n{i:06}");
            i += 1;
            match zk.create(&path, b"", &persistent()).await {
                Ok(_) => {
                    acked.insert(path);
                }
                Err(zookeeper_client::Error::SessionExpired | zookeeper_client::Error::ClientClosed) => {
                    if let Ok(fresh) = Client::connector().with_session_timeout(Duration::from_secs(6)).connect(&connect_string).await {
                        zk = fresh;
                    }
                }
                // Connection loss: the outcome is unknown; neither counted nor retried.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        acked
    })
}

async fn children_on(addr: &str, path: &str) -> BTreeSet<String> {
    let zk = connect(addr).await;
    zk.sync(path).await.unwrap();
    zk.list_children(path).await.unwrap().into_iter().map(|c| format!("{path}/{c}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_in_every_kind_on_leader_and_follower_are_handled_by_policy() {
    let mut e = Ensemble::start(3, 0, &[("warden.adminFaultInjection", "true"), ("tickTime", "500")]);
    let leader = e.wait_serving(SERVE);
    let follower = e.all_ids().into_iter().find(|id| *id != leader).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(e.connect_string(&e.all_ids()), stop.clone());
    within(300, "every kind panics on the leader and a follower", async {
        for (member, role) in [(leader, "leader"), (follower, "follower")] {
            let addr = e.connect_string(&[member]);
            // A client of this member, so the session kind has an instance.
            let _client = connect(&addr).await;
            for kind in ["dispatcher", "tracker", "snapshotter", "session", "peer-link", "election"] {
                let before = restarts(&e.admin_get(member, "/actors"), kind);
                // A session handler may be closing as the fault reaches it
                // (clients reconnect after the dispatcher's restart): retry.
                let mut counted = false;
                for _ in 0..5 {
                    let (status, body) = e.admin_post(member, &format!("/actors/{kind}/fault?mode=panic"));
                    assert!(status == 202 || (kind == "session" && status == 404), "{kind} on the {role}: {status} {body}");
                    counted = eventually(Duration::from_secs(3), || async { restarts(&e.admin_get(member, "/actors"), kind) > before }).await;
                    if counted {
                        break;
                    }
                }
                assert!(counted, "the {role}'s {kind} panic is counted");
                assert!(serves(&addr, &format!("/after-{role}-{kind}")).await, "the {role} serves after its {kind} panicked");
            }
        }
        // The processor, the txn log and the broadcast actor escalate: the
        // member fail-stops with 70, the others serve on, and it rejoins
        // after a restart.
        for (member, kind) in [(follower, "processor"), (leader, "txn-log"), (0, "broadcast")] {
            let member = if member == 0 { e.wait_leader(SERVE) } else { member };
            let (status, body) = e.admin_post(member, &format!("/actors/{kind}/fault?mode=panic"));
            assert_eq!(status, 202, "{body}");
            let code = wait_exit(e.server(member)).unwrap_or_else(|| panic!("{kind} panic stops member {member}")).code();
            assert_eq!(code, Some(70), "fail-stop status after a {kind} panic");
            assert!(e.server(member).log().contains("beyond its supervision policy"));
            let others: Vec<u64> = e.all_ids().into_iter().filter(|id| *id != member).collect();
            assert!(serves(&e.connect_string(&others), &format!("/without-{member}-{kind}")).await, "the ensemble serves without member {member}");
            e.start_member(member);
            assert!(serves(&e.connect_string(&[member]), &format!("/rejoined-{member}-{kind}")).await, "member {member} rejoins");
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let acked = within(30, "the load stops", load).await.unwrap();
    assert!(acked.len() > 50, "too little load to mean anything: {} writes", acked.len());
    within(60, "every member holds every acknowledged write", async {
        for id in e.all_ids() {
            let held = children_on(&e.connect_string(&[id]), "/load").await;
            let lost: Vec<_> = acked.difference(&held).collect();
            assert!(lost.is_empty(), "member {id} lost {} acknowledged writes, e.g. {:?}", lost.len(), lost.first());
        }
    })
    .await;
}

/// The exit status of a server that should be stopping, within 10 s.
fn wait_exit(server: &mut Server) -> Option<std::process::ExitStatus> {
    for _ in 0..200 {
        if let Some(status) = server.exited() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn standalone(extra: &[(&str, &str)]) -> (Server, u16) {
    let admin_port = common::free_port();
    let port = admin_port.to_string();
    let mut settings = vec![("admin.serverPort", port.as_str()), ("warden.adminFaultInjection", "true")];
    settings.extend_from_slice(extra);
    let server = Server::start_in(&unique_dir(), common::free_port(), &settings).expect("start warden");
    (server, admin_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_processor_shows_its_exact_mailbox_depth() {
    // tickTime 2000: the client's pings (a request each) stay out of the stall.
    let (server, admin_port) = standalone(&[("tickTime", "2000")]);
    const N: usize = 40;
    within(60, "stall and drain", async {
        let zk = Client::connector().with_session_timeout(Duration::from_secs(30)).connect(&server.connect_string()).await.unwrap();
        zk.create("/stall", b"x", &persistent()).await.unwrap();
        let processor_depth = || {
            let body = admin(admin_port, "GET", "/actors").1;
            actors(&body).iter().find(|a| a["kind"] == "processor").map(|a| a["mailbox_depth"].as_u64().unwrap()).unwrap()
        };
        assert_eq!(processor_depth(), 0);
        let (status, body) = admin(admin_port, "POST", "/actors/processor/fault?mode=stall&ms=3000");
        assert_eq!(status, 202, "{body}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let reads: Vec<_> = (0..N)
            .map(|_| {
                let zk = zk.clone();
                // With a watch: a plain read is answered on the I/O thread, not by the processor.
                tokio::spawn(async move { zk.get_and_watch_data("/stall").await })
            })
            .collect();
        assert!(eventually(Duration::from_secs(2), || async { processor_depth() == N as u64 }).await, "depth {} while {N} requests wait", processor_depth());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(processor_depth(), N as u64, "exactly the waiting requests, no more");
        // The watchers stay alive until the depth is read: dropping the last
        // one makes the client send removeWatches, a request of its own.
        let mut watchers = Vec::new();
        for r in reads {
            let (data, _, watcher) = r.await.unwrap().unwrap();
            assert_eq!(data, b"x");
            watchers.push(watcher);
        }
        assert_eq!(processor_depth(), 0);
        drop(watchers);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_panic_fail_stops_and_a_restart_recovers_every_acknowledged_write() {
    let (mut server, admin_port) = standalone(&[]);
    let dir = server.data_dir().parent().unwrap().to_path_buf();
    let port = server.port();
    within(60, "writes, panic, restart", async {
        let zk = connect(&server.connect_string()).await;
        for i in 0..100 {
            zk.create(&format!("/w{i}"), b"", &persistent()).await.unwrap();
        }
        // Not restartable: refused by the policy endpoint.
        let kinds = admin(admin_port, "GET", "/actors").1;
        assert!(actors(&kinds).iter().any(|a| a["kind"] == "processor" && a["supervision"]["strategy"] == "escalate"), "{kinds}");
        let (status, body) = admin(admin_port, "POST", "/actors/processor/fault?mode=panic");
        assert_eq!(status, 202, "{body}");
        let status = wait_exit(&mut server).expect("the node fail-stops");
        assert_eq!(status.code(), Some(70));
    })
    .await;
    drop(server);
    let restarted = Server::start_in(&dir, port, &[]).expect("restart on the same data");
    within(30, "recovered", async {
        let zk = connect(&restarted.connect_string()).await;
        let children = zk.list_children("/").await.unwrap();
        assert_eq!(children.iter().filter(|c| c.starts_with('w')).count(), 100);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_refused_when_off_or_malformed_and_every_kind_is_listed_from_start() {
    let (server, admin_port) = standalone(&[]);
    let kinds: BTreeSet<String> = actors(&admin(admin_port, "GET", "/actors").1).iter().map(|a| a["kind"].as_str().unwrap().to_string()).collect();
    let want: BTreeSet<String> = ["dispatcher", "processor", "session", "snapshotter", "tracker", "txn-log"].map(String::from).into();
    assert_eq!(kinds, want, "every kind before any client connected");
    assert_eq!(admin(admin_port, "POST", "/actors/processor/fault?mode=explode").0, 400);
    assert_eq!(admin(admin_port, "POST", "/actors/processor/fault?mode=stall").0, 400, "stall needs ms");
    assert_eq!(admin(admin_port, "POST", "/actors/nosuch/fault?mode=panic").0, 404);
    assert_eq!(admin(admin_port, "POST", "/actors/session/fault?mode=panic").0, 404, "no session yet");
    let off_port = common::free_port();
    let off = Server::start_in(&unique_dir(), common::free_port(), &[("admin.serverPort", &off_port.to_string())]).unwrap();
    assert_eq!(admin(off_port, "POST", "/actors/tracker/fault?mode=panic").0, 403);
    drop(off);
    drop(server);
}
