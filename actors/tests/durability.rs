//! Damaged data dirs: a flipped byte inside the log stops the start with an
//! error naming file and offset; a torn last record (a crash mid-write) is cut
//! off and the node starts with everything acknowledged before it; a damaged
//! newest snapshot falls back to an older one plus the log.

mod common;

use common::{free_port, run_warden, unique_dir, within, Server};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_core::record::Records;
use warden_core::txn::{LogEntry, Txn};
use warden_core::txnlog;
use zookeeper_client::{Client, CreateMode};

const PERSISTENT: CreateMode = CreateMode::Persistent;

/// Writes /n0../n{count-1} and stops the server with SIGKILL.
async fn populate(dir: &Path, port: u16, count: usize, extra: &[(&str, &str)]) {
    populate_named(dir, port, "n", count, extra).await
}

/// Writes /{prefix}0../{prefix}{count-1} (data v0..) and stops the server with SIGKILL.
async fn populate_named(dir: &Path, port: u16, prefix: &str, count: usize, extra: &[(&str, &str)]) {
    let mut server = Server::start_in(dir, port, extra).unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    for i in 0..count {
        zk.create(&format!("/{prefix}{i}"), format!("v{i}").as_bytes(), &PERSISTENT.with_acls(zookeeper_client::Acls::anyone_all())).await.unwrap();
    }
    drop(zk);
    server.signal("KILL");
}

/// Writes /n0.. with snapCount=10, at least `min` of them and until
/// `snapshots` snapshots are on disk, then stops the server with SIGKILL;
/// how many writes that took. (A snapshot starts every 5-10 writes, but not
/// while one is being written: how many end within a given count of writes
/// depends on the machine.)
async fn populate_until_snapshots(dir: &Path, port: u16, min: usize, snapshots: usize) -> usize {
    let mut server = Server::start_in(dir, port, &[("snapCount", "10")]).unwrap();
    let zk = Client::connect(&server.connect_string()).await.unwrap();
    let mut written = 0;
    while written < min || files(dir, txnlog::SNAPSHOT_PREFIX).len() < snapshots {
        assert!(written < 20_000, "snapCount=10 made no {snapshots} snapshots in 20,000 writes");
        zk.create(&format!("/n{written}"), format!("v{written}").as_bytes(), &PERSISTENT.with_acls(zookeeper_client::Acls::anyone_all())).await.unwrap();
        written += 1;
    }
    drop(zk);
    server.signal("KILL");
    written
}

/// The data dir's `<prefix><zxid>` files (log segments or snapshots), oldest first.
fn files(dir: &Path, prefix: &str) -> Vec<(i64, PathBuf)> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(dir.join("data/version-2"))
        .unwrap()
        .flatten()
        .filter_map(|e| Some((txnlog::parse_name(e.file_name().to_str()?, prefix)?, e.path())))
        .collect();
    found.sort();
    found
}

/// The newest log segment and the offsets of its records.
fn last_segment(dir: &Path) -> (PathBuf, Vec<(usize, usize)>) {
    let path = files(dir, txnlog::LOG_PREFIX).pop().expect("a log segment").1;
    let bytes = std::fs::read(&path).unwrap();
    let records = Records::new(&bytes, txnlog::MAGIC.len()).map(|r| r.map(|(off, p)| (off, p.len())).unwrap()).collect();
    (path, records)
}

async fn exists(zk: &Client, path: &str) -> bool {
    zk.check_stat(path).await.unwrap().is_some()
}

/// Flips a byte inside the record at `(offset, len)` of `original` (the
/// segment at `path`): the next start fails, naming the file and offset.
fn flipped_byte_stops_the_start(dir: &Path, port: u16, path: &Path, original: &[u8], (offset, len): (usize, usize)) {
    let mut bytes = original.to_vec();
    bytes[offset + 8 + len / 2] ^= 0x20;
    std::fs::write(path, &bytes).unwrap();
    let data = dir.join("data");
    let (status, out) =
        run_warden(&["server", "--set", &format!("clientPort={port}"), "--set", &format!("dataDir={}", data.display())], Duration::from_secs(20));
    assert_eq!(status.code(), Some(1), "{out}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(out.contains(name) && out.contains(&format!("byte {offset}")) && out.contains("damaged"), "{out}");
}

/// Everything `populate` wrote before the torn record survives; the torn write is gone.
async fn assert_all_but_the_torn_write(zk: &Client, prefix: &str, count: usize, lost: Option<&str>) {
    for i in 0..count {
        let p = format!("/{prefix}{i}");
        if Some(p.as_str()) == lost {
            assert!(!exists(zk, &p).await, "{p} was torn");
        } else {
            assert_eq!(zk.get_data(&p).await.unwrap().0, format!("v{i}").as_bytes());
        }
    }
}

#[tokio::test]
async fn flipped_byte_in_the_log_stops_the_start_naming_file_and_offset() {
    within(60, "corrupt log", async {
        let dir = unique_dir();
        let port = free_port();
        populate(&dir, port, 10, &[]).await;
        let (path, records) = last_segment(&dir);
        assert!(records.len() >= 10);
        flipped_byte_stops_the_start(&dir, port, &path, &std::fs::read(&path).unwrap(), records[3]);
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn torn_last_record_is_cut_and_the_node_starts() {
    within(60, "torn tail", async {
        let dir = unique_dir();
        let port = free_port();
        populate(&dir, port, 10, &[]).await;
        let (path, records) = last_segment(&dir);
        // Zero the second half of the last record, as a crash mid-write leaves it.
        let (offset, len) = *records.last().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let torn = LogEntry::decode(&bytes[offset + 8..offset + 8 + len]).unwrap();
        let lost = match torn.txn {
            Txn::Create { path, .. } => Some(path),
            _ => None,
        };
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &vec![0u8; len / 2], (offset + 8 + len - len / 2) as u64).unwrap();
        drop(f);
        let server = Server::start_in(&dir, port, &[]).unwrap();
        assert!(server.log().contains("torn tail"), "{}", server.log());
        let zk = Client::connect(&server.connect_string()).await.unwrap();
        assert_all_but_the_torn_write(&zk, "n", 10, lost.as_deref()).await;
        // And the node keeps working on the repaired log, across another restart.
        zk.create("/after", b"a", &PERSISTENT.with_acls(zookeeper_client::Acls::anyone_all())).await.unwrap();
        drop(zk);
        drop(server);
        let server = Server::start_in(&dir, port, &[]).unwrap();
        let zk = Client::connect(&server.connect_string()).await.unwrap();
        assert!(exists(&zk, "/after").await && exists(&zk, "/n8").await);
        drop(zk);
        drop(server);
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn file_cut_inside_the_last_record_starts_cleanly() {
    within(60, "truncated log", async {
        let dir = unique_dir();
        let port = free_port();
        populate(&dir, port, 5, &[]).await;
        let (path, records) = last_segment(&dir);
        let (offset, len) = *records.last().unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len((offset + 8 + len / 3) as u64).unwrap();
        drop(f);
        let server = Server::start_in(&dir, port, &[]).unwrap();
        let zk = Client::connect(&server.connect_string()).await.unwrap();
        assert!(exists(&zk, "/n3").await && !exists(&zk, "/n4").await);
        drop(zk);
        drop(server);
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

#[tokio::test]
async fn damaged_newest_snapshot_falls_back_without_losing_data() {
    within(60, "damaged snapshot", async {
        let dir = unique_dir();
        let port = free_port();
        let written = populate_until_snapshots(&dir, port, 60, 2).await;
        let names = files(&dir, txnlog::SNAPSHOT_PREFIX);
        let newest = names.last().unwrap().1.clone();
        let (ok, out) = run_warden(&["snapshot", "verify", newest.to_str().unwrap()], Duration::from_secs(10));
        assert!(ok.success(), "{out}");
        let mut bytes = std::fs::read(&newest).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0xff;
        std::fs::write(&newest, &bytes).unwrap();
        let (bad, out) = run_warden(&["snapshot", "verify", newest.to_str().unwrap()], Duration::from_secs(10));
        assert_eq!(bad.code(), Some(1), "{out}");
        assert!(out.contains("at byte"), "{out}");
        let server = Server::start_in(&dir, port, &[]).unwrap();
        assert!(server.log().contains("does not verify"), "{}", server.log());
        let zk = Client::connect(&server.connect_string()).await.unwrap();
        for i in 0..written {
            assert!(exists(&zk, &format!("/n{i}")).await, "/n{i} lost");
        }
        drop(zk);
        drop(server);
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}

/// With a snapshot on disk the log is read on a second thread while the
/// snapshot loads; damage after the snapshot must still stop the start, and
/// a torn tail still be cut.
#[tokio::test]
async fn the_log_read_beside_a_snapshot_load_still_stops_on_damage_and_cuts_a_torn_tail() {
    within(90, "log beside snapshot", async {
        let dir = unique_dir();
        let port = free_port();
        let written = populate_until_snapshots(&dir, port, 60, 1).await;
        let newest = files(&dir, txnlog::SNAPSHOT_PREFIX).pop().expect("a snapshot").0;
        // Then writes no snapshot follows: the newest segment holds them.
        populate_named(&dir, port, "m", 10, &[]).await;
        let (path, records) = last_segment(&dir);
        let original = std::fs::read(&path).unwrap();
        let zxid_at = |i: usize| {
            let (offset, len) = records[i];
            LogEntry::decode(&original[offset + 8..offset + 8 + len]).unwrap().hdr.zxid
        };
        // A record after the snapshot, not the last: damage, not a torn write.
        let victim = (0..records.len() - 1).find(|&i| zxid_at(i) > newest).expect("records after the newest snapshot");
        flipped_byte_stops_the_start(&dir, port, &path, &original, records[victim]);
        // Repaired, then the last record torn as a crash mid-write leaves it.
        let (offset, len) = *records.last().unwrap();
        let lost = match LogEntry::decode(&original[offset + 8..offset + 8 + len]).unwrap().txn {
            Txn::Create { path, .. } => Some(path),
            _ => None,
        };
        let mut bytes = original;
        bytes[offset + 8 + len - len / 2..offset + 8 + len].fill(0);
        std::fs::write(&path, &bytes).unwrap();
        let server = Server::start_in(&dir, port, &[]).unwrap();
        assert!(server.log().contains("torn tail"), "{}", server.log());
        let zk = Client::connect(&server.connect_string()).await.unwrap();
        assert_all_but_the_torn_write(&zk, "n", written, None).await;
        assert_all_but_the_torn_write(&zk, "m", 10, lost.as_deref()).await;
        drop(zk);
        drop(server);
        let _ = std::fs::remove_dir_all(dir);
    })
    .await
}
