//! Property-based fuzzing of every decoder that reads untrusted or on-disk
//! bytes: client frames (ConnectRequest, Request bodies for every opcode),
//! snapshots and transaction-log segments. Inputs are arbitrary byte strings
//! and mutated valid encodings. Properties: no panic, every rejection is an
//! error with a readable message / an in-bounds offset, and allocation stays
//! linear in the input size (a counting allocator measures it).

use proptest::prelude::*;
use std::time::{Duration, Instant};
use warden_core::database::Database;
use warden_core::jute::{Reader, Writer};
use warden_core::proto::{self, op, Acl, ConnectRequest, Id, Request};
use warden_core::record::{self, Records};
use warden_core::snapshot::{self, SnapshotWriter};
use warden_core::txn::{LogEntry, Txn, TxnHeader};
use warden_core::txnlog;
use warden_core::zkfiles;

#[path = "support/mutation.rs"]
mod mutation;
use mutation::{cfg, mutate, Mutation};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::measured;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

/// Decoded records may be larger than their encoding (a 4-byte empty string
/// becomes a 24-byte String, a 17-byte multi op a whole `Request`), and vectors
/// grow by doubling; but the total must stay linear in the input.
fn alloc_bound(input_len: usize) -> usize {
    let per_byte = 4 * std::mem::size_of::<Request>() / 8 + 64;
    4096 + per_byte * input_len
}

// ---- client frames ----

const ALL_OPCODES: std::ops::RangeInclusive<i32> = 0..=110;
const NEGATIVE_OPCODES: [i32; 8] = [-1, -2, -10, -11, -100, -12345, i32::MIN, i32::MAX];

fn opcodes() -> Vec<i32> {
    ALL_OPCODES.chain(NEGATIVE_OPCODES).collect()
}

fn acls() -> Vec<Acl> {
    vec![Acl::world_all(), Acl { perms: 3, id: Id::new("digest", "bob:XyZ=") }]
}

fn multi_header(w: &mut Vec<u8>, ty: i32, done: bool) {
    w.put_i32(ty);
    w.put_bool(done);
    w.put_i32(-1);
}

/// Valid request bodies, per the record layouts in `proto.rs`.
fn valid_bodies() -> Vec<(i32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut b = |opcode: i32, f: &dyn Fn(&mut Vec<u8>)| {
        let mut w = Vec::new();
        f(&mut w);
        out.push((opcode, w));
    };
    for opcode in [op::CREATE, op::CREATE2, op::CREATE_CONTAINER] {
        b(opcode, &|w| {
            w.put_string("/app/node-");
            w.put_buffer(Some(b"payload"));
            proto::write_acls(w, &acls());
            w.put_i32(2);
        });
    }
    b(op::CREATE_TTL, &|w| {
        w.put_string("/ttl");
        w.put_buffer(None);
        proto::write_acls(w, &acls());
        w.put_i32(5);
        w.put_i64(60_000);
    });
    b(op::DELETE, &|w| {
        w.put_string("/a/b");
        w.put_i32(3);
    });
    for opcode in [op::EXISTS, op::GET_DATA, op::GET_CHILDREN, op::GET_CHILDREN2] {
        b(opcode, &|w| {
            w.put_string("/watched");
            w.put_bool(true);
        });
    }
    b(op::SET_DATA, &|w| {
        w.put_string("/a");
        w.put_buffer(Some(&[0, 1, 2, 255]));
        w.put_i32(-1);
    });
    b(op::GET_ACL, &|w| w.put_string("/a"));
    b(op::SET_ACL, &|w| {
        w.put_string("/a");
        proto::write_acls(w, &acls());
        w.put_i32(0);
    });
    b(op::SYNC, &|w| w.put_string("/"));
    b(op::PING, &|_| {});
    b(op::CHECK, &|w| {
        w.put_string("/c");
        w.put_i32(7);
    });
    b(op::MULTI, &|w| {
        multi_header(w, op::CREATE, false);
        w.put_string("/m1");
        w.put_buffer(Some(b"x"));
        proto::write_acls(w, &acls());
        w.put_i32(0);
        multi_header(w, op::SET_DATA, false);
        w.put_string("/m1");
        w.put_buffer(Some(b"y"));
        w.put_i32(0);
        multi_header(w, op::CHECK, false);
        w.put_string("/m1");
        w.put_i32(1);
        multi_header(w, op::DELETE, false);
        w.put_string("/m1");
        w.put_i32(-1);
        multi_header(w, -1, true);
    });
    b(op::MULTI_READ, &|w| {
        multi_header(w, op::GET_DATA, false);
        w.put_string("/r");
        w.put_bool(false);
        multi_header(w, op::GET_CHILDREN, false);
        w.put_string("/r");
        w.put_bool(true);
        multi_header(w, -1, true);
    });
    b(op::RECONFIG, &|w| {
        w.put_buffer(Some(b"server.1=127.0.0.1:2888:3888"));
        w.put_buffer(None);
        w.put_buffer(Some(b""));
        w.put_i64(-1); // curConfigId
    });
    for opcode in [op::CHECK_WATCHES, op::REMOVE_WATCHES] {
        b(opcode, &|w| {
            w.put_string("/w");
            w.put_i32(1);
        });
    }
    b(op::AUTH, &|w| {
        w.put_i32(0);
        w.put_string("digest");
        w.put_buffer(Some(b"bob:secret"));
    });
    for opcode in [op::SET_WATCHES, op::SET_WATCHES2] {
        b(opcode, &|w| {
            w.put_i64(0x1_0000_0005);
            w.put_strings(&["/d1", "/d2"]);
            w.put_strings(&["/e"]);
            w.put_strings::<&str>(&[]);
            if opcode == op::SET_WATCHES2 {
                w.put_strings(&["/p"]);
                w.put_strings(&["/r1", "/r2", "/r3"]);
            }
        });
    }
    b(op::SASL, &|w| w.put_buffer(Some(b"token")));
    b(op::GET_EPHEMERALS, &|w| w.put_string("/eph"));
    b(op::GET_ALL_CHILDREN_NUMBER, &|w| w.put_string("/"));
    b(op::ADD_WATCH, &|w| {
        w.put_string("/aw");
        w.put_i32(1);
    });
    b(op::WHO_AM_I, &|_| {});
    b(op::CLOSE_SESSION, &|_| {});
    b(77, &|w| w.put_bytes(b"unknown-op body"));
    out
}

fn valid_connect() -> Vec<u8> {
    let mut w = Vec::new();
    ConnectRequest { protocol_version: 0, last_zxid_seen: 0x2_0000_0011, timeout_ms: 30_000, session_id: 0x1234, passwd: vec![7; 16], read_only: Some(false) }
        .encode(&mut w);
    w
}

/// Decodes `body` as `opcode` and checks the properties every outcome must have.
fn decode_checked(opcode: i32, body: &[u8]) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let (res, allocated) = measured(|| {
        let mut r = Reader::new(body);
        Request::decode(opcode, &mut r).and_then(|req| r.finish().map(|()| req))
    });
    if let Err(e) = &res {
        prop_assert!(!e.to_string().is_empty(), "empty Display for {e:?}");
    }
    prop_assert!(allocated <= alloc_bound(body.len()), "opcode {opcode}: {allocated} bytes allocated for a {}-byte body", body.len());
    prop_assert!(start.elapsed() < Duration::from_secs(1), "opcode {opcode}: decode took {:?}", start.elapsed());
    Ok(())
}

fn connect_checked(frame: &[u8]) -> Result<(), TestCaseError> {
    let (res, allocated) = measured(|| ConnectRequest::decode(frame));
    if let Err(e) = &res {
        prop_assert!(!e.to_string().is_empty());
    }
    prop_assert!(allocated <= alloc_bound(frame.len()), "{allocated} bytes for a {}-byte connect frame", frame.len());
    Ok(())
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop_oneof![Just(-1), Just(-2), Just(0), Just(1), Just(i32::MAX), Just(i32::MIN), Just(0x7fff_fff0), any::<i32>()])
            .prop_map(|(i, v)| Mutation::Set4(i, i32::to_be_bytes(v))),
    ]
}

#[test]
fn valid_bodies_decode_exactly() {
    for (opcode, body) in valid_bodies() {
        let mut r = Reader::new(&body);
        let req = Request::decode(opcode, &mut r).unwrap_or_else(|e| panic!("opcode {opcode}: {e}"));
        r.finish().unwrap_or_else(|e| panic!("opcode {opcode} ({req:?}): {e}"));
    }
    let c = ConnectRequest::decode(&valid_connect()).unwrap();
    assert_eq!(c.passwd, vec![7; 16]);
}

#[test]
fn hostile_lengths_fail_fast_without_allocating() {
    // 16 bytes claiming a 2 GiB string/buffer/vector at every aligned field position.
    for opcode in opcodes() {
        for at in [0usize, 4, 8, 12] {
            for claim in [i32::MAX, 0x7fff_fff0, 0x4000_0000] {
                let mut body = vec![0u8; 16];
                body[at..at + 4].copy_from_slice(&claim.to_be_bytes());
                let start = Instant::now();
                let (res, allocated) = measured(|| Request::decode(opcode, &mut Reader::new(&body)));
                assert!(start.elapsed() < Duration::from_millis(100), "opcode {opcode} at {at}: {:?}", start.elapsed());
                assert!(allocated < 1024, "opcode {opcode} at {at}: allocated {allocated} bytes");
                if at == 0 && opcode != op::PING && opcode != op::WHO_AM_I && opcode != op::CLOSE_SESSION {
                    // Every other body starts with a length (or, for setWatches/auth, a
                    // fixed field, then a length): either way a 2 GiB claim cannot fit.
                    let known = valid_bodies().iter().any(|(o, _)| *o == opcode) && opcode != 77;
                    if known && opcode != op::SET_WATCHES && opcode != op::SET_WATCHES2 && opcode != op::AUTH && opcode != op::MULTI && opcode != op::MULTI_READ
                    {
                        let err = res.expect_err("a 2 GiB length in a 16-byte body must be rejected");
                        assert!(!err.to_string().is_empty());
                    }
                }
            }
        }
    }
    // The connect frame's password buffer claiming 2 GiB.
    let mut frame = valid_connect();
    frame.truncate(24);
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    let (res, allocated) = measured(|| ConnectRequest::decode(&frame));
    assert!(res.is_err() && allocated < 1024);
}

proptest! {
    #![proptest_config(cfg(1500))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        connect_checked(&bytes)?;
        for opcode in opcodes() {
            decode_checked(opcode, &bytes)?;
        }
    }
}

proptest! {
    #![proptest_config(cfg(4000))]

    #[test]
    fn mutated_valid_frames_never_panic(
        which in any::<prop::sample::Index>(),
        reinterpret in any::<bool>(),
        other_opcode in prop_oneof![ALL_OPCODES, proptest::sample::select(NEGATIVE_OPCODES.to_vec())],
        muts in proptest::collection::vec(mutation(), 1..6),
    ) {
        let bodies = valid_bodies();
        let (opcode, body) = &bodies[which.index(bodies.len())];
        let body = mutate(body.clone(), &muts);
        decode_checked(*opcode, &body)?;
        if reinterpret {
            decode_checked(other_opcode, &body)?;
        }
    }

    #[test]
    fn mutated_connect_frames_never_panic(muts in proptest::collection::vec(mutation(), 1..6)) {
        connect_checked(&mutate(valid_connect(), &muts))?;
    }
}

// ---- snapshots and log segments ----

fn sample_db() -> Database {
    let mut db = Database::default();
    let mut zxid = 0;
    let mut apply = |db: &mut Database, txn: Txn| {
        zxid += 1;
        db.apply(&TxnHeader { session_id: 5, cxid: 0, zxid, time_ms: 1 }, &txn, &mut Vec::new());
    };
    apply(&mut db, Txn::CreateSession { timeout_ms: 4000 });
    let secret = vec![Acl { perms: 1, id: Id::new("digest", "u:x") }];
    for i in 0..12 {
        let acl = if i % 2 == 0 { vec![Acl::world_all()] } else { secret.clone() };
        apply(
            &mut db,
            Txn::Create { path: format!("/n{i:02}"), data: Some(vec![i as u8; 3]), acl, ephemeral_owner: if i == 3 { 5 } else { 0 }, parent_cversion: i + 1 },
        );
    }
    apply(&mut db, Txn::Create { path: "/n01/child".into(), data: None, acl: vec![Acl::world_all()], ephemeral_owner: 0, parent_cversion: 1 });
    db
}

fn valid_snapshot() -> Vec<u8> {
    let db = sample_db();
    let (mut w, mut bytes) = SnapshotWriter::begin(&db);
    while !w.is_done() {
        bytes.extend(w.next_chunk(&db.tree, 5));
    }
    bytes
}

fn valid_segment() -> Vec<u8> {
    let mut b = txnlog::MAGIC.to_vec();
    let txns = vec![
        Txn::CreateSession { timeout_ms: 3000 },
        Txn::Create { path: "/a".into(), data: Some(b"x".to_vec()), acl: vec![Acl::world_all()], ephemeral_owner: 0, parent_cversion: 1 },
        Txn::SetData { path: "/a".into(), data: None, version: 1 },
        Txn::Multi(vec![Txn::Check { path: "/a".into(), version: 1 }, Txn::Delete { path: "/a".into() }]),
        Txn::SetAcl { path: "/".into(), acl: vec![Acl::world_all()], version: 0 },
        Txn::Error { code: -101 },
        Txn::CloseSession { ephemerals: vec!["/e".into()] },
    ];
    for (i, txn) in txns.into_iter().enumerate() {
        let e = LogEntry { hdr: TxnHeader { session_id: 9, cxid: i as i32, zxid: i as i64 + 1, time_ms: 1000 }, txn };
        record::encode(&e.encode(), &mut b);
    }
    b.resize(b.len() + 64, 0);
    b
}

/// Mutates record payloads and re-frames them with a correct checksum, so the
/// mutation reaches the MessagePack decoder and what consumes its output.
fn mutate_payloads(bytes: &[u8], header: usize, muts: &[Mutation], which: usize) -> Vec<u8> {
    let mut out = bytes[..header].to_vec();
    let recs: Vec<&[u8]> = Records::new(bytes, header).filter_map(Result::ok).map(|(_, p)| p).collect();
    for (i, p) in recs.iter().enumerate() {
        let p = if i == which % recs.len().max(1) { mutate(p.to_vec(), muts) } else { p.to_vec() };
        if !p.is_empty() {
            record::encode(&p, &mut out);
        }
    }
    out
}

fn snapshot_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(e) = snapshot::load(bytes) {
        prop_assert!(e.offset <= bytes.len(), "offset {} past the end ({})", e.offset, bytes.len());
        prop_assert!(!e.reason.is_empty());
    }
    Ok(())
}

fn segment_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    match txnlog::scan_segment(bytes) {
        Ok(scan) => {
            prop_assert!(scan.good_bytes <= bytes.len());
            if let Some(bad) = scan.bad {
                prop_assert!(bad.offset <= bytes.len() && !bad.reason.is_empty());
                prop_assert_eq!(bad.offset, scan.good_bytes);
            }
        }
        Err(bad) => prop_assert!(bad.offset <= bytes.len() && !bad.reason.is_empty()),
    }
    Ok(())
}

#[test]
fn valid_snapshot_and_segment_load() {
    assert_eq!(snapshot::load(&valid_snapshot()).unwrap().nodes, sample_db().tree.node_count() as u64);
    let scan = txnlog::scan_segment(&valid_segment()).unwrap();
    assert_eq!(scan.entries.len(), 7);
    assert!(scan.bad.is_none());
}

proptest! {
    #![proptest_config(cfg(600))]

    #[test]
    fn mutated_snapshots_are_refused_with_an_offset(muts in proptest::collection::vec(mutation(), 1..5), which in any::<usize>(), reframe in any::<bool>()) {
        let valid = valid_snapshot();
        let bytes = if reframe { mutate_payloads(&valid, snapshot::MAGIC.len(), &muts, which) } else { mutate(valid, &muts) };
        snapshot_checked(&bytes)?;
    }

    #[test]
    fn mutated_log_segments_are_refused_with_an_offset(muts in proptest::collection::vec(mutation(), 1..5), which in any::<usize>(), reframe in any::<bool>()) {
        let valid = valid_segment();
        let bytes = if reframe { mutate_payloads(&valid, txnlog::MAGIC.len(), &muts, which) } else { mutate(valid, &muts) };
        segment_checked(&bytes)?;
    }

    #[test]
    fn arbitrary_snapshot_and_log_bytes(tail in proptest::collection::vec(any::<u8>(), 0..200), reframe in any::<bool>()) {
        // Behind a valid magic (else both stop at byte 0), raw or as one checksummed record.
        let body = if reframe && !tail.is_empty() { let mut v = Vec::new(); record::encode(&tail, &mut v); v } else { tail };
        let mut s = snapshot::MAGIC.to_vec();
        s.extend_from_slice(&body);
        snapshot_checked(&s)?;
        let mut l = txnlog::MAGIC.to_vec();
        l.extend_from_slice(&body);
        segment_checked(&l)?;
    }
}

/// A small record nesting `Txn::Multi` very deeply must be refused (or read),
/// not overflow the decoder's stack: a corrupt or hostile log is 100 KB of
/// `{"Multi": [` prefixes away from that.
#[test]
fn deeply_nested_multi_in_a_log_record() {
    for depth in [100usize, 10_000, 100_000] {
        let mut payload = vec![0x92, 0x94, 1, 1, 1, 1]; // LogEntry [hdr [4 ints], txn]
        for _ in 0..depth {
            payload.extend_from_slice(&[0x81, 0xa5]);
            payload.extend_from_slice(b"Multi");
            payload.push(0x91);
        }
        payload.extend_from_slice(&[0x81, 0xa5]);
        payload.extend_from_slice(b"Multi");
        payload.push(0x90);
        let mut seg = txnlog::MAGIC.to_vec();
        record::encode(&payload, &mut seg);
        let scan = txnlog::scan_segment(&seg).unwrap();
        assert!(scan.entries.len() + scan.bad.iter().count() == 1, "depth {depth}");
    }
}

// ---- Apache ZooKeeper's snapshots and logs (read in place at a migration) ----

fn zk_log() -> Vec<u8> {
    let entries: Vec<LogEntry> = [
        Txn::CreateSession { timeout_ms: 3000 },
        Txn::Create { path: "/a".into(), data: Some(b"x".to_vec()), acl: acls(), ephemeral_owner: 9, parent_cversion: 1 },
        Txn::SetData { path: "/a".into(), data: None, version: 1 },
        Txn::Multi(vec![Txn::Check { path: "/a".into(), version: 1 }, Txn::Delete { path: "/a".into() }]),
        Txn::SetAcl { path: "/".into(), acl: vec![Acl::world_all()], version: 0 },
        Txn::CloseSession { ephemerals: vec!["/e".into()] },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, txn)| LogEntry { hdr: TxnHeader { session_id: 9, cxid: i as i32, zxid: i as i64 + 1, time_ms: 1000 }, txn })
    .collect();
    zkfiles::log::encode_file(&entries, true, 64)
}

/// Re-frames ZooKeeper log records after mutating one entry, with a correct
/// Adler32, so the mutation reaches the txn decoder.
fn zk_mutate_entries(bytes: &[u8], muts: &[Mutation], which: usize) -> Vec<u8> {
    let scan = zkfiles::log::scan(bytes).unwrap();
    let mut out = bytes[..zkfiles::HEADER_BYTES].to_vec();
    let n = scan.records.len();
    for (i, rec) in scan.records.iter().enumerate() {
        let len = i32::from_be_bytes(bytes[rec.offset + 8..rec.offset + 12].try_into().unwrap()) as usize;
        let entry = bytes[rec.offset + 12..rec.offset + 12 + len].to_vec();
        let entry = if i == which % n { mutate(entry, muts) } else { entry };
        out.put_i64(zkfiles::adler32(&entry) as i64);
        out.put_buffer(Some(&entry));
        out.push(b'B');
    }
    out
}

fn zk_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ((), allocated) = measured(|| {
        if let Err(e) = zkfiles::snap::load(bytes, 1) {
            assert!(e.offset <= bytes.len() && !e.reason.is_empty(), "{e}");
        }
        match zkfiles::log::scan(bytes) {
            Ok(scan) => {
                if let Some(bad) = scan.bad {
                    assert!(bad.offset <= bytes.len() && !bad.reason.is_empty());
                }
            }
            Err(bad) => assert!(bad.offset <= bytes.len() && !bad.reason.is_empty()),
        }
    });
    prop_assert!(allocated <= 2 * alloc_bound(bytes.len()) + 64 * 1024, "{allocated} bytes for {} input bytes", bytes.len());
    Ok(())
}

proptest! {
    #![proptest_config(cfg(600))]

    #[test]
    fn mutated_zookeeper_snapshots_and_logs_never_panic(muts in proptest::collection::vec(mutation(), 1..5), which in any::<usize>(), reframe in any::<bool>()) {
        let snap = zkfiles::snap::write(&sample_db());
        zk_checked(&mutate(snap, &muts))?;
        let log = zk_log();
        let bytes = if reframe { zk_mutate_entries(&log, &muts, which) } else { mutate(log, &muts) };
        zk_checked(&bytes)?;
    }

    #[test]
    fn arbitrary_bytes_behind_zookeeper_headers(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
        for magic in [b"ZKSN", b"ZKLG"] {
            let mut b = magic.to_vec();
            b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
            b.extend_from_slice(&tail);
            zk_checked(&b)?;
        }
    }
}

#[test]
fn valid_zookeeper_files_load() {
    let db = sample_db();
    assert_eq!(zkfiles::snap::load(&zkfiles::snap::write(&db), 1).unwrap().nodes, db.tree.node_count() as u64);
    let scan = zkfiles::log::scan(&zk_log()).unwrap();
    assert_eq!(scan.records.len(), 6);
    assert!(scan.bad.is_none());
}

/// Multis nested in a ZooKeeper log entry are refused before recursing.
#[test]
fn nested_multi_in_a_zookeeper_log_entry() {
    let mut inner: Vec<u8> = Vec::new();
    inner.put_i32(0);
    for _ in 0..50_000 {
        let mut outer = Vec::new();
        outer.put_i32(1);
        outer.put_i32(op::MULTI);
        outer.put_buffer(Some(&inner));
        inner = outer;
        if inner.len() > 1 << 20 {
            break;
        }
    }
    let mut entry = Vec::new();
    entry.put_i64(9);
    entry.put_i32(0);
    entry.put_i64(1);
    entry.put_i64(0);
    entry.put_i32(op::MULTI);
    entry.extend_from_slice(&inner);
    assert!(zkfiles::log::decode_entry(&entry).is_err());
}
