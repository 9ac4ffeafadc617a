//! Headless Chromium driven over WebDriver, for the browser tests and the UI benchmark.

use std::time::Duration;

/// Headless Chromium under a chromedriver of its own on a free port: the WebDriver client
/// and the driver process, which the caller kills when done.
pub async fn headless_chromium() -> (fantoccini::Client, std::process::Child) {
    headless_chromium_with(&[]).await
}

/// [`headless_chromium`] with more command-line switches (`--force-dark-mode`: the
/// system prefers a dark colour scheme).
pub async fn headless_chromium_with(extra: &[&str]) -> (fantoccini::Client, std::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let driver = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_url = format!("http://127.0.0.1:{port}/status");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(&status_url).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut args = vec![
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        "--no-first-run",
        "--lang=en-GB",
    ];
    args.extend_from_slice(extra);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), serde_json::json!({ "args": args }));
    let client = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    (client, driver)
}
