//! indicatif progress bars for long jobs: drawn on stderr, hidden when stderr is not a terminal
//! or when the caller asks for quiet.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar of `len` steps labelled `msg`; hidden when `quiet` or when stderr is not a terminal.
pub fn bar(len: u64, msg: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if quiet || !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>12} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {prefix}",
        )
        .expect("static progress template")
        .progress_chars("=> "),
    );
    pb.set_message(msg.to_string());
    pb
}
