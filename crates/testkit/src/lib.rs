//! Helpers shared by berth's tests: real git repositories made in a temporary directory,
//! processes and containers to look for, a headless browser, stand-ins of model providers.
#![allow(clippy::unwrap_used)] // test helpers: a failure here is a broken test machine

mod browser;
mod model_stand_ins;
mod test_host;

pub use browser::{headless_chromium, headless_chromium_with};
pub use model_stand_ins::{ModelStandIn, STAND_IN_COMMAND, STAND_IN_FILE, claude_project, installed_agent};
pub use test_host::{PUBLIC_GATEWAY, PUBLIC_HOST, TestHost, can_make_namespaces};

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs git in `dir` with a fixed identity and returns its trimmed standard output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .args(["-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A repository with one commit on `main` (a README) and a branch `feature`.
pub struct SourceRepo {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl SourceRepo {
    pub fn new() -> SourceRepo {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo");
        std::fs::create_dir(&path).unwrap();
        git(&path, &["init", "--quiet"]);
        std::fs::write(path.join("README.md"), "# demo\n").unwrap();
        git(&path, &["add", "README.md"]);
        git(&path, &["commit", "--quiet", "-m", "first"]);
        git(&path, &["branch", "feature"]);
        SourceRepo { _dir: dir, path }
    }

    pub fn url(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    pub fn head(&self) -> String {
        git(&self.path, &["rev-parse", "HEAD"])
    }
}

impl Default for SourceRepo {
    fn default() -> Self {
        Self::new()
    }
}

/// Kills every sandbox the local driver recorded under `data_dir/sandboxes` (each
/// replica's directory there included), for test servers dropped without a shutdown: no
/// test leaves an agent process behind.
pub fn kill_recorded_sandboxes(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("sandboxes")) else { return };
    let entries: Vec<_> = entries
        .flatten()
        .flat_map(|entry| match std::fs::read_dir(entry.path()) {
            Ok(inner) => inner.flatten().collect(),
            Err(_) => vec![entry],
        })
        .collect();
    for entry in entries {
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        // The record is JSON with a numeric "pid", which is also the process group.
        let pid = text
            .split("\"pid\":")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).find(|part| !part.is_empty()))
            .and_then(|digits| digits.parse::<i32>().ok());
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pid}")]).status();
        }
    }
}

/// Whether process `pid` runs: it exists and is not a zombie waiting to be reaped.
pub fn process_runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// The processes whose command line (arguments joined by spaces) contains `marker`.
pub fn processes_with(marker: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != std::process::id() as i32 && process_runs(pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(marker))
        })
        .collect()
}

/// Whether a program a test needs is installed. When it is not, the test fails in CI
/// (`CI` set: `.ci/run` installs it) and is skipped locally with the printed reason.
pub fn have_program(program: &str, installed_by: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()));
    if !found {
        assert!(std::env::var("CI").is_err(), "{program} is not installed; {installed_by} installs it");
        eprintln!("skipped: {program} is not installed ({installed_by} installs it)");
    }
    found
}

/// A number no other test uses, to find this test's processes by their command line:
/// `sleep MARKER` is a process that waits (for years) and carries it.
pub fn unique_marker() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("9{:07}{:03}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Whether a Docker engine answers (at `DOCKER_HOST`, which `scripts/test.sh` points at
/// the engine it starts). When none does, the test fails in CI and is skipped locally.
pub fn have_docker() -> bool {
    let answers = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !answers {
        assert!(std::env::var("CI").is_err(), "no Docker engine answers; scripts/test.sh starts one");
        eprintln!("skipped: no Docker engine answers (scripts/test.sh starts one)");
    }
    answers
}

/// Builds (once per test process) a small local image for sandbox tests — no registry
/// is reachable: busybox, git, ssh, and the C libraries they and `berth` need (berth itself is
/// bind mounted by the driver) — with `docker import` of a root file system made here.
pub fn docker_test_image(berth: &Path) -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| build_test_image(&format!("berth-test-sandbox:{}", std::process::id()), berth, &[]))
        .clone()
}

/// [`docker_test_image`] with Node.js and bash besides, as a real coding agent needs:
/// the host's `node` and `bash` (and `/usr/bin/env`, which starts an npm package's
/// program).
pub fn docker_test_image_with_node(berth: &Path) -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let name = format!("berth-test-sandbox-node:{}", std::process::id());
            build_test_image(&name, berth, &[which("node"), which("bash")])
        })
        .clone()
}

/// Imports the test image `name`, with `programs` (and their libraries) at their paths.
fn build_test_image(name: &str, berth: &Path, programs: &[PathBuf]) -> String {
    let root = tempfile::tempdir().unwrap();
    let at = |path: &str| root.path().join(path.trim_start_matches('/'));
    for dir in ["bin", "tmp", "workspace", "etc"] {
        std::fs::create_dir_all(at(dir)).unwrap();
    }
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .expect("busybox is installed (scripts/test.sh installs busybox-static)");
    std::fs::copy(busybox, at("/bin/busybox")).unwrap();
    for applet in ["sh", "cat", "echo", "ls", "mkdir", "sleep", "touch", "httpd", "id", "ps"] {
        std::os::unix::fs::symlink("busybox", at(&format!("/bin/{applet}"))).unwrap();
    }
    // berth runs git in the sandbox: the host's git, with the helpers a clone
    // starts by name beside it.
    let git = which("git");
    std::fs::create_dir_all(at("/usr/bin")).unwrap();
    std::fs::copy(&git, at("/usr/bin/git")).unwrap();
    for helper in ["git-upload-pack", "git-receive-pack", "git-upload-archive"] {
        std::os::unix::fs::symlink("git", at(&format!("/usr/bin/{helper}"))).unwrap();
    }
    // The HTTP transport (a remote helper in git's own directory, where git looks).
    let exec_path = Command::new(&git).arg("--exec-path").output().unwrap();
    let exec_path = PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim());
    let remote_http = exec_path.join("git-remote-http");
    std::fs::create_dir_all(at(&exec_path.to_string_lossy())).unwrap();
    std::fs::copy(&remote_http, at(&remote_http.to_string_lossy())).unwrap();
    std::os::unix::fs::symlink("git-remote-http", at(&exec_path.join("git-remote-https").to_string_lossy()))
        .unwrap();
    // ssh, for repositories reached over SSH (and ssh-keyscan, which asks a new
    // server for its host key).
    let ssh = which("ssh");
    std::fs::copy(&ssh, at("/usr/bin/ssh")).unwrap();
    let keyscan = which("ssh-keyscan");
    std::fs::copy(&keyscan, at("/usr/bin/ssh-keyscan")).unwrap();
    // The shared libraries berth, git and ssh link, at the paths the loader looks
    // for them.
    for program in programs {
        std::fs::create_dir_all(at(&program.parent().unwrap().to_string_lossy())).unwrap();
        std::fs::copy(program, at(&program.to_string_lossy())).unwrap();
    }
    if !programs.is_empty() {
        std::os::unix::fs::symlink("/bin/busybox", at("/usr/bin/env")).unwrap();
        // The C library whole, as a distribution's image has it: agents bring native
        // programs of their own (Claude Code's needs librt).
        for library in ["libdl.so.2", "libpthread.so.0", "librt.so.1", "libutil.so.1", "libresolv.so.2"] {
            let path = Path::new("/lib/x86_64-linux-gnu").join(library);
            if path.exists() {
                std::fs::create_dir_all(at("/lib/x86_64-linux-gnu")).unwrap();
                std::fs::copy(&path, at(&path.to_string_lossy())).unwrap();
            }
        }
    }
    let base = [berth, git.as_path(), remote_http.as_path(), ssh.as_path(), keyscan.as_path()];
    for program in base.into_iter().chain(programs.iter().map(PathBuf::as_path)) {
        let ldd = Command::new("ldd").arg(program).output().unwrap();
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            let library = line.split("=>").last().unwrap_or(line).split_whitespace().next().unwrap_or("");
            if library.starts_with('/') && !at(library).exists() {
                std::fs::create_dir_all(at(library).parent().unwrap()).unwrap();
                std::fs::copy(library, at(library)).unwrap();
            }
        }
    }
    std::fs::write(at("/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let mut tar = Command::new("tar")
        .args(["-C", &root.path().to_string_lossy(), "-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let imported = Command::new("docker")
        .args(["import", "-", name])
        .stdin(tar.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(tar.wait().unwrap().success(), "tar of the root file system failed");
    assert!(imported.status.success(), "docker import: {}", String::from_utf8_lossy(&imported.stderr));
    name.to_owned()
}

/// Where `program` is on the `PATH`.
pub fn which(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path).map(|dir| dir.join(program)).find(|path| path.is_file())
        })
        .unwrap_or_else(|| panic!("{program} is not on the PATH"))
}

/// The ids of the containers (running or not) with `label` (`key=value`).
pub fn containers_with_label(label: &str) -> Vec<String> {
    let output = Command::new("docker")
        .args(["ps", "-a", "-q", "--no-trunc", "--filter", &format!("label={label}")])
        .output()
        .unwrap();
    assert!(output.status.success(), "docker ps: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// A client that reaches `base`'s host name on the loopback address, as browsers do for
/// names under `localhost` (a workspace's preview host), and follows no redirect, so a
/// test sees each one.
pub fn loopback_client(base: &str) -> reqwest::Client {
    let authority = base.split_once("://").map_or(base, |(_, rest)| rest);
    let host = authority.split(['/', ':']).next().unwrap_or(authority);
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(host, std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .build()
        .expect("a client with defaults builds")
}

/// A git server over HTTP with Basic auth (`git http-backend` behind a small server of
/// the test's own, `git_http.py`), serving a bare copy of a repository as `demo.git`.
pub struct GitHttpServer {
    child: std::process::Child,
    pub port: u16,
    /// The bare repository the server serves; tests read what was pushed from it.
    pub bare: PathBuf,
    _root: tempfile::TempDir,
}

impl GitHttpServer {
    pub fn start(source: &SourceRepo, user: &str, password: &str) -> GitHttpServer {
        let root = tempfile::tempdir().unwrap();
        let bare = root.path().join("demo.git");
        git(root.path(), &["clone", "--quiet", "--bare", &source.url(), &bare.to_string_lossy()]);
        let script = root.path().join("git_http.py");
        std::fs::write(&script, include_str!("git_http.py")).unwrap();
        let mut child = Command::new(which("python3"))
            .arg(&script)
            .arg(root.path())
            .env("GIT_HTTP_USER", user)
            .env("GIT_HTTP_PASSWORD", password)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port = line.trim().parse().expect("the git server prints its port");
        GitHttpServer { child, port, bare, _root: root }
    }

    /// The repository's URL, with no credentials in it.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/demo.git", self.port)
    }

    /// The commit `branch` points at on the server.
    pub fn head_of(&self, branch: &str) -> String {
        git(&self.bare, &["rev-parse", &format!("refs/heads/{branch}")])
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SSH git server for tests: Debian's `sshd` on a loopback port with a throwaway host
/// key, serving a bare copy of a repository to the keys it is told to authorise.
pub struct SshGitServer {
    child: std::process::Child,
    pub port: u16,
    pub bare: PathBuf,
    root: tempfile::TempDir,
}

impl SshGitServer {
    pub fn start(source: &SourceRepo) -> SshGitServer {
        let root = tempfile::tempdir().unwrap();
        let bare = root.path().join("demo.git");
        git(root.path(), &["clone", "--quiet", "--bare", &source.url(), &bare.to_string_lossy()]);
        std::fs::write(root.path().join("authorized_keys"), "").unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = SshGitServer::spawn(root.path(), port);
        SshGitServer { child, port, bare, root }
    }

    fn spawn(root: &Path, port: u16) -> std::process::Child {
        let host_key = root.join("host_key");
        let _ = std::fs::remove_file(&host_key);
        let _ = std::fs::remove_file(root.join("host_key.pub"));
        let made = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key)
            .output()
            .unwrap();
        assert!(made.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&made.stderr));
        let config = root.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
                 StrictModes no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nLogLevel ERROR\n",
                host_key.display(),
                root.join("authorized_keys").display(),
                root.join("sshd.pid").display()
            ),
        )
        .unwrap();
        let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .expect("sshd is installed (scripts/test.sh installs openssh-server)");
        let mut child = Command::new(sshd).args(["-D", "-e", "-f"]).arg(&config).spawn().unwrap();
        // Ready once it greets.
        let greets = || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut stream| {
                let mut greeting = [0u8; 4];
                std::io::Read::read_exact(&mut stream, &mut greeting).is_ok() && &greeting == b"SSH-"
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !greets() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("sshd did not start on port {port}");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        child
    }

    /// Lets `public_key` (an OpenSSH line) in.
    pub fn authorize(&self, public_key: &str) {
        let path = self.root.path().join("authorized_keys");
        let mut keys = std::fs::read_to_string(&path).unwrap();
        keys.push_str(public_key.trim());
        keys.push('\n');
        std::fs::write(path, keys).unwrap();
    }

    /// The same server on the same port with a new host key, as a server in between would.
    pub fn restart_with_a_new_host_key(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = SshGitServer::spawn(self.root.path(), self.port);
    }

    /// `ssh://<this user>@127.0.0.1:<port>/<path of the bare repository>`.
    pub fn url(&self) -> String {
        let user = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
            .trim()
            .to_owned();
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, self.bare.display())
    }

    pub fn head_of(&self, branch: &str) -> String {
        git(&self.bare, &["rev-parse", &format!("refs/heads/{branch}")])
    }
}

impl Drop for SshGitServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that forwards connections to `target` (`host:port`) until it is cut:
/// then every connection closes at once and new ones are refused — a database or a
/// server that goes away.
pub struct CuttableProxy {
    pub address: String,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(target: &str) -> CuttableProxy {
        CuttableProxy::start_on("127.0.0.1:0", target).await
    }

    /// A proxy on `address` (the one a cut proxy had: the database comes back).
    pub async fn start_on(address: &str, target: &str) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind(address).await.expect("a loopback port");
        let address = listener.local_addr().expect("its address").to_string();
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        CuttableProxy { address, task }
    }

    /// Closes every connection and the port.
    pub async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A fresh database on the PostgreSQL server `BERTH_TEST_POSTGRES_URL` names (which
/// `scripts/test.sh` starts).
pub struct PostgresDatabase {
    /// `postgres://user@`
    user: String,
    /// The server's `host:port`.
    pub address: String,
    name: String,
}

impl PostgresDatabase {
    /// Makes one. `None` (saying why) outside CI when no server is named; in CI a missing
    /// server fails the test.
    pub fn create() -> Option<PostgresDatabase> {
        let Ok(server) = std::env::var("BERTH_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "BERTH_TEST_POSTGRES_URL is not set: run scripts/test.sh"
            );
            eprintln!(
                "skipping: BERTH_TEST_POSTGRES_URL is not set (scripts/test.sh starts a PostgreSQL server)"
            );
            return None;
        };
        let name = format!("berth_test_{}", unique_marker());
        let status = std::process::Command::new("psql")
            .arg(&server)
            .args(["-qc", &format!("CREATE DATABASE {name}")])
            .status()
            .expect("psql runs");
        assert!(status.success(), "cannot make a database on {server}");
        let (user, rest) = server.split_once('@').expect("postgres://user@host:port/db");
        let (address, _) = rest.split_once('/').expect("postgres://user@host:port/db");
        Some(PostgresDatabase { user: format!("{user}@"), address: address.to_owned(), name })
    }

    pub fn url(&self) -> String {
        self.url_via(&self.address)
    }

    /// The database's URL through another `host:port` (a proxy).
    pub fn url_via(&self, address: &str) -> String {
        format!("{}{address}/{}", self.user, self.name)
    }
}

/// Signs a browser in at the berth server `base` with a login link's `token`, as a
/// browser does: the `berth_token=…` pair of the sign-in's cookie (never the token).
pub async fn sign_in_cookie(base: &str, token: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = http.get(format!("{base}/login?token={token}")).send().await.unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::SEE_OTHER, "the login link was refused");
    let cookie = login.headers()[reqwest::header::SET_COOKIE].to_str().unwrap();
    cookie.split(';').next().unwrap().to_owned()
}

/// Where the test script installs the npm packages tests run (`oidc-provider`):
/// `BERTH_TEST_NODE`, else `~/.cache/berth-test-node`.
pub fn node_packages() -> PathBuf {
    std::env::var_os("BERTH_TEST_NODE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/berth-test-node")
    })
}

/// Whether the npm package `name` is installed for the tests. When it is not, the test
/// fails in CI (`scripts/test.sh` installs it) and is skipped locally with the reason.
pub fn have_node_package(name: &str) -> bool {
    let found = have_program("node", "scripts/test.sh")
        && node_packages().join("node_modules").join(name).join("package.json").is_file();
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "the npm package {name} is not installed; scripts/test.sh installs it"
        );
        eprintln!("skipped: the npm package {name} is not installed (scripts/test.sh installs it)");
    }
    found
}

/// A real OpenID Connect provider (panva's `oidc-provider`) on a loopback port, with one
/// client and the accounts given; `tamper` is fault injection beside it (`""`,
/// `"wrong-nonce"`, `"other-key"`). Stopped when dropped.
pub struct OidcProvider {
    child: std::process::Child,
    pub port: u16,
    pub client_id: String,
    pub client_secret: String,
}

impl OidcProvider {
    /// Starts the provider on `port` (0: a free one) for a client whose redirect URI is
    /// `redirect_uri`; `accounts` maps each login to its claims.
    pub fn start(port: u16, redirect_uri: &str, accounts: &serde_json::Value, tamper: &str) -> OidcProvider {
        let port = if port == 0 { free_port() } else { port };
        // An ES module finds its packages beside it: the script goes where they are.
        let dir = node_packages();
        let script = dir.join(format!("berth-oidc-provider-{}.mjs", std::process::id()));
        std::fs::write(&script, include_str!("oidc_provider.mjs")).unwrap();
        let (client_id, client_secret) = ("berth-test".to_owned(), "berth-test-client-secret".to_owned());
        let mut child = Command::new("node")
            .arg(&script)
            .env("PORT", port.to_string())
            .env("CLIENT_ID", &client_id)
            .env("CLIENT_SECRET", &client_secret)
            .env("REDIRECT_URI", redirect_uri)
            .env("ACCOUNTS", accounts.to_string())
            .env("TAMPER", tamper)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(line.starts_with("ready"), "the OpenID provider did not start: {line}");
        // What it prints later (its notices) is read and dropped: a closed pipe kills it.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        OidcProvider { child, port, client_id, client_secret }
    }

    /// The issuer URL (where discovery is).
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
