//! Dense kernels of the engine: GEMM, valid 2-D convolution (im2col), ReLU, 2×2 max-pooling,
//! one LSTM direction, log-softmax — each with its backward pass. All tensors are row-major
//! `f32` slices; shapes are documented per function.

/// While alive, the calling thread and every thread of the current rayon pool treat subnormal
/// `f32`s as zero (x86-64: the FTZ and DAZ bits of MXCSR; elsewhere nothing changes).
///
/// Training needs it for speed, not accuracy: Adam's first moment of a weight whose gradient
/// stays zero (a dead ReLU channel — over half of conv2's in the shipped model) decays by 0.9 a
/// step into the subnormal range, where every multiply takes ~100 cycles, and trained models
/// ran ~30 % slower per epoch than fresh ones. The values flushed are below 1.2e-38.
/// Guards nest and may overlap across threads: the pool's bits are set by the first live guard
/// and cleared by the last; each guard restores its own thread's previous state. Create it
/// outside the rayon pool it changes (as `train::train` does, on the caller's thread).
pub struct FlushSubnormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
static POOL_GUARDS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

#[cfg(target_arch = "x86_64")]
#[allow(deprecated)]
fn mxcsr() -> u32 {
    // SAFETY: reading MXCSR has no side effects; SSE is part of x86-64.
    unsafe { std::arch::x86_64::_mm_getcsr() }
}

#[cfg(target_arch = "x86_64")]
#[allow(deprecated)]
fn set_mxcsr(v: u32) {
    // SAFETY: only the FTZ/DAZ bits differ from the thread's current control word.
    unsafe { std::arch::x86_64::_mm_setcsr(v) }
}

impl FlushSubnormals {
    /// Flush subnormals on this thread and the current rayon pool until dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> FlushSubnormals {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = mxcsr();
            let mut n = POOL_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
            if *n == 0 {
                rayon::broadcast(|_| set_mxcsr(mxcsr() | FTZ_DAZ));
            }
            *n += 1;
            set_mxcsr(saved | FTZ_DAZ);
            FlushSubnormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushSubnormals {}
    }
}

impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            let mut n = POOL_GUARDS.lock().unwrap_or_else(|e| e.into_inner());
            *n -= 1;
            if *n == 0 {
                rayon::broadcast(|_| set_mxcsr(mxcsr() & !FTZ_DAZ));
            }
            set_mxcsr(self.saved);
        }
    }
}

/// `C[m, n] = op(A)[m, k] · op(B)[k, n] + beta · C`, where `op(A)` is `A` (`[m, k]` stored) or
/// `Aᵀ` (`[k, m]` stored) when `ta`, likewise `B` (`[k, n]` stored, or `[n, k]` when `tb`).
#[allow(clippy::too_many_arguments)]
pub fn gemm(
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
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let (rsa, csa) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (rsb, csb) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above guarantee that every index the strides reach is in bounds.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Whether [`gemm_bulk`] runs in bfloat16 on AMX tiles ([`set_bf16`]).
static BF16: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Run the engine's bulk products (convolutions, their gradients, the LSTM's input projection
/// and its gradients) in bfloat16 with `f32` accumulation on AMX tiles ([`super::amx`]), or in
/// `f32` again. Process-wide. Errors (and changes nothing) when this machine cannot.
pub fn set_bf16(on: bool) -> crate::Result<()> {
    if on && !super::amx::available() {
        return Err(crate::Error::Config(
            "bfloat16 training (--bf16) needs AMX-BF16 tiles: an Intel Xeon of the Sapphire Rapids generation or later, on Linux"
                .into(),
        ));
    }
    BF16.store(on, std::sync::atomic::Ordering::Relaxed);
    Ok(())
}

/// Whether the bulk products run in bfloat16 ([`set_bf16`]).
pub fn bf16() -> bool {
    BF16.load(std::sync::atomic::Ordering::Relaxed)
}

/// [`gemm`] for the engine's large products: in bfloat16 on AMX tiles when [`set_bf16`] is on
/// (operands rounded, `f32` accumulation), otherwise exactly [`gemm`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_bulk(
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
    if bf16() {
        super::amx::gemm_bf16(m, k, n, a, ta, b, tb, c, beta);
    } else {
        gemm(m, k, n, a, ta, b, tb, c, beta);
    }
}

/// `(offset, length)` of each parameter of `specs` (names and shapes, in storage order) inside
/// one flat buffer, and the buffer's total length.
pub fn param_offsets(specs: &[(String, Vec<usize>)]) -> (Vec<(usize, usize)>, usize) {
    let mut offsets = Vec::with_capacity(specs.len());
    let mut off = 0;
    for (_, shape) in specs {
        let len: usize = shape.iter().product();
        offsets.push((off, len));
        off += len;
    }
    (offsets, off)
}

/// Geometry of one valid (unpadded, stride-1) convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Input channels.
    pub ci: usize,
    /// Output channels.
    pub co: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
}

/// The 3 × 3 convolutions of a stack over an RGB input: conv `i` maps `channels[i − 1]` (3 for
/// the first) to `channels[i]` (the localiser's and the detector's).
pub fn conv3x3_stack<const N: usize>(channels: [usize; N]) -> [ConvShape; N] {
    std::array::from_fn(|i| ConvShape {
        ci: if i == 0 { 3 } else { channels[i - 1] },
        co: channels[i],
        kh: 3,
        kw: 3,
    })
}

impl ConvShape {
    /// Columns of the im2col matrix: `ci · kh · kw`.
    pub fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }
}

/// im2col for a valid convolution over a batch stored channel-major.
///
/// # Shapes
/// `x`: `[ci, m, h, w]` → returns `[ci·kh·kw, m·ho·wo]` (column `b·ho·wo + y·wo + x`) with
/// `ho = h − kh + 1`, `wo = w − kw + 1`.
pub fn im2col(x: &[f32], s: ConvShape, m: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = (h + 1 - s.kh, w + 1 - s.kw);
    let plane = ho * wo;
    // Written once, in order (no zeroing first: these are the largest buffers of a step).
    let mut cols = Vec::with_capacity(s.k() * m * plane);
    for c in 0..s.ci {
        for dy in 0..s.kh {
            for dx in 0..s.kw {
                for b in 0..m {
                    let src_plane = &x[(c * m + b) * h * w..][..h * w];
                    for y in 0..ho {
                        cols.extend_from_slice(&src_plane[(y + dy) * w + dx..][..wo]);
                    }
                }
            }
        }
    }
    cols
}

/// Adjoint of [`im2col`]: accumulate `[ci·kh·kw, m·ho·wo]` columns into `dx` `[ci, m, h, w]`.
pub fn col2im(cols: &[f32], s: ConvShape, m: usize, h: usize, w: usize, dx: &mut [f32]) {
    let (ho, wo) = (h + 1 - s.kh, w + 1 - s.kw);
    let plane = ho * wo;
    let mut row = 0;
    for c in 0..s.ci {
        for dy in 0..s.kh {
            for dx_ in 0..s.kw {
                let src_row = &cols[row * m * plane..][..m * plane];
                for b in 0..m {
                    let dst_plane = &mut dx[(c * m + b) * h * w..][..h * w];
                    let src = &src_row[b * plane..][..plane];
                    for y in 0..ho {
                        let dst = &mut dst_plane[(y + dy) * w + dx_..][..wo];
                        for (d, s) in dst.iter_mut().zip(&src[y * wo..][..wo]) {
                            *d += s;
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

/// Valid convolution + bias + ReLU over a batch, as one GEMM.
///
/// # Shapes
/// `x`: `[ci, m, h, w]`, `weight`: `[co, ci, kh, kw]`, `bias`: `[co]` → (`y` `[co, m, ho, wo]`
/// after ReLU, `cols` `[ci·kh·kw, m·ho·wo]` kept for the backward pass).
#[allow(clippy::too_many_arguments)]
pub fn conv_relu(
    x: &[f32],
    s: ConvShape,
    m: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let (mut y, cols) = conv(x, s, m, h, w, weight, bias);
    y.iter_mut().for_each(|v| *v = v.max(0.0));
    (y, cols)
}

/// Valid convolution + bias over a batch, as one GEMM (no activation).
///
/// # Shapes
/// As [`conv_relu`]: `x` `[ci, m, h, w]` → (`y` `[co, m, ho, wo]`, `cols` `[ci·kh·kw, m·ho·wo]`).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    x: &[f32],
    s: ConvShape,
    m: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    bias: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let n = m * (h + 1 - s.kh) * (w + 1 - s.kw);
    let cols = im2col(x, s, m, h, w);
    let mut y = Vec::with_capacity(s.co * n);
    for b in bias {
        y.extend(std::iter::repeat_n(*b, n));
    }
    gemm_bulk(s.co, s.k(), n, weight, false, &cols, false, &mut y, 1.0);
    (y, cols)
}

/// `rows` zero rows added above and below every plane.
///
/// # Shapes
/// `x`: `[planes, h, w]` → `[planes, h + 2·rows, w]`.
pub fn pad_rows(x: &[f32], planes: usize, h: usize, w: usize, rows: usize) -> Vec<f32> {
    let hp = h + 2 * rows;
    let mut out = vec![0f32; planes * hp * w];
    for (dst, src) in out.chunks_exact_mut(hp * w).zip(x.chunks_exact(h * w)) {
        dst[rows * w..][..h * w].copy_from_slice(src);
    }
    out
}

/// The inverse of [`pad_rows`]: the `rows` first and last rows of every plane dropped.
///
/// # Shapes
/// `x`: `[planes, h + 2·rows, w]` → `[planes, h, w]`.
pub fn crop_rows(x: &[f32], planes: usize, h: usize, w: usize, rows: usize) -> Vec<f32> {
    let hp = h + 2 * rows;
    let mut out = vec![0f32; planes * h * w];
    for (dst, src) in out.chunks_exact_mut(h * w).zip(x.chunks_exact(hp * w)) {
        dst.copy_from_slice(&src[rows * w..][..h * w]);
    }
    out
}

/// The `cols` first and last columns of every row dropped.
///
/// # Shapes
/// `x`: `[rows, w]` → `[rows, w − 2·cols]`.
pub fn crop_cols(x: &[f32], w: usize, cols: usize) -> Vec<f32> {
    let wo = w - 2 * cols;
    let mut out = Vec::with_capacity(x.len() / w * wo);
    for row in x.chunks_exact(w) {
        out.extend_from_slice(&row[cols..cols + wo]);
    }
    out
}

/// Adjoint of [`crop_cols`]: `dy` accumulated into the middle columns of `dx`.
///
/// # Shapes
/// `dy`: `[rows, w − 2·cols]`, `dx`: `[rows, w]`.
pub fn uncrop_cols_into(dy: &[f32], w: usize, cols: usize, dx: &mut [f32]) {
    let wo = w - 2 * cols;
    for (d, s) in dx.chunks_exact_mut(w).zip(dy.chunks_exact(wo)) {
        for (a, b) in d[cols..cols + wo].iter_mut().zip(s) {
            *a += b;
        }
    }
}

/// Backward of [`conv_relu`]. `dy` `[co, m, ho, wo]` is modified in place (ReLU mask applied);
/// gradients are accumulated into `dweight` `[co, ci·kh·kw]` and `dbias` `[co]`; returns `dx`
/// `[ci, m, h, w]` when `want_dx`.
#[allow(clippy::too_many_arguments)]
pub fn conv_relu_backward(
    dy: &mut [f32],
    y: &[f32],
    cols: &[f32],
    s: ConvShape,
    m: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    want_dx: bool,
) -> Option<Vec<f32>> {
    // Branch-free so that it vectorises.
    for (d, v) in dy.iter_mut().zip(y) {
        *d = if *v > 0.0 { *d } else { 0.0 };
    }
    conv_backward(dy, cols, s, m, h, w, weight, dweight, dbias, want_dx)
}

thread_local! {
    /// [`conv_backward`]'s column gradients, reused from call to call on each thread.
    static DCOLS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Backward of [`conv`] (no activation): from `dy` `[co, m, ho, wo]`, gradients accumulated into
/// `dweight` `[co, ci·kh·kw]` and `dbias` `[co]`; returns `dx` `[ci, m, h, w]` when `want_dx`.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    dy: &[f32],
    cols: &[f32],
    s: ConvShape,
    m: usize,
    h: usize,
    w: usize,
    weight: &[f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    want_dx: bool,
) -> Option<Vec<f32>> {
    let n = m * (h + 1 - s.kh) * (w + 1 - s.kw);
    for (c, db) in dbias.iter_mut().enumerate() {
        *db += sum_f32(&dy[c * n..][..n]);
    }
    gemm_bulk(s.co, n, s.k(), dy, false, cols, true, dweight, 1.0);
    if !want_dx {
        return None;
    }
    let mut dx = vec![0f32; s.ci * m * h * w];
    DCOLS.with(|buf| {
        let mut dcols = buf.borrow_mut();
        let len = s.k() * n;
        if dcols.len() < len {
            dcols.resize(len, 0.0);
        }
        // beta = 0: every element of the product is written; what the buffer held is not read.
        gemm_bulk(
            s.k(),
            s.co,
            n,
            weight,
            true,
            dy,
            false,
            &mut dcols[..len],
            0.0,
        );
        col2im(&dcols[..len], s, m, h, w, &mut dx);
    });
    Some(dx)
}

/// A batch `[m, c, plane]` (image-major, as models take it) reordered channel-major
/// `[c, m, plane]`, as the convolutions here take it.
pub fn to_channel_major(x: &[f32], m: usize, c: usize, plane: usize) -> Vec<f32> {
    let mut out = vec![0f32; x.len()];
    for b in 0..m {
        for ch in 0..c {
            out[(ch * m + b) * plane..][..plane]
                .copy_from_slice(&x[(b * c + ch) * plane..][..plane]);
        }
    }
    out
}

/// The (weight, bias) gradient slices of the first `convs` convolutions in a flat gradient
/// buffer whose parameters start with them, in that order (`offsets` from [`param_offsets`]).
pub fn conv_grads<'a>(
    grad: &'a mut [f32],
    offsets: &[(usize, usize)],
    convs: usize,
) -> Vec<(&'a mut [f32], &'a mut [f32])> {
    let mut rest = grad;
    let mut out = Vec::with_capacity(convs);
    for i in 0..convs {
        let (wo, wl) = offsets[2 * i];
        let (bo, bl) = offsets[2 * i + 1];
        assert!(wo + wl == bo, "a bias follows its weight");
        let (w, r) = std::mem::take(&mut rest).split_at_mut(wl);
        let (b, r) = r.split_at_mut(bl);
        rest = r;
        out.push((w, b));
    }
    out
}

/// Fresh parameters for `specs` (in storage order): He-uniform for `conv*` weights, uniform
/// `±1/√fan_in` for other weights, zero biases; one random stream from `seed`.
pub fn init_params(specs: &[(String, Vec<usize>)], seed: u64) -> Vec<f32> {
    let mut rng = crate::rng::Rng::new(seed);
    let mut params = Vec::new();
    for (name, shape) in specs {
        let len: usize = shape.iter().product();
        let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
        if name.ends_with("bias") {
            params.extend(std::iter::repeat_n(0.0, len));
        } else {
            let b = if name.starts_with("conv") {
                (6.0 / fan_in as f32).sqrt()
            } else {
                1.0 / (fan_in as f32).sqrt()
            };
            params.extend((0..len).map(|_| rng.uniform(-b, b)));
        }
    }
    params
}

/// What [`conv_stack`] keeps for [`conv_stack_backward`].
#[derive(Debug, Clone, Default)]
pub struct StackCache {
    /// Post-ReLU outputs of each convolution, channel-major `[c, m, h, w]`.
    pub acts: Vec<Vec<f32>>,
    /// im2col matrices of each convolution.
    pub cols: Vec<Vec<f32>>,
    /// Argmax indices of each pooling.
    pub pool_idx: Vec<Vec<u32>>,
}

/// A stack of valid convolutions, each with bias and ReLU, the first `pools` of them followed by
/// 2×2 max-pooling: the localiser's and the detector's trunk.
///
/// # Shapes
/// `x`: `[ci, m, h, w]` (channel-major), `sizes[i]`: conv `i`'s input `(h, w)`, `params[i]`:
/// its (`[co, ci, kh, kw]` weight, `[co]` bias) → the cache, whose last `acts` is the stack's
/// output `[co, m, ho, wo]`.
pub fn conv_stack(
    x: Vec<f32>,
    convs: &[ConvShape],
    sizes: &[(usize, usize)],
    pools: usize,
    m: usize,
    params: &[(&[f32], &[f32])],
) -> StackCache {
    let mut cache = StackCache::default();
    let mut input = x;
    for (i, s) in convs.iter().enumerate() {
        let (h, w) = sizes[i];
        let (a, c) = conv_relu(&input, *s, m, h, w, params[i].0, params[i].1);
        if i < pools {
            let (p, idx) = maxpool2(&a, s.co * m, h - 2, w - 2);
            input = p;
            cache.pool_idx.push(idx);
        } else if i + 1 < convs.len() {
            input = a.clone();
        }
        cache.acts.push(a);
        cache.cols.push(c);
    }
    cache
}

/// Backward of [`conv_stack`] from `dy`, the gradient of its output: accumulates conv `i`'s
/// weight and bias gradients into `grads[i]` (`[co, ci·kh·kw]`, `[co]`).
#[allow(clippy::too_many_arguments)]
pub fn conv_stack_backward(
    mut dy: Vec<f32>,
    cache: &StackCache,
    convs: &[ConvShape],
    sizes: &[(usize, usize)],
    pools: usize,
    m: usize,
    weights: &[&[f32]],
    grads: &mut [(&mut [f32], &mut [f32])],
) {
    for i in (0..convs.len()).rev() {
        let (h, w) = sizes[i];
        let (dw, db) = &mut grads[i];
        let dx = conv_relu_backward(
            &mut dy,
            &cache.acts[i],
            &cache.cols[i],
            convs[i],
            m,
            h,
            w,
            weights[i],
            dw,
            db,
            i > 0,
        );
        if let Some(dx) = dx {
            // dx is the gradient of conv i's input: pool i−1's output, or conv i−1's.
            dy = if i <= pools {
                maxpool2_backward(&dx, &cache.pool_idx[i - 1], cache.acts[i - 1].len())
            } else {
                dx
            };
        }
    }
}

/// Sum with 16 independent accumulators, so that it vectorises (a plain `iter().sum()` is one
/// serial chain of dependent float adds).
pub fn sum_f32(x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// Batch normalisation's epsilon (PyTorch's default), added to the variance.
pub const NORM_EPS: f32 = 1e-5;

/// What a batch normalisation in training keeps for its backward pass and for the running
/// statistics.
#[derive(Debug, Clone)]
pub struct NormCache {
    /// The normalised values `(z − mean) / sqrt(var + ε)`, `[c, n]`.
    pub xhat: Vec<f32>,
    /// `1 / sqrt(var + ε)` per channel.
    pub inv_std: Vec<f32>,
    /// The batch's mean per channel.
    pub mean: Vec<f32>,
    /// The batch's (biased) variance per channel.
    pub var: Vec<f32>,
}

/// Batch normalisation in training: every channel normalised by its own mean and variance over
/// the batch, then scaled by `gamma` and shifted by `beta`, in place.
///
/// # Shapes
/// `z`: `[c, n]` (a channel's `n` values contiguous, as the channel-major activations are),
/// `gamma`, `beta`: `[c]`.
pub fn batch_norm(z: &mut [f32], c: usize, gamma: &[f32], beta: &[f32]) -> NormCache {
    let n = z.len() / c;
    let mut cache = NormCache {
        xhat: vec![0f32; z.len()],
        inv_std: vec![0f32; c],
        mean: vec![0f32; c],
        var: vec![0f32; c],
    };
    for (ch, (zc, xc)) in z
        .chunks_exact_mut(n)
        .zip(cache.xhat.chunks_exact_mut(n))
        .enumerate()
    {
        let mean = sum_f32(zc) / n as f32;
        xc.iter_mut()
            .zip(zc.iter())
            .for_each(|(x, v)| *x = v - mean);
        let var = xc.iter().map(|d| d * d).sum::<f32>() / n as f32;
        let inv = 1.0 / (var + NORM_EPS).sqrt();
        for (x, v) in xc.iter_mut().zip(zc.iter_mut()) {
            *x *= inv;
            *v = gamma[ch] * *x + beta[ch];
        }
        (cache.mean[ch], cache.var[ch], cache.inv_std[ch]) = (mean, var, inv);
    }
    cache
}

/// Backward of [`batch_norm`]: `dy` (the gradient of its output, `[c, n]`) becomes the gradient
/// of its input in place; the gradients of `gamma` and `beta` are accumulated.
pub fn batch_norm_backward(
    dy: &mut [f32],
    cache: &NormCache,
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let c = gamma.len();
    let n = dy.len() / c;
    for (ch, (d, xc)) in dy
        .chunks_exact_mut(n)
        .zip(cache.xhat.chunks_exact(n))
        .enumerate()
    {
        let sum_d = sum_f32(d);
        let sum_dx: f32 = d.iter().zip(xc).map(|(a, b)| a * b).sum();
        dgamma[ch] += sum_dx;
        dbeta[ch] += sum_d;
        let k = gamma[ch] * cache.inv_std[ch] / n as f32;
        for (v, x) in d.iter_mut().zip(xc) {
            *v = k * (n as f32 * *v - sum_d - x * sum_dx);
        }
    }
}

/// The affine map a batch normalisation becomes at inference: `y = scale · z + shift` per
/// channel, from its running statistics.
///
/// # Shapes
/// `gamma`, `beta`, `mean`, `var`: `[c]` → (`scale` `[c]`, `shift` `[c]`).
pub fn norm_affine(gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma
        .iter()
        .zip(var)
        .map(|(g, v)| g / (v + NORM_EPS).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

/// 2×2 max-pooling, stride 2, floor mode (trailing odd row/column dropped).
///
/// # Shapes
/// `x`: `[c, h, w]` → (`y` `[c, h/2, w/2]`, `argmax` indices into `x`, one per output).
pub fn maxpool2(x: &[f32], c: usize, h: usize, w: usize) -> (Vec<f32>, Vec<u32>) {
    let (ho, wo) = (h / 2, w / 2);
    let mut y = vec![0f32; c * ho * wo];
    let mut idx = vec![0u32; c * ho * wo];
    for ch in 0..c {
        for oy in 0..ho {
            let r0 = (ch * h + 2 * oy) * w;
            let (top, bot) = (&x[r0..][..2 * wo], &x[r0 + w..][..2 * wo]);
            let o = (ch * ho + oy) * wo;
            let (yr, ir) = (&mut y[o..][..wo], &mut idx[o..][..wo]);
            for ox in 0..wo {
                let (a, b, cc, d) = (top[2 * ox], top[2 * ox + 1], bot[2 * ox], bot[2 * ox + 1]);
                // Same tie-breaking as a scan in the order a, b, c, d with strict `>`.
                let (mut best, mut k) = (a, 0u32);
                if b > best {
                    best = b;
                    k = 1;
                }
                if cc > best {
                    best = cc;
                    k = w as u32;
                }
                if d > best {
                    best = d;
                    k = w as u32 + 1;
                }
                yr[ox] = best;
                ir[ox] = (r0 + 2 * ox) as u32 + k;
            }
        }
    }
    (y, idx)
}

/// Backward of [`maxpool2`]: scatter `dy` to the argmax positions of a `[len]` input.
pub fn maxpool2_backward(dy: &[f32], idx: &[u32], len: usize) -> Vec<f32> {
    let mut dx = vec![0f32; len];
    for (d, &i) in dy.iter().zip(idx) {
        dx[i as usize] += d;
    }
    dx
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// What one LSTM direction keeps for its backward pass.
#[derive(Debug, Clone)]
pub struct LstmCache {
    /// Gate activations `[t, n, 4h]` in PyTorch order i, f, g, o (after sigmoid/tanh).
    pub gates: Vec<f32>,
    /// Cell states `[t, n, h]`.
    pub c: Vec<f32>,
    /// Hidden states `[t, n, h]`.
    pub h: Vec<f32>,
}

/// One LSTM direction over a whole sequence, zero initial state.
///
/// Gates in PyTorch order (i, f, g, o): `G = x·W_ihᵀ + b + h_{t−1}·W_hhᵀ`,
/// `c_t = σ(f)·c_{t−1} + σ(i)·tanh(g)`, `h_t = σ(o)·tanh(c_t)`. The input projection is done
/// for all steps in one GEMM, then one fused 4-gate GEMM per step. `reverse` runs t = T−1 … 0.
///
/// # Shapes
/// `x`: `[t, n, i]`, `w_ih`: `[4h, i]`, `w_hh`: `[4h, h]`, `bias`: `[4h]` → cache with
/// `h`: `[t, n, h]` (indexed by the original time step also when `reverse`).
#[allow(clippy::too_many_arguments)]
pub fn lstm_forward(
    x: &[f32],
    t: usize,
    n: usize,
    i: usize,
    hid: usize,
    w_ih: &[f32],
    w_hh: &[f32],
    bias: &[f32],
    reverse: bool,
) -> LstmCache {
    let g4 = 4 * hid;
    let mut gates = vec![0f32; t * n * g4];
    for row in gates.chunks_exact_mut(g4) {
        row.copy_from_slice(bias);
    }
    gemm_bulk(t * n, i, g4, x, false, w_ih, true, &mut gates, 1.0);
    let mut c = vec![0f32; t * n * hid];
    let mut h = vec![0f32; t * n * hid];
    let order: Vec<usize> = if reverse {
        (0..t).rev().collect()
    } else {
        (0..t).collect()
    };
    let mut prev: Option<usize> = None;
    for &step in &order {
        let g = &mut gates[step * n * g4..][..n * g4];
        if let Some(p) = prev {
            gemm(
                n,
                hid,
                g4,
                &h[p * n * hid..][..n * hid],
                false,
                w_hh,
                true,
                g,
                1.0,
            );
        }
        for b in 0..n {
            let gr = &mut g[b * g4..][..g4];
            for j in 0..hid {
                let ig = sigmoid(gr[j]);
                let fg = sigmoid(gr[hid + j]);
                let gg = gr[2 * hid + j].tanh();
                let og = sigmoid(gr[3 * hid + j]);
                gr[j] = ig;
                gr[hid + j] = fg;
                gr[2 * hid + j] = gg;
                gr[3 * hid + j] = og;
                let cp = prev.map_or(0.0, |p| c[(p * n + b) * hid + j]);
                let cn = fg * cp + ig * gg;
                c[(step * n + b) * hid + j] = cn;
                h[(step * n + b) * hid + j] = og * cn.tanh();
            }
        }
        prev = Some(step);
    }
    LstmCache { gates, c, h }
}

/// Backward of [`lstm_forward`]. `dh`: `[t, n, h]` gradient of the loss w.r.t. the outputs.
/// Accumulates into `dw_ih` `[4h, i]`, `dw_hh` `[4h, h]`, `dbias` `[4h]`; returns `dx` `[t, n, i]`.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward(
    cache: &LstmCache,
    dh: &[f32],
    x: &[f32],
    t: usize,
    n: usize,
    i: usize,
    hid: usize,
    w_ih: &[f32],
    w_hh: &[f32],
    reverse: bool,
    dw_ih: &mut [f32],
    dw_hh: &mut [f32],
    dbias: &mut [f32],
) -> Vec<f32> {
    let g4 = 4 * hid;
    let mut dgates = vec![0f32; t * n * g4];
    let mut dh_next = vec![0f32; n * hid];
    let mut dc_next = vec![0f32; n * hid];
    let order: Vec<usize> = if reverse {
        (0..t).collect()
    } else {
        (0..t).rev().collect()
    };
    // The step that ran before `step` in the forward pass.
    let prev_of = |k: usize| -> Option<usize> {
        if k + 1 < order.len() {
            Some(order[k + 1])
        } else {
            None
        }
    };
    for (k, &step) in order.iter().enumerate() {
        let prev = prev_of(k);
        let gr = &cache.gates[step * n * g4..][..n * g4];
        let dg = &mut dgates[step * n * g4..][..n * g4];
        for b in 0..n {
            for j in 0..hid {
                let o = (step * n + b) * hid + j;
                let ig = gr[b * g4 + j];
                let fg = gr[b * g4 + hid + j];
                let gg = gr[b * g4 + 2 * hid + j];
                let og = gr[b * g4 + 3 * hid + j];
                let tc = cache.c[o].tanh();
                let dhv = dh[o] + dh_next[b * hid + j];
                let dc = dc_next[b * hid + j] + dhv * og * (1.0 - tc * tc);
                let cp = prev.map_or(0.0, |p| cache.c[(p * n + b) * hid + j]);
                dg[b * g4 + j] = dc * gg * ig * (1.0 - ig);
                dg[b * g4 + hid + j] = dc * cp * fg * (1.0 - fg);
                dg[b * g4 + 2 * hid + j] = dc * ig * (1.0 - gg * gg);
                dg[b * g4 + 3 * hid + j] = dhv * tc * og * (1.0 - og);
                dc_next[b * hid + j] = dc * fg;
            }
        }
        match prev {
            Some(p) => {
                let hp = &cache.h[p * n * hid..][..n * hid];
                gemm(g4, n, hid, dg, true, hp, false, dw_hh, 1.0);
                gemm(n, g4, hid, dg, false, w_hh, false, &mut dh_next, 0.0);
            }
            None => dh_next.fill(0.0),
        }
    }
    for row in dgates.chunks_exact(g4) {
        for (d, v) in dbias.iter_mut().zip(row) {
            *d += v;
        }
    }
    gemm_bulk(g4, t * n, i, &dgates, true, x, false, dw_ih, 1.0);
    let mut dx = vec![0f32; t * n * i];
    gemm_bulk(t * n, g4, i, &dgates, false, w_ih, false, &mut dx, 0.0);
    dx
}

/// Row-wise log-softmax in place over rows of length `k`.
pub fn log_softmax_rows(x: &mut [f32], k: usize) {
    for row in x.chunks_exact_mut(k) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let s: f32 = row.iter().map(|v| (v - m).exp()).sum();
        let l = m + s.ln();
        row.iter_mut().for_each(|v| *v -= l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn batch_norm_normalises_and_its_backward_matches_finite_differences() {
        // A smooth scalar of the output, L = Σ r · y (r fixed), differentiated numerically in
        // f64-safe steps against the analytic input, scale and shift gradients; channels of a
        // few values and of many, scales of either sign.
        let mut rng = crate::rng::Rng::new(4);
        for (c, n) in [(1, 3), (2, 17), (3, 200)] {
            let z: Vec<f32> = (0..c * n).map(|_| 2.0 * rng.normal() + 1.0).collect();
            let gamma: Vec<f32> = (0..c)
                .map(|k| if k % 2 == 0 { 1.5 } else { -0.7 })
                .collect();
            let beta: Vec<f32> = (0..c).map(|k| 0.3 * k as f32).collect();
            let r: Vec<f32> = (0..c * n).map(|_| rng.normal()).collect();
            let loss = |z: &[f32], gamma: &[f32], beta: &[f32]| -> f32 {
                let mut y = z.to_vec();
                batch_norm(&mut y, c, gamma, beta);
                y.iter().zip(&r).map(|(a, b)| a * b).sum()
            };
            let mut y = z.clone();
            let cache = batch_norm(&mut y, c, &gamma, &beta);
            for (k, yc) in y.chunks(n).enumerate() {
                let mean = yc.iter().sum::<f32>() / n as f32;
                let var = yc.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n as f32;
                assert!((mean - beta[k]).abs() < 1e-4, "c {c} n {n}: mean {mean}");
                let want = gamma[k] * gamma[k] * cache.var[k] / (cache.var[k] + NORM_EPS);
                assert!(
                    (var - want).abs() < 1e-3 * want,
                    "c {c} n {n}: var {var} vs {want}"
                );
            }
            let mut dz = r.clone();
            let (mut dg, mut db) = (vec![0f32; c], vec![0f32; c]);
            batch_norm_backward(&mut dz, &cache, &gamma, &mut dg, &mut db);
            let eps = 1e-2f32;
            let num = |f: &dyn Fn(f32) -> f32| (f(eps) - f(-eps)) / (2.0 * eps);
            let close = |a: f32, b: f32| (a - b).abs() <= 2e-3 + 1e-2 * a.abs().max(b.abs());
            for i in (0..c * n).step_by(7) {
                let d = num(&|e| {
                    let mut zz = z.clone();
                    zz[i] += e;
                    loss(&zz, &gamma, &beta)
                });
                assert!(
                    close(d, dz[i]),
                    "c {c} n {n} dz[{i}]: numeric {d} analytic {}",
                    dz[i]
                );
            }
            for k in 0..c {
                let d = num(&|e| {
                    let mut g = gamma.clone();
                    g[k] += e;
                    loss(&z, &g, &beta)
                });
                assert!(close(d, dg[k]), "c {c} n {n} dgamma[{k}]: {d} vs {}", dg[k]);
                let d = num(&|e| {
                    let mut b = beta.clone();
                    b[k] += e;
                    loss(&z, &gamma, &b)
                });
                assert!(close(d, db[k]), "c {c} n {n} dbeta[{k}]: {d} vs {}", db[k]);
            }
        }
    }

    #[test]
    fn the_inference_affine_map_is_the_normalisation_by_given_statistics() {
        // (γ, β, mean, var, z) → γ (z − mean) / sqrt(var + ε) + β.
        for (g, b, m, v, z) in [
            (1.0, 0.0, 0.0, 1.0, 2.0),
            (2.0, 0.5, 1.0, 4.0, 3.0),
            (-1.0, 0.0, -2.0, 0.25, 0.0),
        ] {
            let (scale, shift) = norm_affine(&[g], &[b], &[m], &[v]);
            let want = g * (z - m) / (v + NORM_EPS).sqrt() + b;
            assert!(
                (scale[0] * z + shift[0] - want).abs() < 1e-5,
                "{g} {b} {m} {v} {z}"
            );
        }
    }

    /// Half the smallest normal `f32`, computed at run time on the calling thread.
    fn halved() -> f32 {
        std::hint::black_box(f32::MIN_POSITIVE) / std::hint::black_box(2.0)
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn flush_subnormals_on_this_thread_and_the_pool_then_restores() {
        assert!(halved() > 0.0, "subnormals are kept by default");
        {
            let _outer = FlushSubnormals::new();
            let _inner = FlushSubnormals::new();
            assert_eq!(halved(), 0.0);
            let pool: Vec<f32> = (0..64).into_par_iter().map(|_| halved()).collect();
            assert!(pool.iter().all(|&v| v == 0.0), "{pool:?}");
            // Subnormal inputs read as zero too (DAZ): 1e-39 · 1e30 would be 1e-9.
            let tiny = std::hint::black_box(1e-39_f32);
            assert_eq!(tiny * std::hint::black_box(1e30), 0.0);
        }
        assert!(halved() > 0.0, "the thread's state is restored");
    }
}
