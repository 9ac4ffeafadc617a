//! The web UI's figures in a real headless Chromium (chromedriver on PATH): how long the
//! dashboard takes to show 100 workspaces, and the workspace page to open a session and
//! show a history of 1,000 events and a 200-file diff in the changes panel, from
//! navigation to the last one drawn; how many bytes the pages load and the workspace
//! page's first paint (the terminal and the editor are not loaded with it); and in the
//! Terminal tab, each key's time from keydown to its echo drawn. Run with
//! `scripts/bench-ui.sh` (a release build).
#![allow(clippy::unwrap_used)] // a benchmark that cannot unwrap has failed

use berth_engine::Config;
use fantoccini::Locator;
use serde_json::json;
use std::time::{Duration, Instant};

const TOKEN: &str = "berth_bench_ui_admin_token_0000000000";
const WORKSPACES: usize = 100;
const EVENTS: usize = 1_000;
const CHANGED_FILES: usize = 200;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args().nth(1).and_then(|text| text.parse().ok()).unwrap_or(20);
    let data = tempfile::tempdir()?;
    let source = data.path().join("repo");
    std::fs::create_dir(&source)?;
    for args in [&["init", "--quiet"][..], &["commit", "--quiet", "--allow-empty", "-m", "first"][..]] {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
            .args(args)
            .current_dir(&source)
            .status()?;
        anyhow::ensure!(status.success(), "git {args:?} failed");
    }
    let berth = std::env::current_exe()?.parent().and_then(|dir| dir.parent()).unwrap().join("berth");
    anyhow::ensure!(berth.exists(), "build the berth binary first ({} is missing)", berth.display());

    let mut config = Config::for_data_dir(&data.path().join("berth"));
    config.admin_token = Some(TOKEN.into());
    config.agent_command = Some(format!("'{}' agent", berth.display()));
    let server = berth_server::testing::TestServer::start(config, None).await?;
    let base = server.url.clone();

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..WORKSPACES {
        let created: serde_json::Value = http
            .post(format!("{base}/api/workspaces"))
            .bearer_auth(TOKEN)
            .json(&json!({ "repo": source.to_string_lossy(), "name": format!("w{n}") }))
            .send()
            .await?
            .json()
            .await?;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let history = ids[0].clone();
    loop {
        let workspace: serde_json::Value = http
            .get(format!("{base}/api/workspaces/{history}"))
            .bearer_auth(TOKEN)
            .send()
            .await?
            .json()
            .await?;
        if workspace["state"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 200 files changed in the checkout: what the changes panel draws.
    let checkout = data.path().join("berth").join("workspaces").join(&history);
    for n in 0..CHANGED_FILES {
        let body: String = (0..20).map(|line| format!("line {line} of file {n}\n")).collect();
        std::fs::write(checkout.join(format!("file-{n:03}.txt")), body)?;
    }
    // A history of 1,000 events: turns of a prompt, a streamed reply and a command's output.
    let opened: serde_json::Value = http
        .post(format!("{base}/api/workspaces/{history}/open"))
        .bearer_auth(TOKEN)
        .send()
        .await?
        .json()
        .await?;
    let session = berth_core::SessionId::parse(opened["session"]["id"].as_str().unwrap()).unwrap();
    let workspace_id = berth_core::WorkspaceId::parse(&history).unwrap();
    for n in 0..EVENTS {
        let (kind, data) = match n % 4 {
            0 => ("user_message", json!({ "text": format!("prompt {n}") })),
            1 => (
                "agent_message",
                json!({ "sessionUpdate": "agent_message_chunk",
                    "content": { "type": "text", "text": format!("Here is **reply** {n} with `code`.") } }),
            ),
            2 => (
                "tool_call_update",
                json!({ "sessionUpdate": "tool_call_update", "toolCallId": format!("call-{n}"),
                    "title": format!("Run `echo {n}`"), "status": "completed",
                    "content": [{ "type": "content", "content": { "type": "text", "text": format!("{n}\n") } }] }),
            ),
            _ => ("turn_end", json!({ "stop_reason": "end_turn" })),
        };
        server
            .engine
            .store()
            .append_event(&workspace_id, &session, chrono::Utc::now(), kind, &data.to_string())
            .await?;
    }
    let last_text = format!("Here is reply {}", EVENTS - 3);
    http.post(format!("{base}/api/sessions/{session}/close")).bearer_auth(TOKEN).send().await?;

    let (client, mut driver) = berth_testkit::headless_chromium().await;
    client.goto(&format!("{base}/login?token={TOKEN}")).await?;

    let mut dashboard = Vec::new();
    let mut workspace_page = Vec::new();
    let mut with_changes = Vec::new();
    for _ in 0..rounds {
        client.goto("about:blank").await?;
        let started = Instant::now();
        client.goto(&format!("{base}/")).await?;
        while client.find_all(Locator::Css(".card")).await?.len() < WORKSPACES {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        dashboard.push(started.elapsed());

        client.goto("about:blank").await?;
        let started = Instant::now();
        client.goto(&format!("{base}/workspaces/{history}")).await?;
        loop {
            let shown = client.find_all(Locator::Css("#messages .msg.agent")).await?;
            if let Some(last) = shown.last()
                && last.text().await?.contains(&last_text)
                && !client
                    .find_all(Locator::Css("#session-state .badge[data-state='active']"))
                    .await?
                    .is_empty()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        workspace_page.push(started.elapsed());
        while client.find_all(Locator::Css("#changes-list details.change")).await?.len() < CHANGED_FILES {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        with_changes.push(started.elapsed());
    }
    // The first paint of the workspace page, and what it loaded: the terminal and the
    // editor are loaded when first used, never with the page.
    let paint: f64 = client
        .execute(
            "const e = performance.getEntriesByName('first-contentful-paint')[0]; return e ? e.startTime : -1;",
            vec![],
        )
        .await?
        .as_f64()
        .unwrap_or(-1.0);
    let vendor_with_page: bool = client
        .execute(
            "return performance.getEntriesByType('resource').some(e => e.name.includes('/vendor/'));",
            vec![],
        )
        .await?
        .as_bool()
        .unwrap_or(true);
    let bytes: f64 = client
        .execute(
            "return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))\
             .filter(e => !e.name.includes('/api/')).reduce((sum, e) => sum + e.decodedBodySize, 0);",
            vec![],
        )
        .await?
        .as_f64()
        .unwrap_or(0.0);
    // After the page's own bytes are counted: the terminal loads xterm.js.
    let echoes = terminal_echoes(&client, rounds.max(10) * 10).await?;
    client.close().await?;
    let _ = driver.kill();
    let _ = driver.wait();
    server.stop().await?;

    let p50 = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2].as_secs_f64() * 1000.0
    };
    let p_max = |samples: &Vec<Duration>| samples.iter().max().unwrap().as_secs_f64() * 1000.0;
    println!("web UI in headless Chromium ({rounds} rounds each, from navigation):");
    println!(
        "  dashboard with {WORKSPACES} workspaces drawn       p50 {:>7.1} ms  max {:>7.1} ms",
        p50(&mut dashboard),
        p_max(&dashboard)
    );
    println!(
        "  workspace page: session open + {EVENTS} events   p50 {:>7.1} ms  max {:>7.1} ms",
        p50(&mut workspace_page),
        p_max(&workspace_page)
    );
    println!(
        "  … and the changes panel with {CHANGED_FILES} files          p50 {:>7.1} ms  max {:>7.1} ms",
        p50(&mut with_changes),
        p_max(&with_changes)
    );
    println!("  page, script, style and icon                  {:.1} KiB (uncompressed)", bytes / 1024.0);
    println!(
        "  workspace page first contentful paint         {paint:.1} ms (terminal and editor loaded with it: {})",
        if vendor_with_page { "yes" } else { "no" }
    );
    let mut echoes = echoes;
    echoes.sort_by(f64::total_cmp);
    let at = |share: f64| echoes[((echoes.len() as f64 * share) as usize).min(echoes.len() - 1)];
    println!(
        "  terminal: key pressed → its echo drawn ({} keys)  p50 {:>7.1} ms  p99 {:>7.1} ms",
        echoes.len(),
        at(0.5),
        at(0.99)
    );
    Ok(())
}

/// Opens the Terminal tab of the workspace page shown (bubblewrap or not, as the server
/// runs) and times `keys` keystrokes from the browser's keydown to the echoed character
/// drawn on the terminal's screen, as the page itself sees both.
async fn terminal_echoes(client: &fantoccini::Client, keys: usize) -> anyhow::Result<Vec<f64>> {
    // A UI without terminals (an earlier build, measured for comparison) has no echo.
    let Ok(tab) = client.find(Locator::Css("#tab-terminal")).await else { return Ok(vec![f64::NAN]) };
    tab.click().await?;
    let input = client
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(".xterm-helper-textarea"))
        .await?;
    // The shell's prompt first.
    while !client.find(Locator::Css(".xterm-rows")).await?.text().await?.contains('$')
        && !client.find(Locator::Css(".xterm-rows")).await?.text().await?.contains('#')
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let arm = "const rows = document.querySelector('.xterm-rows'); const before = rows.textContent; \
               window.__echo = null; window.__keydown = null; \
               document.addEventListener('keydown', () => { window.__keydown = performance.now(); }, { capture: true, once: true }); \
               const seen = new MutationObserver(() => { if (rows.textContent !== before && window.__keydown !== null) { \
                 window.__echo = performance.now() - window.__keydown; seen.disconnect(); } }); \
               seen.observe(rows, { childList: true, subtree: true, characterData: true });";
    let mut echoes = Vec::with_capacity(keys);
    for n in 0..keys {
        client.execute(arm, vec![]).await?;
        // Letters only, and a line cleared now and then (Ctrl-U), so the line never wraps.
        let key =
            if n % 40 == 39 { "\u{15}".to_owned() } else { ((b'a' + (n % 26) as u8) as char).to_string() };
        input.send_keys(&key).await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let echo = client.execute("return window.__echo;", vec![]).await?;
            if let Some(ms) = echo.as_f64() {
                if n % 40 != 39 {
                    echoes.push(ms);
                }
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "no echo of key {n}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    Ok(echoes)
}
