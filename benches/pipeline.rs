//! Criterion benchmarks, each fast path beside its baseline in the same run:
//! preprocessing serial vs rayon; per-window CNN (cut windows, run the CNN on each) vs one
//! strided pass over the strip; CTC greedy decoding; tract inference batch 1 ×32 vs batch 32;
//! one training step with all threads vs one thread; synthetic training strips (256 per
//! iteration) serial vs rayon; the engine's conv2 GEMM in `f32` vs bfloat16 on AMX tiles (where
//! the CPU has them, `train --bf16`).
//!
//! Run: `cargo bench --features train` (reports in target/criterion/).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use housenum::engine::crnn::{loss_and_grad, Crnn, ModelConfig};
use housenum::read::window::{cut_window, num_steps, WINDOW};
use housenum::read::{self, BatchItem, Protocol, HEIGHT};
use housenum::rng::Rng;
use housenum::Reader;

fn strip(w: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..3 * HEIGHT * w).map(|_| r.normal()).collect()
}

fn sample_items(n: usize) -> Vec<BatchItem> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/samples");
    let files: Vec<_> = (1..=6)
        .map(|i| dir.join(format!("sample-{i}.png")))
        .collect();
    (0..n)
        .map(|i| BatchItem {
            path: files[i % files.len()].clone(),
            boxes: Vec::new(),
        })
        .collect()
}

fn preprocessing(c: &mut Criterion) {
    let items = sample_items(64);
    let mut g = c.benchmark_group("preprocess_64_images");
    g.bench_function("serial", |b| {
        b.iter(|| read::preprocess_batch_serial(black_box(&items), Protocol::Full, 1.0))
    });
    let pb = indicatif::ProgressBar::hidden();
    g.bench_function("rayon", |b| {
        b.iter(|| read::preprocess_batch(black_box(&items), Protocol::Full, 1.0, &pb))
    });
    g.finish();
}

fn windows(c: &mut Criterion) {
    let m = Crnn::new(ModelConfig::default(), 1);
    let w = 128;
    let x = strip(w, 2);
    let mut g = c.benchmark_group("window_embeddings_w128");
    g.bench_function("cut_windows_then_cnn_each", |b| {
        b.iter(|| {
            (0..num_steps(w))
                .map(|t| m.embed(&cut_window(&x, 3, HEIGHT, w, t), WINDOW))
                .collect::<Vec<_>>()
        })
    });
    g.bench_function("one_strided_pass", |b| b.iter(|| m.embed(black_box(&x), w)));
    g.finish();
}

fn decoding(c: &mut Criterion) {
    let m = Crnn::new(ModelConfig::default(), 1);
    let w = 128;
    let lp = housenum::engine::crnn::log_probs(&m, &strip(w, 3), 1, w);
    let t = num_steps(w);
    c.bench_function("ctc_greedy_decode_t26", |b| {
        b.iter(|| housenum::read::ctc::greedy_decode(black_box(&lp), t, 1, 0))
    });
}

fn inference(c: &mut Criterion) {
    let reader = Reader::embedded().expect("embedded model");
    let w = 96;
    let one = strip(w, 4);
    let batch: Vec<f32> = (0..32).flat_map(|i| strip(w, 10 + i)).collect();
    reader.log_probs(&batch, 32, w).unwrap();
    let mut g = c.benchmark_group("tract_32_strips_w96");
    g.bench_function("batch_1_x32", |b| {
        b.iter(|| {
            for _ in 0..32 {
                black_box(reader.log_probs(&one, 1, w).unwrap());
            }
        })
    });
    g.bench_function("batch_32", |b| {
        b.iter(|| reader.log_probs(black_box(&batch), 32, w).unwrap())
    });
    g.finish();
}

fn training_step(c: &mut Criterion) {
    let m = Crnn::new(ModelConfig::default(), 1);
    let (n, w) = (32, 96);
    let x: Vec<f32> = (0..n).flat_map(|i| strip(w, 100 + i as u64)).collect();
    let targets: Vec<Vec<u8>> = (0..n)
        .map(|i| vec![(i % 10) as u8, ((i + 3) % 10) as u8])
        .collect();
    let mut g = c.benchmark_group("train_step_batch32_w96");
    g.bench_function("all_threads", |b| {
        b.iter(|| loss_and_grad(&m, black_box(&x), n, w, &targets))
    });
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    g.bench_function("one_thread", |b| {
        b.iter(|| single.install(|| loss_and_grad(&m, black_box(&x), n, w, &targets)))
    });
    g.finish();
}

fn bf16_gemm(c: &mut Criterion) {
    use housenum::engine::{amx, layers};
    if !amx::available() {
        eprintln!("gemm_conv2: no AMX bfloat16 tiles here, skipped");
        return;
    }
    // conv2 of the shipped reader on a group of 4 strips 128 px wide: [96, 432] · [432, 3224].
    let (m, k, n) = (96, 432, 4 * 13 * 62);
    let mut r = Rng::new(4);
    let a: Vec<f32> = (0..m * k).map(|_| r.normal()).collect();
    let x: Vec<f32> = (0..k * n).map(|_| r.normal()).collect();
    let mut y = vec![0f32; m * n];
    let mut g = c.benchmark_group("gemm_conv2_96x432x3224");
    g.bench_function("f32", |b| {
        b.iter(|| layers::gemm(m, k, n, black_box(&a), false, &x, false, &mut y, 1.0))
    });
    g.bench_function("bf16_amx", |b| {
        b.iter(|| amx::gemm_bf16(m, k, n, black_box(&a), false, &x, false, &mut y, 1.0))
    });
    g.finish();
}

fn synthesis(c: &mut Criterion) {
    use housenum::data::synth::{Synth, SynthConfig};
    use rayon::prelude::*;
    // Training-strip settings (as `housenum synth --bench` and `train --synth`), procedural
    // backgrounds so the bench needs no data.
    let gen = Synth::new(
        SynthConfig {
            max_margin: 1.6,
            ..SynthConfig::default()
        },
        vec![],
    );
    let n = 256u64;
    let mut g = c.benchmark_group("synth_256_strips");
    g.throughput(criterion::Throughput::Elements(n));
    g.bench_function("serial", |b| {
        b.iter(|| {
            (0..n)
                .map(|i| gen.strip(1.0, &mut Rng::derive(7, i)).0.width)
                .sum::<usize>()
        })
    });
    g.bench_function("rayon", |b| {
        b.iter(|| {
            (0..n)
                .into_par_iter()
                .map(|i| gen.strip(1.0, &mut Rng::derive(7, i)).0.width)
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = preprocessing, windows, decoding, inference, training_step, bf16_gemm, synthesis
}
criterion_main!(benches);
