//! Which vector paths the hand-written kernels ([`super::conv`], [`super::lstm`]) take.

#[cfg(test)]
thread_local! {
    static PORTABLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the AVX2 + FMA kernels may run: the CPU has both (and, in tests, this thread has not
/// asked for the portable code with `portable_only`).
#[cfg(target_arch = "x86_64")]
pub fn avx2_fma() -> bool {
    #[cfg(test)]
    if PORTABLE_ONLY.with(|p| p.get()) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}

/// Run `f` on this thread with the portable code only, as a CPU without AVX2 would.
#[cfg(test)]
pub fn portable_only<T>(f: impl FnOnce() -> T) -> T {
    PORTABLE_ONLY.with(|p| p.set(true));
    let out = f();
    PORTABLE_ONLY.with(|p| p.set(false));
    out
}
