//! Runs a report in headless Chromium (when installed: Debian package `chromium`) and checks that its
//! script ran to the end without errors. Without Chromium the test prints a SKIPPED notice.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::tests::three_clusters;
use super::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Run headless Chromium on `html` with `extra` flags; returns (stdout, stderr), or None on timeout.
fn chromium(html: &Path, profile: &Path, extra: &[&str]) -> Option<(String, String)> {
    let out_dir = scratch_dir();
    let (stdout, stderr) = (out_dir.join("stdout"), out_dir.join("stderr"));
    let mut child = Command::new(CHROMIUM)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--enable-logging=stderr", "--v=0", "--window-size=1200,900"])
        .args(extra)
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).ok()?)
        .stderr(std::fs::File::create(&stderr).ok()?)
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().ok()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = (std::fs::read_to_string(stdout).ok()?, std::fs::read_to_string(stderr).ok()?);
    let _ = std::fs::remove_dir_all(out_dir);
    Some(out)
}

/// A fresh directory under the system temp dir.
fn scratch_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "drgnfly-report-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::create_dir_all(&d);
    d
}

#[test]
fn report_script_runs_without_errors_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "SKIPPED: {CHROMIUM} not found (apt-get install chromium) — the report's JavaScript was not run"
        );
        return;
    }
    let n = 300_000;
    let report = Report {
        title: "browser test".into(),
        sections: vec![Section::new("Latent", vec![Item::Scatter(three_clusters(n))])],
    };
    let dir = scratch_dir();
    let html = dir.join("report.html");
    report.write(&html).unwrap();
    let Some((dom, log)) = chromium(&html, &dir.join("profile"), &["--dump-dom"]) else {
        panic!("chromium did not finish within 120 s");
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!log.contains("Uncaught"), "JavaScript error:\n{log}");
    let js_error = dom.split("data-drgnfly-error=\"").nth(1).and_then(|s| s.split('"').next());
    assert!(js_error.is_none(), "script reported an error: {js_error:?}");
    assert!(
        dom.contains("data-drgnfly-ok=\"1\""),
        "script did not finish; DOM starts:\n{}",
        &dom[..dom.len().min(2000)]
    );
    assert!(dom.contains(&format!("data-points=\"{n}\"")), "scatter did not decode all {n} points");
    let attr = |name: &str| {
        let v = dom.split(&format!("{name}=\"")).nth(1).and_then(|s| s.split('"').next());
        v.and_then(|s| s.parse::<u64>().ok())
    };
    let (ms, frame) = (attr("data-draw-ms"), attr("data-frame-ms"));
    eprintln!("{n} points in headless chromium: load (decode, index, first frame) {ms:?} ms, one frame {frame:?} ms");
    // Generous bound for a loaded 2-core CI machine; typical is well under a second.
    assert!(ms.is_some_and(|ms| ms < 10_000), "first draw took {ms:?} ms");
}
