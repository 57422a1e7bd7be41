//! Reused zstd contexts.
//!
//! The Parquet crate creates a zstd compressor and a decompressor for every
//! column chunk it reads or writes, and frees them after. Creating a zstd
//! context runs the `CPUID` instruction three times (to choose its code
//! path), which on a virtual machine traps to the hypervisor: ~10 µs a
//! time on the development machine, so ~60 µs per column chunk, plus a
//! fresh workspace allocation (page faults) on the first page it
//! compresses. A silver rebuild reads and writes thousands of column
//! chunks.
//!
//! The binary is linked with `--wrap` for `ZSTD_createCCtx`,
//! `ZSTD_freeCCtx`, `ZSTD_createDCtx` and `ZSTD_freeDCtx` (see `build.rs`):
//! every call from Rust code (zstd-safe) comes here. A freed context is
//! reset with `ZSTD_reset_session_and_parameters` (zstd's documented way to
//! reuse one: it clears the parameters and any dictionary, keeping only the
//! allocated memory) and kept, up to [`KEEP`] of each kind and
//! [`KEEP_BYTES`] of their memory; the next
//! create takes it. Nothing changes what zstd computes: a reset context
//! compresses exactly as a new one (a unit test checks it byte for byte).
//!
//! It assumes what holds in this tree: every context freed here was made
//! by `ZSTD_createCCtx`/`ZSTD_createDCtx` or their `_advanced` forms (none
//! is a static context over a caller's buffer, which zstd-safe does not
//! create without its `experimental` feature), and none is used after its
//! free (zstd-safe frees each once, when its owner drops it).

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Contexts kept of each kind; the rest are freed. Writers hold two per
/// column of every open file (the Parquet crate gives each column a
/// compressor and a decompressor, and readers do too), so a write into many
/// partitions at once outruns any small pool. An incremental silver run (1M
/// bench lake, late batch on 3 dates) created 995 contexts and reused 2,085
/// with 16 kept, 461 / 2,619 with 64.
pub const KEEP: usize = 64;

/// Bytes of kept contexts of each kind, at most (`ZSTD_sizeof_*`). A
/// compressor that has compressed holds its workspace (~1.3 MiB at level
/// 1); the compressors readers create and never use are a few KiB. Keeping
/// 64 used ones raised `evlake run`'s peak RSS by ~80 MB at 1M events.
pub const KEEP_BYTES: usize = 16 << 20;

/// `ZSTD_reset_session_and_parameters`.
const RESET_SESSION_AND_PARAMETERS: c_int = 3;

/// Kept contexts: raw pointers (as `usize`, so the pool is `Send`) and
/// their sizes, and the sizes' sum.
struct Pool {
    kept: Vec<(usize, usize)>,
    bytes: usize,
}

static COMPRESSORS: Mutex<Pool> = Mutex::new(Pool::new());
static DECOMPRESSORS: Mutex<Pool> = Mutex::new(Pool::new());

impl Pool {
    const fn new() -> Pool {
        Pool {
            kept: Vec::new(),
            bytes: 0,
        }
    }
}

/// Creates answered from the pool, and by zstd (for tests and
/// `EVLAKE_TRACE`).
static REUSED: AtomicU64 = AtomicU64::new(0);
static CREATED: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" {
    fn __real_ZSTD_createCCtx() -> *mut c_void;
    fn __real_ZSTD_freeCCtx(cctx: *mut c_void) -> usize;
    fn __real_ZSTD_createDCtx() -> *mut c_void;
    fn __real_ZSTD_freeDCtx(dctx: *mut c_void) -> usize;
    fn ZSTD_CCtx_reset(cctx: *mut c_void, reset: c_int) -> usize;
    fn ZSTD_DCtx_reset(dctx: *mut c_void, reset: c_int) -> usize;
    fn ZSTD_isError(code: usize) -> c_uint;
    fn ZSTD_sizeof_CCtx(cctx: *const c_void) -> usize;
    fn ZSTD_sizeof_DCtx(dctx: *const c_void) -> usize;
}

/// How many context creations the pool answered so far.
pub fn reused() -> u64 {
    REUSED.load(Ordering::Relaxed)
}

/// How many contexts zstd created so far (the pool had none to give).
pub fn created() -> u64 {
    CREATED.load(Ordering::Relaxed)
}

fn create(real: unsafe extern "C" fn() -> *mut c_void) -> *mut c_void {
    CREATED.fetch_add(1, Ordering::Relaxed);
    // SAFETY: zstd's own constructor, as the caller asked for.
    unsafe { real() }
}

fn take(pool: &Mutex<Pool>) -> Option<*mut c_void> {
    let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
    let (p, size) = pool.kept.pop()?;
    pool.bytes -= size;
    REUSED.fetch_add(1, Ordering::Relaxed);
    Some(p as *mut c_void)
}

/// [`KEEP`], or `EVLAKE_ZSTD_KEEP` (0 turns reuse off, for A/B runs).
fn keep_at_most() -> usize {
    static K: OnceLock<usize> = OnceLock::new();
    *K.get_or_init(|| {
        std::env::var("EVLAKE_ZSTD_KEEP")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(KEEP)
    })
}

/// Keep `ctx` (of `size` bytes) if the pool has room; false if the caller
/// must free it.
fn keep(pool: &Mutex<Pool>, ctx: *mut c_void, size: usize) -> bool {
    let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
    if pool.kept.len() < keep_at_most() && pool.bytes + size <= KEEP_BYTES {
        pool.kept.push((ctx as usize, size));
        pool.bytes += size;
        true
    } else {
        false
    }
}

/// zstd's functions for one kind of context.
struct Kind {
    pool: &'static Mutex<Pool>,
    create: unsafe extern "C" fn() -> *mut c_void,
    reset: unsafe extern "C" fn(*mut c_void, c_int) -> usize,
    size: unsafe extern "C" fn(*const c_void) -> usize,
    free: unsafe extern "C" fn(*mut c_void) -> usize,
}

static CCTX: Kind = Kind {
    pool: &COMPRESSORS,
    create: __real_ZSTD_createCCtx,
    reset: ZSTD_CCtx_reset,
    size: ZSTD_sizeof_CCtx,
    free: __real_ZSTD_freeCCtx,
};

static DCTX: Kind = Kind {
    pool: &DECOMPRESSORS,
    create: __real_ZSTD_createDCtx,
    reset: ZSTD_DCtx_reset,
    size: ZSTD_sizeof_DCtx,
    free: __real_ZSTD_freeDCtx,
};

impl Kind {
    fn create(&self) -> *mut c_void {
        take(self.pool).unwrap_or_else(|| create(self.create))
    }

    /// Reset `ctx` and keep it, or free it.
    fn release(&self, ctx: *mut c_void) -> usize {
        if ctx.is_null() {
            return 0;
        }
        // SAFETY: `ctx` is a live context of this kind that its owner
        // gives up (zstd-safe frees each once, on drop); after a
        // successful reset it is as new.
        unsafe {
            if ZSTD_isError((self.reset)(ctx, RESET_SESSION_AND_PARAMETERS)) == 0
                && keep(self.pool, ctx, (self.size)(ctx))
            {
                return 0;
            }
            (self.free)(ctx)
        }
    }
}

#[unsafe(no_mangle)]
extern "C" fn __wrap_ZSTD_createCCtx() -> *mut c_void {
    CCTX.create()
}

#[unsafe(no_mangle)]
extern "C" fn __wrap_ZSTD_freeCCtx(cctx: *mut c_void) -> usize {
    CCTX.release(cctx)
}

#[unsafe(no_mangle)]
extern "C" fn __wrap_ZSTD_createDCtx() -> *mut c_void {
    DCTX.create()
}

#[unsafe(no_mangle)]
extern "C" fn __wrap_ZSTD_freeDCtx(dctx: *mut c_void) -> usize {
    DCTX.release(dctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..200_000u32)
            .flat_map(|i| format!("{{\"user\":\"u{}\",\"n\":{}}}\n", i % 977, i * 7).into_bytes())
            .collect()
    }

    /// Compress with a brand-new context (not from the pool).
    fn fresh(data: &[u8], level: i32) -> Vec<u8> {
        let mut out = vec![0u8; zstd::zstd_safe::compress_bound(data.len())];
        // SAFETY: a context of our own, freed below; buffers sized above.
        unsafe {
            let c = __real_ZSTD_createCCtx();
            assert!(!c.is_null());
            let n = zstd::zstd_safe::zstd_sys::ZSTD_compressCCtx(
                c.cast(),
                out.as_mut_ptr().cast(),
                out.len(),
                data.as_ptr().cast(),
                data.len(),
                level,
            );
            assert_eq!(ZSTD_isError(n), 0);
            out.truncate(n);
            __real_ZSTD_freeCCtx(c);
        }
        out
    }

    #[test]
    fn a_reused_context_compresses_exactly_as_a_new_one() {
        let data = sample();
        let dict = b"{\"user\":\"u1\",\"n\":".repeat(64);
        for _ in 0..4 {
            // Leave a used context in the pool: another level, a dictionary.
            let mut c = zstd::bulk::Compressor::with_dictionary(19, &dict).unwrap();
            // Parameters `Compressor::new` does not set: a reused context
            // must not keep them.
            c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
                .unwrap();
            c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(false))
                .unwrap();
            let with_dict = c.compress(&data[..50_000]).unwrap();
            drop(c);
            let mut d = zstd::bulk::Decompressor::with_dictionary(&dict).unwrap();
            d.set_parameter(zstd::zstd_safe::DParameter::WindowLogMax(10))
                .unwrap();
            assert_eq!(d.decompress(&with_dict, 50_000).unwrap(), &data[..50_000]);
            drop(d);

            let mut c = zstd::bulk::Compressor::new(1).unwrap();
            let got = c.compress(&data).unwrap();
            drop(c);
            assert_eq!(
                got,
                fresh(&data, 1),
                "reused context differs from a new one"
            );
            // A decompressor that decoded with a dictionary before decodes
            // plain frames (its dictionary was cleared).
            let mut d = zstd::bulk::Decompressor::new().unwrap();
            assert_eq!(d.decompress(&got, data.len()).unwrap(), data);
        }
        assert!(reused() > 0, "the pool never answered a create");
    }

    #[test]
    fn the_pool_keeps_at_most_keep_contexts_and_keep_bytes() {
        let data = sample();
        // Unused compressors are small: more than KEEP of them.
        let many: Vec<_> = (0..KEEP * 3)
            .map(|_| zstd::bulk::Compressor::new(3).unwrap())
            .collect();
        drop(many);
        // Used ones hold a workspace each: more than KEEP_BYTES of them.
        let used: Vec<_> = (0..48)
            .map(|_| {
                let mut c = zstd::bulk::Compressor::new(1).unwrap();
                c.compress(&data).unwrap();
                c
            })
            .collect();
        drop(used);
        let pool = COMPRESSORS.lock().unwrap();
        assert!(pool.kept.len() <= keep_at_most());
        assert!(pool.bytes <= KEEP_BYTES, "{} bytes kept", pool.bytes);
        assert_eq!(pool.bytes, pool.kept.iter().map(|(_, n)| n).sum::<usize>());
    }
}
