// The chat of a live session: history, then the live channel (questions, tool calls, the
// agent's messages), prompt and Stop, the changes, preview and tool panes.

import { api } from "./api.js";
import { callAttention, notificationOffer } from "./attention.js";
import { changesPanel } from "./changes.js";
import { filesPanel } from "./files.js";
import { terminalPane } from "./terminal.js";
import { closeSession, pushWorkspace, workspaceNames } from "./dashboard.js";
import { h, toast } from "./dom.js";
import { conversationView } from "./conversation.js";
import { badge } from "./format.js";
import { banner, dialog, go, main } from "./shell.js";
import { openWorkspace } from "./workspace.js";

/** The chat: history, live events, questions, prompt and Stop, preview and tool panes,
 * status bar; reconnects by itself and sends the leave signal when the page goes. */
export async function chat(state, workspace, opened) {
  let session = opened.session;
  let isEnded = false;
  let closing = false;
  // The live channel, once the history is drawn.
  let live = null;
  const sendFrame = (frame) => {
    if (live) return live.send(frame);
    toast("Not connected: reconnecting first", "bad");
    return false;
  };
  const follow = followingMessages();
  const composer = promptForm({
    onPrompt: (text) => {
      if (!sendFrame({ type: "prompt", text })) return false;
      setRunning(true);
      return true;
    },
    onStop: () => stopRun(),
  });
  const stopRun = () => {
    // What is running now ends because the person stopped it, not because it failed.
    if (sendFrame({ type: "cancel" })) view.markStopped();
  };
  // Esc stops a run, from anywhere in the chat.
  const stopOnEscape = (event) => {
    if (event.key === "Escape" && !composer.stop.hidden && !dialog.open) { event.preventDefault(); stopRun(); }
  };
  const preview = previewPane(workspace, () => session);
  const toolsList = h("ul", { class: "tools-list", id: "tools-list" });
  const toolsEmpty = h("p", { class: "muted" }, "No tool calls yet.");
  const changes = changesPanel(workspace);
  const files = filesPanel(workspace);
  const status = statusBar(workspace, session, async () => {
    // The live channel may say the session ended before the answer comes: either way
    // the page says it was closed from here.
    closing = true;
    if (await closeSession(session.id)) ended({ ...session, state: "ended", end_reason: "closed" });
    else closing = false;
  });
  const notices = h("div", { id: "notices" });

  const terminal = terminalPane(() => session);
  state.cleanups.push(() => terminal.dispose());
  const tools = h("section", { class: "panel", "aria-labelledby": "tools-title", id: "tools" },
    h("h2", { id: "tools-title" }, "Tool calls"), toolsEmpty, toolsList);
  const side = sidePane([
    { name: "changes", label: "Changes", element: changes.element, activate: () => changes.refresh() },
    { name: "files", label: "Files", element: files.element, activate: () => files.activate() },
    { name: "preview", label: "Preview", element: preview.element, activate: () => preview.findPorts() },
    { name: "terminal", label: "Terminal", element: terminal.element, activate: () => terminal.activate() },
    { name: "tools", label: "Tool calls", element: tools },
  ]);
  const chatColumn = h("section", { class: "panel chat", "aria-label": "Chat", onkeydown: stopOnEscape },
    follow.messages, follow.newMessages, composer.form);
  const workbench = h("div", { class: "workspace", id: "workbench" }, chatColumn, splitter(), side.element);
  main.classList.add("workbench");
  state.cleanups.push(() => main.classList.remove("workbench"));
  main.replaceChildren(
    h("div", { class: "row title-row" }, h("h1", {}, workspace.name), h("span", { class: "muted" }, workspace.repo)),
    status.element,
    notices,
    workbench);
  openedNotices(opened, notices);

  // ---- the conversation
  const view = conversationView({
    messages: follow.messages, toolsList, toolsEmpty,
    answer: (questionId, optionId) => sendFrame({ type: "answer", question_id: questionId, option_id: optionId }),
    onTurnEnd: (data, isLive) => {
      setRunning(false);
      // A live turn may have changed the checkout, or started a server (a replayed one
      // changed nothing new).
      if (!isLive) return;
      changes.refresh();
      files.refresh();
      preview.findPorts();
      if (data.stop_reason !== "cancelled") callAttention("The agent finished", workspace.name);
    },
  });

  // ---- session state
  function setRunning(running) {
    composer.stop.hidden = !running;
    status.agentNote.textContent = running ? "The agent is working…" : "";
  }
  setRunning(Boolean(session.agent_running));
  preview.findPorts();
  // A server the agent starts shows up by itself within two seconds (while the tab is
  // seen and the session runs).
  const portsWatch = setInterval(() => {
    if (!isEnded && !state.stopped && document.visibilityState === "visible") preview.findPorts();
  }, 2000);
  state.cleanups.push(() => clearInterval(portsWatch));
  function ended(current) {
    if (isEnded) return;
    isEnded = true;
    session = current;
    clearInterval(portsWatch);
    if (live) live.stop();
    status.showState("ended");
    setRunning(false);
    preview.close();
    terminal.close();
    view.end();
    composer.disable();
    status.element.querySelector("#close-workspace").disabled = true;
    banner.hidden = true;
    notices.replaceChildren(endedNotice(state, workspace, current, closing));
  }

  // ---- history, then the live channel
  await view.drawHistory((render) => readHistory(state, workspace, render));
  if (state.stopped) return;
  follow.messages.scrollTop = follow.messages.scrollHeight;
  // On a phone the page scrolls: the chat is brought whole into the screen.
  if (matchMedia("(max-width: 900px)").matches) chatColumn.scrollIntoView({ block: "end" });
  // The pane beside comes after the conversation: it is what the person came back to.
  side.activate();

  live = liveChannel(state, () => session, () => view.lastSeq(), {
    frame(frame) {
      const following = follow.atBottom();
      if (frame.type === "event") view.render(frame.event);
      else if (frame.type === "question") {
        // A question the agent waits on is always brought into view, and called out in a
        // hidden tab.
        view.ask(frame.question).element.scrollIntoView({ block: "nearest" });
        callAttention("The agent asks you", frame.question.title);
        setRunning(true);
      }
      else if (frame.type === "session") {
        session = frame.session;
        if (session.state === "ended") ended(session);
        else { status.showState(session.state); if (session.agent_running) setRunning(true); }
      } else if (frame.type === "error") toast(frame.error.message, "bad");
      if (frame.type === "event" || frame.type === "question") follow.keepFollowing(following);
    },
    seen(current) {
      if (current.state === "ended") ended(current);
      else status.showState(current.state);
    },
    isEnded: () => isEnded,
  });
  if (!isEnded) live.connect();
  composer.prompt.focus();
}

/** The pane beside the chat: one tab bar over the panes, one pane shown at a time (on a
 * phone, below the chat, folded until a tab is picked). The tab last picked is kept. */
function sidePane(panes) {
  const phone = matchMedia("(max-width: 900px)");
  const tabBar = h("div", { class: "tabs", role: "tablist", "aria-label": "Workspace tools" });
  const element = h("aside", { class: "side", id: "side" }, tabBar);
  let current = null;
  const select = (name, activate = true) => {
    // On a phone the tab shown folds away when picked again; elsewhere it stays.
    if (name === current) {
      if (!phone.matches) return;
      name = null;
    }
    current = name;
    for (const pane of panes) {
      const on = pane.name === name;
      pane.tab.setAttribute("aria-selected", String(on));
      pane.element.hidden = !on;
      if (on && activate && pane.activate) pane.activate();
    }
    element.classList.toggle("folded", !name);
    if (name) localStorage.setItem("berth.side-tab", name);
  };
  for (const pane of panes) {
    pane.tab = h("button", { type: "button", role: "tab", id: `tab-${pane.name}`, "aria-controls": pane.element.id || null,
      onclick: () => select(pane.name) }, pane.label);
    tabBar.append(pane.tab);
    pane.element.classList.add("tab-pane");
    element.append(pane.element);
  }
  const kept = localStorage.getItem("berth.side-tab");
  // Narrowed to a phone's width, the pane folds away under the chat; widened, it opens.
  phone.addEventListener("change", () => {
    current = undefined;
    select(phone.matches ? null : localStorage.getItem("berth.side-tab") || panes[0].name);
  });
  // Drawn now, filled once the conversation is (`activate`).
  select(phone.matches ? null : panes.some((pane) => pane.name === kept) ? kept : panes[0].name, false);
  const activate = () => panes.find((pane) => pane.name === current)?.activate?.();
  return { element, select, activate };
}

/** The bar between the chat and the pane beside it: dragged (or moved with the arrow
 * keys), it sets the chat's width, kept for the next page. */
function splitter() {
  const bar = h("div", { class: "splitter", id: "splitter", role: "separator", tabindex: 0,
    "aria-orientation": "vertical", "aria-label": "Resize the chat and the pane beside it" });
  const apply = (fraction) => {
    const bounded = Math.min(0.8, Math.max(0.25, fraction));
    bar.parentElement?.style.setProperty("--chat-share", `${(bounded * 100).toFixed(1)}%`);
    localStorage.setItem("berth.chat-share", String(bounded));
    return bounded;
  };
  let share = Number(localStorage.getItem("berth.chat-share")) || 0.6;
  requestAnimationFrame(() => { share = apply(share); });
  bar.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    bar.setPointerCapture(event.pointerId);
    const box = bar.parentElement.getBoundingClientRect();
    const move = (moved) => { share = apply((moved.clientX - box.left) / box.width); };
    const up = () => { bar.removeEventListener("pointermove", move); bar.removeEventListener("pointerup", up); };
    bar.addEventListener("pointermove", move);
    bar.addEventListener("pointerup", up);
  });
  bar.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") share = apply(share - 0.05);
    else if (event.key === "ArrowRight") share = apply(share + 0.05);
  });
  return bar;
}

/** The workspace's whole history, page by page, each event to `render`. */
async function readHistory(state, workspace, render) {
  let after = 0;
  for (;;) {
    const page = await api("GET", `/api/workspaces/${workspace.id}/events?after=${after}&limit=1000`);
    if (page.status !== 200 || state.stopped) break;
    page.body.events.forEach(render);
    if (page.body.events.length < 1000) break;
    after = page.body.next_after;
  }
}

/** The messages' scroller: it follows what arrives while the person is at the newest
 * message; scrolled up, they get a "New messages" pill instead of being moved. */
function followingMessages() {
  const messages = h("div", { class: "messages", id: "messages", "aria-live": "polite" });
  const newMessages = h("button", { type: "button", class: "new-messages", id: "new-messages", hidden: true,
    onclick: () => { messages.scrollTop = messages.scrollHeight; newMessages.hidden = true; } }, "New messages ↓");
  const atBottom = () => messages.scrollTop + messages.clientHeight >= messages.scrollHeight - 40;
  const keepFollowing = (following) => {
    if (following) messages.scrollTop = messages.scrollHeight;
    else if (!atBottom()) newMessages.hidden = false;
  };
  messages.addEventListener("scroll", () => { if (atBottom()) newMessages.hidden = true; });
  return { messages, newMessages, atBottom, keepFollowing };
}

/** The message box, Send and Stop. Enter sends; Shift+Enter is a new line. `onPrompt`
 * answers whether the prompt went out (the box is emptied then). */
function promptForm({ onPrompt, onStop }) {
  const prompt = h("textarea", { id: "prompt", name: "prompt", rows: 2, placeholder: "Ask the agent, or `$ command` to run one" });
  const send = h("button", { class: "primary", type: "submit", id: "send" }, "Send");
  const stop = h("button", { type: "button", id: "stop", hidden: true, onclick: onStop }, "Stop");
  const form = h("form", { class: "prompt", onsubmit: (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || !onPrompt(text)) return;
    prompt.value = "";
  } }, h("label", { for: "prompt", class: "skip" }, "Message"), prompt, send, stop);
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  const disable = () => { prompt.disabled = true; send.disabled = true; };
  return { form, prompt, stop, disable };
}

/** The live preview: a port typed or picked from what listens in the sandbox, shown
 * through berth's pass redirect on the workspace's own host. */
function previewPane(workspace, currentSession) {
  const port = h("input", { id: "preview-port", type: "number", min: 1, max: 65535, value: 3000, inputmode: "numeric" });
  const frameHolder = h("div", { id: "preview-frame" }, h("p", { class: "muted" }, "Nothing shown yet."));
  const showPreview = (event) => {
    event.preventDefault();
    const number = Number(port.value);
    if (!Number.isInteger(number) || number < 1 || number > 65535) return toast("A port is a number from 1 to 65535", "bad");
    if (!workspace.preview_url) return toast("Previews are switched off on this installation", "bad");
    // berth's origin hands out a pass and redirects to the workspace's own preview host.
    const url = `/api/workspaces/${encodeURIComponent(workspace.id)}/preview?port=${number}`;
    frameHolder.replaceChildren(h("iframe", { src: url, title: `Preview of port ${number}`, id: "preview-iframe",
      sandbox: "allow-scripts allow-forms allow-same-origin allow-popups" }),
    h("a", { href: url, target: "_blank", rel: "noopener" }, "Open in a new tab"));
  };
  // What listens inside the sandbox, one click each (hidden where berth cannot tell).
  const portsRow = h("div", { class: "row", id: "preview-ports", hidden: true });
  let listed = null;
  const findPorts = async () => {
    const answer = await api("GET", `/api/sessions/${encodeURIComponent(currentSession().id)}/ports`);
    if (answer.status !== 200) { portsRow.hidden = true; listed = null; return; }
    // Drawn again only when something changed: a button is never swapped under a click.
    if (listed === answer.body.ports.join(",")) return;
    listed = answer.body.ports.join(",");
    portsRow.hidden = false;
    portsRow.replaceChildren(h("span", { class: "muted" }, answer.body.ports.length ? "Listening:" : "Nothing listens yet."),
      ...answer.body.ports.map((number) => h("button", { type: "button", "data-port": number, onclick: (event) => {
        port.value = number;
        showPreview(event);
      } }, String(number))),
      h("button", { type: "button", class: "link", id: "preview-ports-refresh", onclick: () => findPorts() }, "Look again"));
  };
  const element = h("section", { class: "panel", "aria-labelledby": "preview-title", id: "preview" },
    h("h2", { id: "preview-title" }, "Live preview"),
    h("form", { class: "row", id: "preview-form", onsubmit: showPreview },
      h("label", { for: "preview-port" }, "Port"), h("div", {}, port), h("button", { type: "submit" }, "Show")),
    portsRow, frameHolder);
  const close = () => frameHolder.replaceChildren(h("p", { class: "muted" }, "The session ended; the preview is closed."));
  return { element, findPorts, close };
}

/** The status bar: the session's state, what the agent does, how to resume from a
 * terminal, and the workspace's actions. */
function statusBar(workspace, session, onClose) {
  const sessionBadge = h("span", { id: "session-state" }, badge(session.state));
  const agentNote = h("span", { class: "muted", id: "agent-note" });
  const resume = h("code", { id: "resume-command", class: "resume-hint" }, session.resume_command);
  const element = h("div", { class: "statusbar", id: "statusbar" },
    h("strong", {}, "Session"), sessionBadge,
    h("span", { class: "muted", id: "agent-name", title: "The agent of this workspace" }, `Agent: ${workspace.agent || "the installation's"}`),
    agentNote, h("span", { class: "spacer" }),
    h("span", { class: "muted resume-hint" }, "Resume from a terminal:"), resume,
    h("button", { type: "button", id: "copy-resume", onclick: async () => {
      try { await navigator.clipboard.writeText(resume.textContent); toast("Copied"); } catch { toast("Copy failed: select the command instead", "bad"); }
    } }, "Copy"),
    notificationOffer(),
    h("a", { class: "button", href: `/workspaces/${workspace.id}/settings`, "data-link": true }, "Settings"),
    // A repository that is a directory of the server is never pushed to: no Push then.
    workspace.pushable ? h("button", { type: "button", id: "push", title: "Push the checked-out branch to the repository", onclick: async (event) => {
      event.target.disabled = true;
      await pushWorkspace(workspace);
      event.target.disabled = false;
    } }, "Push") : null,
    h("button", { class: "danger", id: "close-workspace", onclick: onClose }, "Close workspace"));
  const showState = (state) => sessionBadge.replaceChildren(badge(state));
  return { element, agentNote, showState };
}

/** What the open did besides opening: resumed the session, or closed others for room. */
function openedNotices(opened, notices) {
  if (opened.resumed) notices.append(h("p", { class: "notice", id: "session-resumed" }, "Session resumed"));
  if (!opened.replaced || !opened.replaced.length) return;
  const replacedNotice = h("p", { class: "notice", id: "replaced" }, "Closed your other workspace to make room; its files are kept.");
  notices.append(replacedNotice);
  // Named once known: which workspace went, not how many.
  Promise.all([workspaceNames(), ...opened.replaced.map((id) => api("GET", `/api/sessions/${id}`))]).then(([names, ...sessions]) => {
    const closed = sessions.filter((answer) => answer.status === 200).map((answer) => names.get(answer.body.workspace_id) || answer.body.workspace_id);
    if (closed.length) replacedNotice.textContent = `Closed ${closed.join(", ")} to make room; its files are kept.`;
  });
}

/** Why a session ended, as its tab says it (the files are always kept). */
const ENDED_BECAUSE = {
  closed: "The session was closed from another tab or the command line.",
  closed_all: "All your active workspaces were closed.",
  replaced: "Closed to make room for another workspace you opened.",
  left: "You left this session.",
  grace_expired: "The session ended: you were away longer than its reconnect window.",
  failed: "The session stopped: the agent or its sandbox failed (the conversation says why).",
  server_restart: "The session ended when the server restarted.",
  replica_lost: "The session ended: the server that ran it stopped answering.",
  admin: "An administrator closed this session.",
};

/** What the page says once the session ended: closed from here, ended for a reason (a
 * replaced one names the workspace that took its place), or the workspace deleted (it
 * cannot be opened again: the page leads back). */
function endedNotice(state, workspace, current, closing) {
  if (current.end_reason === "deleted") {
    return h("div", { class: "notice warn", id: "workspace-deleted" },
      h("p", {}, `${workspace.name} was deleted; its files are gone.`),
      h("button", { class: "primary", onclick: () => go("/") }, "Back to your workspaces"));
  }
  const said = closing ? "Workspace closed." : ENDED_BECAUSE[current.end_reason] || "The session ended.";
  const words = h("p", {}, `${said} Its files are kept.`);
  if (current.end_reason === "replaced" && !closing) nameReplacement(workspace, words);
  if (current.end_reason === "admin") sayIfDisabled(words);
  return h("div", { class: "notice", id: "session-ended", "data-reason": current.end_reason || "" },
    words, h("button", { class: "primary", onclick: () => openWorkspace(state, workspace) }, "Open again"));
}

/** An administrator's close that came with disabling the account says so: nothing can be
 * opened again until an administrator enables it. */
async function sayIfDisabled(words) {
  const me = await api("GET", "/api/me");
  if (me.status === 401 && me.body && me.body.error && me.body.error.code === "account_disabled") {
    words.textContent = "An administrator disabled your berth account, and this session ended. Its files are kept; an administrator can enable the account again.";
  }
}

/** Names the workspace whose open replaced this one's session: the caller's newest live
 * session elsewhere. The replacing session starts a moment after this one ended, so it is
 * looked for a few times. */
async function nameReplacement(workspace, words) {
  for (let attempt = 0; attempt < 10; attempt += 1) {
    const [names, live] = await Promise.all([workspaceNames(), api("GET", "/api/sessions?state=live")]);
    const newest = live.status === 200 && live.body.sessions.filter((session) => session.workspace_id !== workspace.id)
      .sort((a, b) => b.started_at.localeCompare(a.started_at))[0];
    const name = newest && names.get(newest.workspace_id);
    if (name) {
      words.textContent = `Closed to make room for ${name}, which you opened elsewhere. Its files are kept.`;
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    // The page moved on meanwhile.
    if (!words.isConnected) return;
  }
}

/** The live channel of the session: connects after the events already drawn, hands each
 * frame to `on.frame`, and when the connection drops says so, reads the session
 * (`on.seen`), shows the grace left and connects again, backing off. The leave signal
 * goes when the page goes. */
function liveChannel(state, currentSession, lastSeq, on) {
  let socket = null;
  let leaving = false;
  let attempts = 0;
  let reconnectTimer = null;
  let countdownTimer = null;
  function send(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      toast("Not connected: reconnecting first", "bad");
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/api/sessions/${currentSession().id}/live?after=${lastSeq()}`);
    socket.addEventListener("open", () => {
      attempts = 0;
      banner.hidden = true;
      clearInterval(countdownTimer);
    });
    socket.addEventListener("message", (message) => on.frame(JSON.parse(message.data)));
    socket.addEventListener("close", () => {
      if (leaving || state.stopped) return;
      disconnected();
    });
  }
  async function disconnected() {
    const delay = Math.min(10000, 500 * 2 ** attempts);
    attempts += 1;
    banner.hidden = false;
    banner.replaceChildren(h("span", { id: "reconnecting" }, "Connection lost. Reconnecting…"));
    let current = null;
    try {
      const answer = await api("GET", `/api/sessions/${currentSession().id}`);
      if (answer.status === 200) current = answer.body;
    } catch { /* the server is not reachable: keep trying */ }
    if (state.stopped) return;
    if (current) {
      on.seen(current);
      if (current.state === "ended") return;
    }
    if (current && current.grace_expires_at) {
      const deadline = new Date(current.grace_expires_at).getTime();
      const tick = () => {
        const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
        banner.replaceChildren(h("span", { id: "reconnecting" },
          `Connection lost. Reconnecting… The agent keeps working; the session is kept for ${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")} more.`));
      };
      clearInterval(countdownTimer);
      tick();
      countdownTimer = setInterval(tick, 1000);
    }
    reconnectTimer = setTimeout(() => { if (!state.stopped && !on.isEnded()) connect(); }, delay);
  }
  const leave = () => {
    if (leaving || on.isEnded()) return;
    leaving = true;
    navigator.sendBeacon(`/api/sessions/${currentSession().id}/leave`);
    if (socket) socket.close();
  };
  /** The session ended: the channel closes and stays closed. */
  const stop = () => {
    leaving = true;
    if (socket) socket.close();
  };
  const onPageHide = () => leave();
  window.addEventListener("pagehide", onPageHide);
  state.cleanups.push(() => {
    window.removeEventListener("pagehide", onPageHide);
    clearTimeout(reconnectTimer);
    clearInterval(countdownTimer);
    leave();
  });
  return { connect, send, stop };
}
