// A workspace's page before its chat: the clone log while it initialises, opening the
// session, and what to do when a limit or the sandbox slots are in the way.

import { api, errorMessage } from "./api.js";
import { chat } from "./chat.js";
import { closeAllMessage, confirmDelete, workspaceNames } from "./dashboard.js";
import { h, toast } from "./dom.js";
import { badge, setTitle, terminalText, when } from "./format.js";
import { go, main, workspaceFeed } from "./shell.js";

export function workspacePage(id) {
  const state = { id, stopped: false, cleanups: [] };
  const cleanup = () => {
    state.stopped = true;
    state.cleanups.forEach((fn) => fn());
  };
  loadWorkspace(state);
  return cleanup;
}

export async function loadWorkspace(state) {
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
export function initScreen(state, workspace) {
  const log = h("pre", { class: "log", id: "init-log", "aria-live": "polite" });
  const status = h("div", { id: "init-status" });
  main.replaceChildren(h("h1", {}, workspace.name, " ", badge(workspace.state)),
    h("p", { class: "meta muted" }, workspace.repo), status, h("h2", {}, "Initialisation log"), log);
  const progress = h("div", { id: "clone-progress", class: "clone-progress", hidden: true });
  const refreshLog = async () => {
    const answer = await api("GET", `/api/workspaces/${workspace.id}/init-log`);
    if (answer.status === 200) {
      const follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.textContent = terminalText(answer.body) || "Waiting for git…";
      if (follow) log.scrollTop = log.scrollHeight;
      drawProgress(progress, log.textContent);
    }
  };
  const drawStatus = (current) => {
    main.querySelector("h1 .badge").replaceWith(badge(current.state));
    status.replaceChildren();
    if (current.state === "initialising") status.append(h("p", { class: "notice" }, "Cloning the repository…"), progress);
    if (current.state === "error") {
      status.append(h("div", { class: "notice bad", id: "init-error" },
        h("p", {}, h("strong", {}, "Initialisation failed: "), current.error || "see the log below"),
        // A clone refused for want of a credential leads to where one is added.
        /Git credentials/.test(current.error || "")
          ? h("p", {}, h("a", { href: "/account#credentials-title", "data-link": true, id: "add-credential" }, "Add a git credential")) : null,
        h("div", { class: "row" },
          h("button", { class: "primary", id: "retry", onclick: async (event) => {
            // Said at once; the clone's own progress follows.
            event.target.disabled = true;
            event.target.textContent = "Retrying…";
            const answer = await api("POST", `/api/workspaces/${current.id}/retry`);
            if (answer.status !== 202) {
              event.target.disabled = false;
              event.target.textContent = "Retry";
              return toast(errorMessage(answer), "bad");
            }
            toast("Cloning again");
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

/** The clone's last progress line from git (`Receiving objects:  45% (450/1000), 1.20 MiB
 * | …`) as a bar and words: what is done, how far, how much has come. */
export function drawProgress(element, log) {
  const lines = log.split("\n").filter((line) => /\d+% \(\d+\/\d+\)/.test(line));
  const last = lines[lines.length - 1];
  const found = last && last.match(/(?:remote: )?([A-Za-z ]+):\s+(\d+)% \((\d+)\/(\d+)\)(?:, ([\d.]+ [KMG]?i?B))?/);
  if (!found) { element.hidden = true; return; }
  const [, phase, percent, done, total, bytes] = found;
  element.hidden = false;
  element.replaceChildren(h("progress", { max: 100, value: Number(percent), "aria-label": phase }),
    h("span", { id: "clone-progress-text" }, `${phase.trim()}: ${percent}% (${done} of ${total})${bytes ? `, ${bytes}` : ""}`));
}

/** Opens (or resumes) the session, with the recovery flows for a refused launch. */
export async function openWorkspace(state, workspace) {
  main.replaceChildren(h("h1", {}, workspace.name), h("p", { class: "muted" }, "Opening…"));
  const answer = await api("POST", `/api/workspaces/${workspace.id}/open`);
  if (state.stopped) {
    if (answer.body && answer.body.session) navigator.sendBeacon(`/api/sessions/${answer.body.session.id}/leave`);
    return;
  }
  if (answer.status === 200 || answer.status === 201) return chat(state, workspace, answer.body);
  // Deleted meanwhile (from another tab, say): nothing to open again.
  if (answer.status === 404) {
    return main.replaceChildren(h("h1", {}, workspace.name),
      h("div", { class: "notice warn", id: "workspace-deleted" }, h("p", {}, `${workspace.name} was deleted; its files are gone.`),
        h("a", { class: "button primary", href: "/", "data-link": true }, "Back to your workspaces")));
  }
  const error = answer.body && answer.body.error ? answer.body.error : { code: "unknown", message: errorMessage(answer) };
  if (error.code === "session_limit") return sessionLimit(state, workspace, error);
  if (error.code === "controllers_busy") return controllersBusy(state, workspace, error);
  if (error.code === "workspace_not_ready") return loadWorkspace(state);
  if (error.code === "agent_needs_secrets") return needsSecrets(state, workspace, error);
  main.replaceChildren(h("h1", {}, workspace.name),
    h("div", { class: "notice bad", id: "open-error" }, h("p", {}, `The workspace did not open: ${error.message}`),
      h("button", { class: "primary", onclick: () => openWorkspace(state, workspace) }, "Try again")));
}

/** `agent_needs_secrets`: the keys the workspace's agent needs that the person has not
 * set, a field for each right here, then the open again. */
function needsSecrets(state, workspace, error) {
  const fields = error.missing.map((secret) => h("div", {},
    h("label", { for: `secret-${secret}` }, `Your ${secret}`),
    h("input", { id: `secret-${secret}`, type: "password", autocomplete: "off", required: true, "data-secret": secret })));
  const problem = h("p", { class: "error-text", role: "alert" });
  const form = h("form", { id: "agent-secrets", onsubmit: async (event) => {
    event.preventDefault();
    form.querySelector("button").disabled = true;
    for (const input of form.querySelectorAll("[data-secret]")) {
      const saved = await api("PUT", `/api/secrets/${encodeURIComponent(input.dataset.secret)}`, { value: input.value });
      if (saved.status !== 204) {
        form.querySelector("button").disabled = false;
        problem.textContent = errorMessage(saved);
        return;
      }
    }
    toast("Saved; opening");
    openWorkspace(state, workspace);
  } }, fields, h("button", { class: "primary", type: "submit" }, "Save and open"), problem);
  main.replaceChildren(h("h1", {}, workspace.name),
    h("div", { class: "notice warn", id: "agent-needs-secrets" },
      h("p", {}, h("strong", {}, `${error.agent} needs ${error.missing.join(", ")}. `),
        "It is your own key: sealed, given to your agents only, never shown again."), form));
}

/** `session_limit`: the blocking sessions, and one action that closes them all and
 * relaunches this workspace. */
export async function sessionLimit(state, workspace, error) {
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
export function controllersBusy(state, workspace, error) {
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
