//! ZooKeeper's snapshot (`FileSnap` + `SerializeUtils.serializeSnapshot` +
//! `DataTree.serialize`): FileHeader; session count, (id, timeout)*; the ACL
//! cache (count, (ref, vector<ACL>)*); nodes in depth-first order as (path,
//! data, acl ref, StatPersisted), the root's path empty, ended by the path
//! "/"; then a seal: the Adler32 of everything before it and "/". 3.6+ append
//! a ZxidDigest and 3.9 the last processed zxid, each sealed again.

use super::{check_header, header, FileError, SNAP_MAGIC};
use crate::database::Database;
use crate::jute::{DecodeError, Reader, Writer};
use crate::proto::{read_acls, write_acls, Acl};
use crate::snapshot::LoadedSnapshot;
use crate::tree::{DataTree, NodeStat};
use std::collections::HashMap;
use std::sync::Arc;

/// `ReferenceCountedACLCache.OPEN_UNSAFE_ACL_ID`: world:anyone with every permission.
const OPEN_UNSAFE_ACL_ID: i64 = -1;
/// `DigestCalculator`'s digest version since 3.6.
const DIGEST_VERSION: i32 = 2;

fn at(r: &Reader, e: DecodeError) -> FileError {
    FileError { offset: r.position(), reason: e.to_string() }
}

fn read_stat(r: &mut Reader) -> Result<NodeStat, DecodeError> {
    Ok(NodeStat {
        czxid: r.i64()?,
        mzxid: r.i64()?,
        ctime: r.i64()?,
        mtime: r.i64()?,
        version: r.i32()?,
        cversion: r.i32()?,
        aversion: r.i32()?,
        ephemeral_owner: r.i64()?,
        pzxid: r.i64()?,
    })
}

/// Checks a seal (`SnapStream.checkSealIntegrity`): the Adler32 of every byte
/// before it, then the string "/".
fn check_seal(bytes: &[u8], r: &mut Reader) -> Result<(), FileError> {
    let expected = super::adler32(&bytes[..r.position()]) as i64;
    let at_seal = r.position();
    let val = r.i64().map_err(|e| at(r, e))?;
    r.string().map_err(|e| at(r, e))?;
    if val != expected {
        return Err(FileError { offset: at_seal, reason: format!("checksum mismatch: the file says {val:#x}, its bytes give {expected:#x}") });
    }
    Ok(())
}

/// The parts after the first seal are optional (older writers stop there):
/// true if one was read and sealed, false at the end of the file.
fn optional_part(bytes: &[u8], r: &mut Reader, read: impl FnOnce(&mut Reader) -> Result<(), DecodeError>) -> Result<bool, FileError> {
    if r.is_empty() {
        return Ok(false);
    }
    read(r).map_err(|e| at(r, e))?;
    check_seal(bytes, r)?;
    Ok(true)
}

/// Reads and fully verifies a ZooKeeper snapshot named `snapshot.<zxid>`.
pub fn load(bytes: &[u8], zxid: i64) -> Result<LoadedSnapshot, FileError> {
    load_with_last_zxid(bytes, zxid).map(|(loaded, _)| loaded)
}

/// A snapshot that arrives without a file name (the admin `restore`
/// command, as ZooKeeper 3.9's): its zxid is the 3.9 last-processed-zxid part
/// when it has one, else the newest zxid any of its nodes carries.
pub fn load_stream(bytes: &[u8]) -> Result<LoadedSnapshot, FileError> {
    let (mut loaded, last) = load_with_last_zxid(bytes, 0)?;
    let zxid =
        last.unwrap_or_else(|| loaded.db.tree.nodes_after(None, usize::MAX).map(|(_, n)| n.stat.mzxid.max(n.stat.pzxid).max(n.stat.czxid)).max().unwrap_or(0));
    loaded.zxid = zxid;
    loaded.db.set_last_zxid(zxid);
    // From ZooKeeper or from Warden: its sessions may reconnect with either kind of password.
    let ids: Vec<i64> = loaded.db.sessions().keys().copied().collect();
    loaded.db.mark_sessions_from_zookeeper(ids);
    Ok(loaded)
}

/// A snapshot with ZooKeeper 3.9's last-processed-zxid part, which the admin
/// `snapshot` command streams (3.6–3.8 ignore the part).
pub fn write_stream(db: &Database) -> Vec<u8> {
    write_db(db, Some(db.last_zxid()))
}

fn load_with_last_zxid(bytes: &[u8], zxid: i64) -> Result<(LoadedSnapshot, Option<i64>), FileError> {
    check_header(bytes, SNAP_MAGIC, "snapshot")?;
    let mut r = Reader::new(bytes);
    r.i32().and_then(|_| r.i32()).and_then(|_| r.i64()).map_err(|e| at(&r, e))?;
    let count = r.i32().map_err(|e| at(&r, e))?;
    if count < 0 || count as usize > r.remaining() / 12 {
        return Err(FileError { offset: r.position() - 4, reason: format!("bad session count {count}") });
    }
    let mut sessions = Vec::with_capacity(count as usize);
    for _ in 0..count {
        sessions.push((r.i64().map_err(|e| at(&r, e))?, r.i32().map_err(|e| at(&r, e))?));
    }
    let acl_count = r.i32().map_err(|e| at(&r, e))?;
    if acl_count < 0 || acl_count as usize > r.remaining() / 12 {
        return Err(FileError { offset: r.position() - 4, reason: format!("bad ACL cache size {acl_count}") });
    }
    let mut tree = DataTree::new();
    let mut acls: HashMap<i64, Arc<[Acl]>> = HashMap::new();
    for _ in 0..acl_count {
        let id = r.i64().map_err(|e| at(&r, e))?;
        let acl = read_acls(&mut r).map_err(|e| at(&r, e))?;
        acls.insert(id, tree.intern_acl(acl));
    }
    let open_unsafe = tree.intern_acl(vec![Acl::world_all()]);
    let mut nodes = 0u64;
    loop {
        let offset = r.position();
        let path = r.string().map_err(|e| at(&r, e))?;
        if path == "/" {
            break;
        }
        let data = r.buffer().map_err(|e| at(&r, e))?;
        let acl_ref = r.i64().map_err(|e| at(&r, e))?;
        let stat = read_stat(&mut r).map_err(|e| at(&r, e))?;
        let acl = match acl_ref {
            OPEN_UNSAFE_ACL_ID => open_unsafe.clone(),
            id => acls
                .get(&id)
                .cloned()
                .ok_or_else(|| FileError { offset, reason: format!("node {path:?} names ACL {id}, which the ACL cache does not hold") })?,
        };
        let path = if path.is_empty() { "/".to_owned() } else { path };
        if path != "/" {
            if !path.starts_with('/') {
                return Err(FileError { offset, reason: format!("node path {path:?} does not start with '/'") });
            }
            let parent = &path[..path.rfind('/').unwrap_or(0).max(1)];
            if tree.get(parent).is_none() {
                return Err(FileError { offset, reason: format!("node {path:?} comes before its parent (not a depth-first tree)") });
            }
        }
        tree.restore_node(&path, data, acl, stat);
        nodes += 1;
    }
    check_seal(bytes, &mut r)?;
    // ZxidDigest: zxid, version, digest (a hex string before version 2).
    optional_part(bytes, &mut r, |r| {
        r.i64()?;
        if r.i32()? < DIGEST_VERSION {
            r.string()?;
        } else {
            r.i64()?;
        }
        Ok(())
    })?;
    let mut last_processed = None;
    optional_part(bytes, &mut r, |r| r.i64().map(|z| last_processed = Some(z)))?;
    if !r.is_empty() {
        return Err(FileError { offset: r.position(), reason: format!("{} unexpected bytes after the snapshot", r.remaining()) });
    }
    // Parents were checked above, so nothing is skipped.
    let skipped = tree.finish_restore();
    let db = Database::restore(tree, sessions, zxid);
    Ok((LoadedSnapshot { zxid, db, nodes, skipped }, last_processed))
}

/// The database as a snapshot ZooKeeper 3.6–3.9 loads (with an empty
/// ZxidDigest, which ZooKeeper reads as "nothing to compare"); older
/// releases ignore the bytes after the first seal.
pub fn write(db: &Database) -> Vec<u8> {
    write_db(db, None)
}

fn write_db(db: &Database, last_processed: Option<i64>) -> Vec<u8> {
    let mut ids: HashMap<&[Acl], i64> = HashMap::new();
    let mut order: Vec<(i64, &[Acl])> = Vec::new();
    for (_, node) in db.tree.nodes_after(None, usize::MAX) {
        if !ids.contains_key(&*node.acl) {
            let id = ids.len() as i64 + 1;
            ids.insert(&node.acl, id);
            order.push((id, &node.acl));
        }
    }
    let sessions = db.sessions().iter().map(|(id, timeout)| (*id, *timeout));
    let mut w = StreamWriter::begin(Vec::new(), sessions, &order).expect("writing to memory cannot fail");
    // Depth-first order puts every parent before its children, as ZooKeeper needs.
    for (path, node) in db.tree.nodes_after(None, usize::MAX) {
        w.node(&path, node.data.as_deref(), ids[&*node.acl], &node.stat).expect("writing to memory cannot fail");
    }
    w.finish(last_processed).expect("writing to memory cannot fail").0
}

/// A snapshot written out as it is produced, its Adler32 kept running, so
/// memory holds one buffer whatever the tree's size.
pub struct StreamWriter<W: std::io::Write> {
    out: W,
    buf: Vec<u8>,
    adler: adler2::Adler32,
    written: u64,
}

const SPILL_BYTES: usize = 1 << 20;

impl<W: std::io::Write> StreamWriter<W> {
    /// The header, the sessions and the ACL cache (ids as nodes will name them).
    pub fn begin(out: W, sessions: impl ExactSizeIterator<Item = (i64, i32)>, acls: &[(i64, &[Acl])]) -> std::io::Result<Self> {
        let mut w = StreamWriter { out, buf: header(SNAP_MAGIC, -1), adler: adler2::Adler32::new(), written: 0 };
        w.buf.put_i32(sessions.len() as i32);
        for (id, timeout) in sessions {
            w.buf.put_i64(id);
            w.buf.put_i32(timeout);
        }
        w.buf.put_i32(acls.len() as i32);
        for (id, acl) in acls {
            w.buf.put_i64(*id);
            write_acls(&mut w.buf, acl);
        }
        Ok(w)
    }

    /// One node; nodes must come depth-first, parents before children.
    pub fn node(&mut self, path: &str, data: Option<&[u8]>, acl: i64, s: &NodeStat) -> std::io::Result<()> {
        let out = &mut self.buf;
        out.put_string(if path == "/" { "" } else { path });
        out.put_buffer(data);
        out.put_i64(acl);
        for v in [s.czxid, s.mzxid, s.ctime, s.mtime] {
            out.put_i64(v);
        }
        for v in [s.version, s.cversion, s.aversion] {
            out.put_i32(v);
        }
        out.put_i64(s.ephemeral_owner);
        out.put_i64(s.pzxid);
        if self.buf.len() >= SPILL_BYTES {
            self.spill()?;
        }
        Ok(())
    }

    /// The end of the nodes, the seal, an empty ZxidDigest, and with
    /// `last_processed` 3.9's last-processed-zxid part; each part sealed.
    /// Returns the output and the bytes written.
    pub fn finish(mut self, last_processed: Option<i64>) -> std::io::Result<(W, u64)> {
        self.buf.put_string("/");
        self.seal()?;
        self.buf.put_i64(0);
        self.buf.put_i32(DIGEST_VERSION);
        self.buf.put_i64(0);
        self.seal()?;
        if let Some(zxid) = last_processed {
            self.buf.put_i64(zxid);
            self.seal()?;
        }
        self.spill()?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }

    fn spill(&mut self) -> std::io::Result<()> {
        self.adler.write_slice(&self.buf);
        self.out.write_all(&self.buf)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// The Adler32 of everything written so far, and "/".
    fn seal(&mut self) -> std::io::Result<()> {
        self.spill()?;
        let sum = self.adler.checksum() as i64;
        self.buf.put_i64(sum);
        self.buf.put_string("/");
        Ok(())
    }
}

/// How a snapshot file is stored (`snapshot.compression.method`, by suffix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
}

/// `snapshot.<hex>`, `snapshot.<hex>.gz` or `snapshot.<hex>.snappy`.
pub fn parse_name(name: &str) -> Option<(i64, Compression)> {
    let (stem, c) = match (name.strip_suffix(".gz"), name.strip_suffix(".snappy")) {
        (Some(s), _) => (s, Compression::Gzip),
        (_, Some(s)) => (s, Compression::Snappy),
        _ => (name, Compression::None),
    };
    Some((crate::txnlog::parse_name(stem, crate::txnlog::SNAPSHOT_PREFIX)?, c))
}

/// The snapshot's own bytes (the Adler32 seals are over the uncompressed stream).
pub fn decompress(bytes: &[u8], c: Compression) -> Result<std::borrow::Cow<'_, [u8]>, FileError> {
    use std::io::Read;
    match c {
        Compression::None => Ok(bytes.into()),
        Compression::Gzip => {
            let mut out = Vec::new();
            let mut gz = flate2::read::GzDecoder::new(bytes);
            gz.read_to_end(&mut out).map_err(|e| FileError { offset: 0, reason: format!("gzip: {e} (after {} uncompressed bytes)", out.len()) })?;
            Ok(out.into())
        }
        Compression::Snappy => unsnappy(bytes).map(Into::into),
    }
}

/// snappy-java's `SnappyOutputStream` framing, which ZooKeeper uses: a
/// header (magic `\x82SNAPPY\0`, int version, int compatible version), then
/// blocks of `int length` + raw snappy; a header may recur (concatenated streams).
const SNAPPY_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";

fn unsnappy(bytes: &[u8]) -> Result<Vec<u8>, FileError> {
    let fail = |offset: usize, reason: String| FileError { offset, reason: format!("snappy: {reason}") };
    let mut out = Vec::new();
    let mut pos = 0;
    let mut decoder = snap::raw::Decoder::new();
    while pos < bytes.len() {
        if bytes[pos..].starts_with(SNAPPY_MAGIC) {
            pos += SNAPPY_MAGIC.len() + 8;
            continue;
        }
        if pos == 0 {
            return Err(fail(0, "no snappy-java stream header".into()));
        }
        let len = bytes.get(pos..pos + 4).map(|b| i32::from_be_bytes(b.try_into().unwrap())).ok_or_else(|| fail(pos, "truncated block length".into()))?;
        let block = usize::try_from(len)
            .ok()
            .and_then(|n| bytes.get(pos + 4..pos + 4 + n))
            .ok_or_else(|| fail(pos, format!("block of {len} bytes runs past the end")))?;
        let size = snap::raw::decompress_len(block).map_err(|e| fail(pos, e.to_string()))?;
        // Snappy expands at most ~21x (a 3-byte copy makes 64 bytes): a larger claim is damage, not data to allocate for.
        if size > 32 * block.len() + 64 {
            return Err(fail(pos, format!("block of {} bytes claims {size} uncompressed", block.len())));
        }
        let at = out.len();
        out.resize(at + size, 0);
        decoder.decompress(block, &mut out[at..]).map_err(|e| fail(pos, e.to_string()))?;
        pos += 4 + block.len();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Id;
    use crate::txn::{owner, Txn, TxnHeader};

    fn sample() -> Database {
        let mut db = Database::default();
        let mut zxid = 0;
        let mut apply = |db: &mut Database, sid: i64, txn: Txn| {
            zxid += 1;
            db.apply(&TxnHeader { session_id: sid, cxid: 0, zxid, time_ms: 1000 + zxid }, &txn, &mut Vec::new());
        };
        apply(&mut db, 0x55, Txn::CreateSession { timeout_ms: 6000 });
        let digest = vec![Acl { perms: 31, id: Id::new("digest", "u:h=") }, Acl { perms: 1, id: Id::new("ip", "127.0.0.1") }];
        let mk = |path: &str, acl: Vec<Acl>, owner: i64, pcv: i32| Txn::Create {
            path: path.into(),
            data: Some(path.as_bytes().to_vec()),
            acl,
            ephemeral_owner: owner,
            parent_cversion: pcv,
        };
        apply(&mut db, 0x55, mk("/a", vec![Acl::world_all()], 0, 1));
        apply(&mut db, 0x55, mk("/a/b", digest.clone(), 0, 1));
        apply(&mut db, 0x55, mk("/a-c", digest, 0, 2));
        apply(&mut db, 0x55, mk("/e", vec![Acl::world_all()], 0x55, 3));
        apply(&mut db, 0x55, mk("/box", vec![Acl::world_all()], owner::CONTAINER, 4));
        apply(&mut db, 0x55, Txn::SetData { path: "/a".into(), data: None, version: 3 });
        db
    }

    fn assert_same(a: &Database, b: &Database) {
        assert_eq!(a.tree.node_count(), b.tree.node_count());
        for (path, node) in a.tree.nodes_after(None, usize::MAX) {
            let got = b.tree.get(&path).unwrap_or_else(|| panic!("{path} missing"));
            assert_eq!((got.stat(), got.stat, &got.data, &got.acl), (node.stat(), node.stat, &node.data, &node.acl), "{path}");
        }
        assert_eq!(a.sessions(), b.sessions());
    }

    #[test]
    fn round_trip_keeps_every_field() {
        let db = sample();
        let bytes = write(&db);
        let loaded = load(&bytes, 7).unwrap();
        assert_eq!((loaded.zxid, loaded.nodes), (7, db.tree.node_count() as u64));
        assert_same(&db, &loaded.db);
        assert_eq!(loaded.db.tree.ephemerals_of(0x55), vec!["/e".to_string()]);
        assert_eq!(loaded.db.tree.containers().count(), 1);
        assert_eq!(loaded.db.tree.get("/a").unwrap().data, None, "null data stays null");
    }

    #[test]
    fn older_snapshots_without_digest_and_newer_with_last_zxid_load() {
        let db = sample();
        let full = write(&db);
        // 3.4/3.5: the file ends at the first seal (digest part is 20 + 13 bytes).
        let old = &full[..full.len() - 33];
        assert_same(&db, &load(old, 7).unwrap().db);
        // 3.9.3+: lastProcessedZxid, sealed.
        let mut newer = full.clone();
        newer.put_i64(db.last_zxid());
        let sum = crate::zkfiles::adler32(&newer) as i64;
        newer.put_i64(sum);
        newer.put_string("/");
        assert_same(&db, &load(&newer, 7).unwrap().db);
        assert_eq!(newer, write_stream(&db), "the streamed writer seals as one buffer would");
    }

    #[test]
    fn gzip_and_snappy_snapshots_load() {
        use std::io::Write;
        let db = sample();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&write(&db)).unwrap();
        let packed = gz.finish().unwrap();
        assert_eq!(parse_name("snapshot.1f.gz"), Some((0x1f, Compression::Gzip)));
        assert_eq!(parse_name("snapshot.1f"), Some((0x1f, Compression::None)));
        assert_eq!(parse_name("snapshot.1f.snappy"), Some((0x1f, Compression::Snappy)));
        assert_eq!(parse_name("snapshot.1f.tmp"), None);
        let bytes = decompress(&packed, Compression::Gzip).unwrap();
        assert_same(&db, &load(&bytes, 7).unwrap().db);
        assert!(decompress(&packed[..packed.len() / 2], Compression::Gzip).unwrap_err().reason.contains("gzip"));
        // snappy-java's framing: header, then length-prefixed raw snappy blocks.
        let raw = write(&db);
        let mut framed = SNAPPY_MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for chunk in raw.chunks(100) {
            let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
            framed.extend_from_slice(&(block.len() as i32).to_be_bytes());
            framed.extend_from_slice(&block);
        }
        assert_same(&db, &load(&decompress(&framed, Compression::Snappy).unwrap(), 7).unwrap().db);
        assert!(decompress(&framed[..framed.len() - 3], Compression::Snappy).unwrap_err().reason.contains("snappy"));
        assert!(decompress(&raw, Compression::Snappy).unwrap_err().reason.contains("header"));
        let mut bomb = framed[..16].to_vec();
        bomb.extend_from_slice(&[0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decompress(&bomb, Compression::Snappy).unwrap_err().reason.contains("claims"));
    }

    #[test]
    fn damage_is_refused_with_an_offset() {
        let bytes = write(&sample());
        for at in [20, 60, bytes.len() / 2, bytes.len() - 40] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let err = load(&bad, 7).err().expect("flipped byte accepted");
            assert!(err.offset <= bytes.len(), "{err}");
        }
        let err = load(&bytes[..bytes.len() / 2], 7).err().unwrap();
        assert!(err.reason.contains("truncated") || err.reason.contains("bad length"), "{err}");
        assert!(load(b"WRDNSNP1........", 1).err().unwrap().reason.contains("not a ZooKeeper snapshot"));
        let mut v3 = bytes.clone();
        v3[7] = 3;
        assert_eq!(load(&v3, 7).err().unwrap().offset, 4);
    }
}
