//! The auditor actor (audit.enable), on its own thread (SyncArbiter): writes
//! the audit events the processor hands over, one batch per message, so
//! formatting and file writes stay off the write path. With
//! zookeeper.auditlog.file the lines go to that file as ZooKeeper's RFAAUDIT
//! appender writes them (`<ISO8601> INFO audit.Slf4jAuditLogger: <event>`,
//! rolled at 10 MB, 10 files kept); without it, to the server log.

use crate::mailbox::{Serve, Supervision};
use crate::messages::Audit;
use crate::registry::{ActorStats, Fault};
use actix::prelude::*;
use slog::{error, info, warn, Logger};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use warden_core::audit::{AuditEvent, Outcome};

const ROLL_BYTES: u64 = 10 * 1024 * 1024;
const KEPT_FILES: u32 = 10;

struct AuditFile {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
}

pub struct Auditor {
    file: Option<AuditFile>,
    path: Option<PathBuf>,
    /// The operating-system user the server runs as (ZooKeeper's login user).
    server_user: String,
    me: Arc<ActorStats>,
    log: Logger,
}

impl Auditor {
    pub fn new(path: Option<PathBuf>, me: Arc<ActorStats>, log: Logger) -> Auditor {
        Auditor { file: None, path, server_user: server_user(), me, log }
    }

    fn open(path: &PathBuf) -> std::io::Result<AuditFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let bytes = file.metadata()?.len();
        Ok(AuditFile { path: path.clone(), out: BufWriter::with_capacity(256 << 10, file), bytes })
    }

    /// FixedWindowRollingPolicy: file.9 → file.10, …, file → file.1.
    fn roll(path: &std::path::Path) {
        let numbered = |i: u32| PathBuf::from(format!("{}.{i}", path.display()));
        for i in (1..KEPT_FILES).rev() {
            let _ = std::fs::rename(numbered(i), numbered(i + 1));
        }
        let _ = std::fs::rename(path, numbered(1));
    }

    fn write_file(&mut self, events: &[AuditEvent]) -> std::io::Result<()> {
        let Some(path) = self.path.clone() else { return Ok(()) };
        if self.file.is_none() {
            self.file = Some(Self::open(&path)?);
        }
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S,%3f").to_string();
        let f = self.file.as_mut().expect("opened above");
        let mut text = String::with_capacity(events.len() * 200);
        for e in events {
            let level = if e.result == Outcome::Failure { "ERROR" } else { "INFO" };
            text.push_str(&now);
            text.push(' ');
            text.push_str(level);
            text.push_str(" audit.Slf4jAuditLogger: ");
            e.write_line(&mut text, &self.server_user);
            text.push('\n');
        }
        f.out.write_all(text.as_bytes())?;
        f.bytes += text.len() as u64;
        // One write for a burst: flushed when no further batch waits (the
        // last one of a burst flushes them all), as the file's only writer.
        if self.me.depth() == 0 {
            f.out.flush()?;
        }
        if f.bytes >= ROLL_BYTES {
            let path = f.path.clone();
            self.file = None;
            Self::roll(&path);
        }
        Ok(())
    }
}

/// The user name of the effective uid (Java's user.name), else $USER.
fn server_user() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; it is
    // read at once, on this thread, before any other passwd call.
    let from_passwd = unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        (!pw.is_null()).then(|| std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    };
    from_passwd.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "<NA>".into())
}

impl Actor for Auditor {
    type Context = SyncContext<Self>;
}

crate::mailbox::mailbox!(Auditor: Audit, Fault);

/// A failed auditor is replaced by a fresh one (the file is reopened).
impl Supervision for Auditor {
    fn stats(&self) -> &Arc<ActorStats> {
        &self.me
    }
    fn log(&self) -> &Logger {
        &self.log
    }
    fn panicked(&mut self, ctx: &mut SyncContext<Self>) {
        std::thread::sleep(crate::supervise::decide(&self.me, &self.log));
        ctx.stop();
    }
}

impl Serve<Fault> for Auditor {
    fn serve(&mut self, f: Fault, ctx: &mut SyncContext<Self>) {
        crate::supervise::inject(self, f, ctx)
    }
}

impl Serve<Audit> for Auditor {
    fn serve(&mut self, Audit(events): Audit, _: &mut SyncContext<Self>) {
        if self.path.is_none() {
            for e in &events {
                let line = e.line(&self.server_user);
                match e.result {
                    Outcome::Failure => error!(self.log, "{line}"),
                    _ => info!(self.log, "{line}"),
                }
            }
            return;
        }
        if let Err(err) = self.write_file(&events) {
            // An audit line is never dropped silently: it goes to the server log instead.
            warn!(self.log, "cannot write the audit log"; "file" => self.path.as_ref().map(|p| p.display().to_string()), "error" => %err);
            self.file = None;
            for e in &events {
                warn!(self.log, "{}", e.line(&self.server_user));
            }
        }
    }
}
