//! Transaction log format: segment files `log.<first zxid, hex>` holding a
//! header and checksummed records (`record.rs`) of MessagePack `LogEntry`s,
//! preallocated with zeros. Also the file naming and purge rules shared with
//! snapshots (`snapshot.<zxid, hex>`), as ZooKeeper lays out `version-2/`.

use crate::record::{BadRecord, Records};
use crate::txn::LogEntry;

pub const MAGIC: &[u8; 8] = b"WRDNLOG1";
pub const LOG_PREFIX: &str = "log.";
pub const SNAPSHOT_PREFIX: &str = "snapshot.";

pub fn log_name(first_zxid: i64) -> String {
    format!("{LOG_PREFIX}{first_zxid:x}")
}

pub fn snapshot_name(zxid: i64) -> String {
    format!("{SNAPSHOT_PREFIX}{zxid:x}")
}

/// The zxid in a `log.<hex>` or `snapshot.<hex>` file name.
pub fn parse_name(name: &str, prefix: &str) -> Option<i64> {
    let hex = name.strip_prefix(prefix)?;
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    i64::from_str_radix(hex, 16).ok()
}

/// What a segment holds, and where its good data ends.
pub struct SegmentScan {
    pub entries: Vec<LogEntry>,
    /// Offset just past the last good record (where a torn tail is cut).
    pub good_bytes: usize,
    /// Why reading stopped early, if it did.
    pub bad: Option<BadRecord>,
}

pub fn scan_segment(bytes: &[u8]) -> Result<SegmentScan, BadRecord> {
    scan_segment_after(bytes, i64::MIN)
}

/// `scan_segment`, keeping only entries after zxid `after`. Every record's
/// checksum is still checked, but entries at or before `after` (already in
/// the snapshot) have only their header decoded: recovery skips most of the
/// segment a snapshot was taken in without building its transactions.
pub fn scan_segment_after(bytes: &[u8], after: i64) -> Result<SegmentScan, BadRecord> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // A crash while creating the segment leaves a short, zeroed header.
        let torn = bytes.iter().all(|b| *b == 0);
        return if torn {
            Ok(SegmentScan { entries: Vec::new(), good_bytes: 0, bad: Some(BadRecord { offset: 0, reason: "empty segment header".into(), torn }) })
        } else {
            Err(BadRecord { offset: 0, reason: "not a Warden log segment (bad magic)".into(), torn: false })
        };
    }
    let mut entries = Vec::new();
    let mut records = Records::new(bytes, MAGIC.len());
    let mut bad = None;
    for rec in records.by_ref() {
        match rec {
            Ok((offset, payload)) => match decode_after(payload, after) {
                Ok(Some(e)) => entries.push(e),
                Ok(None) => {}
                Err(e) => {
                    // The checksum matched, so this is not a torn write.
                    bad = Some(BadRecord { offset, reason: format!("undecodable entry: {e}"), torn: false });
                    break;
                }
            },
            Err(b) => {
                bad = Some(b);
                break;
            }
        }
    }
    let good_bytes = match &bad {
        Some(b) => b.offset,
        None => records.position(),
    };
    Ok(SegmentScan { entries, good_bytes, bad })
}

/// A log entry's header alone; its transaction is skipped unbuilt.
#[derive(serde::Deserialize)]
struct HeaderOnly {
    hdr: crate::txn::TxnHeader,
    _txn: serde::de::IgnoredAny,
}

fn decode_after(payload: &[u8], after: i64) -> Result<Option<LogEntry>, String> {
    if after != i64::MIN {
        let head: HeaderOnly = rmp_serde::from_slice(payload).map_err(|e| e.to_string())?;
        if head.hdr.zxid <= after {
            return Ok(None);
        }
    }
    LogEntry::decode(payload).map(Some)
}

/// The byte offset just past the last good record with zxid <= `to_zxid`
/// (the segment header if there is none): where TRUNC cuts a segment.
pub fn truncate_point(bytes: &[u8], to_zxid: i64) -> usize {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return 0;
    }
    let mut records = Records::new(bytes, MAGIC.len());
    let mut cut = MAGIC.len();
    while let Some(Ok((_, payload))) = records.next() {
        match LogEntry::decode(payload) {
            Ok(e) if e.hdr.zxid <= to_zxid => cut = records.position(),
            _ => break,
        }
    }
    cut
}

/// Files autopurge deletes: all but the newest `retain` snapshots, and every
/// log segment whose transactions all precede the oldest kept snapshot.
/// Inputs are the zxids from file names.
pub fn purge_plan(snapshots: &[i64], logs: &[i64], retain: usize) -> (Vec<i64>, Vec<i64>) {
    let mut snaps = snapshots.to_vec();
    snaps.sort_unstable_by(|a, b| b.cmp(a));
    if snaps.len() <= retain.max(1) {
        return (Vec::new(), Vec::new());
    }
    let old_snaps = snaps.split_off(retain.max(1));
    let oldest_kept = *snaps.last().unwrap();
    let mut firsts = logs.to_vec();
    firsts.sort_unstable();
    // Segment i holds [firsts[i], firsts[i+1]); keep it if anything in it is needed.
    let old_logs = firsts.windows(2).filter(|w| w[1] <= oldest_kept + 1).map(|w| w[0]).collect();
    (old_snaps, old_logs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record;
    use crate::txn::{Txn, TxnHeader};

    fn segment(n: i64) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for zxid in 1..=n {
            let e = LogEntry { hdr: TxnHeader { session_id: 1, cxid: zxid as i32, zxid, time_ms: 0 }, txn: Txn::Delete { path: format!("/p{zxid}") } };
            record::encode(&e.encode(), &mut b);
        }
        b
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(log_name(0x1f), "log.1f");
        assert_eq!(parse_name("log.1f", LOG_PREFIX), Some(0x1f));
        assert_eq!(parse_name(&snapshot_name(300), SNAPSHOT_PREFIX), Some(300));
        assert_eq!(parse_name("log.1f.tmp", LOG_PREFIX), None);
        assert_eq!(parse_name("snapshot.", SNAPSHOT_PREFIX), None);
    }

    #[test]
    fn scans_preallocated_segment() {
        let mut b = segment(3);
        let end = b.len();
        b.resize(end + 4096, 0);
        let s = scan_segment(&b).unwrap();
        assert_eq!(s.entries.len(), 3);
        assert_eq!(s.good_bytes, end);
        assert!(s.bad.is_none());
    }

    #[test]
    fn torn_tail_and_corruption_are_told_apart() {
        let b = segment(4);
        let s = scan_segment(&b[..b.len() - 5]).unwrap();
        assert_eq!(s.entries.len(), 3);
        assert!(s.bad.as_ref().unwrap().torn);
        let mut c = segment(4);
        c[MAGIC.len() + 12] ^= 0xff;
        let s = scan_segment(&c).unwrap();
        assert_eq!(s.entries.len(), 0);
        let bad = s.bad.unwrap();
        assert!(!bad.torn);
        assert_eq!(bad.offset, MAGIC.len());
        assert!(scan_segment(b"not a log at all").is_err());
        assert!(scan_segment(&[0; 6]).unwrap().bad.unwrap().torn);
    }

    #[test]
    fn a_scan_after_a_zxid_keeps_only_later_entries_and_still_checks_every_record() {
        let b = segment(6);
        let all = scan_segment(&b).unwrap();
        let after = scan_segment_after(&b, 4).unwrap();
        assert_eq!(after.entries, all.entries[4..].to_vec());
        assert_eq!((after.good_bytes, after.bad.is_none()), (all.good_bytes, true));
        assert!(scan_segment_after(&b, 6).unwrap().entries.is_empty());
        // Damage in an entry the scan skips is still found, where it is.
        let mut c = segment(6);
        c[MAGIC.len() + 12] ^= 0xff;
        let s = scan_segment_after(&c, 4).unwrap();
        assert_eq!((s.entries.len(), s.bad.unwrap().offset), (0, MAGIC.len()));
        // A record whose checksum matches but whose header does not decode.
        let mut d = MAGIC.to_vec();
        record::encode(&rmp_serde::to_vec(&("not", "an entry")).unwrap(), &mut d);
        assert!(!scan_segment_after(&d, 4).unwrap().bad.unwrap().torn);
    }

    #[test]
    fn purge_keeps_what_recovery_needs() {
        // Snapshots at 100, 200, 300; logs starting at 1, 150, 250, 301.
        let (s, l) = purge_plan(&[100, 200, 300], &[1, 150, 250, 301], 2);
        assert_eq!(s, vec![100]);
        // Oldest kept snapshot is 200: replay needs 201.., which is in log.150.
        assert_eq!(l, vec![1]);
        assert_eq!(purge_plan(&[100], &[1, 50], 3), (vec![], vec![]));
        let (_, l) = purge_plan(&[10, 20, 30, 40], &[1, 21, 41], 3);
        assert_eq!(l, vec![1], "log.21 covers 21..40, needed after snapshot 20");
    }
}
