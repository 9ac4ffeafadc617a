// The sign-in page.

import { api } from "./api.js";
import { h } from "./dom.js";
import { setTitle } from "./format.js";
import { main } from "./shell.js";

export function signIn() {
  setTitle("Sign in");
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "off", required: true });
  const params = new URLSearchParams(location.search);
  const next = params.get("next");
  // `append` would write a null as the text "null": only what is there goes in.
  main.append(...[
    h("h1", {}, "Sign in to berth"),
    params.has("disabled") ? h("p", { class: "notice bad", id: "signin-disabled" }, "Your berth account is disabled. An administrator can enable it again; until then your workspaces are kept, and nothing runs.") : null,
    params.has("refused") ? h("p", { class: "notice bad", id: "signin-refused" }, "That login link or token is not valid.") : null,
    params.has("signed_out") ? h("p", { class: "notice", id: "signed-out" }, "You are signed out of this browser. Your login link and tokens still work: open the link again to come back.") : null,
    h("div", { class: "panel" },
      h("p", {}, "Open the login link that ", h("code", {}, "berth serve"), " printed, or paste a token here. ",
        "A token is made with ", h("code", {}, "berth user add NAME"), "."),
      h("form", { method: "get", action: "/login" },
        h("label", { for: "token" }, "Token"), input,
        next ? h("input", { type: "hidden", name: "next", value: next }) : null,
        h("p", {}, h("button", { class: "primary", type: "submit" }, "Sign in")))),
  ].filter(Boolean));
  input.focus();
  // The team's identity provider first, when the installation has one.
  api("GET", "/api/sign-in-options").then((answer) => {
    const oidc = answer.status === 200 ? answer.body.oidc : null;
    if (!oidc) return;
    const start = `/auth/oidc/start${next ? `?next=${encodeURIComponent(next)}` : ""}`;
    const panel = h("div", { class: "panel", id: "oidc-panel" }, ...[
      h("p", {}, h("a", { class: "button primary", id: "oidc-sign-in", href: start }, `Sign in with ${oidc.display_name}`)),
      oidc.reachable ? null : h("p", { class: "notice bad", id: "oidc-unreachable" }, `${oidc.display_name} cannot be reached right now; berth keeps trying.`),
      h("p", { class: "muted" }, "Or use a login link or token:"),
    ].filter(Boolean));
    main.querySelector("h1").after(panel);
  });
}
