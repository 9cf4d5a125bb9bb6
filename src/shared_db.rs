//! The committed database with one writer and many readers: the processor
//! owns it and changes it; I/O threads read it to answer plain reads
//! without a hand-off to the processor.
//!
//! The owner reads without a lock (it is the only writer, so nothing can
//! change under it) and takes the write lock only to change the database.
//! Readers take a read lock. Every change bumps `epoch`, so a reader can
//! tell whether what it sees has been fully handed on (watch events) yet.
//!
//! The lock is split in shards, one per reading thread (by turns): a
//! reader locks its own thread's shard, the writer locks them all. One
//! shared lock word, written by every read on every I/O thread, bounced
//! between their cores on each read.

use crate::database::Database;
use std::cell::UnsafeCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// More than the threads that read (the I/O threads, one per core by
/// default); threads beyond share shards, which is only slower.
const SHARDS: usize = 8;

/// A lock on its own cache lines (two: the prefetcher pulls lines in pairs).
#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<()>);

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard, given out by turns at its first read.
    static MY_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

struct Cell {
    shards: [Shard; SHARDS],
    db: UnsafeCell<Database>,
    /// Changes made so far; written under the write lock.
    epoch: AtomicU64,
}

// Safety: `db` is changed only by the one `SharedDb` under the write lock,
// and read by `DbReader`s only under the read lock; the owner's unlocked
// reads happen on its own thread, which is the only one that writes.
unsafe impl Sync for Cell {}

// Sharing `&Database` across threads needs the database itself to be Sync.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Database>();
};

/// The writer's handle: not `Clone`, so there is exactly one.
pub struct SharedDb(Arc<Cell>);

/// A reader's handle, for any thread.
#[derive(Clone)]
pub struct DbReader(Arc<Cell>);

/// A read-locked view of the database and the epoch it is at.
pub struct DbView<'a> {
    _guard: RwLockReadGuard<'a, ()>,
    db: &'a Database,
    pub epoch: u64,
}

impl SharedDb {
    pub fn new(db: Database) -> SharedDb {
        SharedDb(Arc::new(Cell { shards: Default::default(), db: UnsafeCell::new(db), epoch: AtomicU64::new(0) }))
    }

    /// Changes the database under every shard's write lock, readers shut out.
    pub fn write<R>(&mut self, change: impl FnOnce(&mut Database) -> R) -> R {
        // Always in shard order; a reader holds one shard at most, so no cycle.
        let _guards = self.0.shards.each_ref().map(|s| s.0.write().unwrap_or_else(|e| e.into_inner()));
        // Safety: the write lock excludes readers, and `&mut self` excludes
        // the owner's own borrows from `deref`.
        let result = change(unsafe { &mut *self.0.db.get() });
        self.0.epoch.fetch_add(1, Ordering::Release);
        result
    }

    /// Changes made so far (the owner's view: no lock needed).
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::Relaxed)
    }

    pub fn reader(&self) -> DbReader {
        DbReader(self.0.clone())
    }
}

impl Deref for SharedDb {
    type Target = Database;

    fn deref(&self) -> &Database {
        // Safety: only this handle writes, and only through `&mut self`.
        unsafe { &*self.0.db.get() }
    }
}

impl DbReader {
    /// The database as of now; the owner waits to change it while this lives.
    pub fn view(&self) -> DbView<'_> {
        let shard = &self.0.shards[MY_SHARD.with(|s| *s)];
        let guard = shard.0.read().unwrap_or_else(|e| e.into_inner());
        let epoch = self.0.epoch.load(Ordering::Acquire);
        // Safety: the read lock excludes the writer.
        DbView { _guard: guard, db: unsafe { &*self.0.db.get() }, epoch }
    }
}

impl Deref for DbView<'_> {
    type Target = Database;

    fn deref(&self) -> &Database {
        self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::{Txn, TxnHeader};

    fn create_session(db: &mut Database, zxid: i64) {
        let hdr = TxnHeader { session_id: zxid, cxid: 0, zxid, time_ms: 0 };
        db.apply(&hdr, &Txn::CreateSession { timeout_ms: 5000 }, &mut Vec::new());
    }

    #[test]
    fn readers_see_each_change_with_its_epoch() {
        let mut owner = SharedDb::new(Database::default());
        let reader = owner.reader();
        assert_eq!((reader.view().epoch, reader.view().last_zxid()), (0, 0));
        owner.write(|db| create_session(db, 7));
        let view = reader.view();
        assert_eq!((view.epoch, view.last_zxid(), owner.epoch()), (1, 7, 1));
        assert_eq!(owner.last_zxid(), 7);
    }

    #[test]
    fn a_writer_waits_for_a_reader_on_every_thread_whatever_its_shard() {
        let mut owner = SharedDb::new(Database::default());
        // More readers than shards: every shard, some shared, holds a view.
        let readers = SHARDS + 2;
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let mut gos = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..readers {
            let reader = owner.reader();
            let held_tx = held_tx.clone();
            let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
            gos.push(go_tx);
            threads.push(std::thread::spawn(move || {
                let view = reader.view();
                held_tx.send(()).unwrap();
                go_rx.recv().unwrap();
                view.last_zxid()
            }));
        }
        for _ in 0..readers {
            held_rx.recv().unwrap();
        }
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = std::thread::spawn(move || {
            owner.write(|db| create_session(db, 9));
            done_tx.send(()).unwrap();
            owner
        });
        // Let the readers go one by one: the write waits for the last.
        for (i, go) in gos.into_iter().enumerate() {
            std::thread::sleep(std::time::Duration::from_millis(5));
            assert!(done_rx.try_recv().is_err(), "the write went ahead with {} readers still holding views", readers - i);
            go.send(()).unwrap();
        }
        for t in threads {
            assert_eq!(t.join().unwrap(), 0, "a view sees the state it locked");
        }
        assert_eq!(writer.join().unwrap().last_zxid(), 9);
    }

    #[test]
    fn a_writer_waits_for_readers_on_other_threads() {
        let mut owner = SharedDb::new(Database::default());
        let reader = owner.reader();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let view = reader.view();
            held_tx.send(view.last_zxid()).unwrap();
            go_rx.recv().unwrap();
            // Still the state it locked, though the writer has asked to change it.
            view.last_zxid()
        });
        assert_eq!(held_rx.recv().unwrap(), 0);
        let writer = std::thread::spawn(move || {
            owner.write(|db| create_session(db, 9));
            owner
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        go_tx.send(()).unwrap();
        assert_eq!(t.join().unwrap(), 0);
        assert_eq!(writer.join().unwrap().last_zxid(), 9);
    }
}
