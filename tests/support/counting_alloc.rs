//! Allocation accounting for the fuzz tests (per thread, so parallel tests do
//! not interfere): a test binary installs `Counting` as its global allocator
//! and wraps a decode in `measured` to see how many bytes it allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

pub struct Counting;

thread_local! {
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

fn count(n: usize) {
    let _ = ALLOCATED.try_with(|c| c.set(c.get().saturating_add(n)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count(l.size());
        System.alloc(l)
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        count(l.size());
        System.alloc_zeroed(l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        count(new.saturating_sub(l.size()));
        System.realloc(p, l, new)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
}

/// Runs `f`, returning its result and the bytes it allocated on this thread.
pub fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = ALLOCATED.with(|c| c.get());
    let out = f();
    (out, ALLOCATED.with(|c| c.get()) - before)
}
