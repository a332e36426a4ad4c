//! Decoding a photo with limits: any supported format detected from its content, refused when
//! larger than [`MAX_SIDE`] a side or [`MAX_ALLOC`] bytes, every error naming the file.

use std::io::Cursor;
use std::path::Path;

use image::{ImageReader, Limits, Rgb32FImage};

use crate::error::{Error, Result};

/// Largest image side the decoder accepts.
pub const MAX_SIDE: u32 = 16_384;
/// Largest decoder allocation, bytes.
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// Decode an image file to RGB floats in [0, 1], with decoder limits against huge images.
///
/// # Errors
/// [`Error::Io`] (missing, directory, permissions), [`Error::Decode`] (empty, truncated,
/// unknown format), [`Error::Limits`] (larger than [`MAX_SIDE`] or [`MAX_ALLOC`]).
pub fn load_image(path: &Path) -> Result<Rgb32FImage> {
    if path.is_dir() {
        return Err(Error::Decode {
            path: path.to_path_buf(),
            reason: "is a directory, not an image file".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image(&bytes, path)
}

/// Decode image bytes (any supported format, detected from content); `path` names the source
/// in errors (use e.g. `"<stdin>"`).
pub fn decode_image(bytes: &[u8], path: &Path) -> Result<Rgb32FImage> {
    let decode_err = |reason: String| Error::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if bytes.is_empty() {
        return Err(decode_err("empty file".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| decode_err(e.to_string()))?;
    if reader.format().is_none() {
        return Err(decode_err("unknown image format".into()));
    }
    if reader.format() == Some(image::ImageFormat::Jpeg) && jpeg_is_truncated(bytes) {
        return Err(decode_err(
            "truncated JPEG (no end-of-image marker after the scan data)".into(),
        ));
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => Error::Limits {
            path: path.to_path_buf(),
            reason: format!("image exceeds decoder limits ({l}; at most {MAX_SIDE} px a side)"),
        },
        other => decode_err(other.to_string()),
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(decode_err("image has zero width or height".into()));
    }
    Ok(img.to_rgb32f())
}

/// Whether JPEG bytes stop before the end-of-image marker that must follow the last scan. The
/// JPEG decoder fills a truncated scan with grey instead of failing; this catches that case.
/// (Entropy-coded data cannot contain `FF D9`: byte stuffing forbids it.)
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    match last_sos {
        Some(p) => !bytes[p..].windows(2).any(|w| w == [0xFF, 0xD9]),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_name_the_file() {
        let p = Path::new("some/where.png");
        let e = decode_image(b"", p).unwrap_err().to_string();
        assert!(e.contains("some/where.png") && e.contains("empty"), "{e}");
        let e = decode_image(b"hello, I am text", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("some/where.png"), "{e}");
    }
}
