//! A sandbox's own network namespace, seen from the host: user-mode networking for its
//! outbound traffic (slirp4netns, as rootless Podman does), and connections into it for
//! the live preview, made from a thread that has entered the namespace — so two
//! sandboxes can both serve port 3000 and each preview reaches its own.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const SLIRP_READY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long bubblewrap may take to fork the sandbox or set up its loopback.
const SETUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Polling step while waiting for those: they take a few milliseconds, and the timer
/// of the async runtime only counts whole ones.
const SETUP_POLL: Duration = Duration::from_micros(100);

/// Waits on a blocking thread, polling finely, until `ready` gives a value.
async fn poll_until<T: Send + 'static>(mut ready: impl FnMut() -> Option<T> + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
        loop {
            if let Some(value) = ready() {
                return Some(value);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(SETUP_POLL);
        }
    })
    .await
    .ok()
    .flatten()
}

/// The first process of a sandbox started by `bwrap` (pid `monitor`): it holds the
/// sandbox's namespaces. Waits briefly for it to be forked.
pub async fn sandbox_process(monitor: i32) -> Option<i32> {
    let children = format!("/proc/{monitor}/task/{monitor}/children");
    poll_until(move || {
        let text = std::fs::read_to_string(&children).ok()?;
        text.split_whitespace().next().and_then(|pid| pid.parse().ok())
    })
    .await
}

/// The program bubblewrap (pid `monitor`) runs in the sandbox: the child of the
/// sandbox's first process, forked only once the sandbox is set up — its mounts made and
/// its root pivoted. Entering the first process any earlier would enter a mount
/// namespace that still shows the host. Waits briefly for it.
pub async fn sandbox_program(monitor: i32) -> Option<i32> {
    let first = sandbox_process(monitor).await?;
    let children = format!("/proc/{first}/task/{first}/children");
    poll_until(move || {
        let text = std::fs::read_to_string(&children).ok()?;
        text.split_whitespace().next().and_then(|pid| pid.parse().ok())
    })
    .await
}

/// Whether process `pid` sees another root than this process: a sandbox whose root is
/// pivoted, never the host's.
pub fn has_own_root(pid: i32) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(format!("/proc/{pid}/root/")), std::fs::metadata("/")) {
        (Ok(theirs), Ok(ours)) => (theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()),
        _ => false,
    }
}

/// Outbound networking for the namespace of process `pid`. It stops when the returned
/// child is dropped (its standard input, the exit signal, closes) or when the server
/// dies; it is killed on drop as well.
pub async fn start_slirp(pid: i32) -> std::io::Result<tokio::process::Child> {
    // bubblewrap brings the namespace's loopback up itself; slirp4netns configuring the
    // namespace at the same moment makes that fail, so it waits until loopback is up.
    let fib = format!("/proc/{pid}/net/fib_trie");
    let loopback_up = move || std::fs::read_to_string(&fib).ok()?.contains("127.0.0.1").then_some(());
    if poll_until(loopback_up).await.is_none() {
        return Err(std::io::Error::other("the sandbox's loopback never came up"));
    }
    let mut child = tokio::process::Command::new("slirp4netns")
        .args(["--configure", "--mtu=65520", "--disable-host-loopback", "--exit-fd=0", "--ready-fd=1"])
        .arg(pid.to_string())
        .arg("tap0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut ready = child.stdout.take().ok_or_else(|| std::io::Error::other("no ready pipe"))?;
    let mut byte = [0u8; 1];
    match tokio::time::timeout(SLIRP_READY_TIMEOUT, ready.read(&mut byte)).await {
        Ok(Ok(1)) => Ok(child),
        Ok(_) => Err(std::io::Error::other("slirp4netns ended before the network was up")),
        Err(_) => Err(std::io::Error::other("slirp4netns did not bring the network up in time")),
    }
}

/// A TCP connection to `port` on the loopback of process `pid`'s network namespace.
pub async fn connect_inside(pid: i32, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let namespace = PathBuf::from(format!("/proc/{pid}/ns/net"));
    let (sender, receiver) = tokio::sync::oneshot::channel();
    // Entering a namespace changes the calling thread for good, so a thread of its own
    // does it and ends with the connection made.
    std::thread::Builder::new().name("berth-netns".into()).spawn(move || {
        let connect = || -> std::io::Result<std::net::TcpStream> {
            let file = std::fs::File::open(&namespace)?;
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let stream = std::net::TcpStream::connect_timeout(&address, CONNECT_TIMEOUT)?;
            stream.set_nonblocking(true)?;
            Ok(stream)
        };
        let _ = sender.send(connect());
    })?;
    let stream = receiver.await.map_err(|_| std::io::Error::other("the namespace thread ended"))??;
    tokio::net::TcpStream::from_std(stream)
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_has_the_hosts_root() {
        let own = i32::try_from(std::process::id()).unwrap_or_default();
        assert!(!super::has_own_root(own), "a process on the host root is not a sandbox");
        assert!(!super::has_own_root(i32::MAX), "a process that is not there is not a sandbox");
    }
}
