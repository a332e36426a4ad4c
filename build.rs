//! Records the sha256 of the models compiled into the library, so that `housenum --version`
//! and [`housenum::read::reader::EMBEDDED_MODEL_SHA256`] name exactly what is inside.

use sha2::{Digest, Sha256};

fn main() {
    for (file, var) in [
        ("onnx/housenum.onnx", "HOUSENUM_READER_SHA256"),
        ("onnx/localiser.onnx", "HOUSENUM_LOCALISER_SHA256"),
        ("onnx/detector.onnx", "HOUSENUM_DETECTOR_SHA256"),
    ] {
        println!("cargo:rerun-if-changed={file}");
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {file}: {e}"));
        let hex: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        println!("cargo:rustc-env={var}={hex}");
    }
}
