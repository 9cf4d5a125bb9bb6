//! A connection's outgoing bytes: frames queue in a channel and one task
//! writes whatever has gathered with a single syscall, so replies batch
//! naturally under load. The queue is bounded in bytes: a client that stops
//! reading is cut off instead of growing the server's memory without limit.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::os::fd::RawFd;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

/// Bytes a connection may have queued but unwritten before it is closed.
pub const MAX_PENDING_BYTES: usize = 32 << 20;

pub struct Outbox {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    pending: Arc<AtomicUsize>,
    /// Signalled to drop queued data and reset (a dropped Outbox is not an abort).
    abort: Arc<Notify>,
}

impl Outbox {
    /// Starts the writer task on the current (actix) arbiter. `socket` is a
    /// plain or TLS write half; `fd` is its TCP socket, for resets.
    pub fn start<W: AsyncWrite + Unpin + 'static>(mut socket: W, fd: RawFd) -> Outbox {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending = Arc::new(AtomicUsize::new(0));
        let counter = pending.clone();
        let abort = Arc::new(Notify::new());
        let aborted = abort.clone();
        actix_rt::spawn(async move {
            let mut batch = Vec::with_capacity(64 << 10);
            loop {
                let first = tokio::select! {
                    f = rx.recv() => match f { Some(f) => f, None => break },
                    _ = aborted.notified() => return reset(socket, fd),
                };
                batch.clear();
                batch.extend_from_slice(&first);
                while batch.len() < (1 << 20) {
                    match rx.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                tokio::select! {
                    r = socket.write_all(&batch) => if r.is_err() { break },
                    _ = aborted.notified() => return reset(socket, fd),
                }
                counter.fetch_sub(batch.len(), Relaxed);
            }
            let _ = socket.shutdown().await;
        });
        Outbox { tx: Some(tx), pending, abort }
    }

    /// Queues a frame; false if the client is too far behind (or gone).
    pub fn send(&self, frame: Vec<u8>) -> bool {
        let Some(tx) = &self.tx else { return false };
        if self.pending.fetch_add(frame.len(), Relaxed) + frame.len() > MAX_PENDING_BYTES {
            return false;
        }
        tx.send(frame).is_ok()
    }

    /// Flushes what is queued, then closes the socket.
    pub fn close(&mut self) {
        self.tx = None;
    }

    /// Drops what is queued and resets the connection at once.
    pub fn abort(&mut self) {
        self.tx = None;
        self.abort.notify_one();
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending.load(Relaxed)
    }
}

/// Closes with RST, discarding unsent data (for clients cut off as too slow):
/// zero linger on the socket, set while `socket` still keeps the fd open.
fn reset<W>(socket: W, fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: fd is open (owned by the stream behind `socket`); linger is a valid option value.
    unsafe {
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &linger as *const _ as *const libc::c_void, std::mem::size_of::<libc::linger>() as libc::socklen_t);
    }
    drop(socket);
}
