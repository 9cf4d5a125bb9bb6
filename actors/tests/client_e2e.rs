//! End-to-end tests: a real `warden` process driven by the `zookeeper-client` crate.
//! Every test starts its own server (loopback only, private data directory).
//! Expectations encode Apache ZooKeeper 3.8 behaviour.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{eventually, within, Target as Server};
use zookeeper_client::{
    Acl, Acls, AddWatchMode, AuthId, AuthUser, Client, CreateMode, CreateOptions, Error, EventType, MultiReadResult, MultiWriteError, MultiWriteResult,
    Permission, PersistentWatcher, WatchedEvent,
};

/// Upper bound for one test, so a server bug cannot hang the suite.
const TEST_DEADLINE_SECS: u64 = 40;

const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
const SEQUENTIAL: CreateOptions<'static> = CreateMode::PersistentSequential.with_acls(Acls::anyone_all());
const EPHEMERAL_SEQUENTIAL: CreateOptions<'static> = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
const CONTAINER: CreateOptions<'static> = CreateMode::Container.with_acls(Acls::anyone_all());

/// digest ids as ZooKeeper computes them: user:base64(sha1("user:password")).
const ALICE_DIGEST_ID: &str = "alice:aYXlLOpEooaV1cRAvUL1fp9Qt7E="; // alice:secret
const BOB_DIGEST_ID: &str = "bob:1Yu1ryCXOIF7lyFzbmQ5J+MJOZc="; // bob:hunter2

async fn connect(server: &Server) -> Client {
    within(10, "client connect", Client::connect(&server.connect_string())).await.unwrap_or_else(|e| panic!("connect to {}: {e}", server.connect_string()))
}

async fn next_event(watcher: &mut PersistentWatcher) -> WatchedEvent {
    within(5, "persistent watch event", watcher.changed()).await
}

fn event(event_type: EventType, path: &str) -> (EventType, String) {
    (event_type, path.to_string())
}

fn summary(ev: &WatchedEvent) -> (EventType, String) {
    (ev.event_type, ev.path.clone())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn exists(zk: &Client, path: &str) -> bool {
    zk.check_stat(path).await.unwrap().is_some()
}

/// "Total watches:N" from `wchs` (ZooKeeper counts data/exists watches there).
fn total_data_watches(server: &Server) -> usize {
    let answer = server.four_letter("wchs").expect("wchs");
    let total = answer.lines().find_map(|l| l.strip_prefix("Total watches:"));
    total.unwrap_or_else(|| panic!("no watch total in wchs answer {answer:?}")).trim().parse().unwrap()
}

fn assert_data_watches(server: &Server, expected: usize, what: &str) {
    assert_eq!(total_data_watches(server), expected, "wchs total watches: {what}");
}

// 1. Basic create / get / set and Stat consistency.
#[tokio::test]
async fn create_get_set_and_stat() {
    within(TEST_DEADLINE_SECS, "create_get_set_and_stat", async {
        let server = Server::start();
        let zk = connect(&server).await;
        assert!(zk.session_id().0 > 0, "session id {:?}", zk.session_id());

        let root_before = zk.check_stat("/").await.unwrap().expect("root exists");
        let before = now_ms();
        let (stat, seq) = zk.create("/example", b"hello", &PERSISTENT).await.unwrap();
        assert_eq!(seq.into_i64(), -1);
        assert!(stat.czxid > 0);
        assert_eq!(stat.czxid, stat.mzxid, "new node: czxid == mzxid");
        assert_eq!(stat.pzxid, stat.czxid, "new node: pzxid == czxid");
        assert_eq!(stat.version, 0);
        assert_eq!(stat.cversion, 0);
        assert_eq!(stat.aversion, 0);
        assert_eq!(stat.ephemeral_owner, 0);
        assert_eq!(stat.data_length, 5);
        assert_eq!(stat.num_children, 0);
        assert_eq!(stat.ctime, stat.mtime);
        assert!((before - 5_000..=now_ms() + 5_000).contains(&stat.ctime), "ctime {} not near now", stat.ctime);

        let (data, got) = zk.get_data("/example").await.unwrap();
        assert_eq!(data, b"hello");
        assert_eq!(got, stat, "get_data stat equals create stat");
        assert_eq!(zk.check_stat("/example").await.unwrap(), Some(stat));

        // Root: one new child; its pzxid is the create's zxid.
        let (children, root) = zk.get_children("/").await.unwrap();
        assert!(children.contains(&"example".to_string()), "{children:?}");
        assert!(children.contains(&"zookeeper".to_string()), "{children:?}");
        assert_eq!(root.num_children as usize, children.len());
        assert_eq!(root.pzxid, stat.czxid);
        assert_eq!(root.cversion, root_before.cversion + 1, "one child created under /");

        let stat2 = zk.set_data("/example", b"world!", Some(0)).await.unwrap();
        assert_eq!(stat2.version, 1);
        assert_eq!(stat2.czxid, stat.czxid);
        assert!(stat2.mzxid > stat.mzxid);
        assert_eq!(stat2.pzxid, stat.pzxid, "set_data does not touch pzxid");
        assert_eq!(stat2.ctime, stat.ctime);
        assert!(stat2.mtime >= stat.mtime);
        assert_eq!(stat2.data_length, 6);
        let (data, got) = zk.get_data("/example").await.unwrap();
        assert_eq!(data, b"world!");
        assert_eq!(got, stat2);
        // Unconditional set (version -1).
        let stat3 = zk.set_data("/example", b"", None).await.unwrap();
        assert_eq!(stat3.version, 2);
        assert_eq!(stat3.data_length, 0);
        assert_eq!(zk.get_data("/example").await.unwrap().0, b"");

        // Child bookkeeping on the parent.
        let (child, _) = zk.create("/example/child", b"c", &PERSISTENT).await.unwrap();
        let parent = zk.check_stat("/example").await.unwrap().unwrap();
        assert_eq!(parent.num_children, 1);
        assert_eq!(parent.cversion, 1);
        assert_eq!(parent.pzxid, child.czxid);
        assert_eq!(parent.version, 2, "adding a child does not change the data version");
        assert_eq!(parent.mzxid, stat3.mzxid, "adding a child does not change mzxid");
        assert_eq!(zk.list_children("/example").await.unwrap(), vec!["child".to_string()]);

        zk.delete("/example/child", Some(0)).await.unwrap();
        let parent = zk.check_stat("/example").await.unwrap().unwrap();
        assert_eq!(parent.num_children, 0);
        assert_eq!(parent.cversion, 2);
        assert!(parent.pzxid > child.czxid);
        assert!(zk.list_children("/example").await.unwrap().is_empty());

        zk.sync("/example").await.unwrap();
        zk.delete("/example", Some(2)).await.unwrap();
        assert_eq!(zk.check_stat("/example").await.unwrap(), None);
    })
    .await
}

// 2. Create modes.
#[tokio::test]
async fn create_modes_persistent_ephemeral_sequential() {
    within(TEST_DEADLINE_SECS, "create_modes_persistent_ephemeral_sequential", async {
        let server = Server::start();
        let zk = connect(&server).await;
        let session = zk.session_id().0;

        let (p, _) = zk.create("/persistent", b"", &PERSISTENT).await.unwrap();
        assert_eq!(p.ephemeral_owner, 0);

        let (e, _) = zk.create("/ephemeral", b"e", &EPHEMERAL).await.unwrap();
        assert_eq!(e.ephemeral_owner, session, "ephemeral_owner is the creating session");
        assert_eq!(zk.get_data("/ephemeral").await.unwrap().1.ephemeral_owner, session);

        // Sequence numbers come from the parent's cversion, formatted as 10 digits.
        zk.create("/seq", b"", &PERSISTENT).await.unwrap();
        let (s0, seq0) = zk.create("/seq/n-", b"", &SEQUENTIAL).await.unwrap();
        assert_eq!(seq0.into_i64(), 0);
        assert_eq!(s0.ephemeral_owner, 0);
        zk.create("/seq/plain", b"", &PERSISTENT).await.unwrap();
        let (_, seq2) = zk.create("/seq/n-", b"", &SEQUENTIAL).await.unwrap();
        assert_eq!(seq2.into_i64(), 2, "sequence = parent cversion (a plain create bumped it)");
        let (es, seq3) = zk.create("/seq/e-", b"", &EPHEMERAL_SEQUENTIAL).await.unwrap();
        assert_eq!(seq3.into_i64(), 3);
        assert_eq!(es.ephemeral_owner, session);
        let mut children = zk.list_children("/seq").await.unwrap();
        children.sort();
        assert_eq!(children, vec!["e-0000000003", "n-0000000000", "n-0000000002", "plain"]);
        for name in children.iter().filter(|c| *c != "plain") {
            let suffix = &name[2..];
            assert_eq!(suffix.len(), 10);
            assert!(suffix.bytes().all(|b| b.is_ascii_digit()), "{name}");
        }
        assert_eq!(zk.get_data("/seq/e-0000000003").await.unwrap().1.ephemeral_owner, session);
        // Sequential create with a trailing slash: the name is just the counter.
        let (_, seq4) = zk.create("/seq/", b"", &SEQUENTIAL).await.unwrap();
        assert_eq!(seq4.into_i64(), 4);
        assert!(exists(&zk, "/seq/0000000004").await);
    })
    .await
}

#[tokio::test]
async fn container_is_deleted_after_last_child_goes() {
    within(TEST_DEADLINE_SECS, "container_is_deleted_after_last_child_goes", async {
        let server = Server::start();
        let zk = connect(&server).await;

        let (c, _) = zk.create("/container", b"", &CONTAINER).await.unwrap();
        assert_eq!(c.ephemeral_owner, 0);
        // A container that never had a child is not reaped (maxNeverUsedIntervalMs defaults to 0).
        zk.create("/never-used", b"", &CONTAINER).await.unwrap();

        zk.create("/container/child", b"", &PERSISTENT).await.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(exists(&zk, "/container").await, "container with a child must survive");

        zk.delete("/container/child", None).await.unwrap();
        let gone = eventually(Duration::from_secs(10), || async { !exists(&zk, "/container").await }).await;
        assert!(gone, "empty container /container was not deleted within 10 s");
        assert!(exists(&zk, "/never-used").await, "never-used container must not be reaped");
    })
    .await
}

#[tokio::test]
async fn ttl_node_is_deleted_after_ttl_when_childless() {
    within(TEST_DEADLINE_SECS, "ttl_node_is_deleted_after_ttl_when_childless", async {
        let server = Server::start();
        let zk = connect(&server).await;
        let ttl = CreateMode::Persistent.with_acls(Acls::anyone_all()).with_ttl(Duration::from_millis(300));
        let ttl_seq = CreateMode::PersistentSequential.with_acls(Acls::anyone_all()).with_ttl(Duration::from_millis(300));

        let (parent, _) = zk.create("/ttl-parent", b"", &ttl).await.unwrap();
        assert_eq!(parent.version, 0);
        zk.create("/ttl-parent/keep", b"", &PERSISTENT).await.unwrap();
        let created = std::time::Instant::now();
        zk.create("/ttl-leaf", b"", &ttl).await.unwrap();
        let (_, seq) = zk.create("/ttl-seq-", b"", &ttl_seq).await.unwrap();
        let seq_path = format!("/ttl-seq-{seq}");
        assert!(exists(&zk, &seq_path).await);

        let gone = eventually(Duration::from_secs(10), || async { !exists(&zk, "/ttl-leaf").await }).await;
        assert!(gone, "childless TTL node was not deleted within 10 s");
        assert!(created.elapsed() >= Duration::from_millis(300), "deleted before its TTL elapsed");
        let gone = eventually(Duration::from_secs(5), || async { !exists(&zk, &seq_path).await }).await;
        assert!(gone, "childless sequential TTL node was not deleted");
        assert!(exists(&zk, "/ttl-parent").await, "TTL node with a child must survive");

        zk.delete("/ttl-parent/keep", None).await.unwrap();
        let gone = eventually(Duration::from_secs(10), || async { !exists(&zk, "/ttl-parent").await }).await;
        assert!(gone, "TTL node whose last child was deleted was not reaped within 10 s");
    })
    .await
}

// 3. Error codes.
#[tokio::test]
async fn error_codes() {
    within(TEST_DEADLINE_SECS, "error_codes", async {
        let server = Server::start();
        let zk = connect(&server).await;

        // NoNode
        assert_eq!(zk.get_data("/missing").await.unwrap_err(), Error::NoNode);
        assert_eq!(zk.set_data("/missing", b"x", None).await.unwrap_err(), Error::NoNode);
        assert_eq!(zk.delete("/missing", None).await.unwrap_err(), Error::NoNode);
        assert_eq!(zk.get_children("/missing").await.unwrap_err(), Error::NoNode);
        assert_eq!(zk.create("/missing/child", b"", &PERSISTENT).await.unwrap_err(), Error::NoNode);
        assert_eq!(zk.get_acl("/missing").await.unwrap_err(), Error::NoNode);
        assert_eq!(zk.check_stat("/missing").await.unwrap(), None);

        // NodeExists
        zk.create("/a", b"1", &PERSISTENT).await.unwrap();
        assert_eq!(zk.create("/a", b"2", &PERSISTENT).await.unwrap_err(), Error::NodeExists);
        assert_eq!(zk.create("/a", b"2", &EPHEMERAL).await.unwrap_err(), Error::NodeExists);
        assert_eq!(zk.get_data("/a").await.unwrap().0, b"1", "failed create left data alone");

        // BadVersion
        assert_eq!(zk.set_data("/a", b"x", Some(5)).await.unwrap_err(), Error::BadVersion);
        assert_eq!(zk.delete("/a", Some(1)).await.unwrap_err(), Error::BadVersion);
        assert_eq!(zk.set_data("/a", b"x", Some(0)).await.unwrap().version, 1);
        assert_eq!(zk.set_data("/a", b"y", Some(0)).await.unwrap_err(), Error::BadVersion);

        // NotEmpty
        zk.create("/a/b", b"", &PERSISTENT).await.unwrap();
        assert_eq!(zk.delete("/a", None).await.unwrap_err(), Error::NotEmpty);
        assert_eq!(zk.delete("/a", Some(1)).await.unwrap_err(), Error::NotEmpty);

        // NoChildrenForEphemerals
        zk.create("/eph", b"", &EPHEMERAL).await.unwrap();
        assert_eq!(zk.create("/eph/child", b"", &PERSISTENT).await.unwrap_err(), Error::NoChildrenForEphemerals);
        assert_eq!(zk.create("/eph/child", b"", &EPHEMERAL).await.unwrap_err(), Error::NoChildrenForEphemerals);
        assert_eq!(zk.create("/eph/s-", b"", &SEQUENTIAL).await.unwrap_err(), Error::NoChildrenForEphemerals);

        // InvalidACL: creator_all ("auth" scheme) without any authenticated identity.
        let creator_all = CreateMode::Persistent.with_acls(Acls::creator_all());
        assert_eq!(zk.create("/creator", b"", &creator_all).await.unwrap_err(), Error::InvalidAcl);
        assert!(!exists(&zk, "/creator").await);

        // The session survives all of the above.
        zk.delete("/a/b", Some(0)).await.unwrap();
        zk.delete("/a", Some(1)).await.unwrap();
    })
    .await
}

// 4. Watches.
#[tokio::test]
async fn oneshot_data_watch_fires_once() {
    within(TEST_DEADLINE_SECS, "oneshot_data_watch_fires_once", async {
        let server = Server::start();
        let zk = connect(&server).await;
        let other = connect(&server).await;
        zk.create("/w", b"v0", &PERSISTENT).await.unwrap();

        let (data, stat, watcher) = zk.get_and_watch_data("/w").await.unwrap();
        assert_eq!(data, b"v0");
        assert_eq!(stat.version, 0);
        assert_data_watches(&server, 1, "one data watch registered");

        other.set_data("/w", b"v1", None).await.unwrap();
        let ev = within(5, "NodeDataChanged", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeDataChanged, "/w"));
        // One-shot: the server dropped the watch when it fired.
        assert_data_watches(&server, 0, "one-shot watch must be removed after firing");
        other.set_data("/w", b"v2", None).await.unwrap();

        // A fresh data watch fires NodeDeleted on delete.
        let (data, _, watcher) = zk.get_and_watch_data("/w").await.unwrap();
        assert_eq!(data, b"v2");
        other.delete("/w", None).await.unwrap();
        let ev = within(5, "NodeDeleted", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeDeleted, "/w"));
        assert_data_watches(&server, 0, "after NodeDeleted");
    })
    .await
}

#[tokio::test]
async fn child_watch_fires_on_child_changes() {
    within(TEST_DEADLINE_SECS, "child_watch_fires_on_child_changes", async {
        let server = Server::start();
        let zk = connect(&server).await;
        let other = connect(&server).await;
        zk.create("/p", b"", &PERSISTENT).await.unwrap();

        let (children, stat, watcher) = zk.get_and_watch_children("/p").await.unwrap();
        assert!(children.is_empty());
        assert_eq!(stat.num_children, 0);
        // A data change on the parent must not trigger the child watch; the child create must.
        other.set_data("/p", b"data", None).await.unwrap();
        other.create("/p/c", b"", &PERSISTENT).await.unwrap();
        let ev = within(5, "NodeChildrenChanged on create", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeChildrenChanged, "/p"));

        let (children, watcher) = zk.list_and_watch_children("/p").await.unwrap();
        assert_eq!(children, vec!["c".to_string()]);
        // Grandchildren and child data are not child events of /p.
        other.create("/p/c/g", b"", &PERSISTENT).await.unwrap();
        other.set_data("/p/c", b"x", None).await.unwrap();
        other.delete("/p/c/g", None).await.unwrap();
        other.delete("/p/c", None).await.unwrap();
        let ev = within(5, "NodeChildrenChanged on delete", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeChildrenChanged, "/p"));

        // Deleting the watched node itself fires NodeDeleted on a child watch.
        let (_, _, watcher) = zk.get_and_watch_children("/p").await.unwrap();
        other.delete("/p", None).await.unwrap();
        let ev = within(5, "NodeDeleted on child watch", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeDeleted, "/p"));
    })
    .await
}

#[tokio::test]
async fn exists_watch_fires_created_changed_deleted() {
    within(TEST_DEADLINE_SECS, "exists_watch_fires_created_changed_deleted", async {
        let server = Server::start();
        let zk = connect(&server).await;
        let other = connect(&server).await;

        let (stat, watcher) = zk.check_and_watch_stat("/x").await.unwrap();
        assert_eq!(stat, None);
        other.create("/x", b"", &PERSISTENT).await.unwrap();
        let ev = within(5, "NodeCreated", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeCreated, "/x"));

        let (stat, watcher) = zk.check_and_watch_stat("/x").await.unwrap();
        assert_eq!(stat.map(|s| s.version), Some(0));
        other.set_data("/x", b"1", None).await.unwrap();
        let ev = within(5, "NodeDataChanged", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeDataChanged, "/x"));

        let (_, watcher) = zk.check_and_watch_stat("/x").await.unwrap();
        other.delete("/x", None).await.unwrap();
        let ev = within(5, "NodeDeleted", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeDeleted, "/x"));
    })
    .await
}

#[tokio::test]
async fn persistent_recursive_watch_fires_for_descendants_repeatedly() {
    within(TEST_DEADLINE_SECS, "persistent_recursive_watch_fires_for_descendants_repeatedly", async {
        let server = Server::start();
        let zk = connect(&server).await;
        let other = connect(&server).await;

        // Registered before /r exists.
        let mut watcher = zk.watch("/r", AddWatchMode::PersistentRecursive).await.unwrap();
        other.create("/rx", b"", &PERSISTENT).await.unwrap(); // sibling sharing a string prefix: no event
        other.create("/r", b"", &PERSISTENT).await.unwrap();
        other.create("/r/a", b"", &PERSISTENT).await.unwrap();
        other.create("/r/a/b", b"", &PERSISTENT).await.unwrap();
        other.set_data("/r/a/b", b"1", None).await.unwrap();
        other.set_data("/r/a/b", b"2", None).await.unwrap();
        other.set_data("/r", b"root", None).await.unwrap();
        other.delete("/r/a/b", None).await.unwrap();
        other.delete("/r/a", None).await.unwrap();
        other.create("/r/a", b"", &PERSISTENT).await.unwrap();

        let expected = vec![
            event(EventType::NodeCreated, "/r"),
            event(EventType::NodeCreated, "/r/a"),
            event(EventType::NodeCreated, "/r/a/b"),
            event(EventType::NodeDataChanged, "/r/a/b"),
            event(EventType::NodeDataChanged, "/r/a/b"),
            event(EventType::NodeDataChanged, "/r"),
            event(EventType::NodeDeleted, "/r/a/b"),
            event(EventType::NodeDeleted, "/r/a"),
            event(EventType::NodeCreated, "/r/a"),
        ];
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(summary(&next_event(&mut watcher).await));
        }
        // Recursive watches never deliver NodeChildrenChanged.
        assert_eq!(got, expected);
    })
    .await
}

#[tokio::test]
async fn persistent_watch_fires_for_node_and_children_repeatedly() {
    within(TEST_DEADLINE_SECS, "persistent_watch_fires_for_node_and_children_repeatedly", async {
        let server = Server::start();
        let zk = connect(&server).await;
        let other = connect(&server).await;

        let mut watcher = zk.watch("/pp", AddWatchMode::Persistent).await.unwrap();
        other.create("/pp", b"", &PERSISTENT).await.unwrap();
        other.create("/pp/c", b"", &PERSISTENT).await.unwrap();
        other.create("/pp/c/g", b"", &PERSISTENT).await.unwrap(); // grandchild: no event
        other.set_data("/pp/c", b"x", None).await.unwrap(); // child data: no event
        other.set_data("/pp", b"1", None).await.unwrap();
        other.set_data("/pp", b"2", None).await.unwrap();
        other.delete("/pp/c/g", None).await.unwrap(); // grandchild: no event
        other.delete("/pp/c", None).await.unwrap();
        other.delete("/pp", None).await.unwrap();
        other.create("/pp", b"", &PERSISTENT).await.unwrap(); // still watched after NodeDeleted

        let expected = vec![
            event(EventType::NodeCreated, "/pp"),
            event(EventType::NodeChildrenChanged, "/pp"),
            event(EventType::NodeDataChanged, "/pp"),
            event(EventType::NodeDataChanged, "/pp"),
            event(EventType::NodeChildrenChanged, "/pp"),
            event(EventType::NodeDeleted, "/pp"),
            event(EventType::NodeCreated, "/pp"),
        ];
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(summary(&next_event(&mut watcher).await));
        }
        assert_eq!(got, expected);
    })
    .await
}

// 5. Multi.
#[tokio::test]
async fn multi_is_all_or_nothing() {
    within(TEST_DEADLINE_SECS, "multi_is_all_or_nothing", async {
        let server = Server::start();
        let zk = connect(&server).await;
        zk.create("/m", b"m", &PERSISTENT).await.unwrap();

        let mut writer = zk.new_multi_writer();
        writer.add_create("/m1", b"", &PERSISTENT).unwrap();
        writer.add_set_data("/m", b"changed", None).unwrap();
        writer.add_set_data("/missing", b"x", None).unwrap();
        writer.add_create("/m2", b"", &PERSISTENT).unwrap();
        let err = writer.commit().await.unwrap_err();
        assert_eq!(err, MultiWriteError::OperationFailed { index: 2, source: Error::NoNode });
        assert!(!exists(&zk, "/m1").await, "earlier create rolled back");
        assert!(!exists(&zk, "/m2").await);
        let (data, stat) = zk.get_data("/m").await.unwrap();
        assert_eq!((data.as_slice(), stat.version), (&b"m"[..], 0), "earlier set_data rolled back");

        let mut writer = zk.new_multi_writer();
        writer.add_create("/m3", b"", &PERSISTENT).unwrap();
        writer.add_check_version("/m", 7).unwrap();
        let err = writer.commit().await.unwrap_err();
        assert_eq!(err, MultiWriteError::OperationFailed { index: 1, source: Error::BadVersion });
        assert!(!exists(&zk, "/m3").await);

        let mut writer = zk.new_multi_writer();
        writer.add_create("/m", b"", &PERSISTENT).unwrap();
        let err = writer.commit().await.unwrap_err();
        assert_eq!(err, MultiWriteError::OperationFailed { index: 0, source: Error::NodeExists });

        // Ops inside one multi see the effects of earlier ops (the delete of a node created in it).
        let mut writer = zk.new_multi_writer();
        writer.add_create("/tmp", b"", &PERSISTENT).unwrap();
        writer.add_delete("/m", Some(0)).unwrap();
        writer.add_delete("/tmp", None).unwrap();
        writer.add_create("/m/child", b"", &PERSISTENT).unwrap(); // parent deleted above
        let err = writer.commit().await.unwrap_err();
        assert_eq!(err, MultiWriteError::OperationFailed { index: 3, source: Error::NoNode });
        assert!(exists(&zk, "/m").await);
        assert!(!exists(&zk, "/tmp").await);

        // Empty multi is fine.
        assert!(zk.new_multi_writer().commit().await.unwrap().is_empty());
    })
    .await
}

#[tokio::test]
async fn multi_success_returns_per_op_results() {
    within(TEST_DEADLINE_SECS, "multi_success_returns_per_op_results", async {
        let server = Server::start();
        let zk = connect(&server).await;
        zk.create("/m", b"m", &PERSISTENT).await.unwrap();

        let mut writer = zk.new_multi_writer();
        writer.add_create("/n", b"abc", &PERSISTENT).unwrap();
        writer.add_set_data("/m", b"v1", Some(0)).unwrap();
        writer.add_check_version("/m", 1).unwrap();
        writer.add_create("/n/s-", b"", &SEQUENTIAL).unwrap();
        writer.add_create("/n/tmp", b"", &PERSISTENT).unwrap();
        writer.add_delete("/n/tmp", Some(0)).unwrap();
        writer.add_create("/eph", b"", &EPHEMERAL).unwrap();
        let results = writer.commit().await.unwrap();
        assert_eq!(results.len(), 7, "{results:?}");

        let MultiWriteResult::Create { path, stat: n_stat } = &results[0] else { panic!("{:?}", results[0]) };
        assert_eq!(path, "/n");
        let MultiWriteResult::SetData { stat: m_stat } = &results[1] else { panic!("{:?}", results[1]) };
        assert_eq!(m_stat.version, 1);
        assert!(matches!(results[2], MultiWriteResult::Check), "{:?}", results[2]);
        let MultiWriteResult::Create { path: seq_path, .. } = &results[3] else { panic!("{:?}", results[3]) };
        assert_eq!(seq_path, "/n/s-0000000000");
        let MultiWriteResult::Create { path: tmp_path, .. } = &results[4] else { panic!("{:?}", results[4]) };
        assert_eq!(tmp_path, "/n/tmp");
        assert!(matches!(results[5], MultiWriteResult::Delete), "{:?}", results[5]);
        let MultiWriteResult::Create { path: eph_path, stat: eph_stat } = &results[6] else { panic!("{:?}", results[6]) };
        assert_eq!(eph_path, "/eph");

        let (data, stat) = zk.get_data("/n").await.unwrap();
        assert_eq!(data, b"abc");
        // All ops of one multi share one zxid.
        assert_eq!(m_stat.mzxid, stat.czxid);
        // A create inside multi may carry no stat (plain Create reply); if it has one, it must be right.
        if !n_stat.is_invalid() {
            assert_eq!(*n_stat, stat);
        }
        if !eph_stat.is_invalid() {
            assert_eq!(eph_stat.czxid, stat.czxid);
            assert_eq!(eph_stat.ephemeral_owner, zk.session_id().0);
        }
        assert_eq!(zk.list_children("/n").await.unwrap(), vec!["s-0000000000".to_string()]);
        assert_eq!(zk.get_data("/m").await.unwrap().0, b"v1");
        assert_eq!(zk.get_data("/eph").await.unwrap().1.ephemeral_owner, zk.session_id().0);

        // Multi read: individual results, individual errors.
        let mut reader = zk.new_multi_reader();
        reader.add_get_data("/m").unwrap();
        reader.add_get_children("/n").unwrap();
        reader.add_get_data("/missing").unwrap();
        let results = reader.commit().await.unwrap();
        assert_eq!(results.len(), 3, "{results:?}");
        match &results[0] {
            MultiReadResult::Data { data, stat } => {
                assert_eq!(data, b"v1");
                assert_eq!(stat.version, 1);
            }
            other => panic!("{other:?}"),
        }
        match &results[1] {
            MultiReadResult::Children { children } => assert_eq!(children, &vec!["s-0000000000".to_string()]),
            other => panic!("{other:?}"),
        }
        match &results[2] {
            MultiReadResult::Error { err } => assert_eq!(err, &Error::NoNode),
            other => panic!("{other:?}"),
        }
    })
    .await
}

// 6. Digest auth and ACLs.
#[tokio::test]
async fn digest_acl_requires_authentication() {
    within(TEST_DEADLINE_SECS, "digest_acl_requires_authentication", async {
        let server = Server::start();
        let alice = within(10, "connect with auth", Client::connector().with_auth("digest", b"alice:secret").connect(&server.connect_string())).await.unwrap();
        let anonymous = connect(&server).await;
        let bob = connect(&server).await;
        within(5, "bob auth", bob.auth("digest", b"bob:hunter2")).await.unwrap();

        // "auth" scheme: the ACL becomes the creator's digest identity.
        let creator_all = CreateMode::Persistent.with_acls(Acls::creator_all());
        alice.create("/secret", b"s3cr3t", &creator_all).await.unwrap();
        let (acl, _) = alice.get_acl("/secret").await.unwrap();
        assert_eq!(acl, vec![Acl::new(Permission::ALL, AuthId::new("digest", ALICE_DIGEST_ID))]);

        // Explicit digest ACL; world may only read.
        let acls = [Acl::new(Permission::ALL, AuthId::new("digest", ALICE_DIGEST_ID)), Acl::new(Permission::READ, AuthId::anyone())];
        alice.create("/shared", b"public", &CreateMode::Persistent.with_acls(Acls::new(&acls))).await.unwrap();

        for (who, zk) in [("anonymous", &anonymous), ("bob", &bob)] {
            assert_eq!(zk.get_data("/secret").await.unwrap_err(), Error::NoAuth, "{who} get_data");
            assert_eq!(zk.get_children("/secret").await.unwrap_err(), Error::NoAuth, "{who} get_children");
            assert_eq!(zk.set_data("/secret", b"x", None).await.unwrap_err(), Error::NoAuth, "{who} set_data");
            assert_eq!(zk.create("/secret/c", b"", &PERSISTENT).await.unwrap_err(), Error::NoAuth, "{who} create child");
            assert_eq!(zk.get_acl("/secret").await.unwrap_err(), Error::NoAuth, "{who} get_acl");
            // exists checks READ, as ZooKeeper 3.8.4+/3.9 (ZOOKEEPER-2590).
            assert_eq!(zk.check_stat("/secret").await.unwrap_err(), Error::NoAuth, "{who} exists");
            // Readable by world, writable only by alice.
            assert_eq!(zk.get_data("/shared").await.unwrap().0, b"public", "{who} reads /shared");
            assert_eq!(zk.set_data("/shared", b"x", None).await.unwrap_err(), Error::NoAuth, "{who} writes /shared");
        }

        // Authenticated clients: alice, and a new session authenticated after connecting.
        assert_eq!(alice.get_data("/secret").await.unwrap().0, b"s3cr3t");
        let late = connect(&server).await;
        assert_eq!(late.get_data("/secret").await.unwrap_err(), Error::NoAuth);
        within(5, "late auth", late.auth("digest", b"alice:secret")).await.unwrap();
        assert_eq!(late.get_data("/secret").await.unwrap().0, b"s3cr3t");
        late.create("/secret/c", b"", &PERSISTENT).await.unwrap();
        assert_eq!(alice.set_data("/shared", b"new", None).await.unwrap().version, 1);

        // A session may hold several identities; bob + alice can read.
        within(5, "second identity auth", bob.auth("digest", b"alice:secret")).await.unwrap();
        assert_eq!(bob.get_data("/secret").await.unwrap().0, b"s3cr3t");

        // setACL needs ADMIN and bumps aversion.
        let bob_only = [Acl::new(Permission::ALL, AuthId::new("digest", BOB_DIGEST_ID))];
        assert_eq!(anonymous.set_acl("/shared", &bob_only, None).await.unwrap_err(), Error::NoAuth, "anonymous setACL");
        let stat = alice.set_acl("/shared", &bob_only, Some(0)).await.unwrap();
        assert_eq!(stat.aversion, 1);
        assert_eq!(alice.get_data("/shared").await.unwrap_err(), Error::NoAuth, "alice lost access");
        assert_eq!(anonymous.get_data("/shared").await.unwrap_err(), Error::NoAuth);

        // Deleting a node needs DELETE on the parent, not on the node: the root is world:anyone.
        anonymous.delete("/shared", None).await.unwrap();
    })
    .await
}

#[tokio::test]
async fn auth_identities_and_bad_scheme() {
    within(TEST_DEADLINE_SECS, "auth_identities_and_bad_scheme", async {
        let server = Server::start();
        let zk = connect(&server).await;
        within(5, "auth", zk.auth("digest", b"alice:secret")).await.unwrap();
        let users = within(5, "whoami", zk.list_auth_users()).await.unwrap();
        assert!(users.contains(&AuthUser::new("digest", "alice")), "whoami: {users:?}");
        assert!(users.contains(&AuthUser::new("ip", "127.0.0.1")), "whoami: {users:?}");

        // Unknown scheme: AUTHFAILED, and the session is finished.
        let bad = connect(&server).await;
        assert_eq!(within(5, "auth failure", bad.auth("no-such-scheme", b"x")).await.unwrap_err(), Error::AuthFailed);
        let err = within(5, "request after auth failure", bad.get_data("/")).await.unwrap_err();
        assert_eq!(err, Error::AuthFailed);
    })
    .await
}

// 7. Session lifecycle removes ephemerals.
#[tokio::test]
async fn closing_session_removes_ephemerals() {
    within(TEST_DEADLINE_SECS, "closing_session_removes_ephemerals", async {
        let server = Server::start();
        let observer = connect(&server).await;
        let owner = connect(&server).await;
        owner.create("/parent", b"", &PERSISTENT).await.unwrap();
        owner.create("/parent/e1", b"", &EPHEMERAL).await.unwrap();
        let (_, seq) = owner.create("/parent/e-", b"", &EPHEMERAL_SEQUENTIAL).await.unwrap();
        let seq_path = format!("/parent/e-{seq}");

        let stat = observer.check_stat("/parent/e1").await.unwrap().expect("observer sees ephemeral");
        assert_eq!(stat.ephemeral_owner, owner.session_id().0);
        let (_, deleted) = observer.check_and_watch_stat("/parent/e1").await.unwrap();
        let (_, children_changed) = observer.get_and_watch_children("/parent").await.map(|(c, _, w)| (c, w)).unwrap();

        drop(owner); // last handle: the client sends closeSession

        let ev = within(10, "NodeDeleted after closeSession", deleted.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeDeleted, "/parent/e1"));
        let ev = within(10, "NodeChildrenChanged after closeSession", children_changed.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeChildrenChanged, "/parent"));
        assert!(!exists(&observer, "/parent/e1").await);
        assert!(!exists(&observer, &seq_path).await);
        assert!(observer.list_children("/parent").await.unwrap().is_empty());
        assert!(exists(&observer, "/parent").await, "persistent node survives its creator's session");
    })
    .await
}

#[tokio::test]
async fn expired_session_removes_ephemerals() {
    within(TEST_DEADLINE_SECS, "expired_session_removes_ephemerals", async {
        let server = Server::start();
        let observer = connect(&server).await;
        // Detached: dropping it closes the TCP connection without closeSession, so the session
        // must expire on the server (tickTime=200 → min 400 ms, max 4 s).
        let owner = within(
            10,
            "detached connect",
            Client::connector().with_session_timeout(Duration::from_millis(1000)).with_detached().connect(&server.connect_string()),
        )
        .await
        .unwrap();
        assert!(owner.session_timeout() <= Duration::from_secs(4), "negotiated {:?}", owner.session_timeout());
        owner.create("/lease", b"", &EPHEMERAL).await.unwrap();
        let (_, watcher) = observer.check_and_watch_stat("/lease").await.unwrap();
        drop(owner);

        let ev = within(10, "NodeDeleted after session expiry", watcher.changed()).await;
        assert_eq!(summary(&ev), event(EventType::NodeDeleted, "/lease"));
        assert!(!exists(&observer, "/lease").await);
    })
    .await
}

// 8. getEphemerals and getAllChildrenNumber.
#[tokio::test]
async fn list_ephemerals_and_count_descendants() {
    within(TEST_DEADLINE_SECS, "list_ephemerals_and_count_descendants", async {
        let server = Server::start();
        let zk = connect(&server).await;
        let other = connect(&server).await;

        zk.create("/tree", b"", &PERSISTENT).await.unwrap();
        zk.create("/tree/a", b"", &EPHEMERAL).await.unwrap();
        zk.create("/tree/b", b"", &PERSISTENT).await.unwrap();
        zk.create("/tree/b/c", b"", &EPHEMERAL).await.unwrap();
        zk.create("/tree/b/d", b"", &PERSISTENT).await.unwrap();
        zk.create("/solo", b"", &EPHEMERAL).await.unwrap();
        other.create("/tree/b/theirs", b"", &EPHEMERAL).await.unwrap();

        let mut mine = zk.list_ephemerals("/tree").await.unwrap();
        mine.sort();
        assert_eq!(mine, vec!["/tree/a", "/tree/b/c"]);
        let mut all = zk.list_ephemerals("/").await.unwrap();
        all.sort();
        assert_eq!(all, vec!["/solo", "/tree/a", "/tree/b/c"]);
        assert_eq!(zk.list_ephemerals("/solo").await.unwrap(), vec!["/solo"], "includes the path itself");
        assert!(zk.list_ephemerals("/nowhere").await.unwrap().is_empty(), "no NoNode for a missing prefix");
        assert_eq!(other.list_ephemerals("/").await.unwrap(), vec!["/tree/b/theirs"]);

        // getAllChildrenNumber counts all descendants, not the node itself.
        assert_eq!(zk.count_descendants_number("/tree").await.unwrap(), 5);
        assert_eq!(zk.count_descendants_number("/tree/b").await.unwrap(), 3);
        assert_eq!(zk.count_descendants_number("/tree/a").await.unwrap(), 0);
        assert_eq!(zk.count_descendants_number("/nowhere").await.unwrap_err(), Error::NoNode);
    })
    .await
}
