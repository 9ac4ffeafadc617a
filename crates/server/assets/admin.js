// The admin page: every live session and every user.

import { api, errorMessage } from "./api.js";
import { closeAllMessage, closeAllQuestion, closeSession } from "./dashboard.js";
import { h, toast } from "./dom.js";
import { badge, setTitle, when } from "./format.js";
import { main, shell } from "./shell.js";

export function admin() {
  setTitle("Admin");
  if (shell.me.role !== "admin") { main.append(h("h1", {}, "Admin"), h("p", {}, "Only administrators see this page.")); return; }
  const rows = h("tbody", {});
  const result = h("div", { id: "admin-result" });
  let sessionsShown = [];
  const show = (sessions) => {
    sessionsShown = sessions;
    rows.replaceChildren(...sessions.map((session) => h("tr", { "data-session": session.id },
      h("td", {}, session.user_name || session.user_id), h("td", {}, session.workspace_name || session.workspace_id),
      h("td", {}, badge(session.state)), h("td", {}, when(session.started_at)),
      h("td", {}, h("button", { onclick: () => closeSession(session.id) }, "Close")))));
    if (!sessions.length) rows.append(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No live sessions.")));
  };
  const refresh = async () => {
    const answer = await api("GET", "/api/admin/sessions");
    if (answer.status !== 200) return result.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
    show(answer.body.sessions);
  };
  // Every change of any session, as it happens.
  const feed = new EventSource("/api/admin/sessions/changes");
  feed.addEventListener("sessions", (event) => show(JSON.parse(event.data).sessions));
  const userRows = h("tbody", {});
  const refreshUsers = async () => {
    const answer = await api("GET", "/api/users");
    if (answer.status !== 200) return;
    userRows.replaceChildren(...answer.body.users.map((user) => h("tr", { "data-user": user.name },
      h("td", {}, user.name), h("td", {}, user.role), h("td", {}, user.disabled ? "disabled" : "active"), h("td", {}, when(user.created_at)),
      h("td", {}, user.id === shell.me.id ? h("span", { class: "muted" }, "you") : h("button", { "data-action": user.disabled ? "enable" : "disable", onclick: async () => {
        if (!user.disabled && !confirm(`Disable ${user.name}? Their tokens stop and their live sessions close.`)) return;
        const changed = await api("PATCH", `/api/users/${user.id}`, { disabled: !user.disabled });
        if (changed.status !== 200) toast(errorMessage(changed), "bad");
        refreshUsers();
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
    } }, "Close every session")), result,
    h("h2", {}, "Users"),
    h("table", { id: "admin-users" }, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Role"), h("th", {}, "State"), h("th", {}, "Created"), h("th", {}, ""))), userRows));
  refreshUsers();
  return () => feed.close();
}
