//! A connection's outgoing bytes: frames queue in a channel and one task
//! writes whatever has gathered with a single syscall, so replies batch
//! naturally under load. The queue is bounded in bytes: a client that stops
//! reading is cut off instead of growing the server's memory without limit.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};

/// Bytes a connection may have queued but unwritten before it is closed.
pub const MAX_PENDING_BYTES: usize = 32 << 20;

/// A connection's write side. Clones share it: the session handler writes
/// its own answers, the dispatcher writes replies and notifications straight
/// in (no hop through the handler), all in one order on the socket.
#[derive(Clone)]
pub struct Outbox {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    pending: Arc<AtomicUsize>,
    /// Signalled to drop queued data and reset (a dropped Outbox is not an abort).
    abort: Arc<Notify>,
}

/// Queued after the last frame: the writer flushes up to it and closes.
/// (Frames are never empty, so the empty buffer is free to mean this.)
const CLOSE: Vec<u8> = Vec::new();

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
            // Grown only when frames gather, and given back after a burst:
            // an idle connection holds no write buffer.
            let mut batch = Vec::new();
            let mut closing = false;
            while !closing {
                let first = tokio::select! {
                    f = rx.recv() => match f { Some(f) if !f.is_empty() => f, _ => break },
                    _ = aborted.notified() => return reset(socket, fd),
                };
                if batch.capacity() > (256 << 10) {
                    batch = Vec::new();
                }
                batch.clear();
                let mut next = rx.try_recv().ok();
                if next.is_none() {
                    // One frame: written as it is, no copy.
                    tokio::select! {
                        r = socket.write_all(&first) => if r.is_err() { break },
                        _ = aborted.notified() => return reset(socket, fd),
                    }
                    counter.fetch_sub(first.len(), Relaxed);
                    continue;
                }
                batch.extend_from_slice(&first);
                while let Some(frame) = next.take() {
                    if frame.is_empty() {
                        closing = true;
                        break;
                    }
                    batch.extend_from_slice(&frame);
                    if batch.len() >= (1 << 20) {
                        break;
                    }
                    next = rx.try_recv().ok();
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

    /// Queues frames; false if the client is too far behind (or gone).
    pub fn send(&self, frames: Vec<u8>) -> bool {
        let Some(tx) = &self.tx else { return false };
        if frames.is_empty() {
            return true;
        }
        if self.pending.fetch_add(frames.len(), Relaxed) + frames.len() > MAX_PENDING_BYTES {
            return false;
        }
        tx.send(frames).is_ok()
    }

    /// Flushes what is queued, then closes the socket (whoever else still
    /// holds a clone: what they send later is dropped).
    pub fn close(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(CLOSE);
        }
    }

    /// Drops what is queued and resets the connection at once.
    pub fn abort(&mut self) {
        self.tx = None;
        self.abort.notify_one();
    }

    pub fn pending_bytes(&self) -> usize {
        self.pending.load(Relaxed)
    }

    /// The queued byte count, for the read gate.
    pub fn pending_counter(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }
}

/// Closes with RST, discarding unsent data (for clients cut off as too slow):
/// zero linger on the socket, set while `socket` still keeps the fd open.
fn reset<W>(socket: W, fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: fd is open (owned by the stream behind `socket`); linger is a valid option value.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(socket);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[actix_rt::test]
    async fn clones_write_in_order_and_close_ends_the_socket_whoever_holds_a_clone() {
        let (server, mut client) = tokio::io::duplex(1 << 16);
        let mut out = Outbox::start(server, -1);
        let dispatcher_side = out.clone();
        assert!(out.send(b"one,".to_vec()));
        assert!(dispatcher_side.send(b"two,".to_vec()));
        assert!(out.send(b"three".to_vec()));
        out.close();
        let mut seen = Vec::new();
        // EOF arrives although `dispatcher_side` still holds a sender.
        client.read_to_end(&mut seen).await.unwrap();
        assert_eq!(seen, b"one,two,three");
        assert!(!out.send(b"late".to_vec()), "the closing side cannot send");
        assert_eq!(out.pending_bytes(), 0);
        drop(dispatcher_side);
    }
}
