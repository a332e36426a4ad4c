//! The first stage of the `locate` protocol, through tract: the exported localiser
//! ([`crate::localiser`]) looks at the whole photo (resized to its input size and normalised
//! like a strip) and predicts the number's box; the reader then reads that box grown by
//! [`GROW`] in both directions, as the crop protocol reads the labelled box.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::Rgb32FImage;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::export::LOC_KEY;
use crate::localiser::OUTPUTS;
use crate::preprocess::{self, Region};

/// The shipped localiser, compiled into the library.
pub static EMBEDDED_LOCALISER: &[u8] = include_bytes!("../onnx/localiser.onnx");

/// How much the predicted box grows (width and height) before it is read: the crop protocol's
/// factor, the framing the reader was trained on.
pub const GROW: f32 = 1.3;

/// A loaded localiser.
pub struct Locator {
    source: PathBuf,
    height: usize,
    width: usize,
    plan: Arc<TypedRunnableModel>,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator")
            .field("source", &self.source)
            .field("input", &(self.height, self.width))
            .finish()
    }
}

impl Locator {
    /// The localiser compiled into the binary.
    pub fn embedded() -> Result<Locator> {
        Locator::from_bytes(EMBEDDED_LOCALISER, Path::new("<embedded localiser>"))
    }

    /// A localiser from an `.onnx` file written by `housenum train-localiser --export`.
    pub fn from_path(path: &Path) -> Result<Locator> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Locator::from_bytes(&bytes, path)
    }

    /// A localiser from ONNX bytes; `source` names it in errors. The input size comes from the
    /// [`LOC_KEY`] metadata (`HEIGHTxWIDTH`); the plan is built and run once here, so a wrong
    /// model fails now, naming the file.
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Locator> {
        let err = |reason: String| Error::Model {
            path: source.to_path_buf(),
            reason,
        };
        if bytes.is_empty() {
            return Err(err("empty file".into()));
        }
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(bytes))
            .map_err(|e| err(format!("cannot parse ONNX: {e}")))?;
        let size = model
            .properties
            .get(&format!("onnx.metadata_props.{LOC_KEY}"))
            .and_then(|t| {
                t.to_plain_array_view::<String>()
                    .ok()?
                    .iter()
                    .next()
                    .cloned()
            })
            .ok_or_else(|| err(format!("no {LOC_KEY} metadata: not a housenum localiser")))?;
        let (height, width) = size
            .split_once('x')
            .and_then(|(h, w)| Some((h.parse::<usize>().ok()?, w.parse::<usize>().ok()?)))
            .filter(|&(h, w)| (1..=1024).contains(&h) && (1..=1024).contains(&w))
            .ok_or_else(|| err(format!("{LOC_KEY} metadata is not HEIGHTxWIDTH: {size:?}")))?;
        let plan = model
            .set_input_fact(0, f32::fact([1, 3, height, width]).into())
            .and_then(|_| model.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| err(format!("cannot build an inference plan: {e}")))?;
        let locator = Locator {
            source: source.to_path_buf(),
            height,
            width,
            plan,
        };
        let probe = vec![0f32; 3 * height * width];
        locator.run(&probe).map_err(|e| {
            err(format!(
                "does not run on a [1, 3, {height}, {width}] image: {e}"
            ))
        })?;
        Ok(locator)
    }

    /// Where the localiser came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The graph on one input.
    ///
    /// # Shapes
    /// `x`: `[3, height, width]` → `[4]`.
    fn run(&self, x: &[f32]) -> Result<[f32; OUTPUTS]> {
        let input = Tensor::from_shape(&[1, 3, self.height, self.width], x)
            .map_err(|e| Error::Inference(e.to_string()))?;
        let out = self
            .plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| Error::Inference(e.to_string()))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(e.to_string()))?;
        let v: Vec<f32> = view.iter().cloned().collect();
        v.try_into().map_err(|v: Vec<f32>| {
            Error::Inference(format!("localiser gave {} values, not {OUTPUTS}", v.len()))
        })
    }

    /// The number's predicted box in `img`, as `(left, top, right, bottom)` pixels.
    pub fn locate(&self, img: &Rgb32FImage) -> Result<(f32, f32, f32, f32)> {
        let (w, h) = img.dimensions();
        let mut x = preprocess::resize_region(img, Region::full(w, h), self.width, self.height);
        preprocess::normalize(&mut x);
        let b = self.run(&x)?;
        let (w, h) = (w as f32, h as f32);
        let (x0, x1) = (b[0].min(b[2]) * w, b[0].max(b[2]) * w);
        let (y0, y1) = (b[1].min(b[3]) * h, b[1].max(b[3]) * h);
        Ok((x0, y0, x1, y1))
    }

    /// The region the `locate` protocol reads with one view (`--views 1`; the first of
    /// [`crate::views::FRAMINGS`]): the predicted box grown by [`GROW`].
    pub fn region(&self, img: &Rgb32FImage) -> Result<Region> {
        Ok(preprocess::expand_region(
            self.locate(img)?,
            GROW,
            GROW,
            img.dimensions(),
        ))
    }
}
