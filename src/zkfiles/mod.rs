//! Apache ZooKeeper's own data files (3.4–3.9), read in place and written back:
//! `snapshot.<zxid>` (FileSnap) and `log.<zxid>` (FileTxnLog) in `version-2/`.
//! Both start with a jute `FileHeader` (magic, version 2, dbid) and are
//! checked with Adler32, as ZooKeeper's `CheckedInputStream` does. Also the
//! session passwords ZooKeeper issued, so its clients can reconnect.

pub mod backup;
pub mod log;
pub mod snap;

pub const SNAP_MAGIC: [u8; 4] = *b"ZKSN";
pub const LOG_MAGIC: [u8; 4] = *b"ZKLG";
pub const VERSION: i32 = 2;
pub const HEADER_BYTES: usize = 16;

/// What a data file is, from its first bytes (Warden's files carry their own magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Warden,
    ZooKeeper,
    /// Short or zeroed: a file whose creation a crash interrupted.
    Empty,
    Unknown,
}

pub fn file_kind(head: &[u8]) -> FileKind {
    let warden = [&crate::txnlog::MAGIC[..], &crate::snapshot::MAGIC[..]];
    if warden.iter().any(|m| head.starts_with(m)) {
        FileKind::Warden
    } else if head.starts_with(&SNAP_MAGIC) || head.starts_with(&LOG_MAGIC) {
        FileKind::ZooKeeper
    } else if head.iter().all(|b| *b == 0) {
        FileKind::Empty
    } else {
        FileKind::Unknown
    }
}

/// `java.util.zip.Adler32`.
pub fn adler32(bytes: &[u8]) -> u32 {
    adler2::adler32_slice(bytes)
}

/// `java.util.Random`: the 48-bit LCG ZooKeeper seeds to make session passwords.
pub struct JavaRandom(u64);

impl JavaRandom {
    const MULT: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    pub fn new(seed: i64) -> JavaRandom {
        JavaRandom((seed as u64 ^ Self::MULT) & Self::MASK)
    }

    fn next(&mut self, bits: u32) -> i32 {
        self.0 = (self.0.wrapping_mul(Self::MULT).wrapping_add(0xB)) & Self::MASK;
        (self.0 >> (48 - bits)) as i32
    }

    pub fn next_bytes(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(4) {
            let mut rnd = self.next(32);
            for b in chunk {
                *b = rnd as u8;
                rnd >>= 8;
            }
        }
    }
}

/// ZooKeeperServer's `superSecret`, a constant in every release.
const SUPER_SECRET: i64 = 0xB341_5C00;

/// The password ZooKeeper gave session `session_id`:
/// `new Random(sessionId ^ superSecret).nextBytes(new byte[16])`.
pub fn zookeeper_password(session_id: i64) -> Vec<u8> {
    let mut p = vec![0u8; 16];
    JavaRandom::new(session_id ^ SUPER_SECRET).next_bytes(&mut p);
    p
}

/// Why a ZooKeeper file cannot be used; `offset` is where reading failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub offset: usize,
    pub reason: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at byte {}: {}", self.offset, self.reason)
    }
}

pub(crate) fn header(magic: [u8; 4], dbid: i64) -> Vec<u8> {
    let mut out = magic.to_vec();
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&dbid.to_be_bytes());
    out
}

pub(crate) fn check_header(bytes: &[u8], magic: [u8; 4], what: &str) -> Result<(), FileError> {
    if bytes.len() < HEADER_BYTES {
        return Err(FileError { offset: bytes.len(), reason: format!("shorter than a ZooKeeper {what} header") });
    }
    if bytes[..4] != magic {
        return Err(FileError { offset: 0, reason: format!("not a ZooKeeper {what} (magic {:02x?})", &bytes[..4]) });
    }
    let version = i32::from_be_bytes(bytes[4..8].try_into().unwrap());
    if version != VERSION {
        return Err(FileError { offset: 4, reason: format!("ZooKeeper {what} version {version}, only version 2 exists") });
    }
    Ok(())
}

/// A backup's bytes as a database, from either format: ZooKeeper's snapshot
/// (the admin `snapshot` command's, ZooKeeper's own) or Warden's.
pub fn load_backup(bytes: &[u8]) -> Result<crate::database::Database, String> {
    match file_kind(bytes) {
        FileKind::ZooKeeper => snap::load_stream(bytes).map(|s| s.db).map_err(|e| format!("not a usable ZooKeeper snapshot: {e}")),
        _ => crate::snapshot::load(bytes).map(|s| s.db).map_err(|e| format!("neither a ZooKeeper nor a Warden snapshot: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adler32_matches_known_values() {
        assert_eq!(adler32(b""), 1);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        // Past one reduction chunk.
        let big = vec![0xffu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for x in &big {
            a = (a + *x as u64) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(adler32(&big) as u64, (b << 16) | a);
    }

    #[test]
    fn java_random_matches_the_jdk() {
        // new java.util.Random(42).nextInt() == -1170105035 (JDK documented sequence).
        let mut r = JavaRandom::new(42);
        assert_eq!(r.next(32), -1_170_105_035);
        assert_eq!(r.next(32), 234_785_527);
        let mut bytes = [0u8; 6];
        JavaRandom::new(42).next_bytes(&mut bytes);
        // nextBytes takes each int's low byte first.
        assert_eq!(bytes[..4], (-1_170_105_035i32).to_le_bytes());
        assert_eq!(bytes[4..], 234_785_527i32.to_le_bytes()[..2]);
        assert_eq!(zookeeper_password(0x100).len(), 16);
        assert_ne!(zookeeper_password(0x100), zookeeper_password(0x101));
    }

    #[test]
    fn kinds_by_magic() {
        assert_eq!(file_kind(b"WRDNLOG1...."), FileKind::Warden);
        assert_eq!(file_kind(b"WRDNSNP1"), FileKind::Warden);
        assert_eq!(file_kind(b"ZKLG\0\0\0\x02"), FileKind::ZooKeeper);
        assert_eq!(file_kind(b"ZKSN"), FileKind::ZooKeeper);
        assert_eq!(file_kind(&[0; 8]), FileKind::Empty);
        assert_eq!(file_kind(b"garbage!"), FileKind::Unknown);
    }
}
