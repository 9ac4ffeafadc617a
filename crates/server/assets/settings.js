// A workspace's settings: name, branch, agent, and delete.

import { api, errorMessage } from "./api.js";
import { agentPicker, confirmDelete, saveAgentSecrets } from "./dashboard.js";
import { h, toast } from "./dom.js";
import { badge, setTitle, shownState, terminalText } from "./format.js";
import { go, main, workspaceFeed } from "./shell.js";

export function settings(id) {
  let stopped = false;
  let stopFeed = () => {};
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
      if ((data.get("agent") || "") !== (workspace.agent || "")) body.agent = data.get("agent") || "";
      // The key the newly chosen agent needs, added right here first.
      const unsaved = await saveAgentSecrets(form);
      if (unsaved) { error.textContent = unsaved; return; }
      const saved = await api("PATCH", `/api/workspaces/${id}`, body);
      if (saved.status === 200) { toast("Settings saved"); Object.assign(workspace, saved.body); }
      else error.textContent = errorMessage(saved);
    } },
    field("name", "Name", workspace.name),
    field("branch", "Branch", workspace.branch, "(switches the checkout; close the session first)"),
    agentPicker(workspace.agent || ""),
    h("p", { class: "hint" }, "The agent runs from the next open: close the session to switch now."),
    error,
    h("p", {}, h("button", { class: "primary", type: "submit" }, "Save")));
    main.replaceChildren(
      h("p", {}, h("a", { href: `/workspaces/${id}`, "data-link": true }, `← ${workspace.name}`)),
      h("h1", {}, "Workspace settings"),
      h("p", { class: "muted" }, workspace.repo, " ", h("span", { id: "settings-state" }, badge(shownState(workspace)))),
      form,
      h("details", { class: "panel", id: "init-log-details", ontoggle: async (event) => {
        if (!event.target.open) return;
        const log = await api("GET", `/api/workspaces/${id}/init-log`);
        event.target.querySelector("pre").textContent = log.status === 200 ? terminalText(log.body) || "Empty." : errorMessage(log);
      } }, h("summary", {}, "Initialisation log"), h("pre", { class: "log", id: "init-log" })),
      h("h2", {}, "Delete"),
      h("div", { class: "panel" },
        h("p", {}, "Deleting destroys the sandbox and the files. The remote repository is not touched."),
        h("button", { class: "danger", id: "delete-workspace", onclick: () => confirmDelete(workspace, () => go("/")) }, "Delete workspace…")));
    // The state as every other page shows it, as it changes.
    stopFeed = workspaceFeed((list) => {
      const current = list.find((item) => item.id === id);
      if (!current) return;
      Object.assign(workspace, current);
      main.querySelector("#settings-state").replaceChildren(badge(shownState(current)));
    });
    if (stopped) stopFeed();
  })();
  return () => { stopped = true; stopFeed(); };
}
