//! `examples/tencentcloud_im_backend.py` — a live-room backend on a third-party SDK
//! for the cloud's IM REST API (`tencentcloud-sdk-python-im` from PyPI, nobody here
//! wrote it) — runs against the real binary with only its base URL changed, and
//! every step answers as the script expects (issue 15).
//!
//! Needs `python3` with `pip install tencentcloud-sdk-python-im`; fails (never skips)
//! without it.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn script_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tencentcloud_im_backend.py")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_cloud_sdk_drives_onair_unchanged() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import tencentcloud_im.tcim_client"])
        .output()
        .expect("python3 is needed for this test (with `pip install tencentcloud-sdk-python-im`)");
    assert!(
        probe.status.success(),
        "examples/tencentcloud_im_backend.py needs `pip install tencentcloud-sdk-python-im` ({})",
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let server = Server::start("").await;
    let run = tokio::process::Command::new("python3")
        .arg(script_path())
        .env("IM_BASE_URL", format!("http://127.0.0.1:{}", server.port))
        .env("IM_SDKAPPID", SDKAPPID.to_string())
        .env("IM_SECRET_KEY", SECRET_KEY)
        .env("IM_ADMIN", ADMIN)
        .env("PYTHONUNBUFFERED", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the script finished").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert!(
        failed.is_empty(),
        "steps that did not answer as the cloud does:\n{}\n\nstderr:\n{stderr}",
        failed.join("\n")
    );
    assert!(out.status.success() && stdout.lines().any(|l| l == "DONE"), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.lines().filter(|l| l.starts_with("OK ")).count() >= 20, "{stdout}");
}
