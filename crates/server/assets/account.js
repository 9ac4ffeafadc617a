// The account page: live sessions and close-all, API tokens, git credentials, the SSH key
// and secrets.

import { api, errorMessage } from "./api.js";
import { closeAllMessage, closeAllQuestion, closeSession } from "./dashboard.js";
import { h, toast } from "./dom.js";
import { badge, setTitle, shownState, when } from "./format.js";
import { askToConfirm, main, shell, workspaceFeed } from "./shell.js";

export function account() {
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
      const label = (session) => names.get(session.workspace_id) || session.workspace_id;
      if (!(await askToConfirm("Close all active workspaces?", closeAllQuestion(sessions, label), "Close all"))) return;
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
  };
  // The sessions come from the same feed as the dashboard's cards: one state everywhere,
  // updated as it changes.
  const showSessions = (workspaces) => {
    names = new Map(workspaces.map((workspace) => [workspace.id, workspace.name]));
    const live = workspaces.filter((workspace) => workspace.active_session);
    for (const workspace of live) sessionNames.set(workspace.active_session.id, workspace.name);
    rows.replaceChildren(...live.map((workspace) => h("tr", { "data-session": workspace.active_session.id },
      h("td", {}, h("a", { href: `/workspaces/${workspace.id}`, "data-link": true }, workspace.name)),
      h("td", {}, badge(shownState(workspace))),
      h("td", {}, when(workspace.active_session.started_at)),
      h("td", {}, h("button", { "data-action": "close", onclick: () => closeSession(workspace.active_session.id) }, "Close")))));
    if (!live.length) rows.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No active workspaces.")));
    closeAll.hidden = !live.length; // nothing open: nothing to close
  };
  const tokenRows = h("tbody", {});
  const refreshTokens = async () => {
    const answer = await api("GET", "/api/tokens");
    if (answer.status !== 200) return;
    tokenRows.replaceChildren(...answer.body.tokens.map((item) => h("tr", { "data-token": item.id },
      h("td", {}, item.name), h("td", {}, h("code", {}, `${item.prefix}…`)), h("td", {}, when(item.created_at)),
      h("td", {}, item.last_used_at ? when(item.last_used_at) : "never"), h("td", {}, item.expires_at ? when(item.expires_at) : "never"),
      h("td", {}, h("button", { "data-action": "revoke", onclick: async () => {
        if (!(await askToConfirm("Revoke this token?", `Revoke the token "${item.name}"? Whatever uses it stops working at once.`, "Revoke"))) return;
        const revoked = await api("DELETE", `/api/tokens/${item.id}`);
        if (revoked.status !== 204) toast(`Revoke failed: ${errorMessage(revoked)}`, "bad");
        refreshTokens();
      } }, "Revoke")))));
  };
  main.append(h("h1", {}, "Account"),
    h("p", {}, "Signed in as ", h("strong", { id: "user-name" }, shell.me.name), ` (${shell.me.role}).`),
    ...profilePanel(),
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
  main.append(...signInsPanel(), ...gitCredentialsPanel(), ...secretsPanel());
  refreshTokens();
  return workspaceFeed(showSessions);
}

/** What the person is called and reached at: what their commits (berth's and the
 * agent's) carry. A person whose identity provider sets them sees them, read-only. */
export function profilePanel() {
  const me = shell.me;
  const shows = h("p", { id: "commit-identity" });
  const showIdentity = (profile) => {
    const name = profile.display_name || me.name;
    const email = profile.email || `${me.name}@users.berth.invalid`;
    shows.replaceChildren("Your commits show ", h("code", {}, `${name} <${email}>`),
      profile.email ? "." : " — add an email so that they point to you.");
  };
  const managed = me.managed_by_provider;
  const nameInput = h("input", { name: "display_name", maxlength: 100, value: me.display_name || "", placeholder: me.name, disabled: managed });
  const emailInput = h("input", { name: "email", type: "email", maxlength: 254, value: me.email || "", placeholder: "you@example.com", disabled: managed });
  const said = h("div", { "aria-live": "polite" });
  showIdentity(me);
  const form = h("form", { id: "profile-form", class: "row", onsubmit: async (event) => {
    event.preventDefault();
    const answer = await api("PATCH", "/api/me", { display_name: nameInput.value.trim(), email: emailInput.value.trim() });
    if (answer.status !== 200) return said.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
    Object.assign(shell.me, answer.body);
    showIdentity(answer.body);
    said.replaceChildren(h("p", { class: "notice" }, "Saved."));
  } },
    h("label", {}, "Display name ", nameInput), h("label", {}, "Email ", emailInput),
    managed ? null : h("button", { type: "submit" }, "Save"));
  return [h("h2", { id: "profile-title" }, "Profile"),
    h("div", { class: "panel", id: "profile" }, ...[
      managed ? h("p", { class: "muted" }, "Your name and email come from your identity provider at each sign-in.") : null,
      form, shows, said].filter(Boolean))];
}

/** Browser sign-ins: each browser signed in as this person, from where and when, ended one
 * by one (this browser's too, which signs it out). */
export function signInsPanel() {
  const rows = h("tbody", {});
  const refresh = async () => {
    const answer = await api("GET", "/api/sign-ins");
    if (answer.status !== 200) return;
    rows.replaceChildren(...answer.body.sign_ins.map((item) => h("tr", { "data-sign-in": item.id, class: item.current ? "current" : "" },
      h("td", {}, item.user_agent || "unknown browser", item.current ? h("span", { class: "badge" }, "this browser") : ""),
      h("td", {}, item.address || "unknown"), h("td", {}, when(item.created_at)), h("td", {}, when(item.last_seen_at)),
      h("td", {}, item.via === "oidc" ? "single sign-on" : "login link"),
      h("td", {}, h("button", { "data-action": "end-sign-in", onclick: async () => {
        const ended = await api("DELETE", `/api/sign-ins/${item.id}`);
        if (ended.status !== 204) return toast(`Sign-out failed: ${errorMessage(ended)}`, "bad");
        if (item.current) return location.assign("/signin?signed_out=1");
        refresh();
      } }, item.current ? "Sign out" : "End")))));
    if (!answer.body.sign_ins.length) rows.append(h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No browser is signed in.")));
  };
  refresh();
  return [h("h2", { id: "sign-ins-title" }, "Browser sign-ins"),
    h("div", { class: "panel" }, h("p", {}, "Each browser signed in as you. Ending one signs that browser out at once; the login link or token it came from keeps working."),
      h("table", { id: "sign-ins" }, h("thead", {}, h("tr", {}, h("th", {}, "Browser"), h("th", {}, "From"), h("th", {}, "Signed in"), h("th", {}, "Last seen"), h("th", {}, "With"), h("th", {}, h("span", { class: "skip" }, "Actions")))), rows))];
}

/** Git credentials: one per host, its secret never shown again. */
export function gitCredentialsPanel() {
  const rows = h("tbody", {});
  const message = h("div", { "aria-live": "polite" });
  const refreshCredentials = async () => {
    const answer = await api("GET", "/api/credentials");
    if (answer.status !== 200) return;
    rows.replaceChildren(...answer.body.credentials.map((item) => h("tr", { "data-credential": item.host },
      h("td", {}, h("code", {}, item.host)), h("td", {}, item.username), h("td", {}, when(item.created_at)),
      h("td", {}, h("button", { "data-action": "remove", onclick: async () => {
        if (!(await askToConfirm("Remove this credential?", `Remove your credential for ${item.host}? Clones and pushes there stop working.`, "Remove"))) return;
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
export function secretsPanel() {
  const rows = h("tbody", {});
  const message = h("div", { "aria-live": "polite" });
  const agentsNote = h("div", { id: "agents-needs" });
  const refreshSecrets = async () => {
    const [answer, agents] = await Promise.all([api("GET", "/api/secrets"), api("GET", "/api/agents")]);
    if (answer.status !== 200) return;
    rows.replaceChildren(...answer.body.secrets.map((item) => h("tr", { "data-secret": item.name },
      h("td", {}, h("code", {}, item.name)), h("td", {}, when(item.updated_at)),
      h("td", {}, h("button", { "data-action": "remove", onclick: async () => {
        if (!(await askToConfirm("Remove this secret?", `Remove the secret ${item.name}? Your agents no longer get it from their next start.`, "Remove"))) return;
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
