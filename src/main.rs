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
    /// Train a model on SVHN-layout data (needs the `train` feature).
    #[cfg(feature = "train")]
    Train(cli::train::TrainArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r: Result<std::process::ExitCode> = match cli.command {
        #[cfg(feature = "train")]
        Command::Train(a) => cli::train::run(a),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
