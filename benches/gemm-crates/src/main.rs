//! GFLOP/s of `matrixmultiply::sgemm` and `gemm::gemm` (one thread, row-major, `C = A·B`) on
//! the GEMMs of one training step of the shipped reader (channels 48, 96, 192, 192, hidden 160)
//! for a group of 4 strips 3 × 32 × 128 (the LSTM: half of a batch of 32, one step); the two results checked against each other.
use std::time::Instant;

/// `C[m, n] = A[m, k] · B[k, n]` with matrixmultiply.
fn mm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: a, b, c hold m·k, k·n and m·n floats (checked by the caller's allocations).
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        )
    }
}

/// The same product with the gemm crate, no threads.
fn gm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // SAFETY: as in `mm`; gemm takes (column stride, row stride).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            1,
            n as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn main() {
    // (what, m, k, n)
    let shapes = [
        ("conv1 forward", 48, 27, 4 * 30 * 126),
        ("conv2 forward", 96, 432, 4 * 13 * 61),
        ("conv3 forward", 192, 864, 4 * 4 * 28),
        ("conv4 forward", 192, 2304, 4 * 26),
        ("conv2 input grad", 432, 96, 4 * 13 * 61),
        ("conv2 weight grad", 96, 4 * 13 * 61, 432),
        ("LSTM input projection", 4 * 26, 192, 1280),
        ("LSTM recurrence", 16, 160, 640),
        ("LSTM dh recurrence", 16, 640, 160),
        ("LSTM recurrent w grad", 640, 16, 160),
    ];
    println!(
        "{:<22} {:>16}  {:>10}  {:>10}  ratio",
        "GEMM", "m × k × n", "matrixmul", "gemm"
    );
    for (what, m, k, n) in shapes {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1 - 0.3).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1 - 0.2).collect();
        let (mut c1, mut c2) = (vec![0f32; m * n], vec![0f32; m * n]);
        mm(m, k, n, &a, &b, &mut c1);
        gm(m, k, n, &a, &b, &mut c2);
        let scale = c1.iter().fold(1f32, |s, v| s.max(v.abs()));
        let diff = c1
            .iter()
            .zip(&c2)
            .fold(0f32, |d, (x, y)| d.max((x - y).abs()));
        assert!(
            diff <= 1e-4 * scale,
            "{what}: the two products differ by {diff}"
        );
        let flops = 2.0 * (m * k * n) as f64;
        let reps = ((4e9 / flops) as usize).max(5);
        let mut best = [f64::MAX; 2];
        for _ in 0..3 {
            let t = Instant::now();
            for _ in 0..reps {
                mm(m, k, n, &a, &b, &mut c1);
            }
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..reps {
                gm(m, k, n, &a, &b, &mut c2);
            }
            best[1] = best[1].min(t.elapsed().as_secs_f64());
        }
        let gf = |s: f64| flops * reps as f64 / s / 1e9;
        println!(
            "{what:<22} {:>16}  {:>6.1} GF/s  {:>6.1} GF/s  {:.2}",
            format!("{m}×{k}×{n}"),
            gf(best[0]),
            gf(best[1]),
            best[0] / best[1]
        );
    }
}
