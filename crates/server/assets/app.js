// berth's web UI: a small single-page application over the HTTP API (API.md), with no
// framework and no build step. Every screen is a function that draws into <main> and
// returns a cleanup function (closing its feeds and sockets) called when it is left.
// Text from the server is only ever set as text, never as HTML, except agent messages,
// which go through `markdown`, which escapes everything first.

import { h, toast } from "./dom.js";
import { api, errorMessage, onSignedOut } from "./api.js";
import { changesPanel } from "./changes.js";
import { callAttention, notificationOffer } from "./attention.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const banner = document.getElementById("banner");
const dialog = document.getElementById("dialog");

let me = null;
let leaveScreen = () => {};

// ---------------------------------------------------------------------------- helpers

function badge(state) {
  const labels = { initialising: "Initialising", ready: "Ready", active: "Active", idle: "Idle", error: "Error",
    starting: "Starting", disconnected: "Disconnected", ended: "Ended" };
  return h("span", { class: "badge", "data-state": state }, labels[state] || state);
}

function when(time) {
  if (!time) return "never";
  const seconds = Math.round((Date.now() - new Date(time).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(time).toLocaleString();
}

function setTitle(text) {
  document.title = text ? `${text} · berth` : "berth";
}

/** The workspaces feed (server-sent events): calls `onList` with every new list and
 * `onChanged` with the id of a workspace whose record or log changed. */
function workspaceFeed(onList, onChanged = () => {}) {
  const source = new EventSource("/api/workspaces/changes");
  source.addEventListener("workspaces", (event) => onList(JSON.parse(event.data).workspaces));
  source.addEventListener("changed", (event) => onChanged(JSON.parse(event.data).workspace_id));
  return () => source.close();
}

/** A small Markdown subset (paragraphs, lists, code, emphasis, links), escaped first so
 * nothing the agent writes can become markup. */
function markdown(text) {
  const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  const inline = (s) => escape(s)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/\*([^*\s][^*]*)\*/g, "<em>$1</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" rel="noopener noreferrer" target="_blank">$1</a>');
  const blocks = [];
  const parts = text.split(/```/);
  parts.forEach((part, index) => {
    if (index % 2 === 1) {
      blocks.push(`<pre><code>${escape(part.replace(/^[^\n]*\n/, ""))}</code></pre>`);
      return;
    }
    for (const paragraph of part.split(/\n{2,}/)) {
      const lines = paragraph.split("\n").filter((line) => line.trim() !== "");
      if (lines.length === 0) continue;
      if (lines.every((line) => /^\s*[-*] /.test(line))) {
        blocks.push(`<ul>${lines.map((line) => `<li>${inline(line.replace(/^\s*[-*] /, ""))}</li>`).join("")}</ul>`);
      } else if (lines.every((line) => /^\s*\d+\. /.test(line))) {
        blocks.push(`<ol>${lines.map((line) => `<li>${inline(line.replace(/^\s*\d+\. /, ""))}</li>`).join("")}</ol>`);
      } else {
        blocks.push(`<p>${lines.map(inline).join("<br>")}</p>`);
      }
    }
  });
  return blocks.join("");
}

/** Text of an ACP content value: a block, a list of blocks, or tool-call content. */
/** `text` with its `backticked` parts as code: text nodes and <code> elements. */
function inlineCode(text) {
  const parts = String(text).split("`");
  // An unmatched backtick is only a character.
  if (parts.length % 2 === 0) {
    const last = parts.pop();
    parts[parts.length - 1] += `\`${last}`;
  }
  return parts.map((part, index) => (index % 2 ? h("code", {}, part) : part)).filter((part) => part !== "");
}

function contentText(content) {
  if (!content) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map(contentText).join("");
  if (content.type === "text") return content.text || "";
  if (content.type === "content") return contentText(content.content);
  if (content.type === "diff") return `--- ${content.path}\n${content.newText || ""}`;
  return "";
}

// ---------------------------------------------------------------------------- routing

function go(path, replace = false) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  route();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  go(link.getAttribute("href"));
});
window.addEventListener("popstate", () => route());
onSignedOut(() => go("/signin"));

function drawNav() {
  nav.replaceChildren();
  if (!me) return;
  const here = location.pathname;
  const link = (href, text) => h("a", { href, "data-link": true, "aria-current": here === href ? "page" : false }, text);
  nav.append(link("/", "Workspaces"), link("/account", "Account"));
  if (me.role === "admin") nav.append(link("/admin", "Admin"));
  nav.append(h("button", { id: "sign-out", class: "link", onclick: signOut }, "Sign out"));
}

/** Revokes this browser's token and goes to the sign-in page. */
async function signOut() {
  const answer = await api("POST", "/logout");
  if (answer.status !== 204) return toast(`Sign out failed: ${errorMessage(answer)}`, "bad");
  me = null;
  drawNav();
  go("/signin?signed_out=1");
}

async function route() {
  leaveScreen();
  leaveScreen = () => {};
  banner.hidden = true;
  if (dialog.open) dialog.close();
  const path = location.pathname;
  if (!me && path !== "/signin") {
    const answer = await api("GET", "/api/me");
    // Back here once signed in.
    if (answer.status !== 200) return go(`/signin?next=${encodeURIComponent(path + location.search)}`, true);
    me = answer.body;
  }
  drawNav();
  main.replaceChildren();
  let match;
  let cleanup;
  if (path === "/signin") cleanup = signIn();
  else if (path === "/") cleanup = dashboard();
  else if (path === "/account") cleanup = account();
  else if (path === "/admin") cleanup = admin();
  else if ((match = path.match(/^\/workspaces\/([^/]+)\/settings$/))) cleanup = settings(match[1]);
  else if ((match = path.match(/^\/workspaces\/([^/]+)$/))) cleanup = workspacePage(match[1]);
  else {
    main.append(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "/", "data-link": true }, "Back to your workspaces")));
  }
  leaveScreen = cleanup || (() => {});
  main.focus({ preventScroll: true });
}

// ---------------------------------------------------------------------------- sign in

function signIn() {
  setTitle("Sign in");
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true });
  const params = new URLSearchParams(location.search);
  const next = params.get("next");
  // `append` would write a null as the text "null": only what is there goes in.
  main.append(...[
    h("h1", {}, "Sign in to berth"),
    params.has("refused") ? h("p", { class: "notice bad", id: "signin-refused" }, "That login link or token is not valid.") : null,
    params.has("signed_out") ? h("p", { class: "notice", id: "signed-out" }, "You are signed out; that browser token is revoked.") : null,
    h("div", { class: "panel" },
      h("p", {}, "Open the login link that ", h("code", {}, "berth serve"), " printed, or paste a token here. ",
        "A token is made with ", h("code", {}, "berth user add NAME"), "."),
      h("form", { method: "get", action: "/login" },
        h("label", { for: "token" }, "Token"), input,
        next ? h("input", { type: "hidden", name: "next", value: next }) : null,
        h("p", {}, h("button", { class: "primary", type: "submit" }, "Sign in")))),
  ].filter(Boolean));
  input.focus();
}

// ---------------------------------------------------------------------------- dashboard

function dashboard() {
  setTitle("Workspaces");
  const list = h("div", { class: "cards", id: "workspaces", "aria-live": "polite" });
  const empty = h("p", { class: "muted", hidden: true }, "No workspaces yet: create one from a git repository.");
  main.append(h("h1", {}, "Workspaces"), newWorkspaceForm(), empty, list);
  const stop = workspaceFeed((workspaces) => {
    empty.hidden = workspaces.length > 0;
    list.replaceChildren(...workspaces.map(workspaceCard));
  });
  return stop;
}

function newWorkspaceForm() {
  const error = h("p", { class: "error-text", role: "alert" });
  const field = (id, label, hint, attributes = {}) => h("div", {},
    h("label", { for: id }, label, hint ? h("span", { class: "hint" }, ` ${hint}`) : null),
    h("input", { id, name: id, autocomplete: "off", ...attributes }));
  const form = h("form", { id: "new-workspace", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    const data = new FormData(form);
    const body = { repo: data.get("repo").trim() };
    for (const key of ["branch", "name"]) if (data.get(key).trim()) body[key] = data.get(key).trim();
    const submit = form.querySelector("button");
    submit.disabled = true;
    try {
      const answer = await api("POST", "/api/workspaces", body);
      if (answer.status === 202) {
        form.reset();
        toast(`Creating ${answer.body.name}`);
      } else error.textContent = errorMessage(answer);
    } finally {
      submit.disabled = false;
    }
  } },
  h("div", { class: "form-grid" },
    field("repo", "Repository", "(URL or local path)", { required: true, placeholder: "https://host/owner/repo.git" }),
    field("branch", "Branch", "(optional)"),
    field("name", "Name", "(optional)"),
    h("button", { class: "primary", type: "submit" }, "Create")),
  error);
  return h("details", { class: "panel new-workspace", open: true }, h("summary", {}, "New workspace"), form);
}

function workspaceCard(workspace) {
  const href = `/workspaces/${workspace.id}`;
  const actions = h("div", { class: "actions" });
  if (["ready", "idle", "active"].includes(workspace.state)) {
    actions.append(h("a", { class: "button primary", href, "data-link": true, "data-action": "open" },
      workspace.state === "active" ? "Resume" : "Open"));
  } else {
    actions.append(h("a", { class: "button", href, "data-link": true }, workspace.state === "error" ? "See log" : "Show progress"));
  }
  if (workspace.active_session) {
    actions.append(h("button", { "data-action": "close", onclick: () => closeSession(workspace.active_session.id) }, "Close"));
  }
  actions.append(h("span", { class: "spacer" }), h("details", { class: "menu" },
    h("summary", { "aria-label": `More actions for ${workspace.name}` }, "⋯"),
    h("div", { class: "menu-items" },
      h("a", { href: `${href}/settings`, "data-link": true }, "Settings"),
      h("button", { "data-action": "delete", onclick: () => confirmDelete(workspace) }, "Delete"))));
  return h("article", { class: "card", "data-workspace": workspace.id, "data-name": workspace.name },
    h("h3", {}, h("a", { href, "data-link": true }, workspace.name), badge(workspace.state)),
    h("div", { class: "meta" }, workspace.repo),
    h("div", { class: "meta" }, `branch ${workspace.branch || "default"} · last opened ${when(workspace.last_opened_at)}`),
    workspace.error ? h("div", { class: "error-text" }, workspace.error) : null,
    actions);
}

async function closeSession(sessionId) {
  const answer = await api("POST", `/api/sessions/${sessionId}/close`);
  if (answer.status === 200) toast("Workspace closed");
  else toast(`Close failed: ${errorMessage(answer)}`, "bad");
  return answer.status === 200;
}

// ---------------------------------------------------------------------------- delete

/** The delete dialog: shows what would be lost, says that the remote is not touched and
 * that there is no recovery, and asks for the workspace's name. */
async function confirmDelete(workspace, afterDelete = () => {}) {
  let git = null;
  if (["ready", "idle", "active"].includes(workspace.state)) {
    const answer = await api("GET", `/api/workspaces/${workspace.id}/git`);
    if (answer.status === 200) git = answer.body;
  }
  const unsaved = git && (git.uncommitted.length > 0 || git.unpushed_commits > 0);
  const input = h("input", { id: "confirm-name", autocomplete: "off", spellcheck: "false" });
  const error = h("p", { class: "error-text", role: "alert" });
  const remove = h("button", { class: "danger", id: "confirm-delete", disabled: true, onclick: async () => {
    remove.disabled = true;
    // Force only past the work the dialog showed; work that appeared since is refused (409).
    const answer = await api("DELETE", `/api/workspaces/${workspace.id}${unsaved ? "?force=true" : ""}`);
    if (answer.status === 200) {
      dialog.close();
      toast(`Deleted ${workspace.name}`);
      afterDelete();
    } else {
      error.textContent = errorMessage(answer);
      remove.disabled = false;
    }
  } }, "Delete workspace");
  input.addEventListener("input", () => { remove.disabled = input.value !== workspace.name; });
  const lost = [];
  if (git === null) lost.push(h("p", { class: "muted" }, "The workspace has no checkout to inspect."));
  else if (!unsaved) lost.push(h("p", { class: "notice good" }, "Everything is committed and pushed."));
  else {
    lost.push(h("div", { class: "notice bad", id: "unsaved-work" },
      h("p", {}, h("strong", {}, "This workspace has work that exists nowhere else.")),
      git.uncommitted.length ? h("p", {}, `Uncommitted files (${git.uncommitted.length}):`) : null,
      git.uncommitted.length ? h("ul", { class: "mono" }, git.uncommitted.slice(0, 200).map((path) => h("li", {}, path))) : null,
      git.unpushed_commits ? h("p", {}, `Unpushed commits: ${git.unpushed_commits}`,
        " ", h("button", { id: "push-now", onclick: async (event) => {
          event.target.disabled = true;
          if (await pushWorkspace(workspace)) { dialog.close(); confirmDelete(workspace, afterDelete); } else event.target.disabled = false;
        } }, "Push now")) : null));
  }
  dialog.replaceChildren(
    h("h2", { id: "dialog-title" }, `Delete ${workspace.name}?`),
    ...lost,
    h("p", {}, "The sandbox and the workspace's files are destroyed. The remote repository is not touched. ",
      h("strong", {}, "There is no recovery.")),
    h("label", { for: "confirm-name" }, "Type ", h("code", {}, workspace.name), " to confirm"),
    input, error,
    h("div", { class: "row" }, h("span", { class: "spacer" }),
      h("button", { onclick: () => dialog.close() }, "Cancel"), remove));
  dialog.showModal();
  input.focus();
}

// ---------------------------------------------------------------------------- workspace

function workspacePage(id) {
  const state = { id, stopped: false, cleanups: [] };
  const cleanup = () => {
    state.stopped = true;
    state.cleanups.forEach((fn) => fn());
  };
  loadWorkspace(state);
  return cleanup;
}

async function loadWorkspace(state) {
  const answer = await api("GET", `/api/workspaces/${state.id}`);
  if (state.stopped) return;
  if (answer.status !== 200) {
    main.replaceChildren(h("h1", {}, "No such workspace"), h("p", {}, h("a", { href: "/", "data-link": true }, "Back to your workspaces")));
    return;
  }
  const workspace = answer.body;
  setTitle(workspace.name);
  if (workspace.state === "initialising" || workspace.state === "error") initScreen(state, workspace);
  else openWorkspace(state, workspace);
}

/** While cloning: the log streams; on error, the log, the reason, retry and delete. */
function initScreen(state, workspace) {
  const log = h("pre", { class: "log", id: "init-log", "aria-live": "polite" });
  const status = h("div", { id: "init-status" });
  main.replaceChildren(h("h1", {}, workspace.name, " ", badge(workspace.state)),
    h("p", { class: "meta muted" }, workspace.repo), status, h("h2", {}, "Initialisation log"), log);
  const refreshLog = async () => {
    const answer = await api("GET", `/api/workspaces/${workspace.id}/init-log`);
    if (answer.status === 200) {
      const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.textContent = answer.body || "Waiting for git…";
      if (follow) log.scrollTop = log.scrollHeight;
    }
  };
  const drawStatus = (current) => {
    main.querySelector("h1 .badge").replaceWith(badge(current.state));
    status.replaceChildren();
    if (current.state === "initialising") status.append(h("p", { class: "notice" }, "Cloning the repository…"));
    if (current.state === "error") {
      status.append(h("div", { class: "notice bad", id: "init-error" },
        h("p", {}, h("strong", {}, "Initialisation failed: "), current.error || "see the log below"),
        h("div", { class: "row" },
          h("button", { class: "primary", onclick: async () => {
            const answer = await api("POST", `/api/workspaces/${current.id}/retry`);
            if (answer.status !== 202) toast(errorMessage(answer), "bad");
          } }, "Retry"),
          h("button", { class: "danger", onclick: () => confirmDelete(current, () => go("/")) }, "Delete"))));
    }
  };
  drawStatus(workspace);
  refreshLog();
  state.cleanups.push(workspaceFeed((list) => {
    const current = list.find((item) => item.id === workspace.id);
    if (!current) return go("/", true);
    if (current.state === "initialising" || current.state === "error") {
      drawStatus(current);
      refreshLog();
    } else {
      state.cleanups.forEach((fn) => fn());
      state.cleanups = [];
      toast(`${current.name} is ready`);
      openWorkspace(state, current);
    }
  }, (changed) => { if (changed === workspace.id) refreshLog(); }));
}

/** Opens (or resumes) the session, with the recovery flows for a refused launch. */
async function openWorkspace(state, workspace) {
  main.replaceChildren(h("h1", {}, workspace.name), h("p", { class: "muted" }, "Opening…"));
  const answer = await api("POST", `/api/workspaces/${workspace.id}/open`);
  if (state.stopped) {
    if (answer.body && answer.body.session) navigator.sendBeacon(`/api/sessions/${answer.body.session.id}/leave`);
    return;
  }
  if (answer.status === 200 || answer.status === 201) return chat(state, workspace, answer.body);
  const error = answer.body && answer.body.error ? answer.body.error : { code: "unknown", message: errorMessage(answer) };
  if (error.code === "session_limit") return sessionLimit(state, workspace, error);
  if (error.code === "controllers_busy") return controllersBusy(state, workspace, error);
  if (error.code === "workspace_not_ready") return loadWorkspace(state);
  main.replaceChildren(h("h1", {}, workspace.name),
    h("div", { class: "notice bad", id: "open-error" }, h("p", {}, `The workspace did not open: ${error.message}`),
      h("button", { class: "primary", onclick: () => openWorkspace(state, workspace) }, "Try again")));
}

/** `session_limit`: the blocking sessions, and one action that closes them all and
 * relaunches this workspace. */
async function sessionLimit(state, workspace, error) {
  const names = await workspaceNames();
  const result = h("div", { id: "close-all-result" });
  const button = h("button", { class: "primary", id: "close-all-and-retry", onclick: async () => {
    button.disabled = true;
    const answer = await api("POST", "/api/sessions/close-all", { retry_open: workspace.id });
    button.disabled = false;
    if (answer.status !== 200) return result.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
    const report = answer.body;
    const byId = new Map((error.active_sessions || []).map((session) => [session.id, names.get(session.workspace_id)]));
    result.replaceChildren(closeAllMessage(report, (id) => byId.get(id) || id));
    const retried = report.retried_open;
    if (retried && retried.session) {
      toast(report.outcome === "active_workspaces_closed" ? "Active workspaces closed" : "Workspace cleanup partially complete");
      chat(state, workspace, retried);
    } else if (retried && retried.error) {
      result.append(h("p", { class: "error-text" }, `Still not opened: ${retried.error.message}`));
    }
  } }, "Close all active workspaces and retry");
  main.replaceChildren(h("h1", {}, workspace.name),
    h("div", { class: "notice warn", id: "session-limit" },
      h("p", {}, h("strong", {}, "Concurrent-session limit reached. "),
        `You may have ${error.limit} live session${error.limit === 1 ? "" : "s"}; these are open:`),
      h("ul", {}, (error.active_sessions || []).map((session) => h("li", { "data-session": session.id },
        names.get(session.workspace_id) || session.workspace_id, " ", badge(session.state),
        ` since ${when(session.started_at)}`))),
      h("div", { class: "row" }, button,
        h("a", { class: "button", href: "/account", "data-link": true }, "Choose on the account page"))),
    result);
}

/** `controllers_busy`: says so, counts down `retry_after_s` and retries by itself. */
function controllersBusy(state, workspace, error) {
  let remaining = Math.max(1, error.retry_after_s || 5);
  const count = h("span", { id: "retry-countdown" }, String(remaining));
  main.replaceChildren(h("h1", {}, workspace.name),
    h("div", { class: "notice warn", id: "controllers-busy" },
      h("p", {}, h("strong", {}, "Controllers are busy. "), "Every sandbox slot of this installation is taken."),
      h("p", {}, "Retrying in ", count, " s…"),
      h("button", { onclick: () => retry() }, "Retry now")));
  const timer = setInterval(() => {
    remaining -= 1;
    count.textContent = String(Math.max(0, remaining));
    if (remaining <= 0) retry();
  }, 1000);
  const retry = () => {
    clearInterval(timer);
    if (!state.stopped) openWorkspace(state, workspace);
  };
  state.cleanups.push(() => clearInterval(timer));
}

async function workspaceNames() {
  const answer = await api("GET", "/api/workspaces");
  return new Map((answer.body.workspaces || []).map((workspace) => [workspace.id, workspace.name]));
}

/** The question before closing `sessions` at once: how many, and where an agent is at
 *  work right now (its run stops). `label` names a session. */
function closeAllQuestion(sessions, label) {
  const working = sessions.filter((session) => session.agent_running).map(label);
  const count = sessions.length === 1 ? "1 active workspace" : `${sessions.length} active workspaces`;
  const busy = working.length ? ` The agent is working right now in ${working.join(", ")}; that run stops.` : "";
  return `Close ${count}?${busy} Their files are kept.`;
}

/** The close-all outcome in words; `label` names a session (by its workspace). */
function closeAllMessage(report, label) {
  if (report.outcome === "nothing_to_close") return h("p", { class: "notice", "data-outcome": report.outcome }, "No active workspaces to close.");
  if (report.outcome === "active_workspaces_closed") {
    return h("p", { class: "notice good", "data-outcome": report.outcome }, "Active workspaces closed");
  }
  return h("div", { class: "notice bad", "data-outcome": report.outcome },
    h("p", {}, h("strong", {}, "Workspace cleanup partially complete")),
    h("p", {}, `Closed ${report.closed.length}; these did not close:`),
    h("ul", { id: "close-failures" }, report.failed.map((failure) => h("li", { "data-session": failure.session_id },
      label(failure.session_id), `: ${failure.message}`))));
}

/** The chat: history, live events, questions, prompt and Stop, preview and tool panes,
 * status bar; reconnects by itself and sends the leave signal when the page goes. */
async function chat(state, workspace, opened) {
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
        append(h("div", { class: "msg user" }, data.text || contentText(data.content)));
        break;
      case "agent_message": {
        const text = contentText(data.content);
        if (!agentBubble) { agentBubble = { text: "", element: h("div", { class: "msg agent" }) }; append(agentBubble.element); }
        agentBubble.text += text;
        if (history) unrendered.add(agentBubble);
        else agentBubble.element.innerHTML = markdown(agentBubble.text);
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
        renderSystem(data);
        break;
      default:
        break;
    }
  };
  const systemTexts = { session_started: "Session started", session_resumed: "Session resumed",
    agent_context_resumed: "The agent resumed its earlier context", session_closed: "Session closed", agent_ready: "Agent ready" };
  const renderSystem = (data) => {
    const bad = data.code === "agent_error" || data.code === "turn_timeout" || data.code === "agent_needs_credentials";
    const text = data.message || systemTexts[data.code] || data.code.replaceAll("_", " ");
    append(h("div", { class: `msg system${bad ? " bad" : ""}`, "data-code": data.code }, text));
  };

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
  unrendered.forEach((bubble) => { bubble.element.innerHTML = markdown(bubble.text); });
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

// ---------------------------------------------------------------------------- settings

function settings(id) {
  let stopped = false;
  (async () => {
    const answer = await api("GET", `/api/workspaces/${id}`);
    if (stopped) return;
    if (answer.status !== 200) return main.replaceChildren(h("h1", {}, "No such workspace"));
    const workspace = answer.body;
    setTitle(`${workspace.name} settings`);
    const error = h("p", { class: "error-text", role: "alert" });
    const field = (name, label, value, hint) => h("div", {},
      h("label", { for: `setting-${name}` }, label, hint ? h("span", { class: "hint" }, ` ${hint}`) : null),
      h("input", { id: `setting-${name}`, name, value: value || "", autocomplete: "off" }));
    const form = h("form", { class: "panel", id: "settings-form", onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = "";
      const data = new FormData(form);
      const body = {};
      if (data.get("name") !== workspace.name) body.name = data.get("name").trim();
      if (data.get("branch").trim() && data.get("branch").trim() !== (workspace.branch || "")) body.branch = data.get("branch").trim();
      if (data.get("agent").trim() !== (workspace.agent || "")) body.agent = data.get("agent").trim();
      const saved = await api("PATCH", `/api/workspaces/${id}`, body);
      if (saved.status === 200) { toast("Settings saved"); Object.assign(workspace, saved.body); }
      else error.textContent = errorMessage(saved);
    } },
    field("name", "Name", workspace.name),
    field("branch", "Branch", workspace.branch, "(switches the checkout; close the session first)"),
    field("agent", "Agent command", workspace.agent, "(empty: the installation's agent; used from the next open)"),
    error,
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Save")));
    main.replaceChildren(
      h("p", {}, h("a", { href: `/workspaces/${id}`, "data-link": true }, `← ${workspace.name}`)),
      h("h1", {}, "Workspace settings"),
      h("p", { class: "muted" }, workspace.repo, " ", badge(workspace.state)),
      form,
      h("h2", {}, "Delete"),
      h("div", { class: "panel" },
        h("p", {}, "Deleting destroys the sandbox and the files. The remote repository is not touched."),
        h("button", { class: "danger", id: "delete-workspace", onclick: () => confirmDelete(workspace, () => go("/")) }, "Delete workspace…")));
  })();
  return () => { stopped = true; };
}

// ---------------------------------------------------------------------------- account

function account() {
  setTitle("Account");
  const rows = h("tbody", {});
  const result = h("div", { id: "close-all-result", "aria-live": "polite" });
  const closeAll = h("button", { class: "danger", id: "close-all", onclick: () => runCloseAll() }, "Close all active workspaces");
  const token = h("div", {});
  let names = new Map();
  let sessionNames = new Map();
  const runCloseAll = async (confirmed = false) => {
    if (!confirmed) {
      const live = await api("GET", "/api/sessions?state=live");
      const sessions = live.status === 200 ? live.body.sessions : [];
      if (!sessions.length) return result.replaceChildren(h("p", { class: "notice" }, "No active workspaces to close."));
      if (!confirm(closeAllQuestion(sessions, (session) => names.get(session.workspace_id) || session.workspace_id))) return;
    }
    closeAll.disabled = true;
    const answer = await api("POST", "/api/sessions/close-all");
    closeAll.disabled = false;
    if (answer.status !== 200) return result.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
    const message = closeAllMessage(answer.body, (id) => sessionNames.get(id) || id);
    if (answer.body.outcome === "cleanup_partially_complete") {
      message.append(h("button", { class: "primary", id: "retry-close-all", onclick: () => runCloseAll(true) }, "Retry the ones that failed"));
    }
    result.replaceChildren(message);
    refresh();
  };
  const refresh = async () => {
    const [sessions, list] = await Promise.all([api("GET", "/api/sessions?state=live"), api("GET", "/api/workspaces")]);
    names = new Map((list.body.workspaces || []).map((workspace) => [workspace.id, workspace.name]));
    for (const session of sessions.body.sessions) sessionNames.set(session.id, names.get(session.workspace_id) || session.id);
    rows.replaceChildren(...sessions.body.sessions.map((session) => h("tr", { "data-session": session.id },
      h("td", {}, h("a", { href: `/workspaces/${session.workspace_id}`, "data-link": true }, names.get(session.workspace_id) || session.workspace_id)),
      h("td", {}, badge(session.state)),
      h("td", {}, when(session.started_at)),
      h("td", {}, h("button", { "data-action": "close", onclick: async () => { await closeSession(session.id); refresh(); } }, "Close")))));
    if (!sessions.body.sessions.length) rows.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No active workspaces.")));
  };
  const tokenRows = h("tbody", {});
  const refreshTokens = async () => {
    const answer = await api("GET", "/api/tokens");
    if (answer.status !== 200) return;
    tokenRows.replaceChildren(...answer.body.tokens.map((item) => h("tr", { "data-token": item.id },
      h("td", {}, item.name), h("td", {}, h("code", {}, `${item.prefix}…`)), h("td", {}, when(item.created_at)),
      h("td", {}, item.last_used_at ? when(item.last_used_at) : "never"), h("td", {}, item.expires_at ? when(item.expires_at) : "never"),
      h("td", {}, h("button", { "data-action": "revoke", onclick: async () => {
        if (!confirm(`Revoke the token "${item.name}"? Whatever uses it stops working at once.`)) return;
        const revoked = await api("DELETE", `/api/tokens/${item.id}`);
        if (revoked.status !== 204) toast(`Revoke failed: ${errorMessage(revoked)}`, "bad");
        refreshTokens();
      } }, "Revoke")))));
  };
  main.append(h("h1", {}, "Account"),
    h("p", {}, "Signed in as ", h("strong", { id: "user-name" }, me.name), ` (${me.role}).`),
    h("h2", {}, "Active sessions"),
    h("table", { id: "sessions" }, h("thead", {}, h("tr", {}, h("th", {}, "Workspace"), h("th", {}, "State"), h("th", {}, "Started"), h("th", {}, h("span", { class: "skip" }, "Actions")))), rows),
    h("p", { class: "row" }, closeAll), result,
    h("h2", {}, "API tokens"),
    h("div", { class: "panel" }, h("p", {}, "A token lets the CLI and scripts act as you. It is shown once; revoke one and it stops at once."),
      h("form", { id: "new-token", class: "row", onsubmit: async (event) => {
        event.preventDefault();
        const form = event.target;
        const days = Number(form.days.value);
        const body = { name: form.name.value || null, expires_in_s: days > 0 ? Math.round(days * 86400) : null };
        const answer = await api("POST", "/api/tokens", body);
        if (answer.status !== 201) return token.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
        token.replaceChildren(h("p", {}, "New token ", h("strong", {}, answer.body.name), ": ", h("code", { id: "new-token-secret" }, answer.body.token)));
        form.reset();
        refreshTokens();
      } },
        h("label", {}, "Name ", h("input", { name: "name", maxlength: 64, placeholder: "laptop" })),
        h("label", {}, "Expires after (days) ", h("input", { name: "days", type: "number", min: 0, step: "any", placeholder: "never" })),
        h("button", { type: "submit" }, "Create a token")),
      token,
      h("table", { id: "tokens" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Token"), h("th", {}, "Created"), h("th", {}, "Last used"), h("th", {}, "Expires"), h("th", {}, h("span", { class: "skip" }, "Actions")))), tokenRows)));
  main.append(...gitCredentialsPanel(), ...secretsPanel());
  refreshTokens();
  refresh();
  return workspaceFeed(() => refresh());
}

/** Git credentials: one per host, its secret never shown again. */
function gitCredentialsPanel() {
  const rows = h("tbody", {});
  const message = h("div", { "aria-live": "polite" });
  const refreshCredentials = async () => {
    const answer = await api("GET", "/api/credentials");
    if (answer.status !== 200) return;
    rows.replaceChildren(...answer.body.credentials.map((item) => h("tr", { "data-credential": item.host },
      h("td", {}, h("code", {}, item.host)), h("td", {}, item.username), h("td", {}, when(item.created_at)),
      h("td", {}, h("button", { "data-action": "remove", onclick: async () => {
        if (!confirm(`Remove your credential for ${item.host}? Clones and pushes there stop working.`)) return;
        const removed = await api("DELETE", `/api/credentials/${item.id}`);
        if (removed.status !== 204) toast(`Remove failed: ${errorMessage(removed)}`, "bad");
        refreshCredentials();
      } }, "Remove")))));
    if (!answer.body.credentials.length) rows.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No credentials yet.")));
  };
  refreshCredentials();
  const sshKey = h("div", { id: "ssh-key" }, h("p", { class: "muted" }, "Loading your SSH key…"));
  api("GET", "/api/me/ssh-key").then((answer) => {
    if (answer.status !== 200) return sshKey.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
    const line = h("code", { id: "ssh-public-key", class: "wrap" }, answer.body.public_key);
    sshKey.replaceChildren(
      h("p", {}, "For ", h("code", {}, "ssh://"), " and ", h("code", {}, "git@host:path"), " repositories berth uses a key of your own. Add this public key to your git host (GitHub: Settings → SSH and GPG keys):"),
      h("p", { class: "row" }, line, h("button", { type: "button", id: "copy-ssh-key", onclick: async () => {
        try { await navigator.clipboard.writeText(line.textContent); toast("Copied"); } catch { toast("Copy failed: select the key instead", "bad"); }
      } }, "Copy")),
      h("p", { class: "muted" }, `Fingerprint ${answer.body.fingerprint}`));
  });
  return [h("h2", { id: "credentials-title" }, "Git credentials"),
    h("div", { class: "panel" },
      h("p", {}, "Private repositories over HTTPS use your token for their host — to clone, and to push from your workspaces. It is stored encrypted and never shown again."),
      h("form", { id: "new-credential", class: "row", onsubmit: async (event) => {
        event.preventDefault();
        const form = event.target;
        const body = { host: form.host.value.trim(), username: form.username.value.trim(), secret: form.secret.value };
        const answer = await api("POST", "/api/credentials", body);
        if (answer.status !== 201) return message.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
        message.replaceChildren(h("p", { class: "notice good" }, `Credential for ${answer.body.host} saved.`));
        form.reset();
        refreshCredentials();
      } },
        h("label", {}, "Host ", h("input", { name: "host", required: true, placeholder: "github.com", autocomplete: "off", spellcheck: "false" })),
        h("label", {}, "Username ", h("input", { name: "username", required: true, placeholder: "x-access-token", autocomplete: "off" })),
        h("label", {}, "Token ", h("input", { name: "secret", required: true, type: "password", autocomplete: "off" })),
        h("button", { type: "submit" }, "Save credential")),
      message,
      sshKey,
      h("table", { id: "credentials" }, h("thead", {}, h("tr", {}, h("th", {}, "Host"), h("th", {}, "Username"), h("th", {}, "Added"), h("th", {}, h("span", { class: "skip" }, "Actions")))), rows))];
}

/** Secrets: environment variables of your agents (a model key), values write-only. */
function secretsPanel() {
  const rows = h("tbody", {});
  const message = h("div", { "aria-live": "polite" });
  const agentsNote = h("div", { id: "agents-needs" });
  const refreshSecrets = async () => {
    const [answer, agents] = await Promise.all([api("GET", "/api/secrets"), api("GET", "/api/agents")]);
    if (answer.status !== 200) return;
    rows.replaceChildren(...answer.body.secrets.map((item) => h("tr", { "data-secret": item.name },
      h("td", {}, h("code", {}, item.name)), h("td", {}, when(item.updated_at)),
      h("td", {}, h("button", { "data-action": "remove", onclick: async () => {
        if (!confirm(`Remove the secret ${item.name}? Your agents no longer get it from their next start.`)) return;
        const removed = await api("DELETE", `/api/secrets/${encodeURIComponent(item.name)}`);
        if (removed.status !== 204) toast(`Remove failed: ${errorMessage(removed)}`, "bad");
        refreshSecrets();
      } }, "Remove")))));
    if (!answer.body.secrets.length) rows.append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "No secrets yet.")));
    const lacking = agents.status === 200 ? agents.body.agents.filter((agent) => agent.missing.length) : [];
    agentsNote.replaceChildren(...lacking.map((agent) => h("p", { class: "notice" },
      h("strong", {}, agent.name), ` needs ${agent.missing.join(", ")} before it can start.`)));
  };
  refreshSecrets();
  return [h("h2", { id: "secrets-title" }, "Secrets"),
    h("div", { class: "panel" },
      h("p", {}, "Each secret is an environment variable of your agents (such as a model provider key), from their next start. Only your agents get it; the value is stored encrypted and never shown again."),
      agentsNote,
      h("form", { id: "new-secret", class: "row", onsubmit: async (event) => {
        event.preventDefault();
        const form = event.target;
        const name = form.name.value.trim();
        const answer = await api("PUT", `/api/secrets/${encodeURIComponent(name)}`, { value: form.value.value });
        if (answer.status !== 204) return message.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
        message.replaceChildren(h("p", { class: "notice good" }, `Secret ${name} saved.`));
        form.reset();
        refreshSecrets();
      } },
        h("label", {}, "Name ", h("input", { name: "name", required: true, placeholder: "ANTHROPIC_API_KEY", pattern: "[A-Z_][A-Z0-9_]{0,63}", autocomplete: "off", spellcheck: "false" })),
        h("label", {}, "Value ", h("input", { name: "value", required: true, type: "password", autocomplete: "off" })),
        h("button", { type: "submit" }, "Save secret")),
      message,
      h("table", { id: "secrets" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Updated"), h("th", {}, h("span", { class: "skip" }, "Actions")))), rows))];
}

/** Pushes the workspace's branch; says where to, or why not. */
async function pushWorkspace(workspace) {
  const answer = await api("POST", `/api/workspaces/${workspace.id}/push`);
  if (answer.status === 200) {
    toast(`Pushed ${answer.body.branch} (${answer.body.head.slice(0, 7)})`);
    return true;
  }
  toast(`Push failed: ${errorMessage(answer)}`, "bad");
  return false;
}

// ---------------------------------------------------------------------------- admin

function admin() {
  setTitle("Admin");
  if (me.role !== "admin") { main.append(h("h1", {}, "Admin"), h("p", {}, "Only administrators see this page.")); return; }
  const rows = h("tbody", {});
  const result = h("div", { id: "admin-result" });
  let sessionsShown = [];
  const refresh = async () => {
    const answer = await api("GET", "/api/admin/sessions");
    if (answer.status !== 200) return result.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
    sessionsShown = answer.body.sessions;
    rows.replaceChildren(...answer.body.sessions.map((session) => h("tr", { "data-session": session.id },
      h("td", {}, session.user_name || session.user_id), h("td", {}, session.workspace_name || session.workspace_id),
      h("td", {}, badge(session.state)), h("td", {}, when(session.started_at)),
      h("td", {}, h("button", { onclick: async () => { await closeSession(session.id); refresh(); } }, "Close")))));
    if (!answer.body.sessions.length) rows.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No live sessions.")));
  };
  const userRows = h("tbody", {});
  const refreshUsers = async () => {
    const answer = await api("GET", "/api/users");
    if (answer.status !== 200) return;
    userRows.replaceChildren(...answer.body.users.map((user) => h("tr", { "data-user": user.name },
      h("td", {}, user.name), h("td", {}, user.role), h("td", {}, user.disabled ? "disabled" : "active"), h("td", {}, when(user.created_at)),
      h("td", {}, user.id === me.id ? h("span", { class: "muted" }, "you") : h("button", { "data-action": user.disabled ? "enable" : "disable", onclick: async () => {
        if (!user.disabled && !confirm(`Disable ${user.name}? Their tokens stop and their live sessions close.`)) return;
        const changed = await api("PATCH", `/api/users/${user.id}`, { disabled: !user.disabled });
        if (changed.status !== 200) toast(errorMessage(changed), "bad");
        refreshUsers();
        refresh();
      } }, user.disabled ? "Enable" : "Disable")))));
  };
  main.append(h("h1", {}, "Every live session"),
    h("table", { id: "admin-sessions" }, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Workspace"), h("th", {}, "State"), h("th", {}, "Started"), h("th", {}, ""))), rows),
    h("p", {}, h("button", { class: "danger", id: "admin-close-all", onclick: async () => {
      await refresh();
      if (!sessionsShown.length) return result.replaceChildren(h("p", { class: "notice" }, "No live sessions to close."));
      const label = (session) => `${session.workspace_name || session.workspace_id} (${session.user_name || session.user_id})`;
      if (!confirm(closeAllQuestion(sessionsShown, label).replace("active workspace", "live session"))) return;
      const answer = await api("POST", "/api/admin/sessions/close-all");
      if (answer.status === 200) result.replaceChildren(closeAllMessage(answer.body, (id) => id));
      refresh();
    } }, "Close every session")), result,
    h("h2", {}, "Users"),
    h("table", { id: "admin-users" }, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Role"), h("th", {}, "State"), h("th", {}, "Created"), h("th", {}, ""))), userRows));
  refresh();
  refreshUsers();
  const timer = setInterval(refresh, 5000);
  return () => clearInterval(timer);
}

route();
