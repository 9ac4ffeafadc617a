//! Terminals: an interactive shell on a pseudo-terminal inside a running sandbox, as its
//! agent sees the machine — the same user, namespaces, limits and environment. The
//! driver hands back the terminal's output and a channel for what is typed and resizes;
//! dropping that channel hangs the terminal up.

use tokio::sync::mpsc;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

impl TerminalSize {
    /// The most rows or columns a terminal may have; more is taken as this.
    pub const MAX: u16 = 1000;

    /// A size within bounds: at least one cell each way, at most [`TerminalSize::MAX`].
    pub fn bounded(rows: u16, cols: u16) -> TerminalSize {
        TerminalSize { rows: rows.clamp(1, Self::MAX), cols: cols.clamp(1, Self::MAX) }
    }
}

impl Default for TerminalSize {
    fn default() -> TerminalSize {
        TerminalSize { rows: 24, cols: 80 }
    }
}

/// What goes to a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminalInput {
    /// Bytes typed.
    Data(Vec<u8>),
    Resize(TerminalSize),
}

/// A running terminal: its output until its shell ends (then the reader ends), and where
/// input goes. Dropping `input` hangs the terminal up and stops its shell.
pub struct TerminalIo {
    /// Chunks of output; ends when the terminal's shell has ended.
    pub output: mpsc::Receiver<Vec<u8>>,
    pub input: mpsc::Sender<TerminalInput>,
}

/// The shell line run in a terminal: the sandbox's private environment exported when it
/// has one (`/run/berth/env`, as for the agent), then the first interactive shell there is.
pub(crate) const SHELL_LINE: &str = "if [ -r /run/berth/env ]; then set -a; . /run/berth/env; set +a; fi
cd -- \"$1\" 2>/dev/null
mkdir -p \"$HOME\" 2>/dev/null
if command -v bash >/dev/null 2>&1; then exec bash -i; fi
exec sh -i";

/// How long the output already written is still read after the shell has ended.
const DRAIN: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `line` (a program and its arguments) on a new pseudo-terminal of `size`, with
/// exactly `env`, in `dir`, as the leader of a session of its own. When the returned
/// input is dropped the program is killed (its session's foreground is then hung up by
/// the kernel); when the program ends, the output ends.
pub(crate) fn spawn_on_pty(
    line: &[std::ffi::OsString],
    env: &[(String, String)],
    dir: &std::path::Path,
    size: TerminalSize,
) -> std::io::Result<TerminalIo> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pty_error = |error: pty_process::Error| std::io::Error::other(error.to_string());
    let (pty, pts) = pty_process::open().map_err(pty_error)?;
    pty.resize(pty_process::Size::new(size.rows, size.cols)).map_err(pty_error)?;
    let mut child = pty_process::Command::new(&line[0])
        .args(&line[1..])
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .current_dir(dir)
        .kill_on_drop(true)
        .spawn(pts)
        .map_err(pty_error)?;
    let pid = child.id().and_then(|pid| i32::try_from(pid).ok());
    let (mut reader, mut writer) = pty.into_split();
    let (output_sender, output) = mpsc::channel::<Vec<u8>>(64);
    let (input, mut inputs) = mpsc::channel::<TerminalInput>(64);
    let ended = tokio_util::sync::CancellationToken::new();
    let hung_up = tokio_util::sync::CancellationToken::new();
    let ended_input = ended.clone();
    // The program: it ends by itself, or is killed when the terminal is hung up.
    tokio::spawn({
        let (ended, hung_up) = (ended.clone(), hung_up.clone());
        async move {
            tokio::select! {
                _ = child.wait() => {}
                () = hung_up.cancelled() => {
                    if let Some(pid) = pid {
                        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                }
            }
            ended.cancel();
        }
    });
    // Its output, until it ends (then what is left is read briefly: a program left in the
    // background may hold the terminal open for ever).
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut deadline = None;
        loop {
            let read = async {
                match deadline {
                    Some(deadline) => tokio::time::timeout_at(deadline, reader.read(&mut buffer)).await.ok(),
                    None => tokio::select! {
                        read = reader.read(&mut buffer) => Some(read),
                        () = ended.cancelled() => None,
                    },
                }
            };
            match read.await {
                Some(Ok(0) | Err(_)) => break,
                Some(Ok(n)) => {
                    if output_sender.send(buffer[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
                None if deadline.is_none() => deadline = Some(tokio::time::Instant::now() + DRAIN),
                None => break,
            }
        }
    });
    // What is typed, and resizes; the end of the input hangs the terminal up.
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                message = inputs.recv() => message,
                () = ended_input.cancelled() => None,
            };
            let Some(message) = message else { break };
            match message {
                TerminalInput::Data(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                TerminalInput::Resize(size) => {
                    let _ = writer.resize(pty_process::Size::new(size.rows, size.cols));
                }
            }
        }
        hung_up.cancel();
    });
    Ok(TerminalIo { output, input })
}
