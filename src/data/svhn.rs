//! Reader for the official SVHN format-1 layout: a folder of `N.png` plus `digitStruct.mat`.
//!
//! `digitStruct.mat` is a MATLAB 7.3 file, i.e. HDF5 with a 512-byte user block. Its layout:
//! `/digitStruct/name` holds (N, 1) object references to uint16 character arrays, and
//! `/digitStruct/bbox` (N, 1) object references to groups with datasets `height`, `label`,
//! `left`, `top`, `width`: each a (1, 1) float64 for one-digit numbers, else (n, 1) object
//! references to (1, 1) float64s. Label 10 means the digit 0. It is read with `hdf5-pure`,
//! a pure-Rust HDF5 reader, so no system library is needed.

use std::path::{Path, PathBuf};

use hdf5_pure::{AttrValue, DType, Dataset, DatasetBuilder, File, FileBuilder, Object};
use rayon::prelude::*;

use crate::alphabet::digit_from_svhn_label;
use crate::error::{Error, Result};
use crate::read::DigitBox;

/// One labelled image.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// File name as written in `digitStruct.mat`, e.g. `"1.png"`.
    pub name: String,
    /// Full path of the image.
    pub path: PathBuf,
    /// The number, left to right, digits 0..=9.
    pub digits: Vec<u8>,
    /// One box per digit, in the same order, clamped to the image when `image_size` is known.
    pub boxes: Vec<DigitBox>,
    /// (width, height) read from the image header; `None` when the header could not be read.
    pub image_size: Option<(u32, u32)>,
}

/// A folder in the official layout, read.
#[derive(Debug, Clone)]
pub struct SvhnSet {
    /// Records whose image exists, in `digitStruct.mat` order.
    pub records: Vec<Record>,
    /// Names listed in `digitStruct.mat` whose image file is absent.
    pub missing: Vec<String>,
}

fn ds_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::DigitStruct {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Read a scalar-or-references field (`label`, `left`, ...) of one bbox group.
fn read_field(mat: &Path, ds: &Dataset, field: &str, idx: usize) -> Result<Vec<f64>> {
    let what = |e: &dyn std::fmt::Display| ds_err(mat, format!("entry {idx}, field {field}: {e}"));
    match ds.dtype().map_err(|e| what(&e))? {
        DType::ObjectReference => {
            let objs = ds.dereference().map_err(|e| what(&e))?;
            objs.into_iter()
                .map(|o| match o {
                    Object::Dataset(d) => {
                        let v = d.read_f64().map_err(|e| what(&e))?;
                        v.first()
                            .copied()
                            .ok_or_else(|| what(&"empty referenced value"))
                    }
                    _ => Err(what(&"reference to a group, expected a value")),
                })
                .collect()
        }
        _ => ds.read_f64().map_err(|e| what(&e)),
    }
}

/// One `digitStruct.mat` entry: file name, digits, boxes (not yet clamped).
pub type DigitStructEntry = (String, Vec<u8>, Vec<DigitBox>);

/// Parse `digitStruct.mat` into (name, digits, boxes) triples without touching the images.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read, [`Error::DigitStruct`] when it is not HDF5 or not
/// in the official layout (the message names the entry and field at fault).
pub fn read_digit_struct(mat: &Path) -> Result<Vec<DigitStructEntry>> {
    let meta = std::fs::metadata(mat).map_err(|e| Error::io(mat, e))?;
    if meta.is_dir() {
        return Err(ds_err(mat, "is a directory"));
    }
    let file =
        File::open(mat).map_err(|e| ds_err(mat, format!("not a readable HDF5 file: {e}")))?;
    let names = file
        .dataset("/digitStruct/name")
        .map_err(|e| ds_err(mat, format!("/digitStruct/name: {e}")))?
        .dereference()
        .map_err(|e| ds_err(mat, format!("/digitStruct/name: {e}")))?;
    let bboxes = file
        .dataset("/digitStruct/bbox")
        .map_err(|e| ds_err(mat, format!("/digitStruct/bbox: {e}")))?
        .dereference()
        .map_err(|e| ds_err(mat, format!("/digitStruct/bbox: {e}")))?;
    if names.len() != bboxes.len() {
        return Err(ds_err(
            mat,
            format!("{} names but {} bboxes", names.len(), bboxes.len()),
        ));
    }
    let mut out = Vec::with_capacity(names.len());
    for (idx, (name, bbox)) in names.into_iter().zip(bboxes).enumerate() {
        let name = match name {
            Object::Dataset(d) => {
                let codes = d
                    .read_u16()
                    .map_err(|e| ds_err(mat, format!("entry {idx}, name: {e}")))?;
                String::from_utf16(&codes)
                    .map_err(|e| ds_err(mat, format!("entry {idx}, name: {e}")))?
            }
            _ => return Err(ds_err(mat, format!("entry {idx}: name is not a dataset"))),
        };
        let group = match bbox {
            Object::Group(g) => g,
            _ => return Err(ds_err(mat, format!("entry {idx}: bbox is not a group"))),
        };
        let mut fields = Vec::with_capacity(5);
        for field in ["label", "left", "top", "width", "height"] {
            let ds = group
                .dataset(field)
                .map_err(|e| ds_err(mat, format!("entry {idx} ({name}), field {field}: {e}")))?;
            fields.push(read_field(mat, &ds, field, idx)?);
        }
        let n = fields[0].len();
        if n == 0 || fields.iter().any(|f| f.len() != n) {
            return Err(ds_err(
                mat,
                format!("entry {idx} ({name}): fields have different or zero lengths"),
            ));
        }
        let digits = fields[0]
            .iter()
            .map(|&l| {
                digit_from_svhn_label(l)
                    .ok_or_else(|| ds_err(mat, format!("entry {idx} ({name}): label {l}")))
            })
            .collect::<Result<Vec<u8>>>()?;
        let boxes = (0..n)
            .map(|i| DigitBox {
                left: fields[1][i] as f32,
                top: fields[2][i] as f32,
                width: fields[3][i] as f32,
                height: fields[4][i] as f32,
            })
            .collect();
        out.push((name, digits, boxes));
    }
    Ok(out)
}

/// The 128-byte MATLAB 7.3 header that leads the 512-byte user block: description text padded
/// to 116 bytes, an 8-byte subsystem offset (unused), version 0x0200 and the endian tag "IM".
fn matlab_header() -> Vec<u8> {
    let mut h = format!(
        "MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: housenum {}, HDF5 schema 1.00 .",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    h.resize(116, b' ');
    h.extend_from_slice(&[0u8; 8]);
    h.extend_from_slice(&[0x00, 0x02, b'I', b'M']);
    h
}

/// A MATLAB (1, 1) double.
fn matlab_double(d: &mut DatasetBuilder, v: f64) {
    d.with_f64_data(&[v])
        .with_shape(&[1, 1])
        .set_attr("MATLAB_class", AttrValue::String("double".into()));
}

/// A MATLAB (n, 1) cell of object references to `paths` (absolute HDF5 paths).
fn matlab_cell(d: &mut DatasetBuilder, paths: &[String]) {
    let p: Vec<&str> = paths.iter().map(String::as_str).collect();
    d.with_path_references(&p)
        .with_shape(&[p.len() as u64, 1])
        .set_attr("MATLAB_class", AttrValue::String("cell".into()));
}

/// Write `entries` as a `digitStruct.mat` in the official layout (see the module docs), so that
/// [`read_digit_struct`] and the official tools (MATLAB, h5py readers) read it like the real one.
/// Each entry needs at least one digit; labels are written SVHN-style (0 as 10).
///
/// # Errors
/// [`Error::DigitStruct`] for an entry without digits or with boxes and digits of different
/// lengths, or when the HDF5 writer fails; [`Error::Io`] when the file cannot be written.
pub fn write_digit_struct(mat: &Path, entries: &[DigitStructEntry]) -> Result<()> {
    let mut b = FileBuilder::new();
    b.with_userblock(512);
    b.with_userblock_content(&matlab_header());
    let mut refs = b.create_group("#refs#");
    let (mut name_paths, mut bbox_paths) = (Vec::new(), Vec::new());
    for (i, (name, digits, boxes)) in entries.iter().enumerate() {
        if digits.is_empty() || digits.len() != boxes.len() {
            return Err(ds_err(
                mat,
                format!(
                    "entry {i} ({name}): {} digits, {} boxes",
                    digits.len(),
                    boxes.len()
                ),
            ));
        }
        let codes: Vec<u16> = name.encode_utf16().collect();
        refs.create_dataset(&format!("n{i}"))
            .with_u16_data(&codes)
            .with_shape(&[codes.len() as u64, 1])
            .set_attr("MATLAB_class", AttrValue::String("char".into()))
            .set_attr("MATLAB_int_decode", AttrValue::I32(2));
        name_paths.push(format!("/#refs#/n{i}"));
        let mut g = refs.create_group(&format!("b{i}"));
        g.set_attr("MATLAB_class", AttrValue::String("struct".into()));
        let fields: [(&str, Vec<f64>); 5] = [
            ("height", boxes.iter().map(|b| b.height as f64).collect()),
            (
                "label",
                digits
                    .iter()
                    .map(|&d| if d == 0 { 10.0 } else { d as f64 })
                    .collect(),
            ),
            ("left", boxes.iter().map(|b| b.left as f64).collect()),
            ("top", boxes.iter().map(|b| b.top as f64).collect()),
            ("width", boxes.iter().map(|b| b.width as f64).collect()),
        ];
        for (field, values) in fields {
            if let [v] = values[..] {
                matlab_double(g.create_dataset(field), v);
            } else {
                let mut paths = Vec::with_capacity(values.len());
                for (k, v) in values.iter().enumerate() {
                    let leaf = format!("v{i}_{field}_{k}");
                    matlab_double(refs.create_dataset(&leaf), *v);
                    paths.push(format!("/#refs#/{leaf}"));
                }
                matlab_cell(g.create_dataset(field), &paths);
            }
        }
        refs.add_group(g.finish());
        bbox_paths.push(format!("/#refs#/b{i}"));
    }
    b.add_group(refs.finish());
    let mut top = b.create_group("digitStruct");
    top.set_attr("MATLAB_class", AttrValue::String("struct".into()));
    matlab_cell(top.create_dataset("name"), &name_paths);
    matlab_cell(top.create_dataset("bbox"), &bbox_paths);
    b.add_group(top.finish());
    let bytes = b
        .finish()
        .map_err(|e| ds_err(mat, format!("HDF5 writer: {e}")))?;
    let tmp = mat.with_extension("mat.partial");
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, mat).map_err(|e| Error::io(mat, e))
}

impl SvhnSet {
    /// Read a folder in the official layout: `dir/digitStruct.mat` and the images it names.
    /// Images listed but absent are counted in [`SvhnSet::missing`] and skipped; boxes are
    /// clamped to each image (its size read from the header only, in parallel).
    pub fn open(dir: &Path) -> Result<SvhnSet> {
        let mat = dir.join("digitStruct.mat");
        let entries = read_digit_struct(&mat)?;
        let (present, missing): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|(name, _, _)| dir.join(name).is_file());
        let records = present
            .into_par_iter()
            .map(|(name, digits, boxes)| {
                let path = dir.join(&name);
                let image_size = image::image_dimensions(&path).ok();
                let boxes = match image_size {
                    Some((w, h)) => boxes.iter().map(|b| b.clamped(w, h)).collect(),
                    None => boxes,
                };
                Record {
                    name,
                    path,
                    digits,
                    boxes,
                    image_size,
                }
            })
            .collect();
        Ok(SvhnSet {
            records,
            missing: missing.into_iter().map(|(n, _, _)| n).collect(),
        })
    }

    /// A one-line human summary of missing images: the count and the first few names.
    pub fn missing_summary(&self) -> Option<String> {
        if self.missing.is_empty() {
            return None;
        }
        let first: Vec<&str> = self.missing.iter().take(5).map(String::as_str).collect();
        Some(format!(
            "{} image(s) listed in digitStruct.mat are missing and were skipped (first: {})",
            self.missing.len(),
            first.join(", ")
        ))
    }
}

/// Split records deterministically into (train, validation): a record goes to validation when
/// a hash of its file name falls below `val_fraction`. The split depends only on names, so it
/// is stable however the folder is ordered or extended.
pub fn split_by_name(records: &[Record], val_fraction: f64) -> (Vec<Record>, Vec<Record>) {
    records
        .iter()
        .cloned()
        .partition(|r| !is_validation_name(&r.name, val_fraction))
}

/// `(training, held out)` for a run: with `fold`, [`Fold::split`] (the validation split in
/// neither); without, [`split_by_name`].
pub fn split_held_out(
    records: &[Record],
    val_fraction: f64,
    fold: Option<Fold>,
) -> (Vec<Record>, Vec<Record>) {
    match fold {
        Some(fold) => fold.split(records, val_fraction),
        None => split_by_name(records, val_fraction),
    }
}

/// Whether `name` belongs to the validation split (FNV-1a hash of the name, see [`split_by_name`]).
pub fn is_validation_name(name: &str, val_fraction: f64) -> bool {
    name_position(name) < val_fraction
}

/// Where `name` falls in `[0, 1]`: the hash behind every split ([`split_by_name`], [`Fold`]).
pub fn name_position(name: &str) -> f64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    // Final avalanche so that similar names spread uniformly.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51afd7ed558ccd);
    h ^= h >> 33;
    h as f64 / u64::MAX as f64
}

/// Fold `index` (from 1) of `count` over the names outside the validation split: the names
/// whose [`name_position`] falls in the fold's share of `[val_fraction, 1]`. Training on the
/// other folds and measuring on this one, `count` times, uses every labelled photo outside
/// validation for a decision (k-fold cross-validation) and leaves validation for reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Fold {
    /// Which fold, 1 to `count`.
    pub index: usize,
    /// How many folds.
    pub count: usize,
}

impl Fold {
    /// Whether `name` is in this fold (never when it is in the validation split).
    pub fn contains(&self, name: &str, val_fraction: f64) -> bool {
        let p = name_position(name);
        if p < val_fraction {
            return false;
        }
        let q = (p - val_fraction) / (1.0 - val_fraction);
        ((q * self.count as f64) as usize).min(self.count - 1) + 1 == self.index
    }

    /// `(training, held out)`: the records of the other folds and of this one; the validation
    /// split is in neither.
    pub fn split(&self, records: &[Record], val_fraction: f64) -> (Vec<Record>, Vec<Record>) {
        records
            .iter()
            .filter(|r| !is_validation_name(&r.name, val_fraction))
            .cloned()
            .partition(|r| !self.contains(&r.name, val_fraction))
    }
}

impl std::str::FromStr for Fold {
    type Err = String;
    /// `I/K`, e.g. `2/5`: fold 2 of 5.
    fn from_str(s: &str) -> std::result::Result<Fold, String> {
        let bad = || format!("fold `{s}`: expected I/K with 1 <= I <= K, e.g. 2/5");
        let (i, k) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            k.trim().parse().map_err(|_| bad())?,
        );
        if index < 1 || index > count || count < 2 {
            return Err(bad());
        }
        Ok(Fold { index, count })
    }
}

impl std::fmt::Display for Fold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_parse_as_one_based_i_of_k() {
        let cases: [(&str, Option<(usize, usize)>); 8] = [
            ("1/5", Some((1, 5))),
            ("5/5", Some((5, 5))),
            (" 2 / 3 ", Some((2, 3))),
            ("0/5", None),
            ("6/5", None),
            ("1/1", None),
            ("2", None),
            ("a/5", None),
        ];
        for (s, want) in cases {
            let got = s.parse::<Fold>().ok().map(|f| (f.index, f.count));
            assert_eq!(got, want, "{s:?}");
            if let Some((i, k)) = want {
                assert_eq!(s.parse::<Fold>().unwrap().to_string(), format!("{i}/{k}"));
            }
        }
    }

    #[test]
    fn folds_partition_everything_outside_validation() {
        let records: Vec<Record> = (1..=3000)
            .map(|i| Record {
                name: format!("{i}.png"),
                path: PathBuf::from(format!("{i}.png")),
                digits: vec![1],
                boxes: Vec::new(),
                image_size: None,
            })
            .collect();
        let (val_fraction, count) = (0.1, 5);
        let (_, val) = split_by_name(&records, val_fraction);
        let mut seen = std::collections::HashMap::new();
        for index in 1..=count {
            let fold = Fold { index, count };
            let (train, held) = fold.split(&records, val_fraction);
            assert_eq!(train.len() + held.len() + val.len(), records.len());
            // Each fold holds about a fifth of the 90 % outside validation.
            let share = held.len() as f64 / (records.len() - val.len()) as f64;
            assert!((share - 0.2).abs() < 0.03, "fold {fold}: {share}");
            for r in &held {
                assert!(!is_validation_name(&r.name, val_fraction));
                *seen.entry(r.name.clone()).or_insert(0) += 1;
            }
        }
        // Every name outside validation is held out exactly once.
        assert_eq!(seen.len() + val.len(), records.len());
        assert!(seen.values().all(|&n| n == 1));
    }
}
