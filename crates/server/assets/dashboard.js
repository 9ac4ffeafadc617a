// The dashboard: a card per workspace, live; creating one; closing and deleting (the delete
// dialog shows what would be lost and offers to push first); the close-all words.

import { api, errorMessage } from "./api.js";
import { h, toast } from "./dom.js";
import { badge, setTitle, shownState, when } from "./format.js";
import { dialog, main, workspaceFeed } from "./shell.js";

export function dashboard() {
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

export function newWorkspaceForm() {
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
    if (data.get("agent")) body.agent = data.get("agent");
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      // The key the chosen agent needs, added right here first.
      const unsaved = await saveAgentSecrets(form);
      if (unsaved) { error.textContent = unsaved; return; }
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
    agentPicker(),
    h("button", { class: "primary", type: "submit" }, "Create")),
  error);
  return h("details", { class: "panel new-workspace", open: true }, h("summary", {}, "New workspace"), form);
}

/** The agent of a new workspace: the installation's default first (preselected), then
 * each agent offered — one not installed here cannot be picked — and, for the one picked,
 * a field for each key it needs that the person has not set. */
/** Saves the secrets typed into `form`'s agent picker; the error to show, or null. */
export async function saveAgentSecrets(form) {
  for (const input of form.querySelectorAll("[data-secret]")) {
    if (!input.value) continue;
    const saved = await api("PUT", `/api/secrets/${encodeURIComponent(input.dataset.secret)}`, { value: input.value });
    if (saved.status !== 204) return errorMessage(saved);
    input.value = "";
  }
  return null;
}

/**
 * The agent a workspace runs: the catalogue's agents (those not installed shown, not
 * offered), with a field for each secret the chosen one lacks. `current` is selected; a
 * command of the workspace's own that is not in the catalogue stays offered as it is.
 */
export function agentPicker(current = "") {
  const select = h("select", { id: "agent", name: "agent" }, h("option", { value: "" }, "The installation's default"));
  const needs = h("div", { id: "agent-needs" });
  let offered = [];
  const drawNeeds = () => {
    const agent = offered.find((item) => item.name === select.value);
    needs.replaceChildren();
    if (!agent) return;
    if (agent.description) needs.append(h("p", { class: "hint", id: "agent-description" }, agent.description));
    for (const secret of agent.missing) {
      const id = `secret-${secret}`;
      needs.append(h("div", {}, h("label", { for: id }, `Your ${secret}`, h("span", { class: "hint" }, ` (${agent.name} needs it; kept sealed, for your agents only)`)),
        h("input", { id, type: "password", autocomplete: "off", "data-secret": secret })));
    }
  };
  select.addEventListener("change", drawNeeds);
  api("GET", "/api/agents").then((answer) => {
    if (answer.status !== 200) return;
    offered = answer.body.agents;
    select.append(...offered.map((agent) => h("option", { value: agent.name, disabled: !agent.installed, title: agent.install || null },
      `${agent.name}${agent.installed ? "" : " (not installed)"}${agent.missing.length ? ` — needs ${agent.missing.join(", ")}` : ""}`)));
    if (current && !offered.some((agent) => agent.name === current)) select.append(h("option", { value: current }, current));
    select.value = current;
    drawNeeds();
  });
  return h("div", { class: "agent-picker" }, h("label", { for: "agent" }, "Agent"), select, needs);
}

export function workspaceCard(workspace) {
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
    h("h3", {}, h("a", { href, "data-link": true }, workspace.name), badge(shownState(workspace))),
    h("div", { class: "meta" }, workspace.repo),
    h("div", { class: "meta" }, `branch ${workspace.branch || "default"} · last opened ${when(workspace.last_opened_at)}`),
    workspace.error ? h("div", { class: "error-text" }, workspace.error) : null,
    actions);
}

export async function closeSession(sessionId) {
  const answer = await api("POST", `/api/sessions/${sessionId}/close`);
  if (answer.status === 200) toast("Workspace closed");
  else toast(`Close failed: ${errorMessage(answer)}`, "bad");
  return answer.status === 200;
}

/** The delete dialog: shows what would be lost, says that the remote is not touched and
 * that there is no recovery, and asks for the workspace's name. */
export async function confirmDelete(workspace, afterDelete = () => {}) {
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
      // After: when it leads to another page, the notice is about where it leads.
      afterDelete();
      toast(`Deleted ${workspace.name}`);
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
        " ", workspace.pushable ? h("button", { id: "push-now", onclick: async (event) => {
          event.target.disabled = true;
          if (await pushWorkspace(workspace)) { dialog.close(); confirmDelete(workspace, afterDelete); } else event.target.disabled = false;
        } }, "Push now") : null) : null));
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

export async function workspaceNames() {
  const answer = await api("GET", "/api/workspaces");
  return new Map((answer.body.workspaces || []).map((workspace) => [workspace.id, workspace.name]));
}

/** The question before closing `sessions` at once: how many, and where an agent is at
 *  work right now (its run stops). `label` names a session. */
export function closeAllQuestion(sessions, label) {
  const working = sessions.filter((session) => session.agent_running).map(label);
  const count = sessions.length === 1 ? "1 active workspace" : `${sessions.length} active workspaces`;
  const busy = working.length ? ` The agent is working right now in ${working.join(", ")}; that run stops.` : "";
  return `Close ${count}?${busy} Their files are kept.`;
}

/** The close-all outcome in words; `label` names a session (by its workspace). */
export function closeAllMessage(report, label) {
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

/** Pushes the workspace's branch; says where to, or why not. */
export async function pushWorkspace(workspace) {
  const answer = await api("POST", `/api/workspaces/${workspace.id}/push`);
  if (answer.status === 200) {
    toast(`Pushed ${answer.body.branch} (${answer.body.head.slice(0, 7)})`);
    return true;
  }
  // The server's own words already say the push failed.
  const said = errorMessage(answer);
  toast(answer.body && answer.body.error && answer.body.error.code === "push_failed"
    ? said.charAt(0).toUpperCase() + said.slice(1) : `Push failed: ${said}`, "bad");
  return false;
}
