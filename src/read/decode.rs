//! Decoding a photo with limits: any supported format detected from its content, refused when
//! larger than [`MAX_SIDE`] a side or [`MAX_ALLOC`] bytes, every error naming the file. The
//! EXIF orientation is applied, so a phone's portrait photo (stored on its side with
//! orientation 6) reads upright. HEIC/HEIF, which no pure-Rust decoder reads yet, is named and
//! refused with a way to convert it.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits, Rgb32FImage};
use rayon::prelude::*;

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
        if let Some(brand) = heif_brand(bytes) {
            return Err(decode_err(format!(
                "HEIC/HEIF image (brand `{brand}`), which housenum cannot decode: convert it to \
                 JPEG or PNG first, e.g. `heif-convert photo.heic photo.jpg` (libheif) or \
                 `magick photo.heic photo.jpg`"
            )));
        }
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
    let map = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => Error::Limits {
            path: path.to_path_buf(),
            reason: format!("image exceeds decoder limits ({l}; at most {MAX_SIDE} px a side)"),
        },
        other => decode_err(other.to_string()),
    };
    let mut decoder = reader.into_decoder().map_err(map)?;
    if decoder.total_bytes() > MAX_ALLOC {
        return Err(Error::Limits {
            path: path.to_path_buf(),
            reason: format!(
                "image exceeds decoder limits ({} bytes decoded, more than {MAX_ALLOC}; at most \
                 {MAX_SIDE} px a side)",
                decoder.total_bytes()
            ),
        });
    }
    // A missing or unreadable EXIF block leaves the image as stored.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(map)?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(decode_err("image has zero width or height".into()));
    }
    Ok(to_rgb_floats(&img))
}

/// `u8` sample → float in [0, 1], exactly as `image`'s own conversion computes it.
fn unit(v: u8) -> f32 {
    (f32::from(v) / 255.0).clamp(0.0, 1.0)
}

/// The photo as RGB floats in [0, 1], equal bit for bit to [`DynamicImage::to_rgb32f`]. 8-bit
/// RGB photos (colour JPEGs) go through a 256-entry table, rows spread over rayon's threads:
/// on a 12-megapixel photo that is several times faster than the generic conversion, which
/// cost twice the JPEG decode itself. Other layouts take the generic conversion.
pub fn to_rgb_floats(img: &DynamicImage) -> Rgb32FImage {
    let DynamicImage::ImageRgb8(rgb) = img else {
        return img.to_rgb32f();
    };
    let table: [f32; 256] = std::array::from_fn(|v| unit(v as u8));
    let (w, h) = rgb.dimensions();
    let row = w as usize * 3;
    let mut out = vec![0f32; row * h as usize];
    out.par_chunks_mut(row)
        .zip(rgb.as_raw().par_chunks(row))
        .for_each(|(dst, src)| {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = table[s as usize];
            }
        });
    Rgb32FImage::from_raw(w, h, out).expect("buffer sized to the image")
}

/// The major brand of an ISO-BMFF file of the HEIF family (HEIC, HEIF, AVIF: `ftyp` box
/// first), which the image decoders here do not read.
fn heif_brand(bytes: &[u8]) -> Option<String> {
    const BRANDS: [&[u8; 4]; 9] = [
        b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif",
    ];
    let brand = bytes.get(8..12)?;
    (bytes.get(4..8)? == b"ftyp" && BRANDS.iter().any(|b| &b[..] == brand))
        .then(|| String::from_utf8_lossy(brand).into_owned())
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
    fn float_conversion_equals_the_image_crates() {
        let rgb = image::RgbImage::from_fn(257, 3, |x, y| {
            image::Rgb([(x % 256) as u8, (x * 7 + y) as u8, 255 - (x % 256) as u8])
        });
        let grey = image::GrayImage::from_fn(256, 2, |x, _| image::Luma([x as u8]));
        let rgba = image::RgbaImage::from_fn(5, 4, |x, y| image::Rgba([x as u8, y as u8, 9, 77]));
        for img in [
            DynamicImage::ImageRgb8(rgb),
            DynamicImage::ImageLuma8(grey),
            DynamicImage::ImageRgba8(rgba),
        ] {
            let (ours, theirs) = (to_rgb_floats(&img), img.to_rgb32f());
            assert_eq!(ours.dimensions(), theirs.dimensions());
            let same = ours
                .as_raw()
                .iter()
                .zip(theirs.as_raw())
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{:?}", img.color());
        }
    }

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

    /// A 64 × 32 JPEG, left half dark and right half light, with an EXIF APP1 segment holding
    /// `orientation` (none when 0).
    fn jpeg_with_orientation(orientation: u16) -> Vec<u8> {
        let img = image::RgbImage::from_fn(64, 32, |x, _| {
            image::Rgb([if x < 32 { 20 } else { 235 }; 3])
        });
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut Cursor::new(&mut jpeg), image::ImageFormat::Jpeg)
            .unwrap();
        if orientation == 0 {
            return jpeg;
        }
        // TIFF header (little endian), one IFD entry: tag 0x0112, SHORT, count 1, the value.
        let mut tiff = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0".to_vec();
        tiff.extend(orientation.to_le_bytes());
        tiff.extend([0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend(tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend([0xFF, 0xE1]);
        out.extend(((app1.len() + 2) as u16).to_be_bytes());
        out.extend(app1);
        out.extend(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied_table() {
        // (orientation, decoded size, where the dark half ends up)
        let cases = [
            (0u16, (64u32, 32u32), "left"),
            (1, (64, 32), "left"),
            (3, (64, 32), "right"),
            (6, (32, 64), "top"),
            (8, (32, 64), "bottom"),
        ];
        let mut failures = Vec::new();
        for (o, size, dark) in cases {
            let img = decode_image(&jpeg_with_orientation(o), Path::new("p.jpg")).unwrap();
            let (w, h) = img.dimensions();
            let at = |x: u32, y: u32| img.get_pixel(x, y).0[0];
            let got = if (w, h) != size {
                "wrong size"
            } else if w > h {
                if at(4, h / 2) < at(w - 4, h / 2) {
                    "left"
                } else {
                    "right"
                }
            } else if at(w / 2, 4) < at(w / 2, h - 4) {
                "top"
            } else {
                "bottom"
            };
            if got != dark {
                failures.push(format!("orientation {o}: {w}x{h}, dark {got}, want {dark}"));
            }
        }
        assert!(failures.is_empty(), "{failures:?}");
    }

    #[test]
    fn heic_is_named_with_a_way_to_convert_it() {
        let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\0";
        let e = decode_image(heic, Path::new("IMG_0001.HEIC"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("IMG_0001.HEIC") && e.contains("HEIC") && e.contains("convert"),
            "{e}"
        );
    }
}
