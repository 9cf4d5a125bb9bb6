//! ZooKeeper's transaction log (`FileTxnLog`): FileHeader, then records of
//! `long adler32(entry)`, `buffer entry`, `byte 'B'`, where an entry is a
//! TxnHeader (clientId, cxid, zxid, time, type), the txn record for the type
//! and, from 3.6, a TxnDigest. The file is preallocated with zeros; a zero
//! length ends it. Entries become Warden transactions.

use super::{check_header, header, LOG_MAGIC};
use crate::jute::{DecodeError, DecodeResult, Reader, Writer};
use crate::proto::{op, read_acls, write_acls};
use crate::record::BadRecord;
use crate::tree::DataTree;
use crate::txn::{owner, LogEntry, Txn, TxnHeader};
use std::collections::{BTreeSet, HashMap};

const END_OF_RECORD: u8 = b'B';
const RECORD_OVERHEAD: usize = 8 + 4 + 1;
/// `TxnDigest`: int version, long treeDigest.
const DIGEST_BYTES: usize = 12;

/// One logged transaction as ZooKeeper wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkRecord {
    pub offset: usize,
    pub hdr: TxnHeader,
    pub txn: ZkTxn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkTxn {
    Txn(Txn),
    /// Before 3.6 (or with closeSessionTxn disabled) a closeSession does not
    /// list the ephemerals it deletes; they are the session's at that point.
    CloseSessionUnlisted,
}

pub struct LogScan {
    pub records: Vec<ZkRecord>,
    /// Why reading stopped before the zero padding, if it did.
    pub bad: Option<BadRecord>,
}

fn body(r: &mut Reader, kind: i32, session_id: i64) -> DecodeResult<ZkTxn> {
    let create = |r: &mut Reader, owner_of: &dyn Fn(&mut Reader) -> DecodeResult<i64>, with_flag: bool| -> DecodeResult<Txn> {
        let (path, data, acl) = (r.string()?, r.buffer()?, read_acls(r)?);
        let flag_owner = if with_flag {
            if r.bool()? {
                session_id
            } else {
                0
            }
        } else {
            0
        };
        if with_flag && r.remaining() == 0 {
            return Err(DecodeError::BadValue("pre-3.3 CreateTxnV0 (no parentCVersion); not supported", 0));
        }
        let parent_cversion = r.i32()?;
        let ephemeral_owner = if with_flag { flag_owner } else { owner_of(r)? };
        Ok(Txn::Create { path, data, acl, ephemeral_owner, parent_cversion })
    };
    let txn = match kind {
        op::CREATE_SESSION => Txn::CreateSession { timeout_ms: r.i32()? },
        op::CLOSE_SESSION => {
            // The body is empty (before 3.6), a CloseSessionTxn, or either plus a digest.
            let start = r.remaining();
            let mut probe = r.clone();
            match probe.strings() {
                Ok(list) if probe.remaining() == 0 || probe.remaining() == DIGEST_BYTES => {
                    *r = probe;
                    Txn::CloseSession { ephemerals: list }
                }
                _ if start == 0 || start == DIGEST_BYTES => return Ok(ZkTxn::CloseSessionUnlisted),
                Err(e) => return Err(e),
                Ok(_) => return Err(DecodeError::Trailing(probe.remaining())),
            }
        }
        op::CREATE | op::CREATE2 => create(r, &|_| Ok(0), true)?,
        op::CREATE_CONTAINER => create(r, &|_| Ok(owner::CONTAINER), false)?,
        op::CREATE_TTL => create(r, &|r| Ok(owner::ttl(r.i64()?)), false)?,
        op::DELETE | op::DELETE_CONTAINER => Txn::Delete { path: r.string()? },
        op::SET_DATA => Txn::SetData { path: r.string()?, data: r.buffer()?, version: r.i32()? },
        op::RECONFIG => {
            let (_path, data, _version) = (r.string()?, r.buffer()?, r.i32()?);
            Txn::Reconfig { data: data.unwrap_or_default() }
        }
        op::SET_ACL => Txn::SetAcl { path: r.string()?, acl: read_acls(r)?, version: r.i32()? },
        op::CHECK => Txn::Check { path: r.string()?, version: r.i32()? },
        op::ERROR => Txn::Error { code: r.i32()? },
        op::MULTI => {
            let subs = r.vec(8, |r| {
                let kind = r.i32()?;
                // Checked before decoding: a nested multi would recurse without bound.
                if matches!(kind, op::MULTI | op::CREATE_SESSION | op::CLOSE_SESSION) {
                    return Err(DecodeError::BadValue("operation inside a multi", kind as i64));
                }
                let bytes = r.buffer()?.unwrap_or_default();
                let mut inner = Reader::new(&bytes);
                match body(&mut inner, kind, session_id)? {
                    ZkTxn::Txn(t) => inner.finish().map(|_| t),
                    ZkTxn::CloseSessionUnlisted => Err(DecodeError::BadValue("operation inside a multi", kind as i64)),
                }
            })?;
            Txn::Multi(subs)
        }
        other => return Err(DecodeError::BadValue("transaction type", other as i64)),
    };
    Ok(ZkTxn::Txn(txn))
}

/// Decodes one entry: header, txn, optional TxnDigest (its value is
/// ZooKeeper's own tree hash, which Warden does not compute, so unused).
pub fn decode_entry(bytes: &[u8]) -> DecodeResult<(TxnHeader, ZkTxn)> {
    let mut r = Reader::new(bytes);
    let (session_id, cxid, zxid, time_ms, kind) = (r.i64()?, r.i32()?, r.i64()?, r.i64()?, r.i32()?);
    let txn = body(&mut r, kind, session_id)?;
    if r.remaining() == DIGEST_BYTES {
        r.i32()?;
        r.i64()?;
    }
    r.finish()?;
    Ok((TxnHeader { session_id, cxid, zxid, time_ms }, txn))
}

/// Reads every record of a log file. Like Warden's own segments, a record
/// that fails after which only zeros follow is a torn write (`torn`); damage
/// anywhere else is reported with its offset. The file is never changed.
pub fn scan(bytes: &[u8]) -> Result<LogScan, BadRecord> {
    if bytes.len() < super::HEADER_BYTES && bytes.iter().all(|b| *b == 0) {
        let bad = BadRecord { offset: 0, reason: "empty log header (its creation was interrupted)".into(), torn: true };
        return Ok(LogScan { records: Vec::new(), bad: Some(bad) });
    }
    check_header(bytes, LOG_MAGIC, "log").map_err(|e| BadRecord { offset: e.offset, reason: e.reason, torn: false })?;
    let mut records = Vec::new();
    let mut pos = super::HEADER_BYTES;
    let zeros_from = |from: usize| bytes[from.min(bytes.len())..].iter().all(|b| *b == 0);
    let bad = |offset: usize, reason: String, claimed_end: usize| Some(BadRecord { offset, reason, torn: zeros_from(claimed_end) });
    let stop = loop {
        let left = bytes.len() - pos;
        if left < 12 {
            break if zeros_from(pos) { None } else { bad(pos, format!("{left} stray bytes, shorter than a record header"), bytes.len()) };
        }
        let crc = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
        if len == 0 {
            // ZooKeeper's end of data: the zero padding.
            break if crc == 0 && zeros_from(pos) { None } else { bad(pos, "zero-length record before more data".into(), pos + 12) };
        }
        if len < 0 {
            break bad(pos, format!("negative record length {len}"), pos + 12);
        }
        let end = pos + RECORD_OVERHEAD + len as usize;
        if end > bytes.len() {
            break bad(pos, format!("record of {len} bytes runs past the end of the file"), end);
        }
        let payload = &bytes[pos + 12..end - 1];
        let sum = super::adler32(payload) as i64;
        if sum != crc {
            break bad(pos, format!("checksum mismatch in a record of {len} bytes (file {crc:#x}, bytes {sum:#x})"), end);
        }
        if bytes[end - 1] != END_OF_RECORD {
            break bad(pos, format!("record of {len} bytes does not end with 'B'"), end);
        }
        match decode_entry(payload) {
            Ok((hdr, txn)) => records.push(ZkRecord { offset: pos, hdr, txn }),
            // The checksum matched, so this is not a torn write.
            Err(e) => break Some(BadRecord { offset: pos, reason: format!("undecodable transaction: {e}"), torn: false }),
        }
        pos = end;
    };
    Ok(LogScan { records, bad: stop })
}

/// Turns ZooKeeper's records into Warden's log entries, giving an unlisted
/// closeSession the ephemerals its session owns at that point.
pub struct Converter {
    by_session: HashMap<i64, BTreeSet<String>>,
    owner_of: HashMap<String, i64>,
}

impl Converter {
    /// Starting from the tree the snapshot loaded.
    pub fn new(tree: &DataTree) -> Converter {
        let mut c = Converter { by_session: HashMap::new(), owner_of: HashMap::new() };
        for (session, paths) in tree.ephemerals() {
            for p in paths {
                c.owner_of.insert(p.clone(), *session);
            }
            c.by_session.insert(*session, paths.clone());
        }
        c
    }

    fn track(&mut self, txn: &Txn) {
        match txn {
            Txn::Create { path, ephemeral_owner, .. } if owner::is_session(*ephemeral_owner) => {
                self.by_session.entry(*ephemeral_owner).or_default().insert(path.clone());
                self.owner_of.insert(path.clone(), *ephemeral_owner);
            }
            Txn::Delete { path } => {
                if let Some(o) = self.owner_of.remove(path) {
                    self.by_session.entry(o).or_default().remove(path);
                }
            }
            Txn::Multi(subs) if !subs.iter().any(|t| matches!(t, Txn::Error { .. })) => subs.iter().for_each(|t| self.track(t)),
            _ => {}
        }
    }

    pub fn convert(&mut self, rec: ZkRecord) -> LogEntry {
        let txn = match rec.txn {
            ZkTxn::Txn(Txn::CloseSession { ephemerals }) => {
                let _ = self.by_session.remove(&rec.hdr.session_id);
                for p in &ephemerals {
                    self.owner_of.remove(p);
                }
                Txn::CloseSession { ephemerals }
            }
            ZkTxn::CloseSessionUnlisted => {
                let ephemerals: Vec<String> = self.by_session.remove(&rec.hdr.session_id).unwrap_or_default().into_iter().collect();
                for p in &ephemerals {
                    self.owner_of.remove(p);
                }
                Txn::CloseSession { ephemerals }
            }
            ZkTxn::Txn(t) => {
                self.track(&t);
                t
            }
        };
        LogEntry { hdr: rec.hdr, txn }
    }
}

/// Encodes a transaction as ZooKeeper logs it (for tests and tools).
fn encode_body(out: &mut Vec<u8>, txn: &Txn) -> i32 {
    let create = |out: &mut Vec<u8>, path: &str, data: &Option<Vec<u8>>, acl: &[crate::proto::Acl]| {
        out.put_string(path);
        out.put_buffer(data.as_deref());
        write_acls(out, acl);
    };
    match txn {
        Txn::CreateSession { timeout_ms } => {
            out.put_i32(*timeout_ms);
            op::CREATE_SESSION
        }
        Txn::CloseSession { ephemerals } => {
            out.put_strings(ephemerals);
            op::CLOSE_SESSION
        }
        Txn::Create { path, data, acl, ephemeral_owner, parent_cversion } => {
            create(out, path, data, acl);
            if *ephemeral_owner == owner::CONTAINER {
                out.put_i32(*parent_cversion);
                op::CREATE_CONTAINER
            } else if let Some(ttl) = owner::ttl_of(*ephemeral_owner) {
                out.put_i32(*parent_cversion);
                out.put_i64(ttl);
                op::CREATE_TTL
            } else {
                out.put_bool(*ephemeral_owner != 0);
                out.put_i32(*parent_cversion);
                op::CREATE2
            }
        }
        Txn::Delete { path } => {
            out.put_string(path);
            op::DELETE
        }
        Txn::SetData { path, data, version } => {
            out.put_string(path);
            out.put_buffer(data.as_deref());
            out.put_i32(*version);
            op::SET_DATA
        }
        Txn::Reconfig { data } => {
            out.put_string(crate::tree::CONFIG);
            out.put_buffer(Some(data));
            out.put_i32(-1);
            op::RECONFIG
        }
        Txn::SetAcl { path, acl, version } => {
            out.put_string(path);
            write_acls(out, acl);
            out.put_i32(*version);
            op::SET_ACL
        }
        Txn::Check { path, version } => {
            out.put_string(path);
            out.put_i32(*version);
            op::CHECK
        }
        Txn::Error { code } => {
            out.put_i32(*code);
            op::ERROR
        }
        Txn::Multi(subs) => {
            out.put_i32(subs.len() as i32);
            for t in subs {
                let mut inner = Vec::new();
                let kind = encode_body(&mut inner, t);
                out.put_i32(kind);
                out.put_buffer(Some(&inner));
            }
            op::MULTI
        }
    }
}

/// One entry's bytes: header, txn and (as 3.6+) a TxnDigest.
pub fn encode_entry(e: &LogEntry, with_digest: bool) -> Vec<u8> {
    let mut body = Vec::new();
    let kind = encode_body(&mut body, &e.txn);
    let mut out = Vec::new();
    out.put_i64(e.hdr.session_id);
    out.put_i32(e.hdr.cxid);
    out.put_i64(e.hdr.zxid);
    out.put_i64(e.hdr.time_ms);
    out.put_i32(kind);
    out.extend_from_slice(&body);
    if with_digest {
        out.put_i32(2);
        out.put_i64(0);
    }
    out
}

/// A whole log file as ZooKeeper writes it, padded with `padding` zeros.
pub fn encode_file(entries: &[LogEntry], with_digest: bool, padding: usize) -> Vec<u8> {
    let mut out = header(LOG_MAGIC, 0);
    for e in entries {
        let bytes = encode_entry(e, with_digest);
        out.put_i64(super::adler32(&bytes) as i64);
        out.put_buffer(Some(&bytes));
        out.push(END_OF_RECORD);
    }
    out.resize(out.len() + padding, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Acl, Id};

    fn hdr(zxid: i64) -> TxnHeader {
        TxnHeader { session_id: 0x77, cxid: zxid as i32, zxid, time_ms: 5000 + zxid }
    }

    fn entries() -> Vec<LogEntry> {
        let acl = vec![Acl { perms: 3, id: Id::new("digest", "bob:x=") }];
        let create =
            |path: &str, owner: i64| Txn::Create { path: path.into(), data: Some(b"v".to_vec()), acl: acl.clone(), ephemeral_owner: owner, parent_cversion: 4 };
        [
            Txn::CreateSession { timeout_ms: 9000 },
            create("/p", 0),
            create("/p/e", 0x77),
            create("/c", owner::CONTAINER),
            create("/t", owner::ttl(60_000)),
            Txn::SetData { path: "/p".into(), data: None, version: 2 },
            Txn::SetAcl { path: "/p".into(), acl: vec![Acl::world_all()], version: 1 },
            Txn::Multi(vec![create("/m", 0), Txn::Check { path: "/p".into(), version: 2 }, Txn::Delete { path: "/c".into() }]),
            Txn::Multi(vec![Txn::Error { code: 0 }, Txn::Error { code: -101 }]),
            Txn::Error { code: -110 },
            Txn::Reconfig { data: b"server.1=a:1:2:participant;3\nversion=100000000".to_vec() },
            Txn::CloseSession { ephemerals: vec!["/p/e".into()] },
        ]
        .into_iter()
        .enumerate()
        .map(|(i, txn)| LogEntry { hdr: hdr(i as i64 + 1), txn })
        .collect()
    }

    fn plain(scan: LogScan) -> Vec<LogEntry> {
        let tree = DataTree::new();
        let mut c = Converter::new(&tree);
        scan.records.into_iter().map(|r| c.convert(r)).collect()
    }

    #[test]
    fn round_trip_with_and_without_digests() {
        for digest in [true, false] {
            let file = encode_file(&entries(), digest, 4096);
            let scan = scan(&file).unwrap();
            assert!(scan.bad.is_none(), "{:?}", scan.bad);
            assert_eq!(scan.records[0].offset, super::super::HEADER_BYTES);
            assert_eq!(plain(scan), entries());
        }
    }

    #[test]
    fn unlisted_close_session_deletes_the_sessions_ephemerals() {
        let mut file = header(LOG_MAGIC, 0);
        let mut es = entries();
        es.truncate(3);
        for e in &es {
            let b = encode_entry(e, false);
            file.put_i64(super::super::adler32(&b) as i64);
            file.put_buffer(Some(&b));
            file.push(b'B');
        }
        // A 3.5 closeSession: header only.
        let mut close = Vec::new();
        close.put_i64(0x77);
        close.put_i32(9);
        close.put_i64(4);
        close.put_i64(1);
        close.put_i32(op::CLOSE_SESSION);
        file.put_i64(super::super::adler32(&close) as i64);
        file.put_buffer(Some(&close));
        file.push(b'B');
        let got = plain(scan(&file).unwrap());
        assert_eq!(got[3].txn, Txn::CloseSession { ephemerals: vec!["/p/e".into()] });
    }

    #[test]
    fn torn_tail_and_damage_are_told_apart() {
        let file = encode_file(&entries(), true, 0);
        let last = scan(&file).unwrap().records.last().unwrap().offset;
        // Cut inside the last record, then zero padding: torn.
        let mut torn = file[..file.len() - 5].to_vec();
        torn.resize(file.len() + 100, 0);
        let s = scan(&torn).unwrap();
        assert_eq!(s.records.len(), entries().len() - 1);
        let bad = s.bad.unwrap();
        assert!(bad.torn, "{bad:?}");
        assert_eq!(bad.offset, last);
        // A flipped byte in an early record: damage at that record.
        let mut flipped = file.clone();
        let second = scan(&file).unwrap().records[1].offset;
        flipped[second + 20] ^= 1;
        let s = scan(&flipped).unwrap();
        assert_eq!(s.records.len(), 1);
        let bad = s.bad.unwrap();
        assert!(!bad.torn && bad.offset == second && bad.reason.contains("checksum"), "{bad:?}");
        // Wrong magic is refused; an all-zero stub is an interrupted creation.
        assert!(scan(b"WRDNLOG1xxxxxxxxxxxxxxxxx").is_err());
        assert!(scan(&[0; 10]).unwrap().bad.unwrap().torn);
        // A missing 'B' with more records after it is damage.
        let mut no_eor = file.clone();
        let first_end = second - 1;
        no_eor[first_end] = b'X';
        let s = scan(&no_eor).unwrap();
        assert!(!s.bad.unwrap().torn);
    }
}
