//! Property-based fuzzing of the peer frame decoders (`zab::wire::decode`
//! and `decode_hello`): what a member reads from another member's socket
//! (or from anything that connects to its quorum port). Inputs: arbitrary
//! bytes, and mutated encodings of every `Message` variant. Properties: no
//! panic, every rejection is a readable error, and allocation stays linear in
//! the frame size even when a MessagePack length claims gigabytes (a
//! counting allocator measures it, as in fuzz_jute.rs).

use proptest::prelude::*;
use std::time::{Duration, Instant};
use warden_core::proto::{Acl, CreateOp, CreateRequest, Id, Request};
use warden_core::txn::{LogEntry, Txn, TxnHeader};
use warden_core::zab::wire::{self, decode, decode_hello, encode, encode_hello};
use warden_core::zab::{Forward, ForwardOp, Message, Notification, PeerState, Vote};

#[path = "support/mutation.rs"]
mod mutation;
use mutation::{cfg, mutate, Mutation};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::measured;

#[global_allocator]
static GLOBAL: counting_alloc::Counting = counting_alloc::Counting;

/// Decoded values are larger than their encoding (a 1-byte MessagePack
/// element may become a whole `Txn` or `Request`), and vectors grow by
/// doubling; the total must still be linear in the input.
fn alloc_bound(input_len: usize) -> usize {
    let per_byte = 4 * std::mem::size_of::<Request>().max(std::mem::size_of::<Txn>()) + 64;
    4096 + per_byte * input_len
}

// ---- a corpus of real messages ----

fn acls() -> Vec<Acl> {
    vec![Acl::world_all(), Acl { perms: 3, id: Id::new("digest", "bob:XyZ=") }]
}

fn entry(zxid: i64, txn: Txn) -> LogEntry {
    LogEntry { hdr: TxnHeader { session_id: 0x100_0000_0000_0007, cxid: zxid as i32, zxid, time_ms: 1_700_000_000_000 }, txn }
}

fn txns() -> Vec<Txn> {
    vec![
        Txn::CreateSession { timeout_ms: 4000 },
        Txn::CloseSession { ephemerals: vec!["/lock".into(), "/e/1".into()] },
        Txn::Create { path: "/queue/q-0000000007".into(), data: Some(b"payload".to_vec()), acl: acls(), ephemeral_owner: 0, parent_cversion: 8 },
        Txn::Create { path: "/empty".into(), data: None, acl: vec![Acl::world_all()], ephemeral_owner: 7, parent_cversion: 1 },
        Txn::Delete { path: "/a/b".into() },
        Txn::SetData { path: "/r0".into(), data: Some(vec![0, 255, 1]), version: 3 },
        Txn::SetAcl { path: "/".into(), acl: acls(), version: 0 },
        Txn::Check { path: "/c".into(), version: 2 },
        Txn::Multi(vec![
            Txn::Check { path: "/m".into(), version: 1 },
            Txn::SetData { path: "/m".into(), data: Some(b"x".to_vec()), version: 2 },
            Txn::Delete { path: "/m".into() },
        ]),
        Txn::Error { code: -101 },
    ]
}

fn forward(op: ForwardOp) -> Message {
    Message::Request(Forward {
        session_id: 0x100_0000_0000_0009,
        cxid: 17,
        auth: vec![Id::new("digest", "bob:XyZ="), Id::new("ip", "127.0.0.1")],
        op,
        local: true,
    })
}

fn corpus() -> Vec<Message> {
    let vote = Vote { leader: 3, zxid: 0x2_0000_0011, epoch: 2, election_epoch: 9 };
    let mut out = vec![
        Message::Notification(Notification { version: 1, vote, state: PeerState::Looking, config_version: 0, eligible: true }),
        Message::Notification(Notification { version: 1, vote, state: PeerState::Leading, config_version: 0x1_0000_0001, eligible: false }),
        Message::Config { data: b"server.1=127.0.0.1:2888:3888:participant\nversion=100000001".to_vec() },
        Message::FollowerInfo { version: 1, accepted_epoch: 2, last_zxid: 0x2_0000_0011, observer: false },
        Message::FollowerInfo { version: 1, accepted_epoch: 0, last_zxid: 0, observer: true },
        Message::LeaderInfo { version: 1, epoch: 3 },
        Message::AckEpoch { current_epoch: Some(2), last_zxid: 0x2_0000_0011 },
        Message::AckEpoch { current_epoch: None, last_zxid: 0 },
        Message::Diff { zxid: 0x2_0000_0011 },
        Message::Trunc { zxid: 0x2_0000_0010 },
        Message::Snap { zxid: 0x2_0000_0011, data: (0..600u32).map(|i| (i * 7) as u8).collect() },
        Message::Snap { zxid: 0, data: Vec::new() },
        Message::NewLeader { epoch: 3, zxid: 0x3_0000_0000 },
        Message::UpToDate,
        Message::Ack { zxid: 0x3_0000_0005 },
        Message::Commit { zxid: 0x3_0000_0005 },
        Message::Ping,
        Message::Touch { sessions: vec![0x100_0000_0000_0001, 0x200_0000_0000_0002, -1] },
        Message::Touch { sessions: Vec::new() },
        Message::Digest { zxid: 0x3_0000_0005, digest: 0xdead_beef_cafe_f00d },
        forward(ForwardOp::CreateSession { timeout_ms: 6000 }),
        forward(ForwardOp::Client(Request::Create(CreateRequest {
            op: CreateOp::Create2,
            path: "/queue/q-".into(),
            data: Some(b"v".to_vec()),
            acl: acls(),
            flags: 2,
            ttl_ms: 0,
        }))),
        forward(ForwardOp::Client(Request::SetData { path: "/r1".into(), data: Some(b"c1-7".to_vec()), version: 4 })),
        forward(ForwardOp::Client(Request::Delete { path: "/lock".into(), version: -1 })),
        forward(ForwardOp::Client(Request::Multi(vec![Request::Check { path: "/m".into(), version: 1 }, Request::Delete { path: "/m".into(), version: -1 }]))),
        forward(ForwardOp::Client(Request::CloseSession)),
    ];
    for (i, t) in txns().into_iter().enumerate() {
        out.push(Message::Proposal(entry(0x3_0000_0001 + i as i64, t)));
    }
    out
}

// ---- properties ----

/// Frames decoded by the properties (each through both decoders), reported
/// by `zz_report_executions` when run with `--nocapture`.
static EXECUTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Decodes `frame` as both frame kinds and checks what every outcome must have.
fn decode_checked(frame: &[u8]) -> Result<(), TestCaseError> {
    EXECUTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let start = Instant::now();
    let (res, allocated) = measured(|| decode(frame));
    if let Err(e) = &res {
        prop_assert!(!e.is_empty() && e.is_char_boundary(0), "empty error");
    }
    prop_assert!(allocated <= alloc_bound(frame.len()), "decode: {allocated} bytes allocated for a {}-byte frame", frame.len());
    let (res, allocated) = measured(|| decode_hello(frame));
    if let Err(e) = &res {
        prop_assert!(!e.is_empty());
    }
    prop_assert!(allocated <= alloc_bound(frame.len()), "decode_hello: {allocated} bytes for a {}-byte frame", frame.len());
    let (res, allocated) = measured(|| wire::decode_sasl(frame));
    if let Err(e) = &res {
        prop_assert!(!e.is_empty());
    }
    prop_assert!(allocated <= alloc_bound(frame.len()), "decode_sasl: {allocated} bytes for a {}-byte frame", frame.len());
    prop_assert!(start.elapsed() < Duration::from_secs(1), "decoding took {:?}", start.elapsed());
    Ok(())
}

/// MessagePack markers that are followed by a 32-bit length.
const LEN32_MARKERS: [u8; 5] = [0xc6, 0xdb, 0xdd, 0xdf, 0xc9];

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop_oneof![Just(u32::MAX), Just(0x7fff_ffff), Just(0x4000_0000), Just(0), any::<u32>()])
            .prop_map(|(i, v)| Mutation::Set4(i, u32::to_be_bytes(v))),
        (any::<usize>(), proptest::sample::select(LEN32_MARKERS.to_vec()), prop_oneof![Just(u32::MAX), Just(0x1000_0000), any::<u32>()])
            .prop_map(|(i, m, v)| Mutation::Splice(i, [&[m][..], &v.to_be_bytes()].concat())),
    ]
}

#[test]
fn every_message_round_trips() {
    for msg in corpus() {
        let bytes = encode(&msg);
        assert_eq!(decode(&bytes).unwrap_or_else(|e| panic!("{msg:?}: {e}")), msg);
    }
    assert_eq!(decode_hello(&encode_hello(5, false)).unwrap().server_id, 5);
}

/// Containers nested as deep as MessagePack allows, each claiming 2^32-1
/// elements: serde pre-allocates up to 1 MiB per vector from the claim alone,
/// so without a check against the remaining input a few hundred bytes could
/// cost gigabytes.
#[test]
fn hostile_lengths_are_refused_without_allocating() {
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for marker in [0xdd, 0xdf, 0xc6, 0xdb, 0xc9] {
        frames.push([&[marker][..], &u32::MAX.to_be_bytes()].concat());
    }
    // Proposal(Multi([Multi([...])])) with every vector claiming 2^32-1 txns.
    let multi = encode(&Message::Proposal(entry(1, Txn::Multi(vec![Txn::Multi(vec![Txn::Error { code: 1 }])]))));
    let mut nested = Vec::new();
    let mut i = 0;
    while i < multi.len() {
        // fixarray headers of length 1 become array32 claiming 2^32-1.
        if multi[i] == 0x91 && i > 0 {
            nested.push(0xdd);
            nested.extend_from_slice(&u32::MAX.to_be_bytes());
        } else {
            nested.push(multi[i]);
        }
        i += 1;
    }
    frames.push(nested);
    // A Touch whose session vector claims 2^32-1 entries, then a deep pile of them.
    let mut touch = encode(&Message::Touch { sessions: vec![1] });
    let at = touch.iter().rposition(|b| *b == 0x91).expect("fixarray of one session");
    touch.splice(at..at + 1, [&[0xdd][..], &u32::MAX.to_be_bytes()].concat());
    frames.push(touch);
    let deep: Vec<u8> = std::iter::repeat_n([0xdd, 0xff, 0xff, 0xff, 0xff], 2000).flatten().collect();
    frames.push(deep);
    for f in &frames {
        let start = Instant::now();
        let (res, allocated) = measured(|| decode(f));
        let err = res.expect_err("hostile frame must be refused");
        assert!(!err.is_empty());
        assert!(allocated <= alloc_bound(f.len()), "{allocated} bytes allocated for a {}-byte frame: {err}", f.len());
        assert!(start.elapsed() < Duration::from_millis(200), "{:?}", start.elapsed());
        let (res, allocated) = measured(|| decode_hello(f));
        assert!(res.is_err() && allocated <= alloc_bound(f.len()));
    }
}

/// Deep nesting of a recursive type (a multi inside a multi ...) must be an
/// error, not a stack overflow.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut t = Txn::Error { code: 0 };
    for _ in 0..5000 {
        t = Txn::Multi(vec![t]);
    }
    // Encoding recurses too: do it on a thread with room for it.
    let bytes = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let b = encode(&Message::Proposal(entry(1, t.clone())));
            // Dropping a 5000-deep value recurses as well.
            std::mem::forget(t);
            b
        })
        .unwrap()
        .join()
        .unwrap();
    let err = decode(&bytes).expect_err("5000 nested multis must be refused");
    assert!(err.contains("deep") || err.contains("depth"), "{err}");
}

#[test]
fn trailing_bytes_are_refused() {
    let mut b = encode(&Message::Ping);
    b.push(0);
    assert!(decode(&b).unwrap_err().contains("trailing"));
}

proptest! {
    #![proptest_config(cfg(50_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        decode_checked(&bytes)?;
    }

    #[test]
    fn mutated_messages_never_panic(which in any::<prop::sample::Index>(), muts in proptest::collection::vec(mutation(), 1..6)) {
        let c = corpus();
        let msg = &c[which.index(c.len())];
        decode_checked(&mutate(encode(msg), &muts))?;
    }

    #[test]
    fn mutated_sasl_frames_never_panic(token in proptest::collection::vec(any::<u8>(), 0..64), muts in proptest::collection::vec(mutation(), 1..4)) {
        for f in [wire::SaslFrame::Challenge(token.clone()), wire::SaslFrame::Response(token.clone()), wire::SaslFrame::Success(token), wire::SaslFrame::Failure] {
            decode_checked(&mutate(wire::encode_sasl(&f), &muts))?;
        }
    }

    #[test]
    fn mutated_hellos_never_panic(id in any::<u64>(), muts in proptest::collection::vec(mutation(), 1..4)) {
        decode_checked(&mutate(encode_hello(id, id % 2 == 0), &muts))?;
    }
}

// The validator is also reachable directly, for the runtime's other readers.
#[test]
fn validator_accepts_every_valid_encoding() {
    for msg in corpus() {
        wire::check_msgpack(&encode(&msg)).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
    }
}

#[test]
fn zz_report_executions() {
    // Runs alongside the others; for a count, run the properties first:
    // cargo test --test fuzz_peer -- --test-threads 1 --nocapture
    println!("fuzz_peer: {} frames decoded so far", EXECUTIONS.load(std::sync::atomic::Ordering::Relaxed));
}

/// Seeds for cargo-fuzz (fuzz/): `WARDEN_FUZZ_CORPUS=fuzz/corpus/peer_frame
/// cargo test -p warden-core --test fuzz_peer write_seed_corpus`.
/// Without the variable it checks that every corpus message encodes and decodes back.
#[test]
fn write_seed_corpus() {
    let Ok(dir) = std::env::var("WARDEN_FUZZ_CORPUS") else {
        for msg in corpus() {
            assert_eq!(decode(&encode(&msg)).unwrap(), msg);
        }
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (i, msg) in corpus().iter().enumerate() {
        std::fs::write(dir.join(format!("msg-{i:02}")), encode(msg)).unwrap();
    }
    std::fs::write(dir.join("hello"), encode_hello(3, false)).unwrap();
}
