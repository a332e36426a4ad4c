//! `housenum strips` and `housenum bench-strips`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use housenum::read::{Strip, HEIGHT};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::read::{expand_inputs, ModelArgs, ReadProtocol};

/// Write the strips that `read` feeds the model, for another runtime or for benchmarks: per
/// strip width W, `wW.f32` holds the strips of that width as little-endian float32 of shape
/// `[n, 3, 32, W]` (`numpy.fromfile(f, "<f4").reshape(n, 3, 32, W)`), the ONNX model's `strip`
/// input; `strips.json` lists the groups and which image and region each strip came from.
#[derive(Args, Debug)]
pub struct StripsArgs {
    /// Image files or directories of images.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// Output directory (created).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Which regions to cut (as `read --protocol`).
    #[arg(long, value_enum, default_value = "full")]
    pub protocol: ReadProtocol,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// Time the model alone, through tract, on strips written by `housenum strips`: every strip
/// read as `read` reads them (grouped by width, independent runs spread over the threads,
/// greedy CTC decoding), after one untimed pass that builds the plans. Prints strips per second
/// per run; `benches/engine.sh` runs it against onnxruntime's `session.run` on the same files.
#[derive(Args, Debug)]
pub struct BenchStripsArgs {
    /// A directory written by `housenum strips`.
    pub dir: PathBuf,
    /// Timed runs (each prints one line; `--json` gives them all and their median).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Instead, time each operator of tract's plan (one thread) and print the share of each
    /// operator kind.
    #[arg(long)]
    pub per_op: bool,
    /// With `--per-op`: strips of one width per run, up to this many (1: one at a time, as
    /// onnxruntime's `--per-op` runs them; `read` batches up to 32).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[command(flatten)]
    pub models: ModelArgs,
}

/// `strips.json`.
#[derive(Serialize, Deserialize, Debug)]
struct Index {
    /// One entry per width, in increasing width.
    groups: Vec<Group>,
    /// One entry per strip, in the order of the images and of their regions.
    strips: Vec<Entry>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Group {
    width: usize,
    count: usize,
    file: String,
}

#[derive(Serialize, Deserialize, Debug)]
struct Entry {
    path: String,
    /// `[x0, y0, x1, y1]` in the image, pixels.
    region: [u32; 4],
    width: usize,
    /// Row in its width's file.
    row: usize,
}

/// Run `strips`.
pub fn run(a: StripsArgs) -> Result<ExitCode> {
    let reader = a.models.reader()?;
    let protocol = a.protocol.into();
    let (inputs, empty) = expand_inputs(&a.images);
    for d in &empty {
        eprintln!("error: {}: no images there", d.display());
    }
    let cut: Vec<(PathBuf, housenum::Result<_>)> = inputs
        .par_iter()
        .map(|p| {
            let strips =
                housenum::read::load_image(p).and_then(|img| reader.strips(&img, protocol, &[]));
            (p.clone(), strips)
        })
        .collect();
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut by_width: std::collections::BTreeMap<usize, Vec<&Strip>> = Default::default();
    let mut entries = Vec::new();
    let mut failed = empty.len();
    for (path, strips) in &cut {
        match strips {
            Ok(strips) => {
                for (r, s) in strips {
                    let rows = by_width.entry(s.width).or_default();
                    entries.push(Entry {
                        path: path.display().to_string(),
                        region: [r.x0, r.y0, r.x1, r.y1],
                        width: s.width,
                        row: rows.len(),
                    });
                    rows.push(s);
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {e}");
            }
        }
    }
    let mut groups = Vec::new();
    for (w, rows) in &by_width {
        let file = format!("w{w}.f32");
        let path = a.out.join(&file);
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        for s in rows {
            for v in &s.data {
                f.write_all(&v.to_le_bytes())?;
            }
        }
        f.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        groups.push(Group {
            width: *w,
            count: rows.len(),
            file,
        });
    }
    let index = Index {
        groups,
        strips: entries,
    };
    let path = a.out.join("strips.json");
    std::fs::write(&path, serde_json::to_vec(&index)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "{}: {} strips of {} widths from {} images",
        a.out.display(),
        index.strips.len(),
        index.groups.len(),
        cut.len() - (failed - empty.len())
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The strips of a `housenum strips` directory, in its index's order.
fn load_strips(dir: &Path) -> Result<Vec<Strip>> {
    let path = dir.join("strips.json");
    let index: Index = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{}: not a strips index", path.display()))?;
    let mut groups = std::collections::HashMap::new();
    for g in &index.groups {
        let p = dir.join(&g.file);
        let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        let per = 3 * HEIGHT * g.width;
        if bytes.len() != g.count * per * 4 {
            bail!(
                "{}: {} bytes, expected {} strips of width {}",
                p.display(),
                bytes.len(),
                g.count,
                g.width
            );
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        groups.insert(g.width, (values, per));
    }
    index
        .strips
        .iter()
        .map(|e| {
            let (values, per) = groups
                .get(&e.width)
                .with_context(|| format!("{}: no group of width {}", path.display(), e.width))?;
            let data = values
                .get(e.row * per..(e.row + 1) * per)
                .with_context(|| format!("{}: row {} out of range", path.display(), e.row))?;
            Ok(Strip {
                width: e.width,
                data: data.to_vec(),
            })
        })
        .collect()
}

/// Run `bench-strips`.
pub fn run_bench(a: BenchStripsArgs) -> Result<ExitCode> {
    if a.runs == 0 || a.batch == 0 {
        bail!("--runs and --batch must be positive");
    }
    let reader = a.models.reader()?;
    let strips = load_strips(&a.dir)?;
    let refs: Vec<&Strip> = strips.iter().collect();
    reader.read_strips(&refs).context("warm-up pass")?;
    // Written, not printed: a closed pipe (`… | head`) then ends the output quietly.
    let mut out = std::io::stdout().lock();
    if a.per_op {
        let (ops, total) = reader.profile_ops(&refs, a.batch)?;
        let shares: Vec<serde_json::Value> = ops
            .iter()
            .map(|(op, secs)| serde_json::json!({"op": op, "seconds": secs, "share": secs / total}))
            .collect();
        if a.json {
            writeln!(
                out,
                "{}",
                serde_json::json!({"strips": strips.len(), "batch": a.batch, "seconds": total, "ms_per_strip": 1e3 * total / strips.len() as f64, "ops": shares})
            )?;
        } else {
            writeln!(
                out,
                "{} strips, one thread, batches of up to {}: {:.3} ms per strip",
                strips.len(),
                a.batch,
                1e3 * total / strips.len() as f64
            )?;
            for (op, secs) in &ops {
                writeln!(out, "{op:<24} {:5.1} %", 100.0 * secs / total)?;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut rates = Vec::new();
    for _ in 0..a.runs {
        let start = Instant::now();
        let read = reader.read_strips(&refs)?;
        let secs = start.elapsed().as_secs_f64();
        std::hint::black_box(read);
        let rate = strips.len() as f64 / secs;
        if !a.json {
            writeln!(out, "{rate:.1}")?;
        }
        rates.push(rate);
    }
    if a.json {
        let mut sorted = rates.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[(sorted.len() - 1) / 2];
        writeln!(
            out,
            "{}",
            serde_json::json!({"strips": strips.len(), "threads": rayon::current_num_threads(), "strips_per_second": rates, "median": median})
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
