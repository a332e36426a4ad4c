//! The `housenum` command line: a thin layer over the library.
//!
//! Exit codes: 0 success; 1 some inputs could not be read (`read`), each reported on stderr
//! naming the file; 2 bad arguments, an unusable model or data set, or another error; 3 `read`
//! abstained below `--min-confidence`; 4 `read` found no number in some photo.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

/// `housenum --version`: the version and the compiled-in models' identity.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nreader     onnx/housenum.onnx   sha256 ",
    env!("HOUSENUM_READER_SHA256"),
    "\nlocaliser  onnx/localiser.onnx  sha256 ",
    env!("HOUSENUM_LOCALISER_SHA256"),
    "\ndetector   onnx/detector.onnx   sha256 ",
    env!("HOUSENUM_DETECTOR_SHA256"),
);

/// Read house numbers from street photos.
///
/// Exit codes: 0 success; 1 some input images could not be read (`read` reports each on stderr,
/// naming the file, and still reads the rest); 2 bad arguments, an unusable model or data set,
/// or any other error; 3 `read` abstained on some image (`--min-confidence`); 4 `read` found no
/// number in some image.
#[derive(Parser, Debug)]
#[command(name = "housenum", version, long_version = LONG_VERSION)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Read(cli::read::ReadArgs),
    Eval(cli::eval::EvalArgs),
    Calibrate(cli::calibrate::CalibrateArgs),
    Synth(cli::synth::SynthArgs),
    Label(cli::label::LabelArgs),
    Strips(cli::strips::StripsArgs),
    BenchStrips(cli::strips::BenchStripsArgs),
    #[cfg(feature = "train")]
    Train(cli::train::TrainArgs),
    #[cfg(feature = "train")]
    TrainLocaliser(cli::train_localiser::TrainLocaliserArgs),
    #[cfg(feature = "train")]
    TrainDetector(cli::train_detector::TrainDetectorArgs),
    #[cfg(feature = "train")]
    Export(cli::export::ExportArgs),
    #[cfg(feature = "train")]
    ExportLocaliser(cli::export_localiser::ExportLocaliserArgs),
    #[cfg(feature = "train")]
    Bench(cli::bench::BenchArgs),
    /// Train a model (this build lacks it: install with `--features train`).
    #[cfg(not(feature = "train"))]
    Train {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
    /// Export a checkpoint to ONNX (this build lacks it: install with `--features train`).
    #[cfg(not(feature = "train"))]
    Export {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        args: Vec<String>,
    },
}

/// Keep freed memory in the process: the training engine allocates and frees the same large
/// buffers every step, and glibc's default (large blocks straight from and back to the kernel)
/// spends ~15 % of a step in page faults and zeroing.
#[cfg(feature = "train")]
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "train")]
    if matches!(
        cli.command,
        Command::Train(_)
            | Command::TrainLocaliser(_)
            | Command::TrainDetector(_)
            | Command::Bench(_)
    ) {
        keep_freed_memory();
    }
    let r: Result<std::process::ExitCode> = match cli.command {
        Command::Read(a) => cli::read::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Calibrate(a) => cli::calibrate::run(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Label(a) => cli::label::run(a),
        Command::Strips(a) => cli::strips::run(a),
        Command::BenchStrips(a) => cli::strips::run_bench(a),
        #[cfg(feature = "train")]
        Command::Train(a) => cli::train::run(a),
        #[cfg(feature = "train")]
        Command::TrainLocaliser(a) => cli::train_localiser::run(a),
        #[cfg(feature = "train")]
        Command::TrainDetector(a) => cli::train_detector::run(a),
        #[cfg(feature = "train")]
        Command::Export(a) => cli::export::run(a),
        #[cfg(feature = "train")]
        Command::ExportLocaliser(a) => cli::export_localiser::run(a),
        #[cfg(feature = "train")]
        Command::Bench(a) => cli::bench::run(a),
        #[cfg(not(feature = "train"))]
        Command::Train { .. } | Command::Export { .. } => Err(anyhow::anyhow!(
            "this housenum was built without training; rebuild with `cargo build --release --features train`"
        )),
    };
    match r {
        Ok(code) => code,
        // A closed pipe (`housenum read … | head`) ends the output quietly.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            std::process::ExitCode::from(2)
        }
    }
}

/// `e` and its causes, `: `-separated, each cause left out when the message before it already
/// says it (the library's errors name their I/O cause in their own message).
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}
