//! The `housenum` command line: a thin layer over the library.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

/// Read house numbers from street photos.
#[derive(Parser, Debug)]
#[command(name = "housenum", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Read the house number in one or more images.
    Read(cli::read::ReadArgs),
    /// Evaluate on a folder in the official SVHN layout.
    Eval(cli::eval::EvalArgs),
    /// Train a model on SVHN-layout data (needs the `train` feature).
    #[cfg(feature = "train")]
    Train(cli::train::TrainArgs),
    /// Export a training checkpoint to ONNX (needs the `train` feature).
    #[cfg(feature = "train")]
    Export(cli::export::ExportArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r: Result<std::process::ExitCode> = match cli.command {
        Command::Read(a) => cli::read::run(a),
        Command::Eval(a) => cli::eval::run(a),
        #[cfg(feature = "train")]
        Command::Train(a) => cli::train::run(a),
        #[cfg(feature = "train")]
        Command::Export(a) => cli::export::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
