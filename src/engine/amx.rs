//! GEMM in bfloat16 on Intel AMX tiles, with `f32` accumulation: the engine's bulk products
//! (convolutions and the LSTM's input projection) when training runs with `--bf16`.
//!
//! AMX (Sapphire Rapids and later Xeons) multiplies 16 × 32 bfloat16 tiles into 16 × 16 `f32`
//! tiles at about 30 times the `f32` FMA rate of the same core. The operands are rounded to
//! bfloat16 (8 bits of mantissa, round to nearest even) and every product is accumulated in `f32`,
//! as mixed-precision training does on accelerators; the weights, their gradients' sums and the
//! optimiser stay in `f32`. Each call runs on the calling thread, in a fixed order, so a run is
//! reproducible from its seed on any AMX machine.
//!
//! Only x86-64 Linux can use it (the kernel must grant the tile state, `arch_prctl`);
//! [`available`] says whether this process can.

use std::cell::RefCell;
use std::sync::OnceLock;

/// Rows of an accumulator tile (and of an `A` tile).
const TILE_M: usize = 16;
/// Columns of an accumulator tile (and of a `B` tile, in pairs of `k`).
const TILE_N: usize = 16;
/// `k` per tile step: 32 bfloat16 = 64 bytes a tile row.
const TILE_K: usize = 32;

/// Whether this process can run AMX bfloat16 tiles: the CPU has AMX-TILE and AMX-BF16 and the
/// kernel granted the tile data state (asked once, on the first call).
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(request)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu"))]
fn request() -> bool {
    // CPUID leaf 7, sub-leaf 0: EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE.
    // `unsafe` until Rust 1.89 (the MSRV is 1.85), safe since.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every x86-64 CPU.
    let (leaf, bf16) = unsafe {
        (
            std::arch::x86_64::__cpuid_count(7, 0),
            std::arch::x86_64::__cpuid_count(7, 1),
        )
    };
    if leaf.edx & (1 << 22) == 0
        || leaf.edx & (1 << 24) == 0
        || !std::is_x86_feature_detected!("avx512f")
        || !std::is_x86_feature_detected!("avx512bw")
        || !std::is_x86_feature_detected!("avx512vl")
        // CPUID leaf 7, sub-leaf 1: EAX bit 5 = AVX512_BF16 (VCVTNE2PS2BF16).
        || bf16.eax & (1 << 5) == 0
    {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: asks the kernel for permission to use the tile data state in this process; no
    // memory is passed.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", target_env = "gnu")))]
fn request() -> bool {
    false
}

/// `x` rounded to bfloat16 (nearest, ties to even; NaN stays NaN), as its 16 bits: what
/// `VCVTNE2PS2BF16` gives for every input but subnormals (it flushes them; training flushes
/// them anyway).
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1));
    let nan = (b & 0x7fff_ffff) > 0x7f80_0000;
    ((if nan { b | 0x0040_0000 } else { rounded }) >> 16) as u16
}

/// Two values as one bfloat16 pair: `lo` in the low half (the even `k`), `hi` in the high.
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    to_bf16(lo) as u32 | (to_bf16(hi) as u32) << 16
}

/// The `f32` a bfloat16 stands for.
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Packed operands, kept per thread between calls.
#[derive(Default)]
struct Buffers {
    a: Vec<u16>,
    b: Vec<u32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// `C[m, n] = op(A)[m, k] · op(B)[k, n] + beta · C` with the operands rounded to bfloat16 and
/// `f32` accumulation; `op` as in [`crate::engine::layers::gemm`] (`ta`: `A` stored `[k, m]`,
/// `tb`: `B` stored `[n, k]`).
///
/// # Panics
/// If [`available`] is false, or a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn gemm_bf16(
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    ta: bool,
    b: &[f32],
    tb: bool,
    c: &mut [f32],
    beta: f32,
) {
    assert!(available(), "AMX bfloat16 tiles are not available");
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    // Blocks of 16 rows / columns, padded to pairs (each step computes 2 × 2 tiles).
    let mb = m.div_ceil(TILE_M).next_multiple_of(2);
    let nb = n.div_ceil(TILE_N).next_multiple_of(2);
    let kp = k.max(1).next_multiple_of(TILE_K);
    BUFFERS.with(|buf| {
        let buf = &mut *buf.borrow_mut();
        // SAFETY: `available()` checked the tiles and AVX-512 F, BW, VL and BF16 (so AVX2 and
        // FMA, which the packing is compiled for).
        unsafe {
            pack_a(m, k, a, ta, mb, kp, &mut buf.a);
            pack_b(k, n, b, tb, nb, kp, &mut buf.b);
            multiply(m, n, mb, nb, kp, &buf.a, &buf.b, c, beta);
        }
    });
}

/// `op(A)` as `mb` blocks of 16 rows × `kp` bfloat16, zero-padded: block `i`, row `r`, column
/// `kk` at `(i·16 + r)·kp + kk`.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn pack_a(
    m: usize,
    k: usize,
    a: &[f32],
    ta: bool,
    mb: usize,
    kp: usize,
    out: &mut Vec<u16>,
) {
    // Only the padding is zeroed; every other element is written below.
    out.resize(out.len().max(mb * TILE_M * kp), 0);
    for i in 0..m {
        out[i * kp + k..(i + 1) * kp].fill(0);
    }
    out[m * kp..mb * TILE_M * kp].fill(0);
    if ta {
        // `a` is `[k, m]`: transposed in 16 × 16 blocks.
        for k0 in (0..k).step_by(16) {
            for i0 in (0..m).step_by(16) {
                for kk in k0..(k0 + 16).min(k) {
                    let row = &a[kk * m..][..m];
                    for i in i0..(i0 + 16).min(m) {
                        out[i * kp + kk] = to_bf16(row[i]);
                    }
                }
            }
        }
    } else {
        for i in 0..m {
            for (o, v) in out[i * kp..][..k].iter_mut().zip(&a[i * k..][..k]) {
                *o = to_bf16(*v);
            }
        }
    }
}

/// `op(B)` in AMX's pair layout, one `u32` a pair `(B[2p, j], B[2p + 1, j])`: `nb` blocks of 16
/// columns, each `kp / 2` pair rows of 16: block `q`, pair row `p`, column `j` at
/// `q·(kp/2)·16 + p·16 + j`; zero-padded.
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn pack_b(
    k: usize,
    n: usize,
    b: &[f32],
    tb: bool,
    nb: usize,
    kp: usize,
    out: &mut Vec<u32>,
) {
    let block = kp / 2 * TILE_N;
    // Only the padding is zeroed (pair rows past `k`, columns past `n`); the rest is written below.
    out.resize(out.len().max(nb * block), 0);
    let written = k.div_ceil(2);
    for q in 0..nb {
        let blk = &mut out[q * block..][..block];
        blk[written * TILE_N..].fill(0);
        let from = n.saturating_sub(q * TILE_N).min(TILE_N);
        if from < TILE_N {
            for p in 0..written {
                blk[p * TILE_N + from..(p + 1) * TILE_N].fill(0);
            }
        }
    }
    let pairs = k / 2;
    if tb {
        // `b` is `[n, k]`: a pair is two neighbours of a row. Whole 16 × 16 blocks of pairs are
        // converted 32 values a row and transposed; the rest one pair at a time.
        #[cfg(target_arch = "x86_64")]
        let (full_j, full_p) = (n / TILE_N * TILE_N, pairs / TILE_N * TILE_N);
        #[cfg(not(target_arch = "x86_64"))]
        let (full_j, full_p) = (0, 0);
        #[cfg(target_arch = "x86_64")]
        for j0 in (0..full_j).step_by(TILE_N) {
            let dst = &mut out[(j0 / TILE_N) * block..][..block];
            for p0 in (0..full_p).step_by(TILE_N) {
                let mut t = [[0u32; TILE_N]; TILE_N];
                for (jj, tr) in t.iter_mut().enumerate() {
                    // SAFETY: 32 f32 from pair p0 of row j0 + jj are in bounds (p0 + 16 <= k / 2).
                    unsafe { row_pairs16(b[(j0 + jj) * k + 2 * p0..].as_ptr(), tr.as_mut_ptr()) };
                }
                for p in 0..TILE_N {
                    let d = &mut dst[(p0 + p) * TILE_N..][..TILE_N];
                    for (jj, v) in d.iter_mut().enumerate() {
                        *v = t[jj][p];
                    }
                }
            }
        }
        for j in 0..n {
            let row = &b[j * k..][..k];
            let dst = &mut out[(j / TILE_N) * block + j % TILE_N..];
            let first = if j < full_j { full_p } else { 0 };
            for p in first..pairs {
                dst[p * TILE_N] = pair(row[2 * p], row[2 * p + 1]);
            }
            if k % 2 == 1 {
                dst[pairs * TILE_N] = pair(row[k - 1], 0.0);
            }
        }
    } else {
        for p in 0..k.div_ceil(2) {
            let r0 = &b[2 * p * n..][..n];
            let r1 = (2 * p + 1 < k).then(|| &b[(2 * p + 1) * n..][..n]);
            for (q, j0) in (0..n).step_by(TILE_N).enumerate() {
                let w = (n - j0).min(TILE_N);
                let dst = &mut out[q * block + p * TILE_N..][..w];
                match r1 {
                    #[cfg(target_arch = "x86_64")]
                    Some(r1) if w == TILE_N => {
                        // SAFETY: 16 f32 of each row and 16 u32 of `dst` are in bounds (w = 16).
                        unsafe { pairs16(r0[j0..].as_ptr(), r1[j0..].as_ptr(), dst.as_mut_ptr()) }
                    }
                    Some(r1) => {
                        for ((d, x), y) in dst.iter_mut().zip(&r0[j0..j0 + w]).zip(&r1[j0..j0 + w])
                        {
                            *d = pair(*x, *y);
                        }
                    }
                    None => {
                        for (d, x) in dst.iter_mut().zip(&r0[j0..j0 + w]) {
                            *d = pair(*x, 0.0);
                        }
                    }
                }
            }
        }
    }
}

/// 32 consecutive values `x[0..32]` rounded to bfloat16 (nearest even) as 16 pairs into `dst`.
///
/// # Safety
/// 32 `f32` at `x` and 16 `u32` at `dst`; AVX-512 F and BF16 (implied by [`available`]).
#[cfg(target_arch = "x86_64")]
unsafe fn row_pairs16(x: *const f32, dst: *mut u32) {
    // VCVTNE2PS2BF16 puts its last operand in the low half.
    std::arch::asm!(
        "vmovups zmm0, [{x}]",
        "vmovups zmm1, [{x} + 64]",
        "vcvtne2ps2bf16 zmm0, zmm1, zmm0",
        "vmovups [{d}], zmm0",
        x = in(reg) x,
        d = in(reg) dst,
        out("xmm0") _,
        out("xmm1") _,
        options(nostack),
    );
}

/// Where [`pairs16`] takes each bfloat16 from `[x0 … x15, y0 … y15]`: x0 y0 x1 y1 …
#[cfg(target_arch = "x86_64")]
static INTERLEAVE: [u16; 32] = [
    0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28,
    13, 29, 14, 30, 15, 31,
];

/// 16 pairs `(x[j], y[j])` rounded to bfloat16 (nearest even) into `dst[j]`.
///
/// # Safety
/// 16 `f32` at `x` and `y` and 16 `u32` at `dst`; AVX-512 F, BW and BF16 (implied by
/// [`available`]).
#[cfg(target_arch = "x86_64")]
unsafe fn pairs16(x: *const f32, y: *const f32, dst: *mut u32) {
    std::arch::asm!(
        "vmovups zmm0, [{x}]",
        "vmovups zmm1, [{y}]",
        "vcvtne2ps2bf16 zmm0, zmm1, zmm0",
        "vmovdqu16 zmm1, [{o}]",
        "vpermw zmm0, zmm1, zmm0",
        "vmovups [{d}], zmm0",
        x = in(reg) x,
        y = in(reg) y,
        o = in(reg) INTERLEAVE.as_ptr(),
        d = in(reg) dst,
        out("xmm0") _,
        out("xmm1") _,
        options(nostack),
    );
}

/// The tile loop over packed operands; results merged into `c` (`[m, n]`) with `beta`.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(target_arch = "x86_64", target_feature(enable = "avx2,fma"))]
unsafe fn multiply(
    m: usize,
    n: usize,
    mb: usize,
    nb: usize,
    kp: usize,
    a: &[u16],
    b: &[u32],
    c: &mut [f32],
    beta: f32,
) {
    let b_block = kp / 2 * TILE_N;
    let mut out = [[0f32; TILE_M * TILE_N]; 4];
    tiles::configure();
    for q in (0..nb).step_by(2) {
        for i in (0..mb).step_by(2) {
            let a0 = &a[i * TILE_M * kp..][..2 * TILE_M * kp];
            let b0 = &b[q * b_block..][..2 * b_block];
            let (r0, c0) = (i * TILE_M, q * TILE_N);
            if (beta == 0.0 || beta == 1.0) && r0 + 2 * TILE_M <= m && c0 + 2 * TILE_N <= n {
                // Four whole tiles of `c`: accumulated in place.
                let at = c[r0 * n + c0..].as_mut_ptr();
                // SAFETY: as below; the four tiles of `c` at rows r0..r0 + 32 and columns
                // c0..c0 + 32 (row stride n) are in bounds.
                unsafe {
                    tiles::block_in_place(a0.as_ptr(), b0.as_ptr(), kp, b_block, at, n, beta == 1.0)
                };
                continue;
            }
            // SAFETY: the tiles were configured above; a0 holds two blocks of 16 rows of `kp`
            // bfloat16 and b0 two blocks of `kp / 2` pair rows, so every tile load is in bounds
            // (`kp` is a multiple of 32); `out` holds four 16 × 16 f32 tiles.
            unsafe { tiles::block(a0.as_ptr(), b0.as_ptr(), kp, b_block, &mut out) };
            for (t, tile) in out.iter().enumerate() {
                let (r0, c0) = ((i + t / 2) * TILE_M, (q + t % 2) * TILE_N);
                if r0 >= m || c0 >= n {
                    continue;
                }
                let cols = (n - c0).min(TILE_N);
                for r in 0..(m - r0).min(TILE_M) {
                    let row = &mut c[(r0 + r) * n + c0..][..cols];
                    let src = &tile[r * TILE_N..][..cols];
                    if beta == 0.0 {
                        row.copy_from_slice(src);
                    } else if beta == 1.0 {
                        row.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                    } else {
                        row.iter_mut()
                            .zip(src)
                            .for_each(|(d, s)| *d = s + beta * *d);
                    }
                }
            }
        }
    }
    tiles::release();
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::{TILE_K, TILE_M, TILE_N};
    use std::arch::asm;

    /// Palette 1 with eight 16-row tiles of 64 bytes: tmm0–3 accumulate (16 × 16 f32), tmm4–5
    /// hold `A` (16 × 32 bf16), tmm6–7 hold `B` (16 pair rows × 16 columns).
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    pub(super) fn configure() {
        let mut cfg = Config([0; 64]);
        cfg.0[0] = 1;
        for t in 0..8 {
            cfg.0[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            cfg.0[48 + t] = 16;
        }
        // SAFETY: `available()` was checked by the caller (the kernel granted the tile state);
        // the configuration is 64 valid bytes.
        unsafe { asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly)) };
    }

    pub(super) fn release() {
        // SAFETY: returns the tile state to its initial state.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }

    /// Four 16 × 16 tiles of `A[32 rows, kp] · B[kp, 32 columns]` into `out` (row-major, 16
    /// columns a row): `out[2·r + c]` is row block `r`, column block `c`.
    ///
    /// # Safety
    /// The tiles are configured; `a` points at `2 · 16 · kp` bf16, `b` at `2 · b_block`.
    pub(super) unsafe fn block(
        a: *const u16,
        b: *const u32,
        kp: usize,
        b_block: usize,
        out: &mut [[f32; TILE_M * TILE_N]; 4],
    ) {
        zero();
        accumulate(a, b, kp, b_block);
        store(out);
    }

    /// tmm0–3 = 0.
    unsafe fn zero() {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
    }

    /// tmm0–3 += the four tiles of `A[32 rows, kp] · B[kp, 32 columns]`.
    ///
    /// # Safety
    /// As [`block`].
    unsafe fn accumulate(a: *const u16, b: *const u32, kp: usize, b_block: usize) {
        let a_stride = kp * 2;
        let b_stride = TILE_N * 4;
        let a1 = a.add(TILE_M * kp);
        let b1 = b.add(b_block);
        for s in 0..kp / TILE_K {
            let (pa0, pa1) = (a.add(s * TILE_K), a1.add(s * TILE_K));
            let (pb0, pb1) = (
                b.add(s * TILE_K / 2 * TILE_N),
                b1.add(s * TILE_K / 2 * TILE_N),
            );
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) pa0,
                a1 = in(reg) pa1,
                b0 = in(reg) pb0,
                b1 = in(reg) pb1,
                sa = in(reg) a_stride,
                sb = in(reg) b_stride,
                options(nostack, readonly),
            );
        }
    }

    /// [`block`] accumulated into `c` in place: four 16 × 16 tiles at `c`, `c + 16`, `c + 16·ldc`
    /// and `c + 16·ldc + 16` (`ldc` floats a row), added to (`load`) or replacing what is there.
    ///
    /// # Safety
    /// As [`block`]; the 32 × 32 floats at `c` (row stride `ldc`) are in bounds.
    pub(super) unsafe fn block_in_place(
        a: *const u16,
        b: *const u32,
        kp: usize,
        b_block: usize,
        c: *mut f32,
        ldc: usize,
        load: bool,
    ) {
        let sc = ldc * 4;
        let (c1, c2) = (c.add(TILE_N), c.add(TILE_M * ldc));
        let c3 = c2.add(TILE_N);
        if load {
            asm!(
                "tileloadd tmm0, [{c0} + {sc}*1]",
                "tileloadd tmm1, [{c1} + {sc}*1]",
                "tileloadd tmm2, [{c2} + {sc}*1]",
                "tileloadd tmm3, [{c3} + {sc}*1]",
                c0 = in(reg) c, c1 = in(reg) c1, c2 = in(reg) c2, c3 = in(reg) c3, sc = in(reg) sc,
                options(nostack, readonly),
            );
        } else {
            zero();
        }
        accumulate(a, b, kp, b_block);
        asm!(
            "tilestored [{c0} + {sc}*1], tmm0",
            "tilestored [{c1} + {sc}*1], tmm1",
            "tilestored [{c2} + {sc}*1], tmm2",
            "tilestored [{c3} + {sc}*1], tmm3",
            c0 = in(reg) c, c1 = in(reg) c1, c2 = in(reg) c2, c3 = in(reg) c3, sc = in(reg) sc,
            options(nostack),
        );
    }

    /// Stores tmm0–3 into `out`.
    unsafe fn store(out: &mut [[f32; TILE_M * TILE_N]; 4]) {
        let so = TILE_N * 4;
        asm!(
            "tilestored [{o0} + {so}*1], tmm0",
            "tilestored [{o1} + {so}*1], tmm1",
            "tilestored [{o2} + {so}*1], tmm2",
            "tilestored [{o3} + {so}*1], tmm3",
            o0 = in(reg) out[0].as_mut_ptr(),
            o1 = in(reg) out[1].as_mut_ptr(),
            o2 = in(reg) out[2].as_mut_ptr(),
            o3 = in(reg) out[3].as_mut_ptr(),
            so = in(reg) so,
            options(nostack),
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod tiles {
    use super::{TILE_M, TILE_N};
    pub(super) fn configure() {}
    pub(super) fn release() {}
    pub(super) unsafe fn block(
        _: *const u16,
        _: *const u32,
        _: usize,
        _: usize,
        _: &mut [[f32; TILE_M * TILE_N]; 4],
    ) {
        unreachable!("AMX is x86-64 only; available() is false elsewhere")
    }
    pub(super) unsafe fn block_in_place(
        _: *const u16,
        _: *const u32,
        _: usize,
        _: usize,
        _: *mut f32,
        _: usize,
        _: bool,
    ) {
        unreachable!("AMX is x86-64 only; available() is false elsewhere")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// `op(A) · op(B) + beta · C` in f64 over the bf16-rounded operands, `op_a(i, kk)` and
    /// `op_b(kk, j)` giving their elements; `c` is `[m, n]`.
    fn reference(
        (m, k, n): (usize, usize, usize),
        op_a: impl Fn(usize, usize) -> f32,
        op_b: impl Fn(usize, usize) -> f32,
        c: &[f32],
        beta: f32,
    ) -> Vec<f64> {
        let r = |x: f32| from_bf16(to_bf16(x)) as f64;
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|kk| r(op_a(i, kk)) * r(op_b(kk, j))).sum();
                out[i * n + j] = s + beta as f64 * c[i * n + j] as f64;
            }
        }
        out
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        for (x, want) in [
            (1.0f32, 1.0f32),
            (1.0 + 1.0 / 256.0, 1.0),               // a tie: to even (down)
            (1.0 + 3.0 / 256.0, 1.0 + 4.0 / 256.0), // a tie: to even (up)
            (1.0 + 1.5 / 256.0, 1.0 + 2.0 / 256.0), // above the tie: up
            (-2.5, -2.5),
            (0.0, 0.0),
            (f32::INFINITY, f32::INFINITY),
        ] {
            assert_eq!(from_bf16(to_bf16(x)), want, "{x}");
        }
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    }

    /// The vector conversions of the packing (both layouts of `B`) round exactly as [`to_bf16`]
    /// does, ties included.
    #[test]
    fn packing_rounds_as_the_scalar_conversion() {
        if !available() {
            eprintln!("skipped: no AMX bfloat16 tiles on this machine");
            return;
        }
        // Ties to even down and up, just above a tie, negatives, zero, large and small values.
        let table = [
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            1.0 + 1.5 / 256.0,
            -2.5 - 1.0 / 128.0,
            0.0,
            3.0e38,
            1.0e-30,
            -7.0,
        ];
        let (k, n) = (64, 32);
        let b: Vec<f32> = (0..k * n)
            .map(|i| table[i % table.len()] * (1 + i % 3) as f32)
            .collect();
        let kp = k;
        for tb in [false, true] {
            let mut out = Vec::new();
            // SAFETY: available() was checked above.
            unsafe { pack_b(k, n, &b, tb, 2, kp, &mut out) };
            let at = |kk: usize, j: usize| if tb { b[j * k + kk] } else { b[kk * n + j] };
            for p in 0..k / 2 {
                for j in 0..n {
                    let got = out[(j / TILE_N) * (kp / 2 * TILE_N) + p * TILE_N + j % TILE_N];
                    assert_eq!(
                        got,
                        pair(at(2 * p, j), at(2 * p + 1, j)),
                        "tb {tb}, pair {p}, column {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn amx_gemm_matches_the_bf16_reference() {
        if !available() {
            eprintln!("skipped: no AMX bfloat16 tiles on this machine");
            return;
        }
        let mut rng = Rng::new(7);
        // (m, k, n): edges of every tile dimension, one tile, many, k below and above 32.
        for (m, k, n) in [
            (1, 1, 1),
            (16, 32, 16),
            (17, 33, 15),
            (48, 27, 300),
            (96, 432, 257),
            (5, 600, 70),
            (128, 1536, 40),
        ] {
            for (ta, tb, beta) in [
                (false, false, 1.0),
                (true, false, 0.0),
                (false, true, 0.5),
                (true, true, 1.0),
            ] {
                let a: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
                let b: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
                let c0: Vec<f32> = (0..m * n).map(|_| rng.normal()).collect();
                let mut c = c0.clone();
                gemm_bf16(m, k, n, &a, ta, &b, tb, &mut c, beta);
                let op_a = |i: usize, kk: usize| if ta { a[kk * m + i] } else { a[i * k + kk] };
                let op_b = |kk: usize, j: usize| if tb { b[j * k + kk] } else { b[kk * n + j] };
                let want = reference((m, k, n), op_a, op_b, &c0, beta);
                for (i, (got, w)) in c.iter().zip(&want).enumerate() {
                    // f32 accumulation of exact bf16 products: error ~ k · 2⁻²⁴ · the terms.
                    let tol = 1e-5 * (k as f64).sqrt() * 8.0 + 1e-6 * w.abs();
                    assert!(
                        (*got as f64 - w).abs() <= tol.max(1e-4),
                        "m {m} k {k} n {n} ta {ta} tb {tb}: [{i}] {got} vs {w}"
                    );
                }
            }
        }
    }
}
