//! The web UI end to end in a real headless Chromium, driven over WebDriver
//! (chromedriver): a real server, the real built-in agent, a fault injector around the
//! real local driver where a flow needs a sandbox that will not stop. Each flow saves
//! screenshots under `BERTH_SCREENSHOTS` (default `target/tmp/screenshots`).
#![allow(clippy::unwrap_used)] // a test that cannot unwrap has failed

use berth_engine::Config;
use berth_sandbox::{DEFAULT_STOP_TIMEOUT, FaultyDriver, LocalDriver, SandboxDriver};
use berth_server::testing::TestServer;
use berth_testkit::SourceRepo;
use fantoccini::{Client, Locator};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const TOKEN: &str = "berth_browser_test_admin_token_00000";
const INSTALLER: &str = "scripts/test.sh";
/// How long the page has to show something; a failure waits this long once.
const PATIENCE: Duration = Duration::from_secs(30);

/// One browser flow at a time: Chromium is heavy for two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn have_browser() -> bool {
    berth_testkit::have_program("chromium", INSTALLER)
        && berth_testkit::have_program("chromedriver", INSTALLER)
}

struct Server {
    _data: tempfile::TempDir,
    base: String,
    http: reqwest::Client,
    faults: Arc<FaultyDriver>,
    data_dir: PathBuf,
    server: TestServer,
}

async fn start(adjust: impl FnOnce(&mut Config)) -> Server {
    start_with_sandboxes(adjust, |_| {}).await
}

/// [`start`] with the local driver's options changed (bubblewrap, a network of its own).
async fn start_with_sandboxes(
    adjust: impl FnOnce(&mut Config),
    sandboxes: impl FnOnce(&mut berth_sandbox::LocalOptions),
) -> Server {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = Config::for_data_dir(data.path());
    config.admin_token = Some(TOKEN.into());
    config.agent_command = Some(format!("'{}' agent", env!("CARGO_BIN_EXE_berth")));
    config.public_url = base.clone();
    adjust(&mut config);
    let mut options = berth_sandbox::LocalOptions::unisolated(DEFAULT_STOP_TIMEOUT);
    options.hidden = vec![data.path().to_owned()];
    sandboxes(&mut options);
    let real = LocalDriver::with_options(&data.path().join("sandboxes"), options).unwrap();
    let faults = Arc::new(FaultyDriver::new(Arc::new(real)));
    let server =
        TestServer::start_on(listener, config, Some(faults.clone() as Arc<dyn SandboxDriver>)).await.unwrap();
    let data_dir = data.path().to_owned();
    Server { _data: data, base, http: reqwest::Client::new(), faults, data_dir, server }
}

impl Server {
    async fn finish(self) {
        self.server.stop().await.unwrap();
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A workspace of `source` named `name`, cloned and ready.
    async fn ready_workspace(&self, source: &SourceRepo, name: &str) -> String {
        self.ready_workspace_of(&source.url(), name).await
    }

    /// A workspace of the repository `repo` named `name`, cloned and ready.
    async fn ready_workspace_of(&self, repo: &str, name: &str) -> String {
        let (status, created) = self
            .call(reqwest::Method::POST, "/api/workspaces", Some(json!({ "repo": repo, "name": name })))
            .await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (_, workspace) =
                self.call(reqwest::Method::GET, &format!("/api/workspaces/{id}"), None).await;
            if workspace["state"] == "ready" {
                return id;
            }
            assert!(tokio::time::Instant::now() < deadline, "not ready: {workspace}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn checkout(&self, workspace: &str) -> PathBuf {
        self.data_dir.join("workspaces").join(workspace)
    }
}

/// Chromium under chromedriver, signed in to `server`.
struct Browser {
    client: Client,
    driver: std::process::Child,
    shots: PathBuf,
}

impl Browser {
    async fn open(server: &Server, flow: &str) -> Browser {
        Browser::open_at(&server.base, flow).await
    }

    /// A browser signed in at `base` (the server, or a proxy in front of it).
    async fn open_at(base: &str, flow: &str) -> Browser {
        Browser::open_as(base, flow, TOKEN).await
    }

    /// A browser signed in at `base` with `token`.
    async fn open_as(base: &str, flow: &str, token: &str) -> Browser {
        Browser::open_with(base, flow, token, &[]).await
    }

    /// A browser signed in as nobody yet.
    async fn signed_out(flow: &str) -> Browser {
        let (client, driver) = berth_testkit::headless_chromium_with(&[]).await;
        let shots = std::env::var_os("BERTH_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"))
            .join(flow);
        std::fs::create_dir_all(&shots).unwrap();
        Browser { client, driver, shots }
    }

    /// [`Browser::open_as`] with more Chromium switches.
    async fn open_with(base: &str, flow: &str, token: &str, switches: &[&str]) -> Browser {
        let (client, driver) = berth_testkit::headless_chromium_with(switches).await;
        let shots = std::env::var_os("BERTH_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"))
            .join(flow);
        std::fs::create_dir_all(&shots).unwrap();
        let browser = Browser { client, driver, shots };
        browser.client.goto(&format!("{base}/login?token={token}")).await.unwrap();
        browser.element("#nav a[href='/account']").await;
        browser
    }

    async fn goto(&self, server: &Server, path: &str) {
        self.client.goto(&format!("{}{path}", server.base)).await.unwrap();
    }

    /// The first element matching `css`, once there is one.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.wait().at_most(PATIENCE).for_element(Locator::Css(css)).await {
            Ok(element) => element,
            Err(error) => {
                self.screenshot("failure").await;
                panic!(
                    "no element '{css}' ({error}); page: {}",
                    self.client.source().await.unwrap_or_default()
                )
            }
        }
    }

    /// Waits until the element `css` exists and its text contains `text`.
    async fn text_in(&self, css: &str, text: &str) -> String {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(found) = element.text().await
                && found.contains(text)
            {
                return found;
            }
            if tokio::time::Instant::now() > deadline {
                self.screenshot("failure").await;
                panic!(
                    "'{css}' never showed '{text}'; page: {}",
                    self.client.source().await.unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until nothing matches `css`.
    async fn gone(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.client.find_all(Locator::Css(css)).await.unwrap().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "'{css}' is still shown");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        self.element(css).await.click().await.unwrap();
    }

    async fn screenshot(&self, name: &str) {
        if let Ok(png) = self.client.screenshot().await {
            let path = self.shots.join(format!("{name}.png"));
            std::fs::write(&path, png).unwrap();
            eprintln!("screenshot: {}", path.display());
        }
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A server with one ready workspace called `name`, and a browser (its screenshots under
/// `flow`) on that workspace's page once the agent is ready. The source repository comes
/// back too: it lives as long as the test holds it.
async fn on_a_workspace_page(name: &str, flow: &str) -> (Server, SourceRepo, String, Browser) {
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, name).await;
    let browser = Browser::open(&server, flow).await;
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.text_in("#messages", "Agent ready").await;
    (server, source, workspace, browser)
}

fn card(workspace: &str) -> String {
    format!(".card[data-workspace='{workspace}']")
}

#[tokio::test]
async fn a_new_workspace_reaches_ready_on_the_dashboard() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let browser = Browser::open(&server, "create").await;
    browser.element("#new-workspace #repo").await.send_keys(&source.url()).await.unwrap();
    browser.element("#new-workspace #name").await.send_keys("demo").await.unwrap();
    browser.click("#new-workspace button[type=submit]").await;
    browser.element(".card[data-name='demo'] .badge[data-state='ready']").await;
    browser.text_in(".card[data-name='demo']", "branch main").await;
    browser.screenshot("dashboard").await;

    // Readable on a phone: nothing wider than the screen.
    browser.client.set_window_size(390, 844).await.unwrap();
    let overflow = browser
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow.as_i64(), Some(0), "the dashboard scrolls sideways on a phone");
    browser.screenshot("dashboard-phone").await;
    browser.client.set_window_size(1280, 900).await.unwrap();

    // A directory that is no repository (a missing path is refused at once): the clone
    // fails and the initialisation screen shows the log and why.
    let not_a_repository = source.path.parent().unwrap().to_string_lossy().into_owned();
    browser.element("#new-workspace #repo").await.send_keys(&not_a_repository).await.unwrap();
    // The keyboard is enough: Enter in the last field submits.
    browser.element("#new-workspace #name").await.send_keys("broken\n").await.unwrap();
    browser.element(".card[data-name='broken'] .badge[data-state='error']").await;
    browser.click(".card[data-name='broken'] h3 a").await;
    browser.text_in("#init-error", "Initialisation failed").await;
    browser.text_in("#init-log", "does not exist").await;
    browser.screenshot("initialisation-error").await;
    // Retry says so at once, and the clone runs (and fails) again.
    browser.click("#retry").await;
    browser.element("[data-toast='Cloning again']").await;
    browser.text_in("#init-error", "Initialisation failed").await;

    // A login link with a wrong token lands on the sign-in page, which says so.
    browser.goto(&server, "/login?token=wrong").await;
    browser.text_in("#signin-refused", "not valid").await;
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn a_command_asks_first_survives_a_reload_and_shows_its_output() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "chat").await;
    let browser = Browser::open(&server, "chat").await;
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.text_in("#messages", "Agent ready").await;
    browser.text_in("#resume-command", "berth attach s_").await;

    let marker = berth_testkit::unique_marker();
    browser.element("#prompt").await.send_keys(&format!("$ echo output-{marker}\n")).await.unwrap();
    browser.element(".question button[data-option='allow_once']:not([disabled])").await;
    browser.element("#stop:not([hidden])").await;
    // The command is drawn once, its title's backticks as code, and the question under it.
    browser.text_in(".tool summary code", &format!("echo output-{marker}")).await;
    browser.element(".tool .question button[data-option='allow_once']").await;
    browser.screenshot("question").await;

    // A reload in the middle of the run: the session is resumed, the question is still there.
    browser.client.refresh().await.unwrap();
    browser.element("#session-resumed").await;
    browser.text_in("#messages", &format!("$ echo output-{marker}")).await;
    browser.click(".question button[data-option='allow_once']:not([disabled])").await;
    browser.text_in(".tool pre", &format!("output-{marker}")).await;
    browser.text_in(".question.answered", "Answered: Allow once").await;
    // The command is drawn once: its question sits in its card and, answered, folds to
    // the one line that says so.
    let answered = browser.element(".tool .question.answered").await;
    assert!(!answered.find(Locator::Css(".options")).await.unwrap().is_displayed().await.unwrap());
    assert!(!answered.find(Locator::Css("strong")).await.unwrap().is_displayed().await.unwrap());
    let height = answered.rectangle().await.unwrap().3;
    assert!(height < 40.0, "an answered question takes one line, not {height} px");
    // The title renders its backticks as code, not as raw text.
    browser.click("#tab-tools").await;
    browser.text_in("#tools-list", &format!("Run echo output-{marker}")).await;
    browser.element("#stop[hidden]").await;
    browser.screenshot("workspace").await;

    // What the agent writes is text: markup in its message is shown, never run.
    let hostile = "<img src=x onerror=\"document.title='pwned'\">";
    browser.element("#prompt").await.send_keys(&format!("$ {hostile}\n")).await.unwrap();
    browser.click(".question:not(.answered) button[data-option='reject_once']:not([disabled])").await;
    browser.text_in("#messages", &format!("I did not run {hostile}")).await;
    assert!(browser.client.find_all(Locator::Css("#messages img")).await.unwrap().is_empty());
    assert_ne!(browser.client.title().await.unwrap(), "pwned");

    // Close workspace: the toast, the panes cleared, the session ended.
    browser.click("#close-workspace").await;
    browser.element("[data-toast='Workspace closed']").await;
    browser.element("#session-ended").await;
    assert!(browser.client.find_all(Locator::Css("#tools-list li")).await.unwrap().is_empty());
    let (_, sessions) = server.call(reqwest::Method::GET, "/api/sessions", None).await;
    assert_eq!(sessions["sessions"], json!([]), "no live session is left");
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn opening_a_second_workspace_makes_the_first_idle() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let first = server.ready_workspace(&source, "first").await;
    let second = server.ready_workspace(&source, "second").await;
    let browser = Browser::open(&server, "replace").await;
    browser.goto(&server, &format!("/workspaces/{first}")).await;
    browser.element("#session-state .badge[data-state='active']").await;
    let first_window = browser.client.window().await.unwrap();

    let opened = browser.client.new_window(true).await.unwrap();
    browser.client.switch_to_window(opened.handle).await.unwrap();
    browser.goto(&server, &format!("/workspaces/{second}")).await;
    browser.text_in("#replaced", "Closed first to make room").await;
    browser.element("#session-state .badge[data-state='active']").await;

    // The first tab learns that its session was replaced; its dashboard shows it idle.
    browser.client.switch_to_window(first_window).await.unwrap();
    browser.text_in("#session-ended", "Closed to make room for second, which you opened elsewhere").await;
    browser.goto(&server, "/").await;
    browser.element(&format!("{} .badge[data-state='idle']", card(&first))).await;
    browser.element(&format!("{} .badge[data-state='active']", card(&second))).await;
    browser.screenshot("dashboard-after-replace").await;
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn the_session_limit_offers_close_all_and_retry() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|config| config.limits.on_user_limit = berth_core::OnUserLimit::Reject).await;
    let source = SourceRepo::new();
    let blocking = server.ready_workspace(&source, "blocking").await;
    let wanted = server.ready_workspace(&source, "wanted").await;
    let (status, opened) =
        server.call(reqwest::Method::POST, &format!("/api/workspaces/{blocking}/open"), None).await;
    assert_eq!(status, 201, "{opened}");
    let blocking_session = opened["session"]["id"].as_str().unwrap().to_owned();

    let browser = Browser::open(&server, "session-limit").await;
    browser.goto(&server, &format!("/workspaces/{wanted}")).await;
    browser.text_in("#session-limit", "Concurrent-session limit reached").await;
    browser.text_in(&format!("#session-limit li[data-session='{blocking_session}']"), "blocking").await;
    browser.screenshot("session-limit").await;
    browser.click("#close-all-and-retry").await;
    browser.element("#session-state .badge[data-state='active']").await;
    browser.element("[data-toast='Active workspaces closed']").await;

    let (_, blocked) =
        server.call(reqwest::Method::GET, &format!("/api/sessions/{blocking_session}"), None).await;
    assert_eq!(
        (blocked["state"].as_str(), blocked["end_reason"].as_str()),
        (Some("ended"), Some("closed_all"))
    );
    let (_, workspace) = server.call(reqwest::Method::GET, &format!("/api/workspaces/{wanted}"), None).await;
    assert_eq!(workspace["state"], "active");
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn close_all_reports_the_sandbox_that_did_not_stop_and_a_retry_finishes() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|config| config.limits.sessions_per_user = 2).await;
    let source = SourceRepo::new();
    let stubborn = server.ready_workspace(&source, "stubborn").await;
    let willing = server.ready_workspace(&source, "willing").await;
    let mut sessions = Vec::new();
    for workspace in [&stubborn, &willing] {
        let (status, opened) =
            server.call(reqwest::Method::POST, &format!("/api/workspaces/{workspace}/open"), None).await;
        assert_eq!(status, 201, "{opened}");
        sessions.push(opened["session"]["id"].as_str().unwrap().to_owned());
    }
    server.faults.fail_power_off(&berth_core::WorkspaceId::parse(&stubborn).unwrap(), 1);

    let browser = Browser::open(&server, "close-all").await;
    browser.goto(&server, "/account").await;
    for session in &sessions {
        browser.element(&format!("#sessions tr[data-session='{session}']")).await;
    }
    browser.screenshot("account").await;
    // Closing everything asks first, saying how many; declining closes nothing.
    browser.click("#close-all").await;
    let question = browser.text_in("#dialog #dialog-text", "Close 2 active workspaces?").await;
    assert!(question.starts_with("Close 2 active workspaces?"), "{question}");
    browser.click("#dialog[open] #dialog-cancel").await;
    let (_, live) = server.call(reqwest::Method::GET, "/api/sessions?state=live", None).await;
    assert_eq!(live["sessions"].as_array().unwrap().len(), 2, "declining closed something");
    browser.click("#close-all").await;
    browser.click("#dialog[open] #dialog-confirm").await;
    browser
        .text_in("[data-outcome='cleanup_partially_complete']", "Workspace cleanup partially complete")
        .await;
    browser.text_in(&format!("#close-failures li[data-session='{}']", sessions[0]), "stubborn").await;
    assert_eq!(browser.client.find_all(Locator::Css("#close-failures li")).await.unwrap().len(), 1);
    browser.screenshot("partial").await;

    browser.click("#retry-close-all").await;
    browser.text_in("[data-outcome='active_workspaces_closed']", "Active workspaces closed").await;
    browser.text_in("#sessions", "No active workspaces").await;
    let (_, live) = server.call(reqwest::Method::GET, "/api/sessions", None).await;
    assert_eq!(live["sessions"], json!([]));
    // With nothing open, "Close all" is not offered.
    browser.element("#close-all[hidden]").await;
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn deleting_a_workspace_with_unsaved_work_needs_its_name_typed() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "precious").await;
    std::fs::write(server.checkout(&workspace).join("notes-not-committed.txt"), "work").unwrap();

    let browser = Browser::open(&server, "delete").await;
    browser.click(&format!("{} .menu summary", card(&workspace))).await;
    browser.click(&format!("{} [data-action='delete']", card(&workspace))).await;
    browser.text_in("#unsaved-work", "notes-not-committed.txt").await;
    browser.text_in("#dialog", "The remote repository is not touched").await;
    browser.text_in("#dialog", "There is no recovery").await;
    let confirm = browser.element("#confirm-delete").await;
    assert!(!confirm.is_enabled().await.unwrap(), "deleting needs the name first");
    let name = browser.element("#confirm-name").await;
    name.send_keys("precios").await.unwrap();
    assert!(!confirm.is_enabled().await.unwrap(), "a wrong name does not delete");
    browser.screenshot("delete-dialog").await;
    let (status, _) = server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}"), None).await;
    assert_eq!(status, 200, "nothing is deleted before the confirmation");

    name.clear().await.unwrap();
    name.send_keys("precious").await.unwrap();
    confirm.click().await.unwrap();
    browser.gone(&card(&workspace)).await;
    let (status, _) = server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}"), None).await;
    assert_eq!(status, 404);
    assert!(!server.checkout(&workspace).exists(), "the files are gone");
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn busy_controllers_count_down_and_the_page_retries_after_an_admin_closed_a_session() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|config| config.limits.running_sandboxes = 1).await;
    let source = SourceRepo::new();
    let (status, created) =
        server.call(reqwest::Method::POST, "/api/users", Some(json!({ "name": "bob" }))).await;
    assert_eq!(status, 201, "{created}");
    let bob_token = created["token"].as_str().unwrap().to_owned();
    let bob = |method: reqwest::Method, path: String, body: Value| {
        server
            .http
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(&bob_token)
            .json(&body)
            .send()
    };
    let created: Value =
        bob(reqwest::Method::POST, "/api/workspaces".into(), json!({ "repo": source.url() }))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let bobs = created["id"].as_str().unwrap().to_owned();
    let mine = server.ready_workspace(&source, "mine").await;
    // Bob's workspace takes the one sandbox slot once its clone is done.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let bob_session = loop {
        let opened: Value = bob(reqwest::Method::POST, format!("/api/workspaces/{bobs}/open"), Value::Null)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(id) = opened["session"]["id"].as_str() {
            break id.to_owned();
        }
        assert!(tokio::time::Instant::now() < deadline, "{opened}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let browser = Browser::open(&server, "controllers-busy").await;
    browser.goto(&server, &format!("/workspaces/{mine}")).await;
    browser.text_in("#controllers-busy", "Controllers are busy").await;
    browser.element("#retry-countdown").await;
    browser.screenshot("controllers-busy").await;

    // The administrator closes Bob's session from the admin page, in another tab.
    let waiting_tab = browser.client.window().await.unwrap();
    let admin_tab = browser.client.new_window(true).await.unwrap();
    browser.client.switch_to_window(admin_tab.handle).await.unwrap();
    browser.goto(&server, "/admin").await;
    browser.text_in(&format!("#admin-sessions tr[data-session='{bob_session}']"), "bob").await;
    browser.screenshot("admin").await;
    browser.click(&format!("#admin-sessions tr[data-session='{bob_session}'] button")).await;
    browser.element("[data-toast='Workspace closed']").await;
    let (_, closed) = server.call(reqwest::Method::GET, &format!("/api/sessions/{bob_session}"), None).await;
    assert_eq!(closed["state"], "ended");

    // No click in the first tab: the countdown runs out and the page opens the workspace.
    browser.client.switch_to_window(waiting_tab).await.unwrap();
    browser.element("#session-state .badge[data-state='active']").await;
    browser.close().await;
    server.finish().await;
}

/// A TCP proxy in front of the server that can cut the browser's WebSockets and refuse
/// new ones for a while, as a flaky network does, while plain HTTP still goes through.
struct Proxy {
    base: String,
    websockets_refused: Arc<AtomicBool>,
    cut: tokio::sync::broadcast::Sender<()>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let websockets_refused = Arc::new(AtomicBool::new(false));
        let (cut, _) = tokio::sync::broadcast::channel::<()>(4);
        let (refused, cuts) = (websockets_refused.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstream, refused, mut cut) = (upstream.clone(), refused.clone(), cuts.subscribe());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut first = vec![0u8; 16 * 1024];
                    let Ok(read) = client.read(&mut first).await else { return };
                    let head = String::from_utf8_lossy(&first[..read]).to_ascii_lowercase();
                    let websocket = head.contains("upgrade: websocket");
                    if websocket && refused.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    if server.write_all(&first[..read]).await.is_err() {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.recv(), if websocket => {}
                    }
                });
            }
        });
        Proxy { base, websockets_refused, cut }
    }

    /// Cuts every WebSocket now and refuses new ones until `restore`.
    fn cut_websockets(&self) {
        self.websockets_refused.store(true, Ordering::SeqCst);
        let _ = self.cut.send(());
    }

    fn restore(&self) {
        self.websockets_refused.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_dropped_connection_shows_the_grace_left_and_reconnects_to_the_waiting_question() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let proxy = Proxy::start(&server.base).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "flaky").await;
    let browser = Browser::open_at(&proxy.base, "reconnect").await;
    browser.client.goto(&format!("{}/workspaces/{workspace}", proxy.base)).await.unwrap();
    browser.text_in("#messages", "Agent ready").await;
    let marker = berth_testkit::unique_marker();
    browser.element("#prompt").await.send_keys(&format!("$ echo after-{marker}\n")).await.unwrap();
    browser.element(".question button[data-option='allow_once']:not([disabled])").await;

    // The connection drops mid-run: the agent keeps its session for the grace window,
    // and the page says so, counting down, while it tries again.
    proxy.cut_websockets();
    browser.text_in("#reconnecting", "the session is kept for 4:").await;
    browser.element("#session-state .badge[data-state='disconnected']").await;
    browser.screenshot("reconnecting").await;
    let session = browser.element("#resume-command").await.text().await.unwrap().replace("berth attach ", "");
    let (_, waiting) = server.call(reqwest::Method::GET, &format!("/api/sessions/{session}"), None).await;
    assert_eq!(waiting["state"], "disconnected", "{waiting}");

    // The network comes back: the page reconnects by itself, the question is still there.
    proxy.restore();
    browser.gone("#banner:not([hidden])").await;
    browser.click(".question button[data-option='allow_once']:not([disabled])").await;
    browser.text_in(".tool pre", &format!("after-{marker}")).await;
    let (_, resumed) = server.call(reqwest::Method::GET, &format!("/api/sessions/{session}"), None).await;
    assert_eq!(resumed["state"], "active", "{resumed}");
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn the_preview_pane_shows_the_sandboxs_server_until_the_session_closes() {
    if !have_browser() || !berth_testkit::have_program("python3", INSTALLER) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "site").await;
    let browser = Browser::open(&server, "preview").await;
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.text_in("#messages", "Agent ready").await;
    // A port no other test uses (this server's sandboxes share the host's network).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    browser
        .element("#prompt")
        .await
        .send_keys(&format!("$ exec python3 -m http.server {port} --bind 127.0.0.1\n"))
        .await
        .unwrap();
    browser.click(".question button[data-option='allow_once']:not([disabled])").await;
    browser.element(".tool .status[data-status='in_progress']").await;

    browser.click("#tab-preview").await;
    let field = browser.element("#preview-port").await;
    field.clear().await.unwrap();
    field.send_keys(&format!("{port}\n")).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        // The server may still be starting: show the port again until the listing is there.
        browser.element("#preview-iframe").await.enter_frame().await.unwrap();
        let body = browser.client.find(Locator::Css("body")).await.unwrap().text().await.unwrap_or_default();
        browser.client.enter_parent_frame().await.unwrap();
        if body.contains("README.md") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the preview never showed the listing: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        browser.click("#preview-form button[type=submit]").await;
    }
    browser.element("#preview-iframe").await.enter_frame().await.unwrap();
    let shown = browser.client.execute("return location.origin;", vec![]).await.unwrap();
    browser.client.enter_parent_frame().await.unwrap();
    let (_, details) = server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}"), None).await;
    assert_eq!(shown, details["preview_url"], "the preview is on the workspace's own host");
    browser.screenshot("preview").await;

    browser.click("#close-workspace").await;
    browser.element("[data-toast='Workspace closed']").await;
    browser.gone("#preview-iframe").await;
    browser.text_in("#preview-frame", "the preview is closed").await;
    browser.close().await;
    server.finish().await;
}

/// A previewed page that writes berth's cookie (every path, berth's domain, the preview
/// domain) and answers with `Set-Cookie` variants of it; it shows what cookies it sees.
const TOSSING_APP: &str = r#"
import http.server, json
BOB, NAME, PORT = (open(name).read().strip() for name in ("bob.txt", "name.txt", "port.txt"))
PAGE = """<!doctype html><title>loading</title><pre id=out></pre><script>
const bob = %s, name = %s;
for (const where of ["path=/", "path=/api", "path=/api/me", "domain=localhost; path=/",
                     "domain=localhost; path=/api/me", "domain=.localhost; path=/", "domain=preview.localhost; path=/"]) {
  document.cookie = `berth_token=${bob}; ${where}`;
  document.cookie = `berth_token=${bob}; ${where}; Secure; SameSite=None`;
}
document.cookie = "berth_preview=forged; domain=preview.localhost; path=/";
document.cookie = `from_${name}=1; path=/`;
document.getElementById("out").textContent = "seen[" + document.cookie + "] server[" + %s + "]";
document.title = "tossed";
</script>"""
class App(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        body = PAGE % (json.dumps(BOB), json.dumps(NAME), json.dumps(self.headers.get("Cookie") or ""))
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        for variant in [f"berth_token ={BOB}; Path=/", f"berth_token={BOB}; Domain=localhost; Path=/api",
                        f"BERTH_TOKEN={BOB}; Path=/", "berth_preview=x; Path=/"]:
            self.send_header("Set-Cookie", variant)
        self.end_headers()
        self.wfile.write(body.encode())
http.server.ThreadingHTTPServer(("127.0.0.1", int(PORT)), App).serve_forever()
"#;

#[tokio::test]
async fn a_preview_can_neither_sign_berth_in_as_another_user_nor_read_another_preview() {
    if !have_browser() || !berth_testkit::have_program("python3", INSTALLER) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|config| {
        config.limits.sessions_per_user = 2;
        config.agent_command = Some("exec python3 app.py".into());
    })
    .await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        let (status, created) =
            server.call(reqwest::Method::POST, "/api/users", Some(json!({ "name": name }))).await;
        assert_eq!(status, 201, "{created}");
        tokens.push(created["token"].as_str().unwrap().to_owned());
    }
    let (alice, bob) = (&tokens[0], &tokens[1]);
    let as_alice = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = server.http.request(method, format!("{}{path}", server.base)).bearer_auth(alice);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let source = SourceRepo::new();
    std::fs::write(source.path.join("app.py"), TOSSING_APP).unwrap();
    berth_testkit::git(&source.path, &["add", "app.py"]);
    berth_testkit::git(&source.path, &["commit", "--quiet", "-m", "app"]);
    let mut workspaces = Vec::new();
    for name in ["a", "b"] {
        let (status, created) = as_alice(
            reqwest::Method::POST,
            "/api/workspaces",
            Some(json!({ "repo": source.url(), "name": name })),
        )
        .await;
        assert_eq!(status, 202, "{created}");
        let id = created["id"].as_str().unwrap().to_owned();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while as_alice(reqwest::Method::GET, &format!("/api/workspaces/{id}"), None).await.1["state"]
            != "ready"
        {
            assert!(tokio::time::Instant::now() < deadline, "workspace {name} not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let checkout = server.checkout(&id);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        for (file, text) in [("bob.txt", bob.as_str()), ("name.txt", name), ("port.txt", &port.to_string())] {
            std::fs::write(checkout.join(file), text).unwrap();
        }
        let (status, opened) =
            as_alice(reqwest::Method::POST, &format!("/api/workspaces/{id}/open"), None).await;
        assert_eq!(status, 201, "{opened}");
        workspaces.push((id, port));
    }

    // Alice signs in on `localhost`, the name a preview host's scripts come closest to.
    let berth = server.base.replace("127.0.0.1", "localhost");
    let browser = Browser::open_as(&berth, "cookie-tossing", alice).await;
    let show = |index: usize| {
        let (id, port) = &workspaces[index];
        let client = browser.client.clone();
        let url = format!("{berth}/api/workspaces/{id}/preview?port={port}");
        async move {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            loop {
                client.goto(&url).await.unwrap();
                if client.title().await.unwrap() == "tossed" {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the preview never ran: {}",
                    client.source().await.unwrap()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            client.find(Locator::Id("out")).await.unwrap().text().await.unwrap()
        }
    };
    let first = show(0).await;
    assert!(first.contains("from_a=1"), "the preview ran on its host: {first}");
    // Workspaces a and b: neither reads the other's cookies, nor do they reach its server.
    let second = show(1).await;
    assert!(!second.contains("from_a"), "b saw a's cookies: {second}");
    let again = show(0).await;
    assert!(!again.contains("from_b"), "a saw b's cookies: {again}");
    // Neither berth's token nor the host's own pass (HttpOnly, a signed `c.` value) is
    // readable by the page or forwarded to its server.
    assert!(!again.contains(alice.as_str()) && !again.contains("berth_preview=c."), "{again}");
    browser.screenshot("preview").await;

    // berth's pages still act as alice, on every path the preview aimed at.
    for path in ["/api/me", "/api/workspaces"] {
        browser.client.goto(&format!("{berth}{path}")).await.unwrap();
        let body = browser.client.find(Locator::Css("body")).await.unwrap().text().await.unwrap();
        let answer: Value = serde_json::from_str(&body).unwrap();
        match path {
            "/api/me" => assert_eq!(answer["name"], "alice", "{body}"),
            _ => assert_eq!(answer["workspaces"].as_array().map(Vec::len), Some(2), "{body}"),
        }
    }
    browser.client.goto(&format!("{berth}/account")).await.unwrap();
    browser.text_in("#user-name", "alice").await;
    // Not one of the preview's cookies reached berth's host (berth's own is HttpOnly).
    let visible = browser.client.execute("return document.cookie;", vec![]).await.unwrap();
    assert_eq!(visible, "", "cookies tossed onto berth's host");
    browser.close().await;

    // Bob, signed in too, is refused alice's preview both ways in.
    let browser = Browser::open_as(&berth, "cookie-tossing-bob", bob).await;
    let (id, port) = &workspaces[0];
    browser.client.goto(&format!("{berth}/api/workspaces/{id}/preview?port={port}")).await.unwrap();
    browser.text_in("body", "not_found").await;
    let (_, details) = as_alice(reqwest::Method::GET, &format!("/api/workspaces/{id}"), None).await;
    let preview_url = details["preview_url"].as_str().unwrap();
    browser.client.goto(&format!("{preview_url}/{port}/")).await.unwrap();
    // Refused, and told so in a sentence (not the JSON envelope).
    browser.text_in("h1", "This preview needs a pass from berth").await;
    assert!(!browser.client.source().await.unwrap().contains("\"unauthorized\""), "the envelope");
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn the_account_keeps_credentials_and_secrets_and_the_workspace_pushes() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    const TOKEN_VALUE: &str = "ghp_browser-credential-0042";
    const SECRET_VALUE: &str = "sk-browser-secret-0042";
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let remote = berth_testkit::GitHttpServer::start(&source, "me", TOKEN_VALUE);
    let host = format!("127.0.0.1:{}", remote.port);
    let browser = Browser::open(&server, "account-credentials").await;
    browser.goto(&server, "/account").await;

    let form = "#new-credential";
    browser.element(&format!("{form} input[name=host]")).await.send_keys(&host).await.unwrap();
    browser.element(&format!("{form} input[name=username]")).await.send_keys("me").await.unwrap();
    browser.element(&format!("{form} input[name=secret]")).await.send_keys(TOKEN_VALUE).await.unwrap();
    browser.click(&format!("{form} button[type=submit]")).await;
    browser.element(&format!("#credentials tr[data-credential='{host}']")).await;
    browser.element("#new-secret input[name=name]").await.send_keys("MODEL_KEY").await.unwrap();
    browser.element("#new-secret input[name=value]").await.send_keys(SECRET_VALUE).await.unwrap();
    browser.click("#new-secret button[type=submit]").await;
    browser.element("#secrets tr[data-secret='MODEL_KEY']").await;
    browser.text_in("#ssh-public-key", "ssh-ed25519 ").await;
    browser.screenshot("account").await;
    browser.goto(&server, "/account").await;
    browser.element(&format!("#credentials tr[data-credential='{host}']")).await;
    let page = browser.client.source().await.unwrap();
    assert!(!page.contains(TOKEN_VALUE) && !page.contains(SECRET_VALUE), "a value came back to the page");

    // The private repository clones with that credential; Push sends a new commit there.
    let workspace = server.ready_workspace_of(&remote.url(), "private").await;
    let checkout = server.checkout(&workspace);
    berth_testkit::git(&checkout, &["commit", "-q", "--allow-empty", "-m", "from the page"]);
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.text_in("#messages", "Agent ready").await;
    browser.click("#push").await;
    browser.element("[data-toast^='Pushed main']").await;
    assert_eq!(remote.head_of("main"), berth_testkit::git(&checkout, &["rev-parse", "HEAD"]));

    // The agent edits a file: the changes panel shows its diff after the turn; Commit
    // then Push send it to the remote.
    browser.element("#no-changes").await;
    browser.element("#prompt").await.send_keys("$ echo from-the-agent >> README.md\n").await.unwrap();
    browser.click(".question button[data-option='allow_once']:not([disabled])").await;
    browser.click("#tab-changes").await;
    browser.element("#changes details[data-path='README.md']").await;
    browser.click("#changes details[data-path='README.md'] summary").await;
    browser.text_in("#changes details[data-path='README.md'] pre.diff", "+from-the-agent").await;
    browser.screenshot("changes").await;
    let panel = browser.element("#changes").await.text().await.unwrap();
    assert!(!panel.contains("null") && !panel.contains("undefined"), "{panel}");
    browser.element("#commit-message").await.send_keys("The agent's line").await.unwrap();
    browser.click("#commit").await;
    browser.element("[data-toast^='Committed']").await;
    browser.text_in("#unpushed-commits", "The agent's line").await;
    let committed = berth_testkit::git(&checkout, &["rev-parse", "HEAD"]);
    browser.click("#changes-push:not([disabled])").await;
    browser.element(&format!("[data-toast='Pushed main ({})']", &committed[..7])).await;
    assert_eq!(remote.head_of("main"), berth_testkit::git(&checkout, &["rev-parse", "HEAD"]));
    assert_eq!(berth_testkit::git(&checkout, &["log", "-1", "--format=%s"]), "The agent's line");

    // Unpushed commits: the delete dialog offers to push them first.
    berth_testkit::git(&checkout, &["commit", "-q", "--allow-empty", "-m", "not pushed yet"]);
    browser.goto(&server, &format!("/workspaces/{workspace}/settings")).await;
    browser.click("#delete-workspace").await;
    browser.text_in("#unsaved-work", "Unpushed commits: 1").await;
    browser.click("#push-now").await;
    browser.text_in("#dialog", "Everything is committed and pushed.").await;
    assert_eq!(remote.head_of("main"), berth_testkit::git(&checkout, &["rev-parse", "HEAD"]));
    browser.close().await;
    server.finish().await;
}

/// Whether the element `css` lies inside the chat's visible area.
async fn visible_in_chat(browser: &Browser, css: &str) -> bool {
    let script = "const [css] = arguments; const box = document.querySelector(css).getBoundingClientRect(); \
                  const chat = document.getElementById('messages').getBoundingClientRect(); \
                  return box.top >= chat.top - 1 && box.bottom <= chat.bottom + 1;";
    browser.client.execute(script, vec![json!(css)]).await.unwrap().as_bool().unwrap_or(false)
}

#[tokio::test]
async fn the_chat_brings_a_waiting_question_into_view_and_offers_the_newest_messages() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (server, _source, _workspace, browser) = on_a_workspace_page("long", "chat-follows").await;
    // A long history: a command with a lot of output.
    browser.element("#prompt").await.send_keys("$ seq 1 400\n").await.unwrap();
    browser.click(".question button[data-option='allow_once']:not([disabled])").await;
    browser.text_in("#messages", "exited with status 0").await;
    // The command's output block shows its tail (where the output was going), not its top.
    let tail = "const pre = document.querySelector('.tool pre');
                return pre.scrollHeight > pre.clientHeight && pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 20;";
    assert!(
        browser.client.execute(tail, vec![]).await.unwrap().as_bool().unwrap_or(false),
        "the output block stayed at its top"
    );
    // Messages say when they were sent (relative; exact on hover); each session starts below
    // a dated separator.
    let sent = browser.element(".msg.user time.stamp").await;
    assert_eq!(sent.text().await.unwrap(), "just now");
    assert!(
        sent.attr("title").await.unwrap().is_some_and(|exact| exact.contains("20")),
        "no exact time on hover"
    );
    browser.element(".msg.system.separator[data-code='session_started'] time").await;

    // The person scrolls back up; the agent then asks something: the question comes into view.
    browser.client.execute("document.getElementById('messages').scrollTop = 0;", vec![]).await.unwrap();
    browser.element("#prompt").await.send_keys("$ echo waiting-on-you\n").await.unwrap();
    let question = ".question:last-of-type button[data-option='allow_once']:not([disabled])";
    browser.element(question).await;
    assert!(visible_in_chat(&browser, question).await, "the waiting question is out of view");
    browser.screenshot("question-in-view").await;

    // Scrolled up again while output arrives: a pill offers the newest messages.
    browser.client.execute("document.getElementById('messages').scrollTop = 0;", vec![]).await.unwrap();
    // Pressed where it is, without the scroll a WebDriver click makes first.
    let press = format!("document.querySelector({question:?}).click();");
    browser.client.execute(&press, vec![]).await.unwrap();
    browser.element("#new-messages:not([hidden])").await;
    browser.click("#new-messages").await;
    browser.gone("#new-messages:not([hidden])").await;
    browser.text_in("#messages", "waiting-on-you").await;
    let at_bottom = browser
        .client
        .execute("const m = document.getElementById('messages'); return m.scrollTop + m.clientHeight >= m.scrollHeight - 40;", vec![])
        .await
        .unwrap();
    assert_eq!(at_bottom, json!(true), "the pill leads to the newest message");
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn signing_in_shows_no_null_and_returns_to_the_page_asked_for() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    // Signing out ends the browser's sign-in; another token signs in again.
    let (status, made) =
        server.call(reqwest::Method::POST, "/api/tokens", Some(json!({ "name": "again" }))).await;
    assert_eq!(status, 201, "{made}");
    let again = made["token"].as_str().unwrap().to_owned();
    let browser = Browser::open(&server, "sign-in-return").await;
    browser.click("#sign-out").await;
    browser.element("#signed-out").await;
    // Signed out, the account page sends the person to sign in, and back after.
    browser.goto(&server, "/account?tab=tokens").await;
    browser.element("#token").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(url.as_str().contains("/signin?next=%2Faccount"), "{url}");
    let text = browser.element("#main").await.text().await.unwrap();
    assert!(!text.contains("null"), "the sign-in page says null: {text}");
    // A wrong token keeps where the person was going.
    browser.element("#token").await.send_keys("wrong-token-for-sure\n").await.unwrap();
    browser.element("#signin-refused").await;
    browser.element("#token").await.send_keys(&format!("{again}\n")).await.unwrap();
    browser.element("#user-name").await;
    let url = browser.client.current_url().await.unwrap();
    assert_eq!((url.path(), url.query()), ("/account", Some("tab=tokens")), "{url}");
    browser.close().await;
    server.finish().await;
}

/// The page's background and text colours, as the browser computed them.
async fn page_colours(browser: &Browser) -> (String, String) {
    let script =
        "const style = getComputedStyle(document.body); return [style.backgroundColor, style.color];";
    let colours = browser.client.execute(script, vec![]).await.unwrap();
    (colours[0].as_str().unwrap().to_owned(), colours[1].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_dark_system_gets_a_dark_page() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "night").await;
    std::fs::write(server.checkout(&workspace).join("README.md"), "# night\nchanged\n").unwrap();
    let light = Browser::open(&server, "light").await;
    let (light_background, _) = page_colours(&light).await;
    light.close().await;
    assert_eq!(light_background, "rgb(246, 247, 249)");

    let dark = Browser::open_with(&server.base, "dark", TOKEN, &["--force-dark-mode"]).await;
    let (background, text) = page_colours(&dark).await;
    assert_eq!((background.as_str(), text.as_str()), ("rgb(15, 19, 24)", "rgb(227, 232, 238)"));
    dark.screenshot("dashboard").await;
    dark.goto(&server, &format!("/workspaces/{workspace}")).await;
    dark.text_in("#messages", "Agent ready").await;
    dark.click("#tab-changes").await;
    dark.element("#changes details[data-path='README.md']").await;
    dark.click("#changes details[data-path='README.md'] summary").await;
    let panel = dark
        .client
        .execute("return getComputedStyle(document.querySelector('#changes')).backgroundColor;", vec![])
        .await
        .unwrap();
    assert_eq!(panel, json!("rgb(23, 28, 34)"), "panels are dark too");
    dark.screenshot("workspace").await;
    dark.goto(&server, "/account").await;
    dark.element("#user-name").await;
    dark.screenshot("account").await;
    dark.close().await;
    server.finish().await;
}

#[tokio::test]
async fn the_preview_pane_lists_what_listens_in_the_sandbox_one_click_each() {
    if !have_browser() || !berth_testkit::have_program("bwrap", INSTALLER) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    // A network of the sandbox's own: what listens there is the sandbox's, not the host's.
    let server = start_with_sandboxes(
        // It starts listening a moment after the page is drawn, as a dev server does.
        |config| {
            config.agent_command = Some("sleep 3; exec python3 -m http.server 8123 --bind 127.0.0.1".into())
        },
        |sandboxes| {
            sandboxes.isolation = berth_sandbox::Isolation::Bwrap;
            sandboxes.network = berth_sandbox::Network::Isolated;
        },
    )
    .await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "ports").await;
    let browser = Browser::open(&server, "ports").await;
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.click("#tab-preview").await;
    browser.element("#preview-ports:not([hidden])").await;
    // Nobody presses "Look again": the port shows up by itself.
    browser.element("#preview-ports button[data-port='8123']").await;
    let listed: Vec<String> = {
        let mut ports = Vec::new();
        for button in browser.client.find_all(Locator::Css("#preview-ports button[data-port]")).await.unwrap()
        {
            ports.push(button.attr("data-port").await.unwrap().unwrap());
        }
        ports
    };
    assert_eq!(listed, vec!["8123"], "only the sandbox's own listener");
    browser.click("#preview-ports button[data-port='8123']").await;
    browser.element("#preview-iframe").await.enter_frame().await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let body = browser.client.find(Locator::Css("body")).await.unwrap().text().await.unwrap_or_default();
        if body.contains("README.md") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the preview never showed the listing: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.client.enter_parent_frame().await.unwrap();
    browser.screenshot("ports").await;
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn a_rejected_or_stopped_command_is_labelled_so_and_esc_stops_a_run() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (server, _source, _workspace, browser) = on_a_workspace_page("labels", "labels").await;

    // Rejected: "rejected", not a red FAILED; the title shows the command as code.
    browser.element("#prompt").await.send_keys("$ echo never-run\n").await.unwrap();
    browser.click(".question button[data-option='reject_once']:not([disabled])").await;
    browser.element(".tool .status[data-status='rejected']").await;
    let code = browser.element(".tool summary code").await.text().await.unwrap();
    assert_eq!(code, "echo never-run", "the title renders its backticks as code");

    // Stopped with Esc while it runs: "cancelled".
    browser.element("#prompt").await.send_keys("$ sleep 30\n").await.unwrap();
    browser.click(".question:last-of-type button[data-option='allow_once']:not([disabled])").await;
    browser.element(".tool .status[data-status='in_progress']").await;
    browser
        .element("#prompt")
        .await
        .send_keys(fantoccini::key::Key::Escape.to_string().as_str())
        .await
        .unwrap();
    browser.text_in("#messages", "Stopped.").await;
    browser.element(".tool .status[data-status='cancelled']").await;
    assert!(
        browser
            .client
            .find_all(Locator::Css(".tool .status[data-status='failed']"))
            .await
            .unwrap()
            .is_empty(),
        "nothing that did not fail is labelled failed"
    );
    browser.screenshot("labels").await;
    // Drawn again from the history, in the chat and in the tool pane alike: still
    // "cancelled", still nothing "failed".
    browser.client.refresh().await.unwrap();
    browser.text_in("#messages", "Stopped.").await;
    browser.element(".tool .status[data-status='cancelled']").await;
    browser.click("#tab-tools").await;
    browser.element("#tools-list .status[data-status='cancelled']").await;
    assert!(
        browser.client.find_all(Locator::Css("[data-status='failed']")).await.unwrap().is_empty(),
        "a stopped command reads failed once drawn again"
    );
    browser.close().await;
    server.finish().await;
}

/// Makes the page believe its tab is hidden (or shown again), as a browser does when the
/// person switches tabs.
async fn set_tab_hidden(browser: &Browser, hidden: bool) {
    let script = "const [hidden] = arguments; \
        Object.defineProperty(document, 'hidden', { value: hidden, configurable: true }); \
        Object.defineProperty(document, 'visibilityState', { value: hidden ? 'hidden' : 'visible', configurable: true }); \
        document.dispatchEvent(new Event('visibilitychange'));";
    browser.client.execute(script, vec![json!(hidden)]).await.unwrap();
}

#[tokio::test]
async fn a_hidden_tab_says_when_the_agent_asks_and_when_it_finished() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (server, _source, _workspace, browser) = on_a_workspace_page("attention", "attention").await;
    let title = || async { browser.client.title().await.unwrap() };
    let icon = || async {
        browser
            .client
            .execute("return document.querySelector('link[rel=icon]').getAttribute('href');", vec![])
            .await
            .unwrap()
    };
    assert_eq!(title().await, "attention · berth");

    set_tab_hidden(&browser, true).await;
    browser.element("#prompt").await.send_keys("$ echo hello\n").await.unwrap();
    browser.element(".question button[data-option='allow_once']:not([disabled])").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !title().await.starts_with("● The agent asks you") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hidden tab's title never said so: {}",
            title().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(icon().await, json!("/assets/icon-attention.svg"));
    set_tab_hidden(&browser, false).await;
    assert_eq!(title().await, "attention · berth", "back in the tab, the title is quiet again");
    assert_eq!(icon().await, json!("/assets/icon.svg"));

    // Hidden again while the command runs: its end is called out too.
    set_tab_hidden(&browser, true).await;
    browser.click(".question button[data-option='allow_once']:not([disabled])").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !title().await.starts_with("● The agent finished") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the turn's end was never called out: {}",
            title().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn settings_rename_switch_the_branch_and_the_agent_and_lead_to_delete() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "before").await;
    let browser = Browser::open(&server, "settings").await;
    browser.click(&format!("{} .menu summary", card(&workspace))).await;
    browser.click(&format!("{} .menu-items a", card(&workspace))).await;
    let name = browser.element("#setting-name").await;
    name.clear().await.unwrap();
    name.send_keys("after").await.unwrap();
    let branch = browser.element("#setting-branch").await;
    branch.clear().await.unwrap();
    branch.send_keys("feature").await.unwrap();
    // The agent is picked from the catalogue, as for a new workspace.
    browser.element("#agent option[value='builtin']:not([disabled])").await.click().await.unwrap();
    browser.screenshot("settings").await;
    browser.click("#settings-form button[type=submit]").await;
    browser.element("[data-toast='Settings saved']").await;
    let (_, saved) = server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}"), None).await;
    assert_eq!(
        (saved["name"].as_str(), saved["branch"].as_str(), saved["agent"].as_str()),
        (Some("after"), Some("feature"), Some("builtin"))
    );

    // A refusal is shown on the form, not lost.
    let branch = browser.element("#setting-branch").await;
    branch.clear().await.unwrap();
    branch.send_keys("no-such-branch").await.unwrap();
    browser.click("#settings-form button[type=submit]").await;
    browser.text_in("#settings-form .error-text", "git cannot switch to 'no-such-branch'").await;

    // Delete is reachable from the settings too, with the same confirmation.
    browser.click("#delete-workspace").await;
    browser.text_in("#dialog", "There is no recovery").await;
    browser.element("#confirm-name").await.send_keys("after").await.unwrap();
    browser.click("#confirm-delete").await;
    browser.element("#new-workspace").await;
    // The dashboard says what the delete did; the settings page's notices stayed there.
    browser.element("[data-toast='Deleted after']").await;
    assert!(
        browser.client.find_all(Locator::Css("[data-toast='Settings saved']")).await.unwrap().is_empty(),
        "a notice of the page left followed to the dashboard"
    );
    let (status, _) = server.call(reqwest::Method::GET, &format!("/api/workspaces/{workspace}"), None).await;
    assert_eq!(status, 404);
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn tokens_are_made_and_revoked_users_made_changed_and_disabled_and_sign_out_keeps_the_token() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let user = |name: &'static str| {
        let server = &server;
        async move {
            let (status, created) =
                server.call(reqwest::Method::POST, "/api/users", Some(json!({ "name": name }))).await;
            assert_eq!(status, 201, "{created}");
            created["token"].as_str().unwrap().to_owned()
        }
    };
    let (dana, erin) = (user("dana").await, user("erin").await);
    let as_token = |token: String| {
        let server = &server;
        async move {
            let response = server.http.get(format!("{}/api/me", server.base)).bearer_auth(token).send().await;
            response.unwrap().status().as_u16()
        }
    };

    // Dana makes a named token on the account page, sees it listed, and revokes it.
    let browser = Browser::open_as(&server.base, "tokens", &dana).await;
    browser.goto(&server, "/account").await;
    // An expiry to come reads as one: "in 7 days", not "just now".
    browser.element("#new-token input[name='name']").await.send_keys("weekly").await.unwrap();
    browser.element("#new-token input[name='days']").await.send_keys("7").await.unwrap();
    browser.click("#new-token button[type='submit']").await;
    let listed = browser.text_in("#tokens", "weekly").await;
    let weekly = listed.lines().find(|line| line.starts_with("weekly")).unwrap_or_default();
    assert!(weekly.ends_with("in 7 days Revoke"), "the expiry: {listed}");
    browser.element("#new-token input[name='name']").await.send_keys("ci-runner").await.unwrap();
    browser.click("#new-token button[type='submit']").await;
    let secret = browser.text_in("#new-token-secret", "berth_").await;
    assert_eq!(as_token(secret.clone()).await, 200);
    let row = browser.text_in("#tokens", "ci-runner").await;
    assert!(!row.contains(&secret), "the list shows no secret: {row}");
    browser.screenshot("account-tokens").await;
    browser.click("#tokens tr:first-child button[data-action='revoke']").await;
    // The page's own dialog asks (never the browser's confirm()).
    browser.text_in("#dialog", "Whatever uses it stops working at once").await;
    browser.click("#dialog[open] #dialog-confirm").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while as_token(secret.clone()).await != 401 {
        assert!(tokio::time::Instant::now() < deadline, "the revoked token still works");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The bar names who is signed in; the account page lists this browser's sign-in.
    browser.text_in("#signed-in-as", "dana").await;
    browser.text_in("#sign-ins tr.current", "this browser").await;
    // Sign out: this browser's sign-in ends, never the token it came from, so the same
    // login link signs in again.
    browser.click("#sign-out").await;
    browser.text_in("#signed-out", "login link and tokens still work").await;
    assert_eq!(as_token(dana.clone()).await, 200, "signing out revoked the token");
    browser.goto(&server, "/account").await;
    browser.element("#token").await;
    browser.goto(&server, &format!("/login?token={dana}")).await;
    browser.text_in("#signed-in-as", "dana").await;
    browser.close().await;

    // An administrator disables Erin from the admin page.
    let admin = Browser::open(&server, "users").await;
    admin.goto(&server, "/admin").await;
    admin.click("#admin-users tr[data-user='erin'] button[data-action='disable']").await;
    admin.click("#dialog[open] #dialog-confirm").await;
    admin.element("#admin-users tr[data-user='erin'] button[data-action='enable']").await;
    assert_eq!(as_token(erin).await, 401, "a disabled user's token stops");
    // Makes a user, whose login link is shown once, and makes Dana an administrator.
    admin.element("#new-user input[name='name']").await.send_keys("frank").await.unwrap();
    admin.click("#new-user button[type='submit']").await;
    let link = admin.text_in("#new-user-link", "/login?token=").await;
    let frank = link.split("token=").nth(1).unwrap().to_owned();
    assert_eq!(as_token(frank).await, 200, "the login link's token signs frank in");
    admin.text_in("#admin-users tr[data-user='frank']", "login link").await;
    admin
        .element("#admin-users tr[data-user='dana'] select[data-action='role'] option[value='admin']")
        .await
        .click()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (_, users) = server.call(reqwest::Method::GET, "/api/users", None).await;
        let dana =
            users["users"].as_array().unwrap().iter().find(|user| user["name"] == "dana").cloned().unwrap();
        if dana["role"] == "admin" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "dana never became an administrator: {dana}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin.screenshot("admin-users").await;
    admin.close().await;
    server.finish().await;
}

/// Signing in through the team's identity provider: berth's sign-in page offers it first,
/// the provider's own login and consent pages (a real OpenID provider on loopback) do the
/// rest, and the person lands on the page they asked for, signed in with their name.
#[tokio::test]
async fn a_person_signs_in_through_the_identity_providers_own_pages() {
    if !have_browser() || !berth_testkit::have_node_package("oidc-provider") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let port = berth_testkit::free_port();
    let accounts = json!({ "alice": { "name": "Alice Liddell", "email": "alice@example.com",
        "email_verified": true, "preferred_username": "alice", "groups": ["dev"] } });
    let mut provider = None;
    let server = start(|config| {
        let started = berth_testkit::OidcProvider::start(
            port,
            &format!("{}/auth/oidc/callback", config.public_url),
            &accounts,
            "",
        );
        config.oidc = Some(berth_engine::config::OidcSettings {
            issuer: started.issuer(),
            client_id: started.client_id.clone(),
            client_secret: Some(started.client_secret.clone()),
            display_name: "Example SSO".into(),
            scopes: ["openid", "profile", "email", "groups"].map(str::to_owned).to_vec(),
            username_claim: "preferred_username".into(),
            groups_claim: "groups".into(),
            allowed_groups: vec!["dev".into()],
            allowed_email_domains: Vec::new(),
            admin_groups: Vec::new(),
        });
        provider = Some(started);
    })
    .await;
    let browser = Browser::signed_out("single-sign-on").await;
    browser.goto(&server, "/account").await;
    browser.text_in("#oidc-sign-in", "Sign in with Example SSO").await;
    browser.screenshot("sign-in-page").await;
    browser.click("#oidc-sign-in").await;
    // The provider's own login page, then its consent page.
    browser.element("input[name='login']").await.send_keys("alice").await.unwrap();
    browser.element("input[name='password']").await.send_keys("anything").await.unwrap();
    browser.screenshot("provider-login").await;
    browser.click("button[type='submit']").await;
    browser.text_in("button[type='submit']", "Continue").await;
    browser.click("button[type='submit']").await;
    // Back on berth, on the page asked for, as alice with her name and email.
    browser.text_in("#user-name", "alice").await;
    browser.text_in("#signed-in-as", "alice").await;
    browser.text_in("#profile", "alice@example.com").await;
    browser.screenshot("signed-in").await;
    browser.close().await;
    drop(provider);
    server.finish().await;
}

/// Login CSRF: a login link someone sent (their own token) opened in a browser signed in
/// as another person does not switch it; a page names both, and only its button does.
#[tokio::test]
async fn a_login_link_opened_in_a_signed_in_browser_does_not_switch_it() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let (status, created) =
        server.call(reqwest::Method::POST, "/api/users", Some(json!({ "name": "mallory" }))).await;
    assert_eq!(status, 201, "{created}");
    let mallory = created["token"].as_str().unwrap().to_owned();
    let browser = Browser::open(&server, "login-link-while-signed-in").await;
    browser.text_in("#signed-in-as", "admin").await;

    browser.goto(&server, &format!("/login?token={mallory}&next=/account")).await;
    let page = browser.text_in("main", "You are signed in as admin").await;
    assert!(page.contains("mallory"), "{page}");
    browser.screenshot("switch-account").await;
    // Staying is the default: the browser is still admin's.
    browser.goto(&server, "/account").await;
    browser.text_in("#user-name", "admin").await;
    browser.text_in("#signed-in-as", "admin").await;

    // Switching is a deliberate press of the page's button.
    browser.goto(&server, &format!("/login?token={mallory}&next=/account")).await;
    browser.click("form[action='/login'] button[type='submit']").await;
    browser.text_in("#user-name", "mallory").await;
    browser.text_in("#signed-in-as", "mallory").await;
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn the_files_panel_browses_the_checkout_and_the_clone_log_reads_as_a_terminal_does() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    // Over HTTP, git prints progress counters that overwrite one another with carriage
    // returns.
    let remote = berth_testkit::GitHttpServer::start(&source, "me", "token-for-files");
    let credential = json!({ "host": format!("127.0.0.1:{}", remote.port), "username": "me", "secret": "token-for-files" });
    assert_eq!(server.call(reqwest::Method::POST, "/api/credentials", Some(credential)).await.0, 201);
    let workspace = server.ready_workspace_of(&remote.url(), "files").await;
    let raw = server
        .http
        .get(format!("{}/api/workspaces/{workspace}/init-log", server.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(raw.contains('\r'), "git printed no progress counters: {raw:?}");
    let browser = Browser::open(&server, "files").await;
    browser.goto(&server, &format!("/workspaces/{workspace}/settings")).await;
    browser.click("#init-log-details summary").await;
    let log = browser.text_in("#init-log", "Counting objects: 100%").await;
    for line in log.lines() {
        assert!(line.matches("objects:").count() <= 1, "progress ran together: {line:?}");
    }

    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.text_in("#messages", "Agent ready").await;
    browser
        .element("#prompt")
        .await
        .send_keys("$ mkdir -p src && echo 'fn main() {}' > src/main.rs\n")
        .await
        .unwrap();
    browser.click(".question button[data-option='allow_once']:not([disabled])").await;
    browser.text_in("#messages", "exited with status 0").await;
    browser.click("#tab-files").await;
    browser.click("#files-entries [data-entry='src']").await;
    browser.click("#files-entries [data-entry='main.rs']").await;
    browser.text_in("#file-view", "fn main() {}").await;
    browser.text_in("#files-path", "checkout / src / main.rs").await;
    browser.screenshot("file").await;
    browser.click("#files-path [data-crumb='']").await;
    browser.element("#files-entries [data-entry='README.md']").await;
    assert!(
        browser.client.find_all(Locator::Css("#files-entries [data-entry='.git']")).await.unwrap().is_empty(),
        ".git is not listed"
    );
    // Nothing stray under the listing (a missing note once read "null").
    let listing = browser.element("#files-body").await.text().await.unwrap();
    assert!(!listing.contains("null"), "{listing:?}");
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn quiet_lines_fold_closing_says_closed_and_a_deleted_workspace_says_so() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (server, _source, workspace, browser) = on_a_workspace_page("quiet", "quiet-lines").await;
    // Two reloads (each leaves, then opens a new session): started, ready, closed — one
    // quiet line per session, below its dated separator.
    for sessions in [2, 3] {
        browser.client.refresh().await.unwrap();
        let wait = format!("#messages .msg.system.separator:nth-of-type({sessions})");
        browser.text_in(&wait, "Agent ready").await;
    }
    let lines = browser.client.find_all(Locator::Css("#messages .msg.system")).await.unwrap();
    assert_eq!(lines.len(), 3, "the quiet lines are not folded");
    assert!(
        lines[0].text().await.unwrap().starts_with("Session started · Agent ready · Session closed"),
        "{}",
        lines[0].text().await.unwrap()
    );

    // A workspace cloned from a directory of the server offers no Push (it could only fail).
    browser.element("#statusbar #close-workspace").await;
    assert!(browser.client.find_all(Locator::Css("#push")).await.unwrap().is_empty(), "Push is offered");

    // Close workspace says the page's own words, whatever the live channel says first.
    browser.click("#close-workspace").await;
    browser.text_in("#session-ended", "Workspace closed. Its files are kept.").await;

    // Opened again, then deleted elsewhere: the tab says so and leads back.
    browser.click("#session-ended button").await;
    browser.text_in("#messages .msg.system.separator:last-of-type", "Agent ready").await;
    let separators = browser.client.find_all(Locator::Css("#messages .msg.system.separator")).await.unwrap();
    assert_eq!(separators.len(), 4, "a dated line for each session");
    let (status, deleted) =
        server.call(reqwest::Method::DELETE, &format!("/api/workspaces/{workspace}?force=true"), None).await;
    assert_eq!(status, 200, "{deleted}");
    browser.text_in("#workspace-deleted", "quiet was deleted").await;
    assert!(
        browser.client.find_all(Locator::Css("#session-ended")).await.unwrap().is_empty(),
        "no Open again for a deleted workspace"
    );
    browser.click("#workspace-deleted button").await;
    browser.element("#new-workspace").await;
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn account_settings_and_admin_pages_follow_a_sessions_state_live() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "shared").await;
    let browser = Browser::open(&server, "live-state").await;
    for (page, row) in [
        ("/account", "#sessions tr[data-session='{session}'] .badge[data-state='active']"),
        ("/admin", "#admin-sessions tr[data-session='{session}'] .badge[data-state='active']"),
        (&*format!("/workspaces/{workspace}/settings"), "#settings-state .badge[data-state='active']"),
    ] {
        browser.goto(&server, page).await;
        browser.element("#nav").await;
        // Opened and closed elsewhere (the API): the page follows without a reload.
        let (status, opened) =
            server.call(reqwest::Method::POST, &format!("/api/workspaces/{workspace}/open"), None).await;
        assert_eq!(status, 201, "{opened}");
        let session = opened["session"]["id"].as_str().unwrap();
        browser.element(&row.replace("{session}", session)).await;
        let (status, _) =
            server.call(reqwest::Method::POST, &format!("/api/sessions/{session}/close"), None).await;
        assert_eq!(status, 200);
        if page.ends_with("/settings") {
            browser.element("#settings-state .badge[data-state='idle']").await;
        } else {
            browser.gone(&format!("tr[data-session='{session}']")).await;
        }
    }
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn on_a_phone_the_chat_and_the_message_box_share_the_screen() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let (server, _source, _workspace, browser) = on_a_workspace_page("phone", "phone").await;
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.element("#prompt").await.send_keys("$ echo from-a-phone\n").await.unwrap();
    browser.element(".question button[data-option='allow_once']:not([disabled])").await;
    browser.element("#stop:not([hidden])").await;
    let script = "document.querySelector('.chat').scrollIntoView(); \
                  const box = (css) => document.querySelector(css).getBoundingClientRect(); \
                  return [innerHeight, box('.chat').height, box('#messages').height, \
                          box('#prompt').width, box('.chat').width, box('#stop').bottom, box('#prompt').top];";
    let sizes = browser.client.execute(script, vec![]).await.unwrap();
    let size = |index: usize| sizes[index].as_f64().unwrap();
    let (screen, chat, messages, prompt, chat_width, stop_bottom, prompt_top) =
        (size(0), size(1), size(2), size(3), size(4), size(5), size(6));
    browser.screenshot("chat").await;
    assert!(chat <= screen, "the chat is taller than the screen: {sizes}");
    assert!(messages >= screen * 0.45, "the messages get too little of the screen: {sizes}");
    assert!(prompt >= chat_width * 0.8, "Stop squeezes the message box: {sizes}");
    assert!(prompt_top >= 0.0 && stop_bottom <= screen, "the box and Stop are not both on screen: {sizes}");
    browser.close().await;
    server.finish().await;
}

/// Where `css`'s bottom edge is, and how tall the viewport is.
async fn bottom_and_viewport(browser: &Browser, css: &str) -> (f64, f64) {
    let script = format!(
        "const r = document.querySelector({css:?}).getBoundingClientRect(); return [r.bottom, window.innerHeight, r.top];"
    );
    let values = browser.client.execute(&script, vec![]).await.unwrap();
    let number = |index: usize| values[index].as_f64().unwrap();
    assert!(number(2) >= 0.0, "{css} starts above the viewport: {values}");
    (number(0), number(1))
}

#[tokio::test]
async fn the_terminal_types_into_the_sandbox_and_a_reload_returns_to_the_same_screen() {
    if !have_browser() || !berth_testkit::have_program("bwrap", INSTALLER) {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start_with_sandboxes(
        |config| config.agent_command = Some("exec sleep 100000".into()),
        |sandboxes| {
            sandboxes.isolation = berth_sandbox::Isolation::Bwrap;
            sandboxes.network = berth_sandbox::Network::Isolated;
        },
    )
    .await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "terminal").await;
    let browser = Browser::open(&server, "terminal").await;
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.click("#tab-terminal").await;
    browser.element(".xterm-rows").await;
    let keys = browser.element(".xterm-helper-textarea").await;
    keys.send_keys("echo $((6*7))\n").await.unwrap();
    browser.text_in(".xterm-rows", "42").await;
    // The sandbox's view: the server's data directory is not there.
    let data = server.data_dir.display().to_string();
    keys.send_keys(&format!("ls {data} 2>/dev/null || echo no-data-dir-here\n")).await.unwrap();
    browser.text_in(".xterm-rows", "no-data-dir-here").await;
    browser.screenshot("terminal").await;

    // A reload comes back to the same screen (the server redraws it).
    browser.client.refresh().await.unwrap();
    browser.element("#tab-terminal[aria-selected='true']").await;
    let screen = browser.text_in(".xterm-rows", "no-data-dir-here").await;
    assert!(screen.contains("42"), "{screen}");
    browser.element(".xterm-helper-textarea").await.send_keys("echo again-$((2+3))\n").await.unwrap();
    browser.text_in(".xterm-rows", "again-5").await;

    // It closes with the session.
    browser.click("#close-workspace").await;
    // Said by the terminal (its connection closed) or by the page (the session ended).
    browser.text_in(".xterm-rows", "ended").await;
    let (_, listed) = server.call(reqwest::Method::GET, "/api/sessions?state=live", None).await;
    assert_eq!(listed["sessions"], json!([]));
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn an_edit_saved_over_the_agents_change_is_a_conflict_that_shows_both() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "editing").await;
    let browser = Browser::open(&server, "editing").await;
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.text_in("#messages", "Agent ready").await;
    browser.click("#tab-files").await;
    browser.click("#files-entries [data-entry='README.md']").await;
    browser.text_in("#file-view", "demo").await;
    browser.click("#file-edit:not([disabled])").await;
    // The editor is loaded on first use, with its highlighting.
    browser.element("#files .CodeMirror").await;
    browser.screenshot("editor").await;
    // The agent writes the file while it is open.
    std::fs::write(server.checkout(&workspace).join("README.md"), "the agent's version\n").unwrap();
    browser.element("#files .CodeMirror textarea").await.send_keys("mine ").await.unwrap();
    browser.click("#file-save").await;
    browser.text_in("#file-changed", "changed since you opened it").await;
    browser.click("#file-theirs summary").await;
    browser.text_in("#file-theirs", "the agent's version").await;
    let on_disk = || std::fs::read_to_string(server.checkout(&workspace).join("README.md")).unwrap();
    assert_eq!(on_disk(), "the agent's version\n", "nothing is overwritten without asking");
    browser.click("#file-keep-mine").await;
    browser.element("[data-toast='Saved README.md']").await;
    assert!(on_disk().starts_with("mine "), "{}", on_disk());

    // A new file, through the same writes.
    browser.click("#file-cancel").await;
    browser.element("#file-view").await;
    browser.click("#files-path [data-crumb='']").await;
    browser.click("#file-new").await;
    browser.element("#file-new-name").await.send_keys("notes/today.md\n").await.unwrap();
    browser.element("[data-toast='Created notes/today.md']").await;
    assert!(server.checkout(&workspace).join("notes/today.md").is_file());
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn the_message_box_and_send_stay_in_view_with_a_long_conversation_on_a_laptop_and_a_phone() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let source = SourceRepo::new();
    let workspace = server.ready_workspace(&source, "long").await;
    let browser = Browser::open(&server, "long").await;
    browser.client.set_window_size(1280, 800).await.unwrap();
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.text_in("#messages", "Agent ready").await;
    browser.element("#prompt").await.send_keys("$ seq 2000\n").await.unwrap();
    browser.click(".question button[data-option='allow_once']:not([disabled])").await;
    browser.text_in("#messages", "exited with status 0").await;
    for (width, height) in [(1280, 800), (390, 844)] {
        browser.client.set_window_size(width, height).await.unwrap();
        browser.client.refresh().await.unwrap();
        browser.text_in("#messages", "exited with status 0").await;
        for css in ["#prompt", "#send"] {
            let (bottom, viewport) = bottom_and_viewport(&browser, css).await;
            assert!(
                bottom <= viewport,
                "{css} ends at {bottom} below the {viewport} px viewport at {width}×{height}"
            );
        }
        browser.screenshot(&format!("layout-{width}")).await;
    }
    browser.close().await;
    server.finish().await;
}

/// A loopback port forwarding to `target` slowly (a few hundred KiB a second): a network
/// that makes a clone take seconds.
async fn slow_proxy(target: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let Ok(server) = tokio::net::TcpStream::connect(target).await else { return };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
                let mut buffer = [0u8; 2048];
                while let Ok(read) = server_read.read(&mut buffer).await {
                    if read == 0 || client_write.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn a_slow_clone_shows_its_progress_as_git_reports_it() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    // Data that does not compress, so the clone has megabytes to receive.
    let source = SourceRepo::new();
    for part in 0..1u8 {
        let mut bytes = vec![0u8; 600_000];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut bytes).unwrap();
        std::fs::write(source.path.join(format!("blob-{part}.bin")), bytes).unwrap();
    }
    berth_testkit::git(&source.path, &["add", "."]);
    berth_testkit::git(&source.path, &["commit", "--quiet", "-m", "data"]);
    let remote = berth_testkit::GitHttpServer::start(&source, "me", "token-for-progress");
    let proxy = slow_proxy(format!("127.0.0.1:{}", remote.port)).await;
    let credential = json!({ "host": proxy, "username": "me", "secret": "token-for-progress" });
    assert_eq!(server.call(reqwest::Method::POST, "/api/credentials", Some(credential)).await.0, 201);
    let browser = Browser::open(&server, "progress").await;
    let repo = format!("http://{proxy}/demo.git");
    let (status, created) = server
        .call(reqwest::Method::POST, "/api/workspaces", Some(json!({ "repo": repo, "name": "slow" })))
        .await;
    assert_eq!(status, 202, "{created}");
    browser.goto(&server, &format!("/workspaces/{}", created["id"].as_str().unwrap())).await;
    // While the pack is on its way (the slow part), what git last said stays shown.
    let shown = browser.text_in("#clone-progress-text", "objects: ").await;
    assert!(shown.contains("% (") && shown.contains(" of "), "{shown}");
    browser.text_in("#init-log", "Cloning into").await;
    browser.element("#clone-progress progress").await;
    browser.screenshot("clone-progress").await;
    // And then the workspace opens.
    browser.text_in("#messages", "Agent ready").await;
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn a_disabled_users_tab_says_so_and_so_does_the_page_after_a_reload() {
    if !have_browser() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().await;
    let server = start(|_| {}).await;
    let (status, created) =
        server.call(reqwest::Method::POST, "/api/users", Some(json!({ "name": "dana" }))).await;
    assert_eq!(status, 201, "{created}");
    let (token, dana) =
        (created["token"].as_str().unwrap().to_owned(), created["user"]["id"].as_str().unwrap().to_owned());
    let source = SourceRepo::new();
    let repo = json!({ "repo": source.url(), "name": "hers" });
    let made = server
        .http
        .post(format!("{}/api/workspaces", server.base))
        .bearer_auth(&token)
        .json(&repo)
        .send()
        .await
        .unwrap();
    let workspace = made.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let browser = Browser::open_as(&server.base, "disabled", &token).await;
    browser.goto(&server, &format!("/workspaces/{workspace}")).await;
    browser.text_in("#messages", "Agent ready").await;

    let (status, _) = server
        .call(reqwest::Method::PATCH, &format!("/api/users/{dana}"), Some(json!({ "disabled": true })))
        .await;
    assert_eq!(status, 200);
    browser.text_in("#notices", "disabled").await;
    browser.client.refresh().await.unwrap();
    browser.text_in("#signin-disabled", "Your berth account is disabled").await;
    browser.screenshot("disabled").await;
    browser.close().await;
    server.finish().await;
}

#[tokio::test]
async fn claude_is_picked_for_a_new_workspace_its_key_added_on_the_page_and_its_tool_call_shown() {
    if !have_browser() {
        return;
    }
    let Some(claude) = berth_testkit::installed_agent("claude", "claude-agent-acp") else { return };
    let _one = ONE_AT_A_TIME.lock().await;
    let provider = berth_testkit::ModelStandIn::anthropic().await;
    let server = start(|config| {
        let entry = config.agents.iter_mut().find(|agent| agent.name == "claude").unwrap();
        entry.command = Some(berth_core::agents::command_line(&claude.to_string_lossy(), &[]));
        entry.env = vec![("ANTHROPIC_BASE_URL".into(), provider.url.clone())];
    })
    .await;
    let source = berth_testkit::claude_project();

    let browser = Browser::open(&server, "claude").await;
    browser.element("#new-workspace #repo").await.send_keys(&source.url()).await.unwrap();
    browser.element("#new-workspace #name").await.send_keys("with-claude").await.unwrap();
    browser.element("#agent option[value='claude']:not([disabled])").await.click().await.unwrap();
    // The key it needs, added right here.
    browser.text_in("#agent-needs", "Your ANTHROPIC_API_KEY").await;
    browser.element("#secret-ANTHROPIC_API_KEY").await.send_keys("sk-ant-from-the-page").await.unwrap();
    browser.screenshot("new-workspace-claude").await;
    browser.click("#new-workspace button[type=submit]").await;
    browser.element(".card[data-name='with-claude'] .badge[data-state='ready']").await;
    browser.click(".card[data-name='with-claude'] h3 a").await;
    browser.text_in("#agent-name", "claude").await;
    browser.text_in("#messages", "Agent ready").await;
    browser.element("#prompt").await.send_keys("Make the file\n").await.unwrap();
    // Claude's own options, by their kind: allow this once.
    browser.click(".tool .question button[data-kind='allow_once']:not([disabled])").await;
    browser.text_in("#messages", "The file is made.").await;
    browser.text_in(".tool summary", berth_testkit::STAND_IN_COMMAND).await;
    browser.screenshot("chat-claude").await;
    assert!(
        server
            .data_dir
            .join("workspaces")
            .read_dir()
            .unwrap()
            .any(|dir| { dir.unwrap().path().join(berth_testkit::STAND_IN_FILE).is_file() })
    );
    assert!(provider.keys().iter().all(|key| key == "sk-ant-from-the-page"), "{:?}", provider.keys());
    browser.close().await;
    server.finish().await;
}
