// The page around every screen: its fixed parts, who is signed in, moving between screens,
// and the dashboard's change feed.

export const main = document.getElementById("main");
export const nav = document.getElementById("nav");
export const banner = document.getElementById("banner");
export const dialog = document.getElementById("dialog");

/** Asks the person to confirm `text` in the page's own dialog (never the browser's
 * `confirm()`, which blocks the page and cannot be styled): resolves true when they
 * press `action`, false when they cancel or close it. */
export function askToConfirm(title, text, action) {
  return new Promise((resolve) => {
    const answer = (yes) => {
      dialog.removeEventListener("close", closed);
      dialog.close();
      // Nothing of this question stays behind to be mistaken for the next one.
      dialog.replaceChildren();
      resolve(yes);
    };
    const closed = () => {
      dialog.replaceChildren();
      resolve(false);
    };
    const make = (tag, attributes, words) => {
      const element = document.createElement(tag);
      for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
      element.textContent = words;
      return element;
    };
    const cancel = make("button", { type: "button", id: "dialog-cancel" }, "Cancel");
    const confirm = make("button", { type: "button", id: "dialog-confirm", class: "danger" }, action);
    cancel.addEventListener("click", () => answer(false));
    confirm.addEventListener("click", () => answer(true));
    const row = make("div", { class: "row" }, "");
    row.append(make("span", { class: "spacer" }, ""), cancel, confirm);
    dialog.replaceChildren(make("h2", { id: "dialog-title" }, title), make("p", { id: "dialog-text" }, text), row);
    // Esc or any other way the dialog closes is a no.
    dialog.addEventListener("close", closed, { once: true });
    dialog.showModal();
    cancel.focus();
  });
}

/** Who is signed in (`/api/me`), once known. */
export const shell = { me: null };

let router = () => {};

/** The function that draws the screen of the current address. */
export function setRouter(route) {
  router = route;
}

export function go(path, replace = false) {
  if (replace) history.replaceState(null, "", path);
  else history.pushState(null, "", path);
  router();
}

/** The workspaces feed (server-sent events): calls `onList` with every new list and
 * `onChanged` with the id of a workspace whose record or log changed. */
export function workspaceFeed(onList, onChanged = () => {}) {
  const source = new EventSource("/api/workspaces/changes");
  source.addEventListener("workspaces", (event) => onList(JSON.parse(event.data).workspaces));
  source.addEventListener("changed", (event) => onChanged(JSON.parse(event.data).workspace_id));
  return () => source.close();
}
