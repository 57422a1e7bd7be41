//! Link settings (Linux with glibc only; elsewhere the defaults stand).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if !linux_gnu {
        return;
    }
    // A position-dependent executable: a PIE of this size carries ~224k
    // relative relocations that the loader applies (and page-faults in) on
    // every start: `evlake --version` took 6.5 ms, 1.8 ms without.
    println!("cargo:rustc-link-arg-bins=-no-pie");
    // zstd context creation and release go through src/zstd_pool.rs, which
    // keeps released contexts for reuse (every target, so tests run it).
    for f in [
        "ZSTD_createCCtx",
        "ZSTD_freeCCtx",
        "ZSTD_createDCtx",
        "ZSTD_freeDCtx",
    ] {
        println!("cargo:rustc-link-arg=-Wl,--wrap={f}");
    }
}
