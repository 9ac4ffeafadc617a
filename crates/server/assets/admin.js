// The admin page: every live session and every user.

import { api, errorMessage } from "./api.js";
import { closeAllMessage, closeAllQuestion, closeSession } from "./dashboard.js";
import { h, toast } from "./dom.js";
import { badge, setTitle, when } from "./format.js";
import { askToConfirm, main, shell } from "./shell.js";

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
      h("td", {}, user.name), h("td", {}, user.signs_in_with === "oidc" ? "single sign-on" : "login link"),
      h("td", {}, user.id === shell.me.id ? user.role : roleSelect(user, refreshUsers)),
      h("td", {}, user.disabled ? "disabled" : "active"), h("td", {}, when(user.created_at)),
      h("td", {}, user.id === shell.me.id ? h("span", { class: "muted" }, "you") : h("button", { "data-action": user.disabled ? "enable" : "disable", onclick: async () => {
        if (!user.disabled && !(await askToConfirm(`Disable ${user.name}?`, `Disable ${user.name}? Their tokens stop and their live sessions close.`, "Disable"))) return;
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
      const question = closeAllQuestion(sessionsShown, label).replace("active workspace", "live session");
      if (!(await askToConfirm("Close every session?", question, "Close every session"))) return;
      const answer = await api("POST", "/api/admin/sessions/close-all");
      if (answer.status === 200) result.replaceChildren(closeAllMessage(answer.body, (id) => id));
    } }, "Close every session")), result,
    h("h2", {}, "Users"),
    newUserForm(refreshUsers),
    h("table", { id: "admin-users" }, h("thead", {}, h("tr", {}, h("th", {}, "User"), h("th", {}, "Signs in with"), h("th", {}, "Role"), h("th", {}, "State"), h("th", {}, "Created"), h("th", {}, ""))), userRows));
  refreshUsers();
  return () => feed.close();
}

/** A user's role, changed as it is picked (an administrator's role comes from the
 * identity provider's groups for people who sign in there, at their next sign-in). */
function roleSelect(user, refresh) {
  const select = h("select", { "data-action": "role", "aria-label": `Role of ${user.name}`, onchange: async () => {
    const changed = await api("PATCH", `/api/users/${user.id}`, { role: select.value });
    if (changed.status !== 200) toast(errorMessage(changed), "bad");
    refresh();
  } }, h("option", { value: "member" }, "member"), h("option", { value: "admin" }, "admin"));
  select.value = user.role;
  return select;
}

/** Makes a user who signs in with a login link: the link (with their first token) is
 * shown once, to be handed to them. */
function newUserForm(refresh) {
  const shown = h("div", { id: "new-user-result", "aria-live": "polite" });
  const form = h("form", { id: "new-user", class: "row", onsubmit: async (event) => {
    event.preventDefault();
    const answer = await api("POST", "/api/users", { name: form.name.value.trim(), role: form.role.value });
    if (answer.status !== 201) return shown.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
    const link = `${location.origin}/login?token=${encodeURIComponent(answer.body.token)}`;
    shown.replaceChildren(h("p", {}, "Made ", h("strong", {}, answer.body.user.name),
      ". Give them this login link; it is shown once: ", h("code", { id: "new-user-link" }, link)));
    form.reset();
    refresh();
  } },
    h("label", {}, "Name ", h("input", { name: "name", required: true, maxlength: 64, placeholder: "ada" })),
    h("label", {}, "Role ", h("select", { name: "role" }, h("option", { value: "member" }, "member"), h("option", { value: "admin" }, "admin"))),
    h("button", { type: "submit" }, "Create a user"));
  return h("div", { class: "panel" }, form, shown);
}
