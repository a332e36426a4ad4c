//! Where in the photo the reader looks: the [`Protocol`]s, pixel [`Region`]s and the labelled
//! [`DigitBox`]es the `crop` protocol grows into its region.

/// What part of the image the reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// The standard SVHN protocol: the union of the digit boxes grown by 30 %.
    Crop,
    /// The image as given.
    Full,
    /// The whole image and [`SEARCH_CROPS`] centred crops of it, each read; the readings of the
    /// whole image and of the crops that keep its central number vote (see [`crate::read::search`];
    /// `housenum read --protocol search`). Needs no boxes.
    Search,
    /// The box the localiser predicts ([`crate::read::locate`]) grown by 30 %, like `Crop` with a
    /// predicted box instead of the labelled one. Needs no boxes, but the localiser: only
    /// [`crate::Reader::strips`] reads it (the functions here read the whole image for it).
    /// What `housenum read` does.
    Locate,
}

/// The centred crops [`Protocol::Search`] reads besides the whole image, as (width, height)
/// fractions of the image. Photos are usually framed on the number but carry other text,
/// neighbouring digits and clutter to its sides; a tighter crop removes them, the whole image
/// stays a candidate for numbers that are not centred. Chosen on the training split, never on
/// validation.
pub const SEARCH_CROPS: [(f32, f32); 5] = [
    (0.7, 1.0),
    (0.5, 1.0),
    (0.7, 0.85),
    (0.5, 0.85),
    (0.35, 0.85),
];

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Crop => "crop",
            Protocol::Full => "full",
            Protocol::Search => "search",
            Protocol::Locate => "locate",
        })
    }
}

/// A pixel rectangle `[x0, x1) × [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Left, inclusive.
    pub x0: u32,
    /// Top, inclusive.
    pub y0: u32,
    /// Right, exclusive.
    pub x1: u32,
    /// Bottom, exclusive.
    pub y1: u32,
}

impl Region {
    /// The whole `width × height` image.
    pub fn full(width: u32, height: u32) -> Region {
        Region {
            x0: 0,
            y0: 0,
            x1: width,
            y1: height,
        }
    }
    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.x1 - self.x0
    }
    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.y1 - self.y0
    }
    /// Whether the point `(x, y)` (pixels, f32) lies inside: `x0 ≤ x < x1`, `y0 ≤ y < y1`.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x0 as f32 && x < self.x1 as f32 && y >= self.y0 as f32 && y < self.y1 as f32
    }
}

/// One digit's box in image pixels (left, top, width, height), clamped to the image when its
/// size is known.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DigitBox {
    /// Left edge, pixels.
    pub left: f32,
    /// Top edge, pixels.
    pub top: f32,
    /// Width, pixels.
    pub width: f32,
    /// Height, pixels.
    pub height: f32,
}

impl DigitBox {
    /// Right edge.
    pub fn right(&self) -> f32 {
        self.left + self.width
    }
    /// Bottom edge.
    pub fn bottom(&self) -> f32 {
        self.top + self.height
    }
    /// This box scaled by `(fx, fy)`, then moved by `(dx, dy)` pixels.
    pub fn scaled(&self, (fx, fy): (f32, f32), (dx, dy): (f32, f32)) -> DigitBox {
        DigitBox {
            left: self.left * fx + dx,
            top: self.top * fy + dy,
            width: self.width * fx,
            height: self.height * fy,
        }
    }

    /// This box clamped to a `width × height` image.
    pub fn clamped(&self, width: u32, height: u32) -> DigitBox {
        let (w, h) = (width as f32, height as f32);
        let l = self.left.clamp(0.0, w);
        let t = self.top.clamp(0.0, h);
        let r = self.right().clamp(l, w);
        let b = self.bottom().clamp(t, h);
        DigitBox {
            left: l,
            top: t,
            width: r - l,
            height: b - t,
        }
    }

    /// `n` boxes side by side, each an equal share of the width of `(left, top, right,
    /// bottom)` and its whole height: digit boxes for a number whose box alone is known (what
    /// `housenum label` writes).
    pub fn split_even(rect: (f32, f32, f32, f32), n: usize) -> Vec<DigitBox> {
        let (l, t, r, b) = rect;
        let w = (r - l) / n.max(1) as f32;
        (0..n)
            .map(|i| DigitBox {
                left: l + w * i as f32,
                top: t,
                width: w,
                height: b - t,
            })
            .collect()
    }
}

/// The region a protocol reads first from an image of size `(width, height)` with digit
/// `boxes` (the only one for [`Protocol::Crop`] and [`Protocol::Full`]; boxes are ignored by
/// the others, and an empty box list gives the full image).
pub fn protocol_region(protocol: Protocol, size: (u32, u32), boxes: &[DigitBox]) -> Region {
    let (w, h) = size;
    if protocol != Protocol::Crop || boxes.is_empty() {
        return Region::full(w, h);
    }
    expand_region(boxes_union(boxes), 1.3, 1.3, size)
}

/// Every region a protocol reads (the first is [`protocol_region`]'s);
/// [`crate::read::search::choose`] picks the answer among their readings.
pub fn protocol_regions(protocol: Protocol, size: (u32, u32), boxes: &[DigitBox]) -> Vec<Region> {
    let first = protocol_region(protocol, size, boxes);
    if protocol != Protocol::Search {
        return vec![first];
    }
    let (w, h) = size;
    let centred = |fw: f32, fh: f32| {
        let cw = ((w as f32 * fw).round() as u32).clamp(1, w);
        let ch = ((h as f32 * fh).round() as u32).clamp(1, h);
        let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
        Region {
            x0,
            y0,
            x1: x0 + cw,
            y1: y0 + ch,
        }
    };
    std::iter::once(first)
        .chain(SEARCH_CROPS.iter().map(|&(fw, fh)| centred(fw, fh)))
        .collect()
}

/// The union of digit boxes as `(left, top, right, bottom)`.
pub fn boxes_union(boxes: &[DigitBox]) -> (f32, f32, f32, f32) {
    boxes.iter().fold(
        (
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        ),
        |(l, t, r, b), x| {
            (
                l.min(x.left),
                t.min(x.top),
                r.max(x.right()),
                b.max(x.bottom()),
            )
        },
    )
}

/// Grow the float rectangle `(l, t, r, b)` by factors `fx`, `fy` around its centre, round outwards
/// and clamp to the image; never empty.
pub fn expand_region(rect: (f32, f32, f32, f32), fx: f32, fy: f32, size: (u32, u32)) -> Region {
    let (l, t, r, b) = rect;
    let (cx, cy) = ((l + r) / 2.0, (t + b) / 2.0);
    let (hw, hh) = ((r - l) * fx / 2.0, (b - t) * fy / 2.0);
    let clamp = |v: f32, hi: u32| (v.max(0.0) as u32).min(hi);
    let x0 = clamp((cx - hw).floor(), size.0 - 1);
    let y0 = clamp((cy - hh).floor(), size.1 - 1);
    let x1 = clamp((cx + hw).ceil(), size.0).max(x0 + 1);
    let y1 = clamp((cy + hh).ceil(), size.1).max(y0 + 1);
    Region { x0, y0, x1, y1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_region_grows_by_thirty_percent_and_clamps() {
        let b = DigitBox {
            left: 10.0,
            top: 10.0,
            width: 20.0,
            height: 40.0,
        };
        let r = protocol_region(Protocol::Crop, (100, 100), &[b]);
        assert_eq!((r.x0, r.y0, r.x1, r.y1), (7, 4, 33, 56));
        let edge = DigitBox {
            left: 0.0,
            top: 0.0,
            width: 100.0,
            height: 100.0,
        };
        let r = protocol_region(Protocol::Crop, (100, 100), &[edge]);
        assert_eq!(r, Region::full(100, 100));
        assert_eq!(
            protocol_region(Protocol::Full, (50, 60), &[b]),
            Region::full(50, 60)
        );
    }

    #[test]
    fn protocol_regions_table() {
        let boxes = [DigitBox {
            left: 40.0,
            top: 20.0,
            width: 10.0,
            height: 20.0,
        }];
        let full = Region::full(100, 60);
        // (protocol, boxes?, number of regions, first region)
        let crop = protocol_region(Protocol::Crop, (100, 60), &boxes);
        let cases = [
            (Protocol::Crop, true, 1, crop),
            (Protocol::Crop, false, 1, full),
            (Protocol::Full, true, 1, full),
            (Protocol::Search, true, 1 + SEARCH_CROPS.len(), full),
            (Protocol::Search, false, 1 + SEARCH_CROPS.len(), full),
        ];
        for (protocol, with_boxes, n, first) in cases {
            let b: &[DigitBox] = if with_boxes { &boxes } else { &[] };
            let r = protocol_regions(protocol, (100, 60), b);
            assert_eq!(r.len(), n, "{protocol}");
            assert_eq!(r[0], first, "{protocol}");
        }
        assert_eq!((crop.x0, crop.x1, crop.y0, crop.y1), (38, 52, 17, 43));
        // Search crops: inside the image, centred, of the listed fractions.
        for (w, h) in [(100, 60), (1, 1), (7, 3), (333, 101)] {
            let r = protocol_regions(Protocol::Search, (w, h), &[]);
            for (reg, (fw, fh)) in r[1..].iter().zip(SEARCH_CROPS) {
                assert!(reg.x1 <= w && reg.y1 <= h && reg.width() >= 1 && reg.height() >= 1);
                assert!((reg.x0 + reg.x1).abs_diff(w) <= 1 && (reg.y0 + reg.y1).abs_diff(h) <= 1);
                assert!((reg.width() as f32 - w as f32 * fw).abs() <= 1.0);
                assert!((reg.height() as f32 - h as f32 * fh).abs() <= 1.0);
            }
        }
        assert_eq!(
            protocol_regions(Protocol::Search, (100, 60), &[])[2],
            Region {
                x0: 25,
                y0: 0,
                x1: 75,
                y1: 60
            }
        );
    }
}
