//! Naming, listing and reading the files in the data dirs, Warden's and
//! Apache ZooKeeper's (told apart by their magic). `storage` recovers and
//! writes with these; `zk_import` reads ZooKeeper's files with them.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use warden_core::txnlog;
use warden_core::zkfiles::{self, FileKind};

/// ZooKeeper's layout: `<dataDir>/version-2/snapshot.*`, `<dataLogDir>/version-2/log.*`.
pub fn version_dir(dir: &Path) -> PathBuf {
    dir.join("version-2")
}

/// Files in `dir` named `<prefix><hex zxid>`, sorted by zxid.
pub fn list(dir: &Path, prefix: &str) -> Vec<(i64, PathBuf)> {
    let mut out: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    Some((txnlog::parse_name(&name, prefix)?, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Whose file this is, by its magic (ZooKeeper's and Warden's share names).
pub fn kind_of(path: &Path) -> FileKind {
    use std::io::Read;
    let mut head = [0u8; 8];
    let n = File::open(path).and_then(|f| f.take(8).read(&mut head)).unwrap_or(0);
    zkfiles::file_kind(&head[..n])
}

/// `list`, keeping the files whose kind passes `want`.
pub fn list_kind(dir: &Path, prefix: &str, want: impl Fn(FileKind) -> bool) -> Vec<(i64, PathBuf)> {
    list(dir, prefix).into_iter().filter(|(_, p)| want(kind_of(p))).collect()
}

/// Every file but ZooKeeper's: Warden's own, empty stubs a crash left, and
/// files of unknown content (read as damaged Warden files, so garbage is
/// reported, not skipped). Only these are recovered from, cut, truncated or
/// purged; ZooKeeper's are never touched.
pub fn list_warden(dir: &Path, prefix: &str) -> Vec<(i64, PathBuf)> {
    list_kind(dir, prefix, |k| k != FileKind::ZooKeeper)
}

/// Refuses to replace a file that is not Warden's (ZooKeeper's files share
/// the names `snapshot.<zxid>` and `log.<zxid>`).
pub fn check_not_foreign(path: &Path) -> std::io::Result<()> {
    if path.exists() && !matches!(kind_of(path), FileKind::Warden | FileKind::Empty) {
        return Err(std::io::Error::other(format!(
            "{} is not a Warden file (ZooKeeper's?) and Warden never overwrites it; move it out of the directory \
             (ZooKeeper only needs it to go back to ZooKeeper) and start again",
            path.display()
        )));
    }
    Ok(())
}

/// A log segment's written part: segments are preallocated as sparse files,
/// so reading stops at the first hole instead of scanning megabytes of zeros.
/// (Appends are contiguous; anything past a hole was never made durable.)
pub fn read_segment(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    // SAFETY: lseek on an fd we own; SEEK_HOLE only reports an offset.
    let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    let upto = if hole > 0 { (hole as u64).min(len) } else { len };
    let mut buf = Vec::with_capacity(upto as usize);
    file.seek(SeekFrom::Start(0))?;
    (&mut file).take(upto).read_to_end(&mut buf)?;
    Ok(buf)
}

pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
