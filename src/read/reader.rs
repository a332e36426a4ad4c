//! Inference through tract-onnx: the ONNX model is parsed once; one optimised plan with a
//! symbolic batch and width is built on first use and reused for every later call.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use tract_onnx::prelude::*;

use crate::alphabet::NUM_CLASSES;
use crate::error::{Error, Result};
use crate::read::calibration::Calibration;
use crate::read::ctc::{greedy_decode, Decoded};
use crate::read::detect::Detector;
use crate::read::framings::{self, ViewReading};
use crate::read::locate::Locator;
use crate::read::metadata::{self, CALIBRATION_KEY};
use crate::read::metadata::{PAD_KEY, STRETCH_KEY, WINDOW_KEY};
use crate::read::search;
use crate::read::verify;
use crate::read::DigitBox;
use crate::read::{self, Geometry, Protocol, Region, Strip, HEIGHT};

/// The shipped model, compiled into the library.
pub static EMBEDDED_MODEL: &[u8] = include_bytes!("../../onnx/housenum.onnx");

/// sha256 of [`EMBEDDED_MODEL`], lowercase hex (recorded at build time).
pub const EMBEDDED_MODEL_SHA256: &str = env!("HOUSENUM_READER_SHA256");

type Plan = Arc<TypedRunnableModel>;

/// The default [`Reader::set_second_look`] threshold: answers less confident than this look
/// again, with [`SECOND_LOOK_MAX_AREA`]. 0.98, the early exit's "sure" when it was chosen: with the [`verify`]
/// verifier choosing, looking at every answer but a certain one read as much and cost `read
/// DIR` a tenth of its speed (docs/experiments.md, "A learned verifier"; with the tiles' look,
/// 0.9 was chosen: "A second look in tiles").
pub const SECOND_LOOK_BELOW: f32 = 0.98;

/// The second look runs only when the region read covers less than this share of the photo's
/// area: a number small in the photo, which the first look may have missed. Without it the
/// detector's second look read slightly more on the development split but cost `read DIR` a
/// quarter of its speed on SVHN's photos (docs/experiments.md, "A detector of our own").
pub const SECOND_LOOK_MAX_AREA: f64 = 0.04;

/// An answer less sure than this (or than [`Reader::second_look_below`], if lower) in a photo of
/// at least [`LOOK_UNSURE_PIXELS`] gets the detector's second look whatever its region's size: in
/// photos framed looser than SVHN's, an unsure answer's large region is often not the number
/// (docs/experiments.md, "Looking again wherever unsure": +1.1 points at 4× over 1,628 photos).
pub const LOOK_UNSURE_BELOW: f32 = 0.7;

/// [`LOOK_UNSURE_BELOW`]'s photos: larger than 9 in 10 of SVHN's training photos (their median
/// is 4,846 pixels), so that `read DIR` of SVHN-sized photos keeps its speed.
pub const LOOK_UNSURE_PIXELS: f64 = 24_149.0;

/// Photos of at least this many pixels (a quarter megapixel: more than 999 in 1,000 of SVHN's
/// photos, whose median is 4,806 pixels, and less than a 640 × 480 photo) always get the
/// detector's second look, however sure the first answer: in a photo framed as people take
/// them, the localiser's one box often holds part of the number, read surely
/// (docs/experiments.md, "Photos as people take them": +4.75 points on made-up house fronts,
/// SVHN's photos as they are unchanged).
pub const LOOK_ALWAYS_PIXELS: f64 = 250_000.0;

/// Under `locate`, an answer less sure than this is reported as no number
/// ([`Reader::set_no_number_below`], [`Decoded::withhold`]): half of the canvases without a
/// number read as an unsure number, and right readings this unsure are rare. Chosen on the fold
/// photos as the highest threshold that costs no set of SVHN's photos more than 0.25 points
/// (docs/experiments.md, "Photos cropped close to the number", rule ZT).
pub const NO_NUMBER_BELOW: f32 = 0.12;

/// An answer's region at least this many times taller than wide may hold digits stacked one
/// above the next: it is also read cut into bands laid side by side ([`Reader::unstacked`]).
/// Chosen on the development split: a lone digit's region is up to about twice as tall as
/// wide, and 2 held a single "1" for two (docs/experiments.md, "Numbers stacked vertically").
pub const STACKED_ASPECT: f32 = 2.5;

/// Stacked numbers are tried with 2 up to this many digits.
pub const STACKED_MAX: usize = 4;

/// How many tiles of the [`Reader::second_look`] must read a number for it to be a candidate:
/// a number is seen by several overlapping tiles, a stray mark or a cut number by one.
pub const SECOND_LOOK_VOTES: usize = 2;

/// Where the [`Reader::second_look`] looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookWith {
    /// The localiser in 3 × 3 tiles of the photo, the tiles voting.
    Tiles,
    /// The detector's candidates over a pyramid of the photo ([`crate::read::detect`]), each
    /// box placed by the localiser in its surroundings.
    Detector,
}

/// Where [`Reader::second_look`] looks unless set ([`Reader::set_look_with`]).
/// The detector: chosen on the development split (docs/experiments.md, "A detector of our own").
pub const LOOK_WITH: LookWith = LookWith::Detector;

/// A place the detector's look ([`Reader::look_candidates`]) read: the detector's candidate,
/// the box the localiser placed in it, and that box's reading with all framings.
#[derive(Debug, Clone)]
pub struct LookCandidate {
    /// The detector's box, `(left, top, right, bottom)` pixels.
    pub bounds: (f32, f32, f32, f32),
    /// The detector's score: its best cell's value, in `[0, 1]`.
    pub score: f32,
    /// The box the localiser placed around `bounds` (twice), `(left, top, right, bottom)`.
    pub rect: (f32, f32, f32, f32),
    /// The framing of `rect` that answered ([`Reader::read_best`]).
    pub region: Region,
    /// The calibrated reading of `rect` with all framings.
    pub reading: Decoded,
}

/// An image, the region read, the reading, and what the detector's look saw when listed
/// ([`Reader::read_prepared_images_listed`]).
pub type Listed<I> = (I, Region, Decoded, Option<Look>);

/// What the detector's look saw in a photo ([`Reader::read_prepared_images_listed`]).
#[derive(Debug, Clone)]
pub struct Look {
    /// The first answer (the localiser's box in the whole photo): its region and reading.
    pub first: (Region, Decoded),
    /// Every candidate, the detector's order (best score first).
    pub candidates: Vec<LookCandidate>,
    /// The verifier's score of the first answer ([`verify::scores`]).
    pub first_score: f32,
    /// The verifier's score of each candidate, `None` for those read as no number (never
    /// chosen).
    pub scores: Vec<Option<f32>>,
    /// Whether the second look ran ([`Reader::maybe_second_look`]): if not, the first answer
    /// stands whatever the candidates read.
    pub looked: bool,
    /// The candidate whose box answered, if one did.
    pub answered: Option<usize>,
}

/// What [`Reader::choose_candidate`] decided: the answer, the candidate that gave it if one did,
/// and the verifier's scores (the first answer's, then each candidate's, `None` for those read
/// as no number).
struct Verdict {
    answer: (Region, Decoded),
    answered: Option<usize>,
    first_score: f32,
    scores: Vec<Option<f32>>,
}

/// A loaded model, ready to read strips.
pub struct Reader {
    source: PathBuf,
    model: InferenceModel,
    calibration: Calibration,
    geometry: Geometry,
    plan: Mutex<Option<Plan>>,
    /// The localiser of [`Protocol::Locate`]: the embedded one unless set, loaded on first use.
    locator: Mutex<Option<Arc<Locator>>>,
    /// The detector of the second look ([`LookWith::Detector`]): the embedded one unless set,
    /// loaded on first use.
    detector: Mutex<Option<Arc<Detector>>>,
    /// Where the second look looks.
    look_with: LookWith,
    /// The second look runs only for regions under this share of the photo's area.
    look_area: f64,
    /// How many [`framings::FRAMINGS`] of a box `crop` and `locate` read.
    views: usize,
    /// Read the other framings only when the first one's calibrated confidence is below this
    /// ([`Reader::set_early_exit`]); `None` reads them all.
    early_exit: Option<f32>,
    /// Under `locate`, look again in tiles when the answer's confidence is below this
    /// ([`Reader::second_look`]); `None`: never.
    second_look: Option<f32>,
    /// Members of the model: 1, or an ensemble's `M` ([`crate::export::ensemble_to_onnx`]).
    members: usize,
    /// The margin of the localiser's look again when its first box fills the photo's width
    /// ([`Locator::locate_with`]); `None`: no such look.
    margin: Option<(f32, f32)>,
    /// Under `locate`, answers less sure than this are reported as no number
    /// ([`Reader::set_no_number_below`]); `None`: never.
    no_number_below: Option<f32>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("source", &self.source)
            .finish()
    }
}

/// Largest batch of equal-width strips given to one plan run. One plan serves every batch size
/// and width, and a strip reads the same, bit for bit, alone or in any batch (`FusedLstm`'s
/// recurrence multiplies the batch's states by each row of its weights once, in the same order
/// for every strip). On the 2,026 full-protocol strips, one thread, batches of up to 32 took
/// 2.23 ms a strip against 2.57 ms one at a time (the LSTM 0.38 against 0.65 ms;
/// docs/experiments.md, "Batches of one width"). Batches run in parallel on rayon's threads.
pub const MAX_BATCH: usize = 32;

/// The regions an image is read in, each with its strip (what [`Reader::strips`] gives).
pub type Candidates = Vec<(Region, Strip)>;

impl Reader {
    /// The model compiled into the binary.
    pub fn embedded() -> Result<Reader> {
        Reader::from_bytes(EMBEDDED_MODEL, Path::new("<embedded model>"))
    }

    /// A model from an `.onnx` file.
    pub fn from_path(path: &Path) -> Result<Reader> {
        if path.is_dir() {
            return Err(Error::Model {
                path: path.to_path_buf(),
                reason: "is a directory".into(),
            });
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Reader::from_bytes(&bytes, path)
    }

    /// A model from ONNX bytes; `source` names it in errors. The model is parsed and its
    /// interface checked here (input `[N, 3, 32, W]`, output `[T, N, 11]`, or `[M, T, N, 11]` for
    /// an ensemble of `M` members, checked by building the plan and running it on one strip).
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Reader> {
        let err = |reason: String| metadata::model_error(source, reason);
        let model = metadata::parse_model(bytes, source)?;
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(err(format!(
                "expected 1 input and 1 output, found {} and {}",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let metadata = |key: &str| metadata::metadata(&model, key, source);
        let calibration = match metadata(CALIBRATION_KEY)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| err(format!("{CALIBRATION_KEY} metadata is not valid: {e}")))?,
            None => Calibration::IDENTITY,
        };
        let pad = match metadata(PAD_KEY)? {
            Some(text) => text
                .parse()
                .map_err(|e| err(format!("{PAD_KEY} metadata is not valid: {e}")))?,
            None => 0,
        };
        let stretch = match metadata(STRETCH_KEY)? {
            Some(text) => text
                .parse::<f32>()
                .ok()
                .filter(|s| read::STRETCH_RANGE.contains(s))
                .ok_or_else(|| err(format!("{STRETCH_KEY} metadata is not valid: {text:?}")))?,
            None => 1.0,
        };
        let window = match metadata(WINDOW_KEY)? {
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|w| (read::window::WINDOW..=read::window::MAX_WINDOW).contains(w))
                .ok_or_else(|| err(format!("{WINDOW_KEY} metadata is not valid: {text:?}")))?,
            None => read::window::WINDOW,
        };
        let reader = Reader {
            source: source.to_path_buf(),
            model,
            calibration,
            geometry: Geometry {
                stretch,
                pad,
                window,
            },
            plan: Mutex::new(None),
            locator: Mutex::new(None),
            detector: Mutex::new(None),
            look_with: LOOK_WITH,
            look_area: SECOND_LOOK_MAX_AREA,
            views: framings::FRAMINGS.len(),
            early_exit: Some(framings::EARLY_EXIT),
            second_look: Some(SECOND_LOOK_BELOW),
            members: 1,
            margin: None,
            no_number_below: Some(NO_NUMBER_BELOW),
        };
        // Build the plan now so that a wrong model fails here, naming the file.
        let plan = reader.plan()?;
        let probe = Tensor::zero::<f32>(&[1, 3, HEIGHT, read::MIN_WIDTH])
            .map_err(|e| err(e.to_string()))?;
        let out = plan
            .run(tvec!(probe.into_tvalue()))
            .map_err(|e| err(format!("does not run on a [1, 3, 32, 32] strip: {e}")))?;
        let shape = out[0].shape().to_vec();
        let (members, steps) = match shape.as_slice() {
            [t, 1, c] if *c == NUM_CLASSES => (1, *t),
            [m, t, 1, c] if *c == NUM_CLASSES && *m > 0 => (*m, *t),
            _ => {
                return Err(err(format!(
                    "output shape {shape:?} is neither [T, 1, {NUM_CLASSES}] nor [M, T, 1, {NUM_CLASSES}]"
                )))
            }
        };
        let want = read::window::steps_of(read::MIN_WIDTH + 2 * pad, window);
        if steps != want {
            return Err(err(format!(
                "a {}-px strip gives {steps} steps, not the {want} that {PAD_KEY} = {pad} and {WINDOW_KEY} = {window} give",
                read::MIN_WIDTH
            )));
        }
        Ok(Reader { members, ..reader })
    }

    /// Where the model came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The confidence calibration applied to every reading (from the model's metadata;
    /// identity when it has none).
    pub fn calibration(&self) -> Calibration {
        self.calibration
    }

    /// How the model's strips are made and padded (from its metadata): the horizontal
    /// stretch preprocessing applies (1 when absent), the zero columns the model adds on
    /// each side of a strip (0 when absent) and its window width ([`read::window::WINDOW`] when
    /// absent): step `t` sees columns `window_span_of(t, window) − pad` of the strip.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// How many models the reader is: 1, or an ensemble's members, whose readings every
    /// protocol combines as it combines framings ([`framings::combine`]).
    pub fn members(&self) -> usize {
        self.members
    }

    /// How many framings of a box the `crop` and `locate` protocols read ([`framings`]; all of
    /// [`framings::FRAMINGS`] unless set).
    pub fn views(&self) -> usize {
        self.views
    }

    /// Read `n` framings of a box under `crop` and `locate` (clamped to 1 ..= 7); 1 reads only
    /// the box grown 30 %.
    pub fn set_views(&mut self, n: usize) {
        self.views = n.clamp(1, framings::FRAMINGS.len());
    }

    /// Under `crop` and `locate`, read the first framing (the box grown 30 %) of every image first,
    /// and the others only for images whose reading of it has a calibrated confidence below
    /// `threshold`; those answer exactly as when every framing is read. `None` (or a threshold
    /// above 1) reads every framing of every image. [`framings::EARLY_EXIT`] unless set.
    pub fn set_early_exit(&mut self, threshold: Option<f32>) {
        self.early_exit = threshold.filter(|&t| t <= 1.0);
    }

    /// Under `locate`, give answers less confident than `below` (whose region covers less than
    /// [`SECOND_LOOK_MAX_AREA`] of the photo) a [`Reader::second_look`]; `None` never does.
    /// [`SECOND_LOOK_BELOW`] unless set.
    pub fn set_second_look(&mut self, below: Option<f32>) {
        self.second_look = below;
    }

    /// Under `locate`, where the localiser's first box fills the photo's width
    /// ([`read::locate::fills_width`]), it looks again at the photo framed in `margin`
    /// (fractions of its width and height on each side, [`Locator::locate_with`]); `None`
    /// (unless set): never.
    pub fn set_margin(&mut self, margin: Option<(f32, f32)>) {
        self.margin = margin;
    }

    /// Under `locate`, report an answer less sure than `below` as no number, its digits
    /// [`Decoded::withheld`]; `None` never does. [`NO_NUMBER_BELOW`] unless set.
    pub fn set_no_number_below(&mut self, below: Option<f32>) {
        self.no_number_below = below;
    }

    /// The no-number threshold ([`Reader::set_no_number_below`]).
    pub fn no_number_below(&self) -> Option<f32> {
        self.no_number_below
    }

    /// `answer` as `protocol`'s final answer: under `locate`, withheld when less sure than
    /// [`Reader::no_number_below`].
    fn answered(&self, protocol: Protocol, (region, d): (Region, Decoded)) -> (Region, Decoded) {
        match self.no_number_below {
            Some(below) if protocol == Protocol::Locate => (region, d.withhold(below)),
            _ => (region, d),
        }
    }

    /// The margin of the localiser's look again ([`Reader::set_margin`]).
    pub fn margin(&self) -> Option<(f32, f32)> {
        self.margin
    }

    /// Where the second look looks ([`LOOK_WITH`] unless set).
    pub fn set_look_with(&mut self, with: LookWith) {
        self.look_with = with;
    }

    /// The second look runs only where the region read covers less than `share` of the photo's
    /// area ([`SECOND_LOOK_MAX_AREA`] unless set; 1 or more: wherever the answer is unsure).
    pub fn set_look_area(&mut self, share: f64) {
        self.look_area = share;
    }

    /// Use this detector for [`LookWith::Detector`] instead of the embedded one.
    pub fn set_detector(&mut self, detector: Detector) {
        *self.detector.lock().expect("detector lock") = Some(Arc::new(detector));
    }

    /// The detector of [`LookWith::Detector`] (the embedded one, loaded now, unless one was
    /// set).
    pub fn detector(&self) -> Result<Arc<Detector>> {
        let mut slot = self.detector.lock().expect("detector lock");
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let d = Arc::new(Detector::embedded()?);
        *slot = Some(d.clone());
        Ok(d)
    }

    /// The second-look threshold ([`Reader::set_second_look`]).
    pub fn second_look_below(&self) -> Option<f32> {
        self.second_look
    }

    /// The early-exit threshold ([`Reader::set_early_exit`]).
    pub fn early_exit(&self) -> Option<f32> {
        self.early_exit
    }

    /// Replace the confidence calibration (e.g. with the identity, to see raw confidences).
    pub fn set_calibration(&mut self, calibration: Calibration) {
        self.calibration = calibration;
    }

    /// The optimised plan, for any batch size and width (built once, then cached).
    fn plan(&self) -> Result<Plan> {
        let mut slot = self.plan.lock().expect("plan cache lock");
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let err = |e: TractError| Error::Model {
            path: self.source.clone(),
            reason: format!("cannot build an inference plan: {e}"),
        };
        let m = self.model.clone();
        let (n, w) = (m.symbols.sym("N"), m.symbols.sym("W"));
        let fact = f32::fact([n.to_dim(), 3.to_dim(), HEIGHT.to_dim(), w.to_dim()]);
        let plan = read::plan::build(m, fact.into()).map_err(err)?;
        *slot = Some(plan.clone());
        Ok(plan)
    }

    /// Log-probabilities of a batch of equal-width strips, every member's.
    ///
    /// # Shapes
    /// `x`: `[n, 3, HEIGHT, w]` → `[m, t, n, NUM_CLASSES]`, `m` = [`Reader::members`],
    /// `t = num_steps(w + 2·pad)`.
    pub fn log_probs(&self, x: &[f32], n: usize, w: usize) -> Result<(Vec<f32>, usize)> {
        let plan = self.plan()?;
        let input = Tensor::from_shape(&[n, 3, HEIGHT, w], x)
            .map_err(|e| Error::Inference(e.to_string()))?;
        let out = plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| Error::Inference(e.to_string()))?;
        let view = out[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| Error::Inference(e.to_string()))?;
        let t = view.shape()[view.ndim() - 3];
        Ok((view.iter().cloned().collect(), t))
    }

    /// Time each operator of the optimised plan over `strips` on this thread, in runs of up to
    /// `batch` strips of one width: per operator kind (its name in the plan: `DirectConv`,
    /// `FusedLstm`, …) the seconds spent in it, largest first, and the total. What `housenum
    /// bench-strips --per-op` prints.
    pub fn profile_ops(
        &self,
        strips: &[&Strip],
        batch: usize,
    ) -> Result<(Vec<(String, f64)>, f64)> {
        let plan = self.plan()?;
        let mut per_op: HashMap<String, f64> = HashMap::new();
        let mut total = 0.0;
        for (w, run) in width_batches(strips, batch.max(1)) {
            let x = stacked(strips, &run);
            let input = Tensor::from_shape(&[run.len(), 3, HEIGHT, w], &x)
                .map_err(|e| Error::Inference(e.to_string()))?;
            let mut state =
                TypedSimpleState::new(&plan).map_err(|e| Error::Inference(e.to_string()))?;
            let start = std::time::Instant::now();
            state
                .run_plan_with_eval(tvec!(input.into_tvalue()), |ctx, op_state, node, inputs| {
                    let t = std::time::Instant::now();
                    let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                    *per_op.entry(node.op().name().to_string()).or_default() +=
                        t.elapsed().as_secs_f64();
                    out
                })
                .map_err(|e| Error::Inference(e.to_string()))?;
            total += start.elapsed().as_secs_f64();
        }
        let mut v: Vec<(String, f64)> = per_op.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok((v, total))
    }

    /// Read many strips: grouped by width into batches of at most [`MAX_BATCH`] (strips of
    /// one width give the same result batched or alone), decoded greedily, in input order.
    /// Each reading's `confidence` is its calibrated probability ([`Decoded::log_prob`] through
    /// the model's calibration).
    pub fn read_strips(&self, strips: &[&Strip]) -> Result<Vec<Decoded>> {
        let mut out = self.read_strips_raw(strips)?;
        for d in &mut out {
            d.confidence = self.calibration.apply(d.log_prob);
        }
        Ok(out)
    }

    /// [`Reader::read_strips`] with raw (uncalibrated) confidences.
    fn read_strips_raw(&self, strips: &[&Strip]) -> Result<Vec<Decoded>> {
        Ok(self
            .read_views(strips)?
            .into_iter()
            .map(|members| framings::combine_into(members).1)
            .collect())
    }

    /// Read many strips, keeping each one's log-probabilities: grouped by width into batches of
    /// at most [`MAX_BATCH`] (strips of one width give the same result batched or alone),
    /// decoded greedily (raw confidences), in input order; per strip, one reading per member.
    ///
    /// # Shapes
    /// Each reading's `log_probs` is `[t, NUM_CLASSES]`.
    fn read_views(&self, strips: &[&Strip]) -> Result<Vec<Vec<ViewReading>>> {
        // Batches of equal width, run in parallel (each tract run is single-threaded; the
        // search protocol gives one image several widths).
        let mut jobs = width_batches(strips, MAX_BATCH);
        // The largest runs first, so that the last ones to finish are small and no thread
        // waits long for the others (the results do not depend on the order).
        jobs.sort_by_key(|(w, run)| std::cmp::Reverse(w * run.len()));
        let m = self.members;
        type Batch = Vec<(usize, Vec<ViewReading>)>;
        let done: Vec<Result<Batch>> = jobs
            .par_iter()
            .map(|(w, chunk)| {
                let (w, chunk) = (*w, chunk.as_slice());
                let x = stacked(strips, chunk);
                let n = chunk.len();
                let (lp, t) = self.log_probs(&x, n, w)?;
                Ok(chunk
                    .iter()
                    .enumerate()
                    .map(|(b, &i)| {
                        let members = (0..m)
                            .map(|k| {
                                let log_probs: Vec<f32> = (0..t)
                                    .flat_map(|tt| {
                                        lp[((k * t + tt) * n + b) * NUM_CLASSES..][..NUM_CLASSES]
                                            .iter()
                                    })
                                    .cloned()
                                    .collect();
                                let decoded = greedy_decode(&log_probs, t, 1, 0);
                                ViewReading {
                                    decoded,
                                    log_probs,
                                    t,
                                }
                            })
                            .collect();
                        (i, members)
                    })
                    .collect())
            })
            .collect();
        let mut out: Vec<Option<Vec<ViewReading>>> = vec![None; strips.len()];
        for batch in done {
            for (i, v) in batch? {
                out[i] = Some(v);
            }
        }
        Ok(out
            .into_iter()
            .map(|v| v.expect("every strip decoded"))
            .collect())
    }

    /// Read several images, each given as one or more candidate regions with their strips (what
    /// [`Reader::strips`] gives for `protocol`): the strips of all images are read together in
    /// width-grouped passes (under `crop` and `locate` with an early exit, the first framing of
    /// every image first, then the other framings of the images it left unsure: see
    /// [`Reader::set_early_exit`]), and each image's answer is chosen on raw confidences — under
    /// [`Protocol::Search`] by [`search::choose`] (the reading most voted for by the crops that
    /// keep the whole image's central number), otherwise by [`framings::combine`] (the reading
    /// with the highest summed log-probability over the framings of the box; its confidence is
    /// then the mean of those log-probabilities, calibrated). An ensemble's members are more
    /// experts: under `crop`/`locate` every member's reading of every framing is scored over all
    /// of them; under `search` each region's members are combined first. Returns, per image, the
    /// answering candidate's index and its reading (confidence calibrated).
    ///
    /// # Panics
    /// When an image has no candidate.
    pub fn read_best(
        &self,
        images: &[Vec<(Region, &Strip)>],
        protocol: Protocol,
    ) -> Result<Vec<(usize, Decoded)>> {
        assert!(
            images.iter().all(|c| !c.is_empty()),
            "an image needs at least one candidate strip"
        );
        if protocol == Protocol::Search {
            let flat: Vec<&Strip> = images.iter().flatten().map(|(_, s)| *s).collect();
            let mut read = self.read_views(&flat)?.into_iter();
            return Ok(images
                .iter()
                .map(|cands| {
                    let regions: Vec<Region> = cands.iter().map(|(r, _)| *r).collect();
                    let decoded: Vec<Decoded> = read
                        .by_ref()
                        .take(cands.len())
                        .map(|members| framings::combine_into(members).1)
                        .collect();
                    let best = search::choose(&regions, &decoded, self.geometry);
                    let d = decoded.into_iter().nth(best).expect("index in range");
                    (best, self.calibrated(d))
                })
                .collect());
        }
        // Framings of a box: the first of every image, then the rest where it is unsure.
        let threshold = self.early_exit.unwrap_or(f32::INFINITY);
        let firsts: Vec<&Strip> = if threshold.is_finite() {
            images.iter().map(|c| c[0].1).collect()
        } else {
            Vec::new()
        };
        let first_read = self.read_views(&firsts)?;
        let mut answers: Vec<Option<(usize, Decoded)>> = vec![None; images.len()];
        let mut unsure = Vec::new();
        for (k, cands) in images.iter().enumerate() {
            if let Some(members) = first_read.get(k) {
                // As framings::combine_into, keeping the log-probabilities for a full read.
                let (i, log_prob) = framings::combine(members);
                let mut d = members[i].decoded.clone();
                d.log_prob = log_prob;
                let d = self.calibrated(d);
                if cands.len() == 1 || d.confidence >= threshold {
                    answers[k] = Some((i / self.members, d));
                    continue;
                }
            }
            unsure.push(k);
        }
        let skip = usize::from(threshold.is_finite());
        let rest: Vec<&Strip> = unsure
            .iter()
            .flat_map(|&k| images[k][skip..].iter().map(|(_, s)| *s))
            .collect();
        let mut read = self.read_views(&rest)?.into_iter();
        let mut first_read = first_read.into_iter().map(Some).collect::<Vec<_>>();
        for &k in &unsure {
            // Every member's reading of every framing, framing-major.
            let mut all: Vec<ViewReading> = first_read
                .get_mut(k)
                .and_then(Option::take)
                .unwrap_or_default();
            all.extend(read.by_ref().take(images[k].len() - skip).flatten());
            let (i, d) = framings::combine_into(all);
            answers[k] = Some((i / self.members, self.calibrated(d)));
        }
        Ok(answers
            .into_iter()
            .map(|a| a.expect("every image answered"))
            .collect())
    }

    /// `d` with its confidence calibrated from its log-probability.
    fn calibrated(&self, mut d: Decoded) -> Decoded {
        d.confidence = self.calibration.apply(d.log_prob);
        d
    }

    /// Read a batch of images prepared elsewhere (each an item `T` the caller keeps, e.g. the
    /// decoded image, with its candidates as [`Reader::strips`] gives them, or the error that
    /// stopped its preparation): the candidates of every prepared image in one
    /// [`Reader::read_best`] pass, and should that pass fail, each image alone, so that every
    /// error stays its image's. Returns, in order, each item with the region that answered and
    /// the reading. For batch jobs (`read`, `label`) that report a bad image and go on.
    pub fn read_prepared<T>(
        &self,
        prepared: Vec<Result<(T, Candidates)>>,
        protocol: Protocol,
    ) -> Vec<Result<(T, Region, Decoded)>> {
        let groups: Vec<Vec<(Region, &Strip)>> = prepared
            .iter()
            .flatten()
            .map(|(_, c)| c.iter().map(|(r, s)| (*r, s)).collect())
            .collect();
        let read: Vec<Result<(usize, Decoded)>> = match self.read_best(&groups, protocol) {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(_) => groups
                .into_iter()
                .map(|g| self.read_best(&[g], protocol).map(|mut v| v.remove(0)))
                .collect(),
        };
        let mut read = read.into_iter();
        prepared
            .into_iter()
            .map(|p| {
                let (item, cands) = p?;
                let (i, d) = read.next().expect("one reading per prepared image")?;
                Ok((item, cands[i].0, d))
            })
            .collect()
    }

    /// Whether [`Reader::read_prepared_images`] looks at a photo again under `protocol`, after
    /// its strips are made (to unstack a tall number, or for a second look): `crop` and
    /// `locate`. Under the others a caller may drop the photo once it has the strips.
    pub fn looks_at_photo(protocol: Protocol) -> bool {
        matches!(protocol, Protocol::Crop | Protocol::Locate)
    }

    /// Read one strip.
    pub fn read_strip(&self, strip: &Strip) -> Result<Decoded> {
        Ok(self.read_strips(&[strip])?.remove(0))
    }

    /// Read one image file as `housenum read` does (locate protocol).
    pub fn read_file(&self, path: &Path) -> Result<Decoded> {
        self.read_file_with(path, Protocol::Locate, &[])
    }

    /// Read one image file under a protocol (crop needs the digit boxes).
    pub fn read_file_with(
        &self,
        path: &Path,
        protocol: Protocol,
        boxes: &[DigitBox],
    ) -> Result<Decoded> {
        let img = read::load_image(path)?;
        Ok(self.read_image(&img, protocol, boxes)?.1)
    }

    /// Use this localiser for [`Protocol::Locate`] instead of the embedded one.
    pub fn set_locator(&mut self, locator: Locator) {
        *self.locator.lock().expect("locator lock") = Some(Arc::new(locator));
    }

    /// The localiser of [`Protocol::Locate`] (the embedded one, loaded now, unless one was set).
    pub fn locator(&self) -> Result<Arc<Locator>> {
        let mut slot = self.locator.lock().expect("locator lock");
        if let Some(l) = slot.as_ref() {
            return Ok(l.clone());
        }
        let l = Arc::new(Locator::embedded()?);
        *slot = Some(l.clone());
        Ok(l)
    }

    /// The strips of every region `protocol` reads in `img`, with their regions: for `crop`
    /// (with boxes) and `locate` the [`Reader::views`] framings of the box (the box grown 30 %
    /// first; [`Protocol::Locate`] runs the localiser for it), for `search` the whole image
    /// first and its crops, for `full` the whole image.
    pub fn strips(
        &self,
        img: &image::Rgb32FImage,
        protocol: Protocol,
        boxes: &[DigitBox],
    ) -> Result<Vec<(Region, Strip)>> {
        let rect = match protocol {
            Protocol::Locate => self.locator()?.locate_with(img, self.margin)?,
            Protocol::Crop if !boxes.is_empty() => read::boxes_union(boxes),
            _ => {
                let stretch = self.geometry.stretch;
                return Ok(read::protocol_strips(img, protocol, boxes, stretch));
            }
        };
        Ok(self.framed_strips(img, rect))
    }

    /// The [`Reader::views`] framings of the box `rect` = `(left, top, right, bottom)` pixels in
    /// `img`, with their strips: what `crop` and `locate` read once they have the box.
    pub fn framed_strips(
        &self,
        img: &image::Rgb32FImage,
        rect: (f32, f32, f32, f32),
    ) -> Vec<(Region, Strip)> {
        let stretch = self.geometry.stretch;
        framings::framings(rect, self.views, img.dimensions())
            .into_iter()
            .map(|r| (r, read::strip_from_region(img, r, stretch)))
            .collect()
    }

    /// Read a decoded image under a protocol: the reading and the region it came from (under
    /// `locate`, with the [`Reader::second_look`] where the first is unsure, and an answer less
    /// sure than [`Reader::no_number_below`] withheld as no number).
    pub fn read_image(
        &self,
        img: &image::Rgb32FImage,
        protocol: Protocol,
        boxes: &[DigitBox],
    ) -> Result<(Region, Decoded)> {
        let cands = self.strips(img, protocol, boxes)?;
        let (i, d) = self
            .read_best(&[cands.iter().map(|(r, s)| (*r, s)).collect()], protocol)?
            .remove(0);
        let answer = self.maybe_second_look(img, protocol, (cands[i].0, d))?;
        Ok(self.answered(protocol, self.unstacked(img, protocol, answer)?))
    }

    /// Under `crop` and `locate`, an answer whose region is at least [`STACKED_ASPECT`] times
    /// taller than wide is read again as 2 to [`STACKED_MAX`] stacked digits
    /// ([`read::unstacked_strip`]: the region's rows laid side by side), in one pass: the rows
    /// its profile shows ([`read::stacked_rows`], when it shows at least 2), then 2 to
    /// [`STACKED_MAX`] equal bands. The most confident non-empty of those readings (the first
    /// among equals) answers if it is more confident than `answer`.
    pub fn unstacked(
        &self,
        img: &image::Rgb32FImage,
        protocol: Protocol,
        answer: (Region, Decoded),
    ) -> Result<(Region, Decoded)> {
        let region = answer.0;
        if !matches!(protocol, Protocol::Crop | Protocol::Locate)
            || (region.height() as f32) < STACKED_ASPECT * region.width() as f32
        {
            return Ok(answer);
        }
        let stretch = self.geometry.stretch;
        let found = read::stacked_rows(img, region);
        let mut hypotheses: Vec<Vec<(u32, u32)>> = (2..=STACKED_MAX)
            .map(|n| read::equal_rows(region, n))
            .collect();
        if found.len() >= 2 {
            hypotheses.insert(0, found);
        }
        let strips: Vec<Strip> = hypotheses
            .iter()
            .map(|rows| read::unstacked_strip(img, region, rows, stretch))
            .collect();
        let refs: Vec<&Strip> = strips.iter().collect();
        let mut best = answer;
        for members in self.read_views(&refs)? {
            let d = self.calibrated(framings::combine_into(members).1);
            if !d.digits.is_empty() && d.confidence > best.1.confidence {
                best = (region, d);
            }
        }
        Ok(best)
    }

    /// Under `locate`, the [`Reader::second_look`] when `answer`'s confidence is below
    /// [`Reader::second_look_below`] and its region covers less than [`SECOND_LOOK_MAX_AREA`]
    /// of the photo; with the detector, also when it is below [`LOOK_UNSURE_BELOW`] in a photo
    /// of [`LOOK_UNSURE_PIXELS`], and in every photo of [`LOOK_ALWAYS_PIXELS`]; otherwise
    /// `answer`.
    pub fn maybe_second_look(
        &self,
        img: &image::Rgb32FImage,
        protocol: Protocol,
        answer: (Region, Decoded),
    ) -> Result<(Region, Decoded)> {
        if self.wants_second_look(img, protocol, &answer) {
            self.second_look(img, answer)
        } else {
            Ok(answer)
        }
    }

    /// Whether [`Reader::maybe_second_look`] looks again for `answer`.
    fn wants_second_look(
        &self,
        img: &image::Rgb32FImage,
        protocol: Protocol,
        (region, d): &(Region, Decoded),
    ) -> bool {
        let pixels = img.width() as f64 * img.height() as f64;
        let area = region.width() as f64 * region.height() as f64;
        protocol == Protocol::Locate
            && looks_again(
                d.confidence,
                area,
                pixels,
                self.second_look,
                self.look_area,
                self.look_with == LookWith::Detector,
            )
    }

    /// Look again for the number, for a photo whose `locate` reading `answer` is unsure: the
    /// localiser, coarse to fine, in each of [`Locator::tiles`] (where a number small in the
    /// photo is larger to it; [`Locator::locate_within`]); the first framing of every tile's box
    /// is read in one pass, and the tiles whose box is centred outside `answer`'s region (not the
    /// same number seen again, cut by a tile) vote: the non-empty reading that the most tiles gave
    /// (at least [`SECOND_LOOK_VOTES`]; ties: the most confident) has the box of its most
    /// confident tile read with all framings ([`Reader::read_best`]). That reading answers if it
    /// is more confident than `answer`.
    pub fn second_look(
        &self,
        img: &image::Rgb32FImage,
        answer: (Region, Decoded),
    ) -> Result<(Region, Decoded)> {
        if self.look_with == LookWith::Detector {
            return self.second_look_detected(img, answer);
        }
        let locator = self.locator()?;
        let size = img.dimensions();
        let boxes: Vec<(f32, f32, f32, f32)> = Locator::tiles(size.0, size.1)
            .par_iter()
            .map(|&t| locator.locate_within(img, t))
            .collect::<Result<_>>()?;
        // Tiles vote: per distinct non-empty reading, how many tiles read it and its most
        // confident tile.
        let mut votes: Vec<(Vec<u8>, usize, usize, f32)> = Vec::new();
        let seen = answer.0;
        for (k, d) in self.first_readings(img, &boxes)?.into_iter().enumerate() {
            let (l, t, r, b) = boxes[k];
            if d.digits.is_empty() || seen.contains((l + r) / 2.0, (t + b) / 2.0) {
                continue;
            }
            match votes.iter_mut().find(|v| v.0 == d.digits) {
                Some(v) => {
                    v.1 += 1;
                    if d.confidence > v.3 {
                        (v.2, v.3) = (k, d.confidence);
                    }
                }
                None => votes.push((d.digits, 1, k, d.confidence)),
            }
        }
        let best = votes
            .iter()
            .filter(|v| v.1 >= SECOND_LOOK_VOTES)
            .fold(None::<&(Vec<u8>, usize, usize, f32)>, |acc, v| match acc {
                Some(a) if (a.1, a.3) >= (v.1, v.3) => acc,
                _ => Some(v),
            })
            .map(|v| (v.2, v.3));
        match best {
            Some((k, c)) if c > answer.1.confidence => self.read_instead(img, boxes[k], answer),
            _ => Ok(answer),
        }
    }

    /// The calibrated reading of each box's first framing (the box grown 30 %), in one pass.
    fn first_readings(
        &self,
        img: &image::Rgb32FImage,
        boxes: &[(f32, f32, f32, f32)],
    ) -> Result<Vec<Decoded>> {
        let (size, stretch) = (img.dimensions(), self.geometry.stretch);
        let firsts: Vec<Strip> = boxes
            .iter()
            .map(|&b| read::strip_from_region(img, framings::framings(b, 1, size)[0], stretch))
            .collect();
        let refs: Vec<&Strip> = firsts.iter().collect();
        Ok(self
            .read_views(&refs)?
            .into_iter()
            .map(|members| self.calibrated(framings::combine_into(members).1))
            .collect())
    }

    /// The box `rect` of `img` read with all framings ([`Reader::read_best`]): that reading if
    /// it is more confident than `answer`, else `answer`. How the tiles' second look answers.
    fn read_instead(
        &self,
        img: &image::Rgb32FImage,
        rect: (f32, f32, f32, f32),
        answer: (Region, Decoded),
    ) -> Result<(Region, Decoded)> {
        let (region, d) = self.read_all_framings(img, rect)?;
        Ok(if d.confidence > answer.1.confidence {
            (region, d)
        } else {
            answer
        })
    }

    /// The box `rect` of `img` read with all framings ([`Reader::read_best`]): the best
    /// framing's region and reading.
    fn read_all_framings(
        &self,
        img: &image::Rgb32FImage,
        rect: (f32, f32, f32, f32),
    ) -> Result<(Region, Decoded)> {
        let cands = self.framed_strips(img, rect);
        let (i, d) = self
            .read_best(
                &[cands.iter().map(|(r, s)| (*r, s)).collect()],
                Protocol::Locate,
            )?
            .remove(0);
        Ok((cands[i].0, d))
    }

    /// The detector's candidates in `img` ([`Detector::candidates`]), each box placed by the
    /// localiser in its surroundings twice ([`Locator::locate_around`], the second time around
    /// the first box), with each box's calibrated reading with all framings
    /// ([`Reader::read_best`]), all read in one pass.
    pub fn look_candidates(&self, img: &image::Rgb32FImage) -> Result<Vec<LookCandidate>> {
        let (detector, locator) = (self.detector()?, self.locator()?);
        let found = detector.candidates(img)?;
        let rects: Vec<(f32, f32, f32, f32)> = found
            .par_iter()
            .map(|c| locator.locate_around(img, locator.locate_around(img, c.bounds)?))
            .collect::<Result<_>>()?;
        if rects.is_empty() {
            return Ok(Vec::new());
        }
        let framed: Vec<Vec<(Region, Strip)>> =
            rects.iter().map(|&r| self.framed_strips(img, r)).collect();
        let groups: Vec<Vec<(Region, &Strip)>> = framed
            .iter()
            .map(|g| g.iter().map(|(r, s)| (*r, s)).collect())
            .collect();
        Ok(self
            .read_best(&groups, Protocol::Locate)?
            .into_iter()
            .zip(found.iter().zip(&rects).zip(&framed))
            .map(|((i, reading), ((c, &rect), g))| LookCandidate {
                bounds: c.bounds,
                score: c.score,
                rect,
                region: g[i].0,
                reading,
            })
            .collect())
    }

    /// The second look with the detector ([`LookWith::Detector`]) over its
    /// [`Reader::look_candidates`]: the [`verify`] verifier chooses between `answer` and the
    /// candidates read as numbers.
    pub fn second_look_detected(
        &self,
        img: &image::Rgb32FImage,
        answer: (Region, Decoded),
    ) -> Result<(Region, Decoded)> {
        let candidates = self.look_candidates(img)?;
        Ok(Self::choose_candidate(img, &candidates, answer).answer)
    }

    /// [`Reader::second_look_detected`] over `candidates`.
    fn choose_candidate(
        img: &image::Rgb32FImage,
        candidates: &[LookCandidate],
        answer: (Region, Decoded),
    ) -> Verdict {
        let numbers: Vec<usize> = (0..candidates.len())
            .filter(|&k| !candidates[k].reading.digits.is_empty())
            .collect();
        let choices: Vec<verify::Choice<'_>> = numbers
            .iter()
            .map(|&k| verify::Choice {
                rect: candidates[k].rect,
                score: candidates[k].score,
                reading: &candidates[k].reading,
            })
            .collect();
        let scored = verify::scores(
            &verify::WEIGHTS,
            &choices,
            (answer.0, &answer.1),
            img.dimensions(),
        );
        let chosen = verify::choose(&scored).map(|j| numbers[j]);
        let (first, scored) = scored;
        let mut scores = vec![None; candidates.len()];
        for (&k, s) in numbers.iter().zip(scored) {
            scores[k] = Some(s);
        }
        match chosen {
            Some(k) => {
                let c = &candidates[k];
                Verdict {
                    answer: (c.region, c.reading.clone()),
                    answered: Some(k),
                    first_score: first,
                    scores,
                }
            }
            None => Verdict {
                answer,
                answered: None,
                first_score: first,
                scores,
            },
        }
    }

    /// Read images prepared elsewhere with their candidates, as [`Reader::read_prepared`], then
    /// give the unsure ones under `locate` a [`Reader::second_look`] and withhold the answers
    /// less sure than [`Reader::no_number_below`]. What `read` and `eval` run.
    /// `I` is the image, owned or borrowed.
    pub fn read_prepared_images<I>(
        &self,
        prepared: Vec<Result<(I, Candidates)>>,
        protocol: Protocol,
    ) -> Vec<Result<(I, Region, Decoded)>>
    where
        I: std::borrow::Borrow<image::Rgb32FImage> + Send,
    {
        self.read_prepared_images_listed(prepared, protocol, false)
            .into_iter()
            .map(|r| r.map(|(img, region, d, _)| (img, region, d)))
            .collect()
    }

    /// [`Reader::read_prepared_images`], and with `list` what the detector's look saw in each
    /// image ([`Look`]; the detector runs on every image then, the answers unchanged): what
    /// `read --candidates` lists.
    pub fn read_prepared_images_listed<I>(
        &self,
        prepared: Vec<Result<(I, Candidates)>>,
        protocol: Protocol,
        list: bool,
    ) -> Vec<Result<Listed<I>>>
    where
        I: std::borrow::Borrow<image::Rgb32FImage> + Send,
    {
        self.read_prepared(prepared, protocol)
            .into_par_iter()
            .map(|r| {
                let (img, region, d) = r?;
                let answer = (region, d);
                let look = self.wants_second_look(img.borrow(), protocol, &answer);
                if !list {
                    let answer = if look {
                        self.second_look(img.borrow(), answer)?
                    } else {
                        answer
                    };
                    let (region, d) =
                        self.answered(protocol, self.unstacked(img.borrow(), protocol, answer)?);
                    return Ok((img, region, d, None));
                }
                let candidates = self.look_candidates(img.borrow())?;
                let first = answer.clone();
                let verdict = Self::choose_candidate(img.borrow(), &candidates, answer.clone());
                let (first_score, scores) = (verdict.first_score, verdict.scores);
                let ((region, d), answered) = if look && self.look_with == LookWith::Detector {
                    (verdict.answer, verdict.answered)
                } else if look {
                    (self.second_look(img.borrow(), answer)?, None)
                } else {
                    (answer, None)
                };
                let (region, d) = self.answered(
                    protocol,
                    self.unstacked(img.borrow(), protocol, (region, d))?,
                );
                let look = Look {
                    first,
                    candidates,
                    first_score,
                    scores,
                    looked: look,
                    answered,
                };
                Ok((img, region, d, Some(look)))
            })
            .collect()
    }
}

/// `strips` grouped into runs of at most `batch` strips of one width, in increasing width and
/// then input order: each run's width and the strips' indices. The strips of one width make as
/// few runs as `batch` allows, of sizes that differ by at most one (33 strips: 17 and 16).
fn width_batches(strips: &[&Strip], batch: usize) -> Vec<(usize, Vec<usize>)> {
    let mut by_width: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, s) in strips.iter().enumerate() {
        by_width.entry(s.width).or_default().push(i);
    }
    by_width
        .into_iter()
        .flat_map(|(w, idx)| {
            // As few runs as `batch` allows, of sizes that differ by at most one.
            let runs = idx.len().div_ceil(batch);
            let (size, longer) = (idx.len() / runs, idx.len() % runs);
            let mut rest = idx.as_slice();
            (0..runs)
                .map(|r| {
                    let (run, tail) = rest.split_at(size + usize::from(r < longer));
                    rest = tail;
                    (w, run.to_vec())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The strips `idx` of `strips` (one width) one after another: a batch `[n, 3, HEIGHT, w]`.
fn stacked(strips: &[&Strip], idx: &[usize]) -> Vec<f32> {
    idx.iter()
        .flat_map(|&i| strips[i].data.iter().copied())
        .collect()
}

/// The second look's trigger: an answer `confidence` sure whose region covers `area` pixels of a
/// photo of `pixels` looks again when it is below `below` (`None`: never) and `area` is under
/// `look_area · pixels`; with the detector, also when it is below [`LOOK_UNSURE_BELOW`] (or
/// `below`, if lower) in a photo of at least [`LOOK_UNSURE_PIXELS`], and always in a photo of at
/// least [`LOOK_ALWAYS_PIXELS`].
pub fn looks_again(
    confidence: f32,
    area: f64,
    pixels: f64,
    below: Option<f32>,
    look_area: f64,
    detector: bool,
) -> bool {
    below.is_some_and(|below| {
        (confidence < below && area < look_area * pixels)
            || (detector
                && confidence < below.min(LOOK_UNSURE_BELOW)
                && pixels >= LOOK_UNSURE_PIXELS)
            || (detector && pixels >= LOOK_ALWAYS_PIXELS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs hold one width each, every strip once, in increasing width and input order, as few
    /// per width as the batch allows and of sizes that differ by at most one.
    #[test]
    fn width_batches_are_few_and_even() {
        // (widths of the strips, batch, expected runs as (width, indices))
        type Case = (Vec<usize>, usize, Vec<(usize, Vec<usize>)>);
        let cases: Vec<Case> = vec![
            (vec![], 4, vec![]),
            (vec![50, 40, 50], 4, vec![(40, vec![1]), (50, vec![0, 2])]),
            (vec![30; 5], 4, vec![(30, vec![0, 1, 2]), (30, vec![3, 4])]),
            (vec![30; 5], 1, (0..5).map(|i| (30, vec![i])).collect()),
            (
                vec![30, 60, 30, 30, 30, 30, 30, 30, 30],
                3,
                vec![
                    (30, vec![0, 2, 3]),
                    (30, vec![4, 5, 6]),
                    (30, vec![7, 8]),
                    (60, vec![1]),
                ],
            ),
        ];
        for (widths, batch, want) in cases {
            let strips: Vec<Strip> = widths
                .iter()
                .map(|&width| Strip {
                    width,
                    data: Vec::new(),
                })
                .collect();
            let refs: Vec<&Strip> = strips.iter().collect();
            assert_eq!(width_batches(&refs, batch), want, "{widths:?} by {batch}");
        }
    }

    /// Strips of one width read the same, bit for bit, alone and in batches of any size, with
    /// the AVX2 kernels and with the portable ones: what lets [`Reader::read_strips`] batch
    /// whatever strips share a width.
    #[test]
    fn a_strip_reads_the_same_alone_and_batched() {
        let reader = Reader::embedded().expect("embedded reader");
        for (w, n) in [(40, 2), (77, 5), (131, 7)] {
            let mut rng = crate::rng::Rng::new((w * 10 + n) as u64);
            let len = 3 * HEIGHT * w;
            let x: Vec<f32> = (0..n * len).map(|_| rng.normal()).collect();
            for portable in [false, true] {
                let run = |x: &[f32], n: usize| {
                    let go = || reader.log_probs(x, n, w).expect("log_probs");
                    if portable {
                        crate::read::simd::portable_only(go)
                    } else {
                        go()
                    }
                };
                let (batched, t) = run(&x, n);
                for b in 0..n {
                    let (alone, ta) = run(&x[b * len..][..len], 1);
                    assert_eq!(t, ta);
                    for step in 0..t {
                        let got = &batched[(step * n + b) * NUM_CLASSES..][..NUM_CLASSES];
                        let want = &alone[step * NUM_CLASSES..][..NUM_CLASSES];
                        let same = got
                            .iter()
                            .zip(want)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "width {w}, strip {b} of {n}, step {step}, portable {portable}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_second_look_runs_where_the_answer_is_unsure_or_the_photo_large() {
        let (below, area) = (Some(SECOND_LOOK_BELOW), SECOND_LOOK_MAX_AREA);
        let svhn = 5_000.0; // pixels of a median SVHN photo
        let loose = LOOK_UNSURE_PIXELS; // a photo framed looser than SVHN's
        let phone = 12e6;
        let vga = 640.0 * 480.0;
        // (confidence, region's share of the photo, photo's pixels, `--second-look`, detector,
        // looks)
        let cases = [
            (0.99, 0.01, svhn, below, true, false),
            (0.97, 0.01, svhn, below, true, true),
            (0.97, 0.5, svhn, below, true, false),
            (0.5, 0.5, svhn, below, true, false),
            (0.69, 0.5, loose, below, true, true),
            (0.71, 0.5, loose, below, true, false),
            (0.69, 0.5, loose - 1.0, below, true, false),
            (0.69, 0.5, loose, below, false, false),
            (0.69, 0.5, loose, Some(0.6), true, false),
            (0.59, 0.5, loose, Some(0.6), true, true),
            (0.99, 0.5, phone, below, true, true),
            (0.99, 0.5, vga, below, true, true),
            (0.99, 0.5, LOOK_ALWAYS_PIXELS, below, true, true),
            (0.99, 0.5, LOOK_ALWAYS_PIXELS - 1.0, below, true, false),
            (0.99, 0.5, 375_804.0 / 2.0, below, true, false), // half SVHN's largest photo
            (0.99, 0.5, phone, below, false, false),
            (0.1, 0.01, phone, None, true, false),
        ];
        for (conf, share, pixels, below, detector, want) in cases {
            assert_eq!(
                looks_again(conf, share * pixels, pixels, below, area, detector),
                want,
                "confidence {conf}, share {share}, {pixels} px, below {below:?}, detector {detector}"
            );
        }
    }
}
