// berth's web UI: a small single-page application over the HTTP API (API.md), with no
// framework and no build step. Every screen is a function that draws into <main> and
// returns a cleanup function (closing its feeds and sockets) called when it is left.
// Text from the server is only ever set as text, never as HTML, except agent messages,
// which go through `markdown`, which escapes everything first.

import { account } from "./account.js";
import { admin } from "./admin.js";
import { api, errorMessage, onSignedOut } from "./api.js";
import { dashboard } from "./dashboard.js";
import { clearToasts, h, toast } from "./dom.js";
import { settings } from "./settings.js";
import { banner, dialog, go, main, nav, setRouter, shell } from "./shell.js";
import { signIn } from "./signin.js";
import { workspacePage } from "./workspace.js";

let leaveScreen = () => {};

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  go(link.getAttribute("href"));
});
window.addEventListener("popstate", () => route());
onSignedOut((code) => go(code === "account_disabled" ? "/signin?disabled=1" : "/signin"));
setRouter(route);

function drawNav() {
  nav.replaceChildren();
  if (!shell.me) return;
  const here = location.pathname;
  const link = (href, text) => h("a", { href, "data-link": true, "aria-current": here === href ? "page" : false }, text);
  nav.append(link("/", "Workspaces"), link("/account", "Account"));
  if (shell.me.role === "admin") nav.append(link("/admin", "Admin"));
  nav.append(h("span", { id: "signed-in-as", class: "muted", title: "Signed in as" }, shell.me.name),
    h("button", { id: "sign-out", class: "link", onclick: signOut }, "Sign out"));
}

/** Ends this browser's sign-in (never the token it came from) and goes to the sign-in
 * page. */
async function signOut() {
  const answer = await api("POST", "/logout");
  if (answer.status !== 204) return toast(`Sign out failed: ${errorMessage(answer)}`, "bad");
  shell.me = null;
  drawNav();
  go("/signin?signed_out=1");
}

async function route() {
  leaveScreen();
  leaveScreen = () => {};
  banner.hidden = true;
  clearToasts();
  if (dialog.open) dialog.close();
  const path = location.pathname;
  if (!shell.me && path !== "/signin") {
    const answer = await api("GET", "/api/me");
    // A disabled account is told so; anyone else comes back here once signed in.
    if (answer.status === 401 && answer.body && answer.body.error && answer.body.error.code === "account_disabled") {
      return go("/signin?disabled=1", true);
    }
    if (answer.status !== 200) return go(`/signin?next=${encodeURIComponent(path + location.search)}`, true);
    shell.me = answer.body;
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

route();
