//! The committed database with one writer and many readers: the processor
//! owns it and changes it; I/O threads read it to answer plain reads
//! without a hand-off to the processor.
//!
//! The owner reads without a lock (it is the only writer, so nothing can
//! change under it) and takes the write lock only to change the database.
//! Readers take the read lock. Every change bumps `epoch`, so a reader can
//! tell whether what it sees has been fully handed on (watch events) yet.

use crate::database::Database;
use std::cell::UnsafeCell;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

struct Cell {
    lock: RwLock<()>,
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
        SharedDb(Arc::new(Cell { lock: RwLock::new(()), db: UnsafeCell::new(db), epoch: AtomicU64::new(0) }))
    }

    /// Changes the database under the write lock, readers shut out.
    pub fn write<R>(&mut self, change: impl FnOnce(&mut Database) -> R) -> R {
        let _guard = self.0.lock.write().unwrap_or_else(|e| e.into_inner());
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
        let guard = self.0.lock.read().unwrap_or_else(|e| e.into_inner());
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
