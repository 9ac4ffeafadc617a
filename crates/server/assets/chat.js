// The chat of a live session: history, then the live channel (questions, tool calls, the
// agent's messages), prompt and Stop, the changes, preview and tool panes.

import { api } from "./api.js";
import { callAttention, notificationOffer } from "./attention.js";
import { changesPanel } from "./changes.js";
import { closeSession, pushWorkspace, workspaceNames } from "./dashboard.js";
import { h, toast } from "./dom.js";
import { badge, contentText, exactTime, inlineCode, markdown, when } from "./format.js";
import { banner, dialog, main } from "./shell.js";
import { openWorkspace } from "./workspace.js";

/** The chat: history, live events, questions, prompt and Stop, preview and tool panes,
 * status bar; reconnects by itself and sends the leave signal when the page goes. */
/** When a message was sent: relative, exact on hover. */
function stamp(at) {
  return at ? h("time", { class: "stamp", datetime: at, title: exactTime(at) }, when(at)) : null;
}

export async function chat(state, workspace, opened) {
  let session = opened.session;
  let socket = null;
  let leaving = false;
  const messages = h("div", { class: "messages", id: "messages", "aria-live": "polite" });
  // The chat follows what arrives while the person is at the newest message; scrolled up,
  // they get a "New messages" pill instead of being moved.
  const newMessages = h("button", { type: "button", class: "new-messages", id: "new-messages", hidden: true,
    onclick: () => { messages.scrollTop = messages.scrollHeight; newMessages.hidden = true; } }, "New messages ↓");
  const atBottom = () => messages.scrollTop + messages.clientHeight >= messages.scrollHeight - 40;
  const keepFollowing = (following) => {
    if (following) messages.scrollTop = messages.scrollHeight;
    else if (!atBottom()) newMessages.hidden = false;
  };
  messages.addEventListener("scroll", () => { if (atBottom()) newMessages.hidden = true; });
  const prompt = h("textarea", { id: "prompt", name: "prompt", rows: 2, placeholder: "Ask the agent, or `$ command` to run one" });
  const send = h("button", { class: "primary", type: "submit", id: "send" }, "Send");
  const stopRun = () => {
    if (!sendFrame({ type: "cancel" })) return;
    // What is running now ends because the person stopped it, not because it failed.
    for (const tool of tools.values()) if (["pending", "in_progress"].includes(tool.status.dataset.status)) tool.stopped = true;
  };
  const stop = h("button", { type: "button", id: "stop", hidden: true, onclick: stopRun }, "Stop");
  const form = h("form", { class: "prompt", onsubmit: (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || !sendFrame({ type: "prompt", text })) return;
    prompt.value = "";
    setRunning(true);
  } }, h("label", { for: "prompt", class: "skip" }, "Message"), prompt, send, stop);
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); form.requestSubmit(); }
  });
  // Esc stops a run, from anywhere in the chat.
  const stopOnEscape = (event) => {
    if (event.key === "Escape" && !stop.hidden && !dialog.open) { event.preventDefault(); stopRun(); }
  };

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
  const findPorts = async () => {
    const answer = await api("GET", `/api/sessions/${encodeURIComponent(session.id)}/ports`);
    if (answer.status !== 200) { portsRow.hidden = true; return; }
    portsRow.hidden = false;
    portsRow.replaceChildren(h("span", { class: "muted" }, answer.body.ports.length ? "Listening:" : "Nothing listens yet."),
      ...answer.body.ports.map((number) => h("button", { type: "button", "data-port": number, onclick: (event) => {
        port.value = number;
        showPreview(event);
      } }, String(number))),
      h("button", { type: "button", class: "link", id: "preview-ports-refresh", onclick: () => findPorts() }, "Look again"));
  };
  const toolsList = h("ul", { class: "tools-list", id: "tools-list" });
  const toolsEmpty = h("p", { class: "muted" }, "No tool calls yet.");

  const changes = changesPanel(workspace);
  const sessionBadge = h("span", { id: "session-state" }, badge(session.state));
  const agentNote = h("span", { class: "muted", id: "agent-note" });
  const resume = h("code", { id: "resume-command" }, session.resume_command);
  const statusbar = h("div", { class: "statusbar", id: "statusbar" },
    h("strong", {}, "Session"), sessionBadge, agentNote, h("span", { class: "spacer" }),
    h("span", { class: "muted" }, "Resume from a terminal:"), resume,
    h("button", { type: "button", id: "copy-resume", onclick: async () => {
      try { await navigator.clipboard.writeText(resume.textContent); toast("Copied"); } catch { toast("Copy failed: select the command instead", "bad"); }
    } }, "Copy"),
    notificationOffer(),
    h("a", { class: "button", href: `/workspaces/${workspace.id}/settings`, "data-link": true }, "Settings"),
    h("button", { type: "button", id: "push", title: "Push the checked-out branch to the repository", onclick: async (event) => {
      event.target.disabled = true;
      await pushWorkspace(workspace);
      event.target.disabled = false;
    } }, "Push"),
    h("button", { class: "danger", id: "close-workspace", onclick: async () => {
      if (await closeSession(session.id)) ended({ ...session, state: "ended", end_reason: "closed" }, true);
    } }, "Close workspace"));
  const notices = h("div", { id: "notices" });

  main.replaceChildren(
    h("div", { class: "row" }, h("h1", {}, workspace.name), h("span", { class: "muted" }, workspace.repo)),
    statusbar,
    notices,
    h("div", { class: "workspace" },
      h("section", { class: "panel chat", "aria-label": "Chat", onkeydown: stopOnEscape }, messages, newMessages, form),
      h("aside", { class: "side" },
        changes.element,
        h("section", { class: "panel", "aria-labelledby": "preview-title" },
          h("h2", { id: "preview-title" }, "Live preview"),
          h("form", { class: "row", id: "preview-form", onsubmit: showPreview },
            h("label", { for: "preview-port" }, "Port"), h("div", {}, port), h("button", { type: "submit" }, "Show")),
          portsRow, frameHolder),
        h("section", { class: "panel", "aria-labelledby": "tools-title" },
          h("h2", { id: "tools-title" }, "Tool calls"), toolsEmpty, toolsList))));
  if (opened.resumed) notices.append(h("p", { class: "notice", id: "session-resumed" }, "Session resumed"));
  if (opened.replaced && opened.replaced.length) {
    const replacedNotice = h("p", { class: "notice", id: "replaced" }, "Closed your other workspace to make room; its files are kept.");
    notices.append(replacedNotice);
    // Named once known: which workspace went, not how many.
    Promise.all([workspaceNames(), ...opened.replaced.map((id) => api("GET", `/api/sessions/${id}`))]).then(([names, ...sessions]) => {
      const closed = sessions.filter((answer) => answer.status === 200).map((answer) => names.get(answer.body.workspace_id) || answer.body.workspace_id);
      if (closed.length) replacedNotice.textContent = `Closed ${closed.join(", ")} to make room; its files are kept.`;
    });
  }

  // ---- rendering of events
  let lastSeq = 0;
  let agentBubble = null;
  let thoughtBubble = null;
  const tools = new Map();
  const questions = new Map();
  const pending = new Set();
  // While the history is drawn, events go into a fragment and Markdown waits: one layout
  // at the end instead of one per event.
  let history = null;
  const unrendered = new Set();
  const append = (element) => {
    if (history) history.append(element);
    else messages.append(element);
  };
  const toolEntry = (id, data) => {
    let tool = tools.get(id);
    if (!tool) {
      const status = h("span", { class: "status" });
      const title = h("span", {});
      const output = h("pre", {});
      const element = h("details", { class: "tool", "data-tool": id }, h("summary", {}, status, title), output);
      const paneStatus = h("span", { class: "status" });
      const paneTitle = h("span", {});
      const pane = h("li", { "data-tool": id }, paneStatus, paneTitle);
      tool = { element, status, title, output, paneStatus, paneTitle, pane };
      tools.set(id, tool);
      append(element);
      toolsList.append(pane);
      toolsEmpty.hidden = true;
    }
    if (data.title) { tool.title.replaceChildren(...inlineCode(data.title)); tool.paneTitle.replaceChildren(...inlineCode(data.title)); }
    if (data.content) {
      tool.output.textContent = contentText(data.content);
      if (tool.output.textContent) tool.element.open = true;
    }
    // A new tool call without a status is pending (ACP's default).
    const status = data.status || (tool.status.dataset.status ? null : "pending");
    if (status) {
      const label = toolLabel(status, data, tool);
      for (const el of [tool.status, tool.paneStatus]) { el.textContent = label.replace("_", " "); el.dataset.status = label; }
    }
    return tool;
  };
  /** A failed tool call says why when berth knows: the session ended under it, the person
   *  rejected it or stopped it — none of which is the command failing. */
  const toolLabel = (status, data, tool) => {
    if (status !== "failed") return status;
    if (data.reason === "session_ended") return "interrupted";
    if (tool.rejected || /^Rejected\b/.test(tool.output.textContent)) return "rejected";
    if (tool.stopped || /^Cancelled\b/.test(tool.output.textContent)) return "cancelled";
    return "failed";
  };
  const questionCard = (question) => {
    let card = questions.get(question.id);
    if (!card) {
      const buttons = (question.options || []).map((option) => h("button", {
        type: "button", "data-option": option.id, "data-kind": option.kind || "",
        class: option.kind && option.kind.startsWith("allow") ? "primary" : "",
        onclick: () => {
          if (sendFrame({ type: "answer", question_id: question.id, option_id: option.id })) {
            buttons.forEach((button) => { button.disabled = true; });
          }
        } }, option.label || option.id));
      const state = h("p", { class: "muted answer-state" });
      card = { element: h("div", { class: "question", "data-question": question.id, role: "group", "aria-label": question.title },
        h("strong", {}, question.title), h("div", { class: "options" }, buttons), state), buttons, state, question };
      questions.set(question.id, card);
      append(card.element);
    }
    const waiting = pending.has(question.id);
    card.buttons.forEach((button) => { button.disabled = !waiting; });
    if (!waiting && !card.element.classList.contains("answered")) card.state.textContent = "No longer waiting.";
    if (waiting) card.state.textContent = "The agent is waiting for your answer.";
    return card;
  };
  const render = (event) => {
    if (event.seq <= lastSeq) return;
    lastSeq = event.seq;
    const data = event.data || {};
    if (event.kind !== "agent_message") agentBubble = null;
    if (event.kind !== "agent_thought") thoughtBubble = null;
    switch (event.kind) {
      case "user_message":
        append(h("div", { class: "msg user" }, data.text || contentText(data.content), stamp(event.at)));
        break;
      case "agent_message": {
        const text = contentText(data.content);
        if (!agentBubble) {
          const body = h("div", { class: "msg-body" });
          agentBubble = { text: "", body, element: h("div", { class: "msg agent" }, body, stamp(event.at)) };
          append(agentBubble.element);
        }
        agentBubble.text += text;
        if (history) unrendered.add(agentBubble);
        else agentBubble.body.innerHTML = markdown(agentBubble.text);
        break;
      }
      case "agent_thought": {
        if (!thoughtBubble) { thoughtBubble = h("div", { class: "msg thought" }); append(thoughtBubble); }
        thoughtBubble.textContent += contentText(data.content);
        break;
      }
      case "tool_call":
      case "tool_call_update":
        if (data.toolCallId) toolEntry(data.toolCallId, data);
        break;
      case "plan":
        append(h("div", { class: "msg agent plan" }, h("strong", {}, "Plan"),
          h("ol", {}, (data.entries || []).map((entry) => h("li", { "data-status": entry.status || "" },
            `${entry.content}${entry.status ? ` (${entry.status.replace("_", " ")})` : ""}`)))));
        break;
      case "question":
        if (data.question) questionCard(data.question);
        break;
      case "answer": {
        pending.delete(data.question_id);
        const card = questions.get(data.question_id);
        if (card) {
          const option = (card.question.options || []).find((item) => item.id === data.option_id);
          const asked = card.question.tool_call && tools.get(card.question.tool_call.toolCallId);
          if (asked && option && (option.kind || "").startsWith("reject")) asked.rejected = true;
          card.element.classList.add("answered");
          card.buttons.forEach((button) => { button.disabled = true; });
          card.state.textContent = data.outcome === "cancelled" ? "Cancelled." : `Answered: ${option ? option.label : data.option_id}`;
        }
        break;
      }
      case "turn_end":
        if (data.stop_reason === "cancelled") append(h("div", { class: "msg system" }, "Stopped."));
        setRunning(false);
        // A live turn may have changed the checkout, or started a server (a replayed one
        // changed nothing new).
        if (!history) {
          changes.refresh();
          findPorts();
          if (data.stop_reason !== "cancelled") callAttention("The agent finished", workspace.name);
        }
        break;
      case "system":
        renderSystem(data, event.at);
        break;
      default:
        break;
    }
  };
  const systemTexts = { session_started: "Session started", session_resumed: "Session resumed",
    agent_context_resumed: "The agent resumed its earlier context", session_closed: "Session closed", agent_ready: "Agent ready" };
  const renderSystem = (data, at) => {
    const bad = data.code === "agent_error" || data.code === "turn_timeout" || data.code === "agent_needs_credentials";
    const text = data.message || systemTexts[data.code] || data.code.replaceAll("_", " ");
    // Each session starts below a line of its own, dated.
    const separator = data.code === "session_started";
    append(h("div", { class: `msg system${bad ? " bad" : ""}${separator ? " separator" : ""}`, "data-code": data.code },
      text, separator ? [" · ", h("time", { datetime: at, title: exactTime(at) }, exactTime(at))] : null));
  };
  // Relative times go stale: they are written again every minute while the chat is shown.
  const refreshStamps = setInterval(() => {
    if (!messages.isConnected) return clearInterval(refreshStamps);
    for (const time of messages.querySelectorAll("time.stamp")) time.textContent = when(time.getAttribute("datetime"));
  }, 60000);

  // ---- session state
  let running = Boolean(session.agent_running);
  function setRunning(value) {
    running = value;
    stop.hidden = !running;
    agentNote.textContent = running ? "The agent is working…" : "";
  }
  setRunning(running);
  findPorts();
  let isEnded = false;
  function ended(current, byUs = false) {
    if (isEnded) return;
    isEnded = true;
    session = current;
    leaving = true;
    if (socket) socket.close();
    sessionBadge.replaceChildren(badge("ended"));
    setRunning(false);
    frameHolder.replaceChildren(h("p", { class: "muted" }, "The session ended; the preview is closed."));
    toolsList.replaceChildren();
    toolsEmpty.hidden = false;
    prompt.disabled = true;
    send.disabled = true;
    statusbar.querySelector("#close-workspace").disabled = true;
    pending.clear();
    questions.forEach((card) => card.buttons.forEach((button) => { button.disabled = true; }));
    banner.hidden = true;
    notices.replaceChildren(h("div", { class: "notice", id: "session-ended" },
      h("p", {}, byUs ? "Workspace closed. Its files are kept." : `The session ended (${(current.end_reason || "ended").replaceAll("_", " ")}).`),
      h("button", { class: "primary", onclick: () => openWorkspace(state, workspace) }, "Open again")));
  }

  // ---- history, then the live channel
  let after = 0;
  history = document.createDocumentFragment();
  for (;;) {
    const page = await api("GET", `/api/workspaces/${workspace.id}/events?after=${after}&limit=1000`);
    if (page.status !== 200 || state.stopped) break;
    page.body.events.forEach(render);
    if (page.body.events.length < 1000) break;
    after = page.body.next_after;
  }
  unrendered.forEach((bubble) => { bubble.body.innerHTML = markdown(bubble.text); });
  messages.append(history);
  history = null;
  if (state.stopped) return;
  messages.scrollTop = messages.scrollHeight;

  let attempts = 0;
  let reconnectTimer = null;
  let countdownTimer = null;
  function sendFrame(frame) {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      toast("Not connected: reconnecting first", "bad");
      return false;
    }
    socket.send(JSON.stringify(frame));
    return true;
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/api/sessions/${session.id}/live?after=${lastSeq}`);
    socket.addEventListener("open", () => {
      attempts = 0;
      banner.hidden = true;
      clearInterval(countdownTimer);
    });
    socket.addEventListener("message", (message) => {
      const frame = JSON.parse(message.data);
      const following = atBottom();
      if (frame.type === "event") render(frame.event);
      else if (frame.type === "question") {
        pending.add(frame.question.id);
        // A question the agent waits on is always brought into view, and called out in a
        // hidden tab.
        questionCard(frame.question).element.scrollIntoView({ block: "nearest" });
        callAttention("The agent asks you", frame.question.title);
        setRunning(true);
      }
      else if (frame.type === "session") {
        session = frame.session;
        if (session.state === "ended") ended(session);
        else { sessionBadge.replaceChildren(badge(session.state)); if (session.agent_running) setRunning(true); }
      } else if (frame.type === "error") toast(frame.error.message, "bad");
      if (frame.type === "event" || frame.type === "question") keepFollowing(following);
    });
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
      const answer = await api("GET", `/api/sessions/${session.id}`);
      if (answer.status === 200) current = answer.body;
    } catch { /* the server is not reachable: keep trying */ }
    if (state.stopped) return;
    if (current && current.state === "ended") return ended(current);
    if (current) sessionBadge.replaceChildren(badge(current.state));
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
    reconnectTimer = setTimeout(() => { if (!state.stopped && !isEnded) connect(); }, delay);
  }
  const leave = () => {
    if (leaving || isEnded) return;
    leaving = true;
    navigator.sendBeacon(`/api/sessions/${session.id}/leave`);
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
  connect();
  prompt.focus();
}
