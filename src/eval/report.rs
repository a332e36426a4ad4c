//! `eval --report`: one self-contained HTML page (pictures embedded as data URIs) with the
//! metrics, accuracy by number length, the digit confusion matrix, a calibration plot and the
//! worst misreads with their thumbnails.

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine;

use crate::eval::{EvalReport, Outcome};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Accuracy by the true number's length: `length → (images, read exactly)`.
pub fn accuracy_by_length(outcomes: &[Outcome]) -> BTreeMap<usize, (usize, usize)> {
    let mut m = BTreeMap::new();
    for o in outcomes {
        let e = m.entry(o.truth.len()).or_insert((0, 0));
        e.0 += 1;
        e.1 += usize::from(o.is_right());
    }
    m
}

/// Digit confusion counts `[truth][read]`, over the images whose reading has the true length
/// (position by position).
pub fn confusion(outcomes: &[Outcome]) -> [[usize; 10]; 10] {
    let mut c = [[0usize; 10]; 10];
    for o in outcomes
        .iter()
        .filter(|o| o.error.is_none() && o.predicted.len() == o.truth.len())
    {
        for (t, p) in o.truth.bytes().zip(o.predicted.bytes()) {
            c[(t - b'0') as usize][(p - b'0') as usize] += 1;
        }
    }
    c
}

/// Calibration in 10 confidence bins: `(mean confidence, accuracy, images)` per non-empty bin.
pub fn calibration(outcomes: &[Outcome]) -> Vec<(f64, f64, usize)> {
    let mut bins = vec![(0f64, 0usize, 0usize); 10];
    for o in outcomes.iter().filter(|o| o.error.is_none()) {
        let b = ((o.confidence * 10.0) as usize).min(9);
        bins[b].0 += o.confidence as f64;
        bins[b].1 += usize::from(o.is_right());
        bins[b].2 += 1;
    }
    bins.into_iter()
        .filter(|b| b.2 > 0)
        .map(|(s, ok, n)| (s / n as f64, ok as f64 / n as f64, n))
        .collect()
}

fn calibration_svg(cal: &[(f64, f64, usize)]) -> String {
    let (w, h, m) = (320.0, 320.0, 30.0);
    let x = |v: f64| m + v * (w - 2.0 * m);
    let y = |v: f64| h - m - v * (h - 2.0 * m);
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="calibration plot">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{m}" y="{m}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
        w - 2.0 * m,
        h - 2.0 * m
    );
    let _ = write!(
        s,
        r##"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#bbb" stroke-dasharray="4"/>"##,
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    );
    let pts: Vec<String> = cal
        .iter()
        .map(|(c, a, _)| format!("{:.1},{:.1}", x(*c), y(*a)))
        .collect();
    let _ = write!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#1f6feb" stroke-width="2"/>"##,
        pts.join(" ")
    );
    for (c, a, n) in cal {
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="{:.1}" fill="#1f6feb"><title>confidence {c:.2}: accuracy {a:.2} over {n} images</title></circle>"##,
            x(*c),
            y(*a),
            2.0 + (*n as f64).sqrt().min(8.0)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">confidence</text><text x="10" y="{}" font-size="11" transform="rotate(-90 10 {})" text-anchor="middle">accuracy</text></svg>"#,
        w / 2.0,
        h - 8.0,
        h / 2.0,
        h / 2.0
    );
    s
}

/// The report page. `title` names the data; `thumbnail` gives PNG bytes of an outcome's input.
pub fn html(
    report: &EvalReport,
    title: &str,
    thumbnail: &dyn Fn(&Outcome) -> Option<Vec<u8>>,
) -> String {
    let pct = |v: f64| format!("{:.2} %", 100.0 * v);
    let mut h = String::new();
    let _ = write!(h, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>housenum eval: {}</title>", esc(title));
    h.push_str("<style>body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f4f4f4}.bad{color:#b00}img{image-rendering:pixelated;height:48px}</style></head><body>");
    let _ = write!(h, "<h1>housenum eval: {}</h1>", esc(title));
    let _ = write!(h, "<table id=\"metrics\"><tr><th>images</th><td id=\"images\">{}</td></tr><tr><th>unreadable</th><td id=\"unreadable\">{}</td></tr><tr><th>protocol</th><td id=\"protocol\">{}</td></tr><tr><th>sequence accuracy</th><td id=\"sequence_accuracy\">{}</td></tr><tr><th>digit accuracy</th><td id=\"digit_accuracy\">{}</td></tr><tr><th>mean edit distance</th><td id=\"mean_edit_distance\">{:.4}</td></tr><tr><th>coverage at 98 % accuracy</th><td id=\"coverage_at_98\">{}</td></tr><tr><th>images/second</th><td>{:.1}</td></tr></table>",
        report.images, report.unreadable, report.protocol, pct(report.sequence_accuracy), pct(report.digit_accuracy), report.mean_edit_distance, pct(report.coverage_at_98), report.images_per_second);
    h.push_str("<h2>Accuracy by number length</h2><table id=\"by_length\"><tr><th>digits</th><th>images</th><th>read exactly</th><th>accuracy</th></tr>");
    for (len, (n, ok)) in accuracy_by_length(&report.outcomes) {
        let _ = write!(
            h,
            "<tr><td>{len}</td><td>{n}</td><td>{ok}</td><td>{}</td></tr>",
            pct(ok as f64 / n as f64)
        );
    }
    h.push_str("</table><h2>Digit confusion</h2><p>Rows: true digit; columns: digit read; over the images read with the right number of digits, position by position.</p><table id=\"confusion\"><tr><th></th>");
    for d in 0..10 {
        let _ = write!(h, "<th>{d}</th>");
    }
    h.push_str("</tr>");
    for (t, row) in confusion(&report.outcomes).iter().enumerate() {
        let _ = write!(h, "<tr><th>{t}</th>");
        for (p, n) in row.iter().enumerate() {
            let class = if p != t && *n > 0 {
                " class=\"bad\""
            } else {
                ""
            };
            let _ = write!(h, "<td{class}>{n}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table><h2>Calibration</h2><p>Accuracy of the readings in each confidence decile (dashed: perfect calibration).</p>");
    h.push_str(&calibration_svg(&calibration(&report.outcomes)));
    h.push_str("<h2>Worst misreads</h2><table id=\"worst\"><tr><th>image</th><th>input</th><th>truth</th><th>read</th><th>confidence</th></tr>");
    for o in &report.worst {
        let img = thumbnail(o)
            .map(|png| {
                format!(
                    "<img alt=\"{}\" src=\"data:image/png;base64,{}\">",
                    esc(&o.name),
                    base64::engine::general_purpose::STANDARD.encode(png)
                )
            })
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{img}</td><td>{}</td><td class=\"bad\">{}</td><td>{:.3}</td></tr>",
            esc(&o.name),
            esc(&o.truth),
            esc(&o.predicted),
            o.confidence
        );
    }
    h.push_str("</table>");
    if !report.errors.is_empty() {
        h.push_str("<h2>Unreadable images</h2><ul>");
        for e in &report.errors {
            let _ = write!(
                h,
                "<li>{}</li>",
                esc(e.error.as_deref().unwrap_or_default())
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(t: &str, p: &str, c: f32) -> Outcome {
        Outcome {
            name: format!("{t}.png"),
            truth: t.into(),
            predicted: p.into(),
            confidence: c,
            log_prob: (c as f64).ln(),
            edit_distance: crate::eval::edit_distance(t.as_bytes(), p.as_bytes()),
            error: None,
        }
    }

    #[test]
    fn tables_count_what_they_should() {
        let v = vec![
            o("12", "12", 0.95),
            o("34", "39", 0.55),
            o("5", "5", 0.91),
            o("678", "68", 0.2),
        ];
        let by = accuracy_by_length(&v);
        assert_eq!(by[&2], (2, 1));
        assert_eq!(by[&1], (1, 1));
        assert_eq!(by[&3], (1, 0));
        let c = confusion(&v);
        assert_eq!(c[4][9], 1);
        assert_eq!(c[3][3], 1);
        assert_eq!(
            c[6].iter().sum::<usize>(),
            0,
            "length mismatch is not position-compared"
        );
        let cal = calibration(&v);
        assert_eq!(cal.len(), 3);
        assert_eq!(cal.last().unwrap().2, 2);
        assert!((cal.last().unwrap().1 - 1.0).abs() < 1e-9);
        let r = crate::eval::summarise(v, crate::Protocol::Crop, 1.0);
        let page = html(&r, "t<est>", &|_| Some(vec![1, 2, 3]));
        assert!(page.contains("t&lt;est&gt;") && page.contains("data:image/png;base64,AQID"));
        assert!(page.contains("<td id=\"sequence_accuracy\">50.00 %</td>"));
    }
}
