//! [`Terminals`]: shells on pseudo-terminals inside a live session's sandbox, for the
//! session's owner only, run on the replica that owns the session. Each keeps the state
//! of its screen (a terminal emulator fed with everything the shell prints), so whoever
//! attaches — a reload, a dropped connection coming back — is first sent the current
//! screen redrawn, not a replay of raw bytes; then what comes. A terminal ends when its
//! shell exits, when it is closed, or when its session ends.

use crate::{EngineError, Services};
use berth_core::{SessionId, TerminalId, User};
use berth_sandbox::{SandboxError, TerminalInput, TerminalSize};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

crate::service!(Terminals);

/// The most terminals one session may have open at once.
pub const MAX_TERMINALS_PER_SESSION: usize = 8;
/// Lines kept above the screen (the emulator's own; a redraw shows the screen).
const SCROLLBACK_LINES: usize = 1000;
/// Output chunks a slow viewer may fall behind by before it is sent the screen again.
const OUTPUT_BACKLOG: usize = 1024;
/// The most bytes of one input message.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

/// One terminal, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalInfo {
    pub id: TerminalId,
    pub session_id: SessionId,
    pub created_at: DateTime<Utc>,
}

/// The terminals running on this replica.
#[derive(Default)]
pub(crate) struct TerminalRegistry {
    running: Mutex<HashMap<TerminalId, Arc<Terminal>>>,
}

impl TerminalRegistry {
    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<TerminalId, Arc<Terminal>>> {
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

struct Terminal {
    info: TerminalInfo,
    /// The screen as the shell drew it, and the feed of what comes after: taken together
    /// under this lock, so a viewer misses nothing and sees nothing twice.
    screen: Mutex<Screen>,
    input: mpsc::Sender<TerminalInput>,
    /// Cancelled when the terminal has ended.
    ended: CancellationToken,
}

struct Screen {
    parser: vt100::Parser,
    output: broadcast::Sender<Arc<[u8]>>,
}

impl Terminal {
    fn screen(&self) -> std::sync::MutexGuard<'_, Screen> {
        self.screen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A viewer of one terminal: the screen as it was when it attached, then the output.
pub struct TerminalAttachment {
    terminal: Arc<Terminal>,
    /// Escape sequences that draw the current screen on a blank terminal.
    pub screen: Vec<u8>,
    pub output: broadcast::Receiver<Arc<[u8]>>,
}

impl TerminalAttachment {
    fn new(terminal: Arc<Terminal>) -> TerminalAttachment {
        let (screen, output) = {
            let screen = terminal.screen();
            (redraw(&screen.parser), screen.output.subscribe())
        };
        TerminalAttachment { terminal, screen, output }
    }

    /// The screen again and the output from now on: for a viewer that fell behind.
    pub fn again(&self) -> TerminalAttachment {
        TerminalAttachment::new(Arc::clone(&self.terminal))
    }

    /// Sends what was typed to the shell.
    pub async fn type_in(&self, data: &str) -> Result<(), EngineError> {
        if data.len() > MAX_INPUT_BYTES {
            return Err(EngineError::Invalid(berth_core::validate::InputError {
                field: berth_core::validate::Field::TerminalInput,
                reason: format!("one input is at most {MAX_INPUT_BYTES} bytes"),
            }));
        }
        let _ = self.terminal.input.send(TerminalInput::Data(data.as_bytes().to_vec())).await;
        Ok(())
    }

    /// Resizes the terminal (for every viewer: the last resize wins).
    pub async fn resize(&self, rows: u16, cols: u16) {
        let size = TerminalSize::bounded(rows, cols);
        let (rows, cols) = cells(size);
        self.terminal.screen().parser.set_size(rows, cols);
        let _ = self.terminal.input.send(TerminalInput::Resize(size)).await;
    }

    /// Resolves when the terminal has ended.
    pub fn ended(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.terminal.ended.clone().cancelled_owned()
    }
}

/// A size as the emulator takes it (at least one cell each way).
fn cells(size: TerminalSize) -> (std::num::NonZeroU16, std::num::NonZeroU16) {
    let one = std::num::NonZeroU16::MIN;
    (std::num::NonZeroU16::new(size.rows).unwrap_or(one), std::num::NonZeroU16::new(size.cols).unwrap_or(one))
}

/// What a blank terminal must be sent to show `parser`'s screen, cursor and modes.
fn redraw(parser: &vt100::Parser) -> Vec<u8> {
    let screen = parser.screen();
    let mut bytes = b"\x1b[H\x1b[2J".to_vec();
    bytes.extend_from_slice(screen.state_formatted().as_bytes());
    bytes
}

impl Terminals {
    /// Starts a terminal in the caller's live session `session_id`, whose owner task
    /// runs here (the server forwards to the owning replica before this).
    pub async fn open(
        &self,
        caller: &User,
        session_id: &str,
        size: TerminalSize,
    ) -> Result<TerminalInfo, EngineError> {
        let session = self.sessions().own_session(caller, session_id).await?;
        if !session.state.is_live() || !self.sessions().runs_here(&session.id) {
            return Err(EngineError::SessionNotLive);
        }
        if self.of_session(&session.id).len() >= MAX_TERMINALS_PER_SESSION {
            return Err(EngineError::TooManyTerminals { limit: MAX_TERMINALS_PER_SESSION });
        }
        let io = match self.driver.open_terminal(&session.id, size).await {
            Ok(io) => io,
            Err(SandboxError::NotRunning { .. }) => return Err(EngineError::SessionNotLive),
            Err(SandboxError::Unavailable { what }) => return Err(EngineError::TerminalUnavailable { what }),
            Err(source) => return Err(EngineError::Sandbox { source }),
        };
        let info = TerminalInfo {
            id: TerminalId::generate(),
            session_id: session.id.clone(),
            created_at: Utc::now(),
        };
        let terminal = Arc::new(Terminal {
            info: info.clone(),
            screen: Mutex::new(Screen {
                parser: {
                    let (rows, cols) = cells(size);
                    vt100::Parser::new(rows, cols, SCROLLBACK_LINES)
                },
                output: broadcast::channel(OUTPUT_BACKLOG).0,
            }),
            input: io.input,
            ended: CancellationToken::new(),
        });
        self.terminals.running().insert(info.id.clone(), Arc::clone(&terminal));
        metrics::counter!("berth_terminals_opened_total").increment(1);
        tracing::info!(session_id = %session.id, terminal_id = %info.id, "terminal opened");
        self.tasks.spawn(self.clone().pump(terminal, io.output));
        // Sessions end on their own: a terminal must not outlive a session that ended
        // while it was being opened.
        if !self.sessions().runs_here(&session.id) {
            self.end_session(&session.id);
            return Err(EngineError::SessionNotLive);
        }
        Ok(info)
    }

    /// Feeds the shell's output to the screen and the viewers, until it ends.
    async fn pump(self, terminal: Arc<Terminal>, mut output: mpsc::Receiver<Vec<u8>>) {
        loop {
            let chunk = tokio::select! {
                chunk = output.recv() => chunk,
                () = terminal.ended.cancelled() => None,
            };
            let Some(chunk) = chunk else { break };
            let mut screen = terminal.screen();
            screen.parser.process(&chunk);
            let _ = screen.output.send(Arc::from(chunk));
        }
        terminal.ended.cancel();
        self.terminals.running().remove(&terminal.info.id);
        tracing::info!(terminal_id = %terminal.info.id, "terminal ended");
    }

    /// The caller's terminals of session `session_id` running here, oldest first.
    pub async fn list(&self, caller: &User, session_id: &str) -> Result<Vec<TerminalInfo>, EngineError> {
        let session = self.sessions().own_session(caller, session_id).await?;
        Ok(self.of_session(&session.id).iter().map(|terminal| terminal.info.clone()).collect())
    }

    /// A viewer of the caller's terminal `terminal_id` of session `session_id`.
    pub async fn attach(
        &self,
        caller: &User,
        session_id: &str,
        terminal_id: &str,
    ) -> Result<TerminalAttachment, EngineError> {
        Ok(TerminalAttachment::new(self.find(caller, session_id, terminal_id).await?))
    }

    /// Ends the caller's terminal (its shell is hung up).
    pub async fn close(&self, caller: &User, session_id: &str, terminal_id: &str) -> Result<(), EngineError> {
        let terminal = self.find(caller, session_id, terminal_id).await?;
        self.terminals.running().remove(&terminal.info.id);
        terminal.ended.cancel();
        Ok(())
    }

    /// Whether session `id` has a terminal open here.
    pub(crate) fn any_open(&self, id: &SessionId) -> bool {
        self.terminals.running().values().any(|terminal| &terminal.info.session_id == id)
    }

    /// Ends every terminal of session `id` (it has ended).
    pub(crate) fn end_session(&self, id: &SessionId) {
        let ended: Vec<Arc<Terminal>> = {
            let mut running = self.terminals.running();
            let ids: Vec<TerminalId> = running
                .values()
                .filter(|terminal| &terminal.info.session_id == id)
                .map(|t| t.info.id.clone())
                .collect();
            ids.iter().filter_map(|terminal| running.remove(terminal)).collect()
        };
        for terminal in ended {
            terminal.ended.cancel();
        }
    }

    async fn find(
        &self,
        caller: &User,
        session_id: &str,
        terminal_id: &str,
    ) -> Result<Arc<Terminal>, EngineError> {
        let session = self.sessions().own_session(caller, session_id).await?;
        let not_found = EngineError::NotFound { what: "terminal" };
        let id = TerminalId::parse(terminal_id).ok_or(not_found)?;
        self.terminals
            .running()
            .get(&id)
            .filter(|terminal| terminal.info.session_id == session.id)
            .cloned()
            .ok_or(EngineError::NotFound { what: "terminal" })
    }

    fn of_session(&self, id: &SessionId) -> Vec<Arc<Terminal>> {
        let mut terminals: Vec<Arc<Terminal>> = self
            .terminals
            .running()
            .values()
            .filter(|terminal| &terminal.info.session_id == id)
            .cloned()
            .collect();
        terminals.sort_by_key(|terminal| terminal.info.created_at);
        terminals
    }
}
