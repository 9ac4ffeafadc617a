//! `berth serve` as a child process on a free loopback port, for the bench and the drills:
//! its memory is its own, and it can be killed with SIGKILL and started again on the
//! same data directory.

use anyhow::{Context, bail};
use berth_server::client::Client;
use berth_server::wire::CreateWorkspaceRequest;
use reqwest::Method;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A stand-in agent that only waits: its session is live and its agent connection
/// waits for an answer, as a slow agent's would. For figures about berth itself.
pub const WAITING_AGENT: &str = "exec sleep 2147483647";

/// The replica id of a server started here (its sandboxes are recorded under
/// `sandboxes/<id>` of its data directory).
pub const REPLICA: &str = "harness";

pub struct ServeProcess {
    child: std::process::Child,
    pub base: String,
    data: PathBuf,
    token: String,
    settings: Vec<(String, String)>,
}

impl ServeProcess {
    /// Starts `berth serve` on `data` with the admin token `token` and the extra
    /// `BERTH_*` settings, and waits until it answers.
    pub async fn start(data: &Path, token: &str, settings: &[(&str, &str)]) -> anyhow::Result<ServeProcess> {
        let settings = settings.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        ServeProcess::spawn(data.to_owned(), token.to_owned(), settings).await
    }

    async fn spawn(
        mut data: PathBuf,
        mut token: String,
        mut settings: Vec<(String, String)>,
    ) -> anyhow::Result<ServeProcess> {
        // A port found free may be taken by someone else before the server binds it: a
        // server that exits at once is started again on another port.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let exe = std::env::current_exe().context("cannot find the berth binary")?;
            let child = std::process::Command::new(exe)
                .arg("serve")
                .env("BERTH_DATA", &data)
                .env("BERTH_GIT_LOCAL_ROOTS", std::env::temp_dir())
                .env("BERTH_LISTEN", format!("127.0.0.1:{port}"))
                .env("BERTH_PREVIEW_LISTEN", "127.0.0.1:0")
                .env("BERTH_ADMIN_TOKEN", &token)
                .env("BERTH_SESSIONS_PER_USER", "100000")
                .env("BERTH_RUNNING_SANDBOXES", "100000")
                // Drills and benchmarks send prompts as fast as turns end.
                .env("BERTH_PROMPTS_PER_SECOND", "1000000")
                .env("BERTH_LOG", "error")
                // The same replica on every restart, whatever port it gets.
                .env("BERTH_REPLICA_ID", REPLICA)
                .envs(settings.iter().map(|(key, value)| (key, value)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .context("cannot start berth serve")?;
            let mut server =
                ServeProcess { child, base: format!("http://127.0.0.1:{port}"), data, token, settings };
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(response) = http.get(format!("{}/readyz", server.base)).send().await
                    && response.status().is_success()
                {
                    return Ok(server);
                }
                if server.child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("berth serve did not answer within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            data = std::mem::take(&mut server.data);
            token = std::mem::take(&mut server.token);
            settings = std::mem::take(&mut server.settings);
        }
        bail!("berth serve exited at start five times (see its error output above)")
    }

    /// The server process's resident memory.
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .context("no VmRSS for the server")
    }

    /// Stops the server as an operator would (SIGTERM) and waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        self.child.wait()?;
        Ok(())
    }

    /// `kill -9` of the server.
    pub fn crash(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// `kill -9` of the server, then a new one on the same data directory and settings.
    pub async fn crash_and_restart(mut self) -> anyhow::Result<ServeProcess> {
        self.child.kill()?;
        self.child.wait()?;
        let (data, token, settings) = (
            std::mem::take(&mut self.data),
            std::mem::take(&mut self.token),
            std::mem::take(&mut self.settings),
        );
        ServeProcess::spawn(data, token, settings).await
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bench's and the drills' client: [`berth_server::client::Client`] with one token,
/// answers read as JSON values where a figure only needs a field or two.
#[derive(Clone)]
pub struct Api {
    pub client: Client,
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn new(base: String, token: &str) -> Api {
        Api { client: Client::new(&base, token), http: reqwest::Client::new(), base, token: token.to_owned() }
    }

    /// The status and body of a request, whatever the status.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<(reqwest::StatusCode, Value)> {
        let response = request.bearer_auth(&self.token).send().await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self.client.json(Method::POST, path, Some(&body)).await?)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.client.json(Method::GET, path, None).await?)
    }

    pub async fn ready_workspace(&self, repo: &str, name: &str) -> anyhow::Result<String> {
        let request = CreateWorkspaceRequest {
            repo: repo.to_owned(),
            name: Some(name.to_owned()),
            ..Default::default()
        };
        let workspace = self.client.create_settled(&request, Duration::from_secs(600)).await?;
        if workspace.state != "ready" {
            bail!("workspace {name} did not become ready: {} {:?}", workspace.state, workspace.error);
        }
        Ok(workspace.id)
    }

    pub async fn open(&self, workspace: &str) -> anyhow::Result<String> {
        Ok(self.client.open(workspace).await?.session.id)
    }

    pub async fn attach(&self, session: &str, after: i64) -> anyhow::Result<Live> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url =
            format!("{}/api/sessions/{session}/live?after={after}", self.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request()?;
        request.headers_mut().insert("authorization", format!("Bearer {}", self.token).parse()?);
        Ok(Live { socket: tokio_tungstenite::connect_async_with_config(request, None, true).await?.0 })
    }

    pub async fn close(&self, session: &str) -> anyhow::Result<()> {
        self.post(&format!("/api/sessions/{session}/close"), Value::Null).await.map(drop)
    }
}

/// A live-channel client.
pub struct Live {
    pub socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Live {
    pub async fn send(&mut self, command: Value) -> anyhow::Result<()> {
        use futures::SinkExt;
        self.socket.send(tokio_tungstenite::tungstenite::Message::Text(command.to_string().into())).await?;
        Ok(())
    }

    /// Reads frames until one satisfies `done`.
    pub async fn until(&mut self, mut done: impl FnMut(&Value) -> bool) -> anyhow::Result<()> {
        use futures::StreamExt;
        while let Some(message) = self.socket.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(text) = message?
                && done(&serde_json::from_str(&text)?)
            {
                return Ok(());
            }
        }
        bail!("the live channel closed")
    }
}

/// Makes `count` ready workspaces, a few clones at a time.
pub async fn make_workspaces(
    api: &Api,
    repo: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    use futures::StreamExt;
    let made: Vec<anyhow::Result<String>> = futures::stream::iter(0..count)
        .map(|n| async move { api.ready_workspace(repo, &format!("{prefix}-{n}")).await })
        .buffer_unordered(8)
        .collect()
        .await;
    made.into_iter().collect()
}

pub fn tempfile_dir(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("berth-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// A small repository to clone, made with git in `dir`.
pub fn make_repository(dir: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("README.md"), "# bench\n")?;
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let status = Command::new("git")
            .current_dir(dir)
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "user.name=bench",
                "-c",
                "user.email=bench@invalid",
            ])
            .args(args)
            .output()
            .context("cannot run git")?
            .status;
        if !status.success() {
            bail!("git {args:?} failed");
        }
        Ok(())
    };
    git(&["init", "--quiet"])?;
    git(&["add", "README.md"])?;
    git(&["commit", "--quiet", "-m", "bench"])?;
    Ok(dir.to_string_lossy().into_owned())
}
