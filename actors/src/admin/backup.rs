//! Backup and restore through the admin endpoint, as ZooKeeper 3.9's
//! AdminServer: `GET /commands/snapshot` (alias `snap`) answers a consistent
//! snapshot of the live node in ZooKeeper's snapshot format (with 3.9's
//! last-processed-zxid part), headers `last_zxid` and `snapshot_size`;
//! `?streaming=false` writes a snapshot to the data dir instead and answers
//! JSON. `POST /commands/restore` (alias `rest`) takes such a snapshot (or a
//! Warden snapshot file) as the body and makes it the node's data. Each is
//! allowed once per `zookeeper.admin.rateLimiterIntervalInMS` and can be
//! switched off (`zookeeper.admin.snapshot.enabled`, `…restore.enabled`).

use super::{authorized, AdminState};
use crate::messages::SnapshotNow;
use crate::messages::{BackupPiece, RestoreDatabase, TakeBackup};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// ZooKeeper's RateLimiter(1, interval): one call per interval, per command.
#[derive(Default)]
pub struct RateLimits {
    snapshot: Mutex<Option<Instant>>,
    restore: Mutex<Option<Instant>>,
}

fn allow(last: &Mutex<Option<Instant>>, interval: Duration) -> bool {
    let mut last = last.lock().unwrap();
    if last.is_some_and(|t| t.elapsed() < interval) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

/// A call that did nothing (a snapshot was already being written) does not
/// use up the interval: the caller may retry at once.
fn give_back(last: &Mutex<Option<Instant>>) {
    *last.lock().unwrap() = None;
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    for name in ["snapshot", "snap"] {
        cfg.route(&format!("/commands/{name}"), web::get().to(snapshot));
    }
    for name in ["restore", "rest"] {
        cfg.route(&format!("/commands/{name}"), web::post().to(restore));
    }
}

fn refused(status: actix_web::http::StatusCode, command: &str, error: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "command": command, "error": error.into() }))
}

#[derive(serde::Deserialize)]
struct SnapshotQuery {
    streaming: Option<String>,
}

async fn snapshot(req: HttpRequest, query: web::Query<SnapshotQuery>, state: web::Data<AdminState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    if let Err(denied) = authorized(&req, &state) {
        return denied;
    }
    let config = &state.deps.config;
    if !config.admin_snapshot_enabled {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "snapshot", "the snapshot command is disabled (zookeeper.admin.snapshot.enabled)");
    }
    if !allow(&state.rate_limits.snapshot, Duration::from_millis(config.admin_rate_limiter_interval_ms)) {
        return refused(StatusCode::TOO_MANY_REQUESTS, "snapshot", "rate limited (zookeeper.admin.rateLimiterIntervalInMS)");
    }
    // Boolean.parseBoolean: only "true" (any case) is true; absent means streaming.
    let streaming = query.streaming.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("true"));
    if !streaming {
        return match state.deps.processor.send(SnapshotNow).await {
            Ok(Some(zxid)) => HttpResponse::Ok().insert_header(("last_zxid", format!("0x{zxid:x}"))).json(json!({
                "command": "snapshot", "error": null, "last_zxid": zxid, "snapshot_file_name": warden_core::txnlog::snapshot_name(zxid)
            })),
            Ok(None) => {
                give_back(&state.rate_limits.snapshot);
                refused(StatusCode::CONFLICT, "snapshot", "a snapshot is already being written")
            }
            Err(e) => refused(StatusCode::SERVICE_UNAVAILABLE, "snapshot", e.to_string()),
        };
    }
    let (out, pieces) = tokio::sync::mpsc::channel(2);
    match state.deps.processor.send(TakeBackup { out }).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            give_back(&state.rate_limits.snapshot);
            return refused(StatusCode::CONFLICT, "snapshot", e);
        }
        Err(e) => return refused(StatusCode::SERVICE_UNAVAILABLE, "snapshot", e.to_string()),
    }
    static TAKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = crate::storage::version_dir(&config.data_dir);
    let base = format!("backup.{}.{n}", std::process::id());
    let (walk, zk) = (dir.join(format!("{base}.walk")), dir.join(format!("{base}.zk")));
    let written = web::block(move || write_backup(pieces, &walk, &zk)).await;
    let (file, zxid, size) = match written {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return refused(StatusCode::INTERNAL_SERVER_ERROR, "snapshot", e),
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, "snapshot", e.to_string()),
    };
    slog::info!(state.log, "backup streamed"; "zxid" => format!("{zxid:#x}"), "bytes" => size);
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("last_zxid", format!("0x{zxid:x}")))
        .insert_header(("snapshot_size", size.to_string()))
        .body(actix_web::body::SizedStream::new(size, file_chunks(file)))
}

/// Receives the processor's walk into `walk_path`, then writes the backup
/// to `zk_path` and answers it opened and already unlinked (gone once
/// sent), with its zxid and size. Memory: a piece and a buffer, whatever
/// the tree's size.
fn write_backup(
    mut pieces: tokio::sync::mpsc::Receiver<BackupPiece>,
    walk_path: &std::path::Path,
    zk_path: &std::path::Path,
) -> Result<(std::fs::File, i64, u64), String> {
    use std::io::Write;
    let result = (|| {
        let cannot = |what: &std::path::Path, e: std::io::Error| format!("cannot write {}: {e}", what.display());
        let mut walk = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(walk_path).map_err(|e| cannot(walk_path, e))?);
        let tail = loop {
            match pieces.blocking_recv() {
                Some(BackupPiece::Header(bytes)) => walk.write_all(&bytes).map_err(|e| cannot(walk_path, e))?,
                Some(BackupPiece::Items(items)) => walk.write_all(&warden_core::snapshot::encode_items(&items)).map_err(|e| cannot(walk_path, e))?,
                Some(BackupPiece::Tail(tail)) => break *tail,
                Some(BackupPiece::Failed(why)) => return Err(why),
                None => return Err("the processor ended the backup's walk".to_string()),
            }
        };
        walk.flush().map_err(|e| cannot(walk_path, e))?;
        drop(walk);
        let zxid = tail.zxid;
        let walked = std::fs::File::open(walk_path).map_err(|e| format!("cannot read {}: {e}", walk_path.display()))?;
        let out = std::fs::File::create(zk_path).map_err(|e| cannot(zk_path, e))?;
        let size =
            warden_core::zkfiles::backup::write(std::io::BufReader::with_capacity(1 << 20, walked), tail, std::io::BufWriter::with_capacity(1 << 20, &out))?;
        let file = std::fs::File::open(zk_path).map_err(|e| format!("cannot read {}: {e}", zk_path.display()))?;
        Ok((file, zxid, size))
    })();
    let _ = std::fs::remove_file(walk_path);
    let _ = std::fs::remove_file(zk_path);
    result
}

/// A file's bytes as a body, read 1 MiB at a time off the async threads.
fn file_chunks(file: std::fs::File) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    futures_util::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let read = web::block(move || {
            let mut buf = vec![0u8; 1 << 20];
            let n = std::io::Read::read(&mut file, &mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((file, buf))) => Some((Ok(bytes::Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
        }
    })
}

/// Writes a request body to `path` as it arrives: a backup of any size
/// passes through the disk, not memory.
async fn receive_to(path: &std::path::Path, mut body: web::Payload) -> Result<u64, String> {
    use futures_util::StreamExt;
    use std::io::Write;
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut received = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("the request body broke off: {e}"))?;
        received += chunk.len() as u64;
        out.write_all(&chunk).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    out.flush().map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(received)
}

/// A received backup as a database, read through a memory map (the page
/// cache, not the heap, holds the file while it is parsed).
fn load_received(path: &std::path::Path) -> Result<warden_core::database::Database, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // SAFETY: the file is this request's own temp file; nothing else writes it while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map {}: {e}", path.display()))?;
    warden_core::zkfiles::load_backup(&map)
}

async fn restore(req: HttpRequest, body: web::Payload, state: web::Data<AdminState>) -> HttpResponse {
    use actix_web::http::StatusCode;
    if let Err(denied) = authorized(&req, &state) {
        return denied;
    }
    let config = &state.deps.config;
    if !config.admin_restore_enabled {
        return refused(StatusCode::SERVICE_UNAVAILABLE, "restore", "the restore command is disabled (zookeeper.admin.restore.enabled)");
    }
    static RECEIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = RECEIVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = crate::storage::version_dir(&config.data_dir).join(format!("restore.{}.{n}.tmp", std::process::id()));
    let received = receive_to(&tmp, body).await;
    let refuse = |status, why: String| {
        let _ = std::fs::remove_file(&tmp);
        refused(status, "restore", why)
    };
    match received {
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
        Ok(0) => return refuse(StatusCode::BAD_REQUEST, "the request body must be a snapshot".into()),
        Ok(_) => {}
    }
    if !allow(&state.rate_limits.restore, Duration::from_millis(config.admin_rate_limiter_interval_ms)) {
        return refuse(StatusCode::TOO_MANY_REQUESTS, "rate limited (zookeeper.admin.rateLimiterIntervalInMS)".into());
    }
    let path = tmp.clone();
    let loaded = web::block(move || {
        let db = load_received(&path);
        let _ = std::fs::remove_file(&path);
        db
    })
    .await;
    let db = match loaded {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => return refused(StatusCode::BAD_REQUEST, "restore", e),
        Err(e) => return refused(StatusCode::INTERNAL_SERVER_ERROR, "restore", e.to_string()),
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    state.deps.processor.do_send(RestoreDatabase { db, reply });
    match answer.await {
        Ok(Ok(zxid)) => HttpResponse::Ok().json(json!({ "command": "restore", "error": null, "last_zxid": zxid })),
        Ok(Err(e)) => refused(StatusCode::CONFLICT, "restore", e),
        Err(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "restore", "the processor went away"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_found_a_snapshot_in_progress_leaves_the_interval_unused() {
        let last = Mutex::new(None);
        let hour = Duration::from_secs(3600);
        assert!(allow(&last, hour));
        assert!(!allow(&last, hour), "once per interval");
        give_back(&last);
        assert!(allow(&last, hour), "the 409 did not count");
        assert!(!allow(&last, hour));
    }
}
