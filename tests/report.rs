//! `eval --report`: the HTML page renders in headless Chromium with the expected numbers.
//! Skipped when Chromium is absent, unless `HOUSENUM_REQUIRE_CHROMIUM=1` (CI installs it).

mod common;

use std::path::Path;
use std::process::Command;

fn chromium() -> Option<&'static str> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    assert!(
        std::env::var("HOUSENUM_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
        "Chromium required"
    );
    eprintln!("note: Chromium not found; skipping");
    None
}

/// The DOM Chromium builds from the page.
fn render(browser: &str, page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cell(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\">"))
        .unwrap_or_else(|| panic!("no #{id}"))
        + id.len()
        + 6;
    dom[start..start + dom[start..].find('<').unwrap()].to_string()
}

#[test]
fn report_renders_with_the_eval_numbers() {
    let Some(svhn) = common::svhn() else { return };
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = svhn.join("fixtures/official-first40/train");
    let (code, out, err) = common::run(
        &[
            "eval",
            "--json",
            "-q",
            "--report",
            &dir.path().display().to_string(),
            &data.display().to_string(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let dom = render(browser, &dir.path().join("index.html"));
    assert_eq!(cell(&dom, "images"), v["images"].to_string());
    let acc = format!("{:.2} %", 100.0 * v["sequence_accuracy"].as_f64().unwrap());
    assert_eq!(cell(&dom, "sequence_accuracy"), acc);
    assert_eq!(cell(&dom, "protocol"), "crop");
    assert!(dom.contains("id=\"confusion\"") && dom.contains("id=\"by_length\""));
    assert!(dom.contains("aria-label=\"calibration plot\""));
    // One row per misread, each with its embedded thumbnail.
    let misreads = v["worst"].as_array().unwrap().len();
    assert_eq!(dom.matches("data:image/png;base64,").count(), misreads);
}
