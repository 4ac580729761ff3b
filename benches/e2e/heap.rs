//! The bench binary's allocator: mimalloc, as scopegate's binary uses it,
//! which can also count the heap while [`measure`] runs. RSS moves in
//! pages and with whatever else the process did before, so it scatters by
//! a few tens of bytes per token from run to run; the usable size of every
//! block allocated and freed in a window is exact (size-class rounding
//! included, the allocator's own page overhead not).
//!
//! Outside a window the only cost is one relaxed load per allocation (the
//! `bare` proxy is this binary too, and never opens one).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};

use mimalloc::MiMalloc;

pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static NET: AtomicIsize = AtomicIsize::new(0);

/// Count block `p` in (`+`) or out (`-`) while a window is open.
///
/// # Safety
/// `p` is null or a live block from mimalloc.
unsafe fn count(p: *const u8, add: bool) {
    if !p.is_null() && ON.load(Ordering::Relaxed) {
        // SAFETY: as the caller promises.
        let n = unsafe { MiMalloc.usable_size(p) } as isize;
        NET.fetch_add(if add { n } else { -n }, Ordering::Relaxed);
    }
}

// SAFETY: every call is mimalloc's own; counting only reads the block's
// size, before it is freed and after it is allocated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc(layout) };
        unsafe { count(p, true) };
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        unsafe { count(p, true) };
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { count(p, false) };
        unsafe { MiMalloc.dealloc(p, layout) }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { count(p, false) };
        let q = unsafe { MiMalloc.realloc(p, layout, new_size) };
        // On failure the old block is still live.
        unsafe { count(if q.is_null() { p } else { q }, true) };
        q
    }
}

/// Run `f`; what it returns, and the heap bytes it left allocated (net of
/// what it freed, by any thread, in the meantime).
pub async fn measure<T>(f: impl std::future::Future<Output = T>) -> (T, isize) {
    NET.store(0, Ordering::SeqCst);
    ON.store(true, Ordering::SeqCst);
    let out = f.await;
    ON.store(false, Ordering::SeqCst);
    (out, NET.load(Ordering::SeqCst))
}
