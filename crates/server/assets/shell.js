// The page around every screen: its fixed parts, who is signed in, moving between screens,
// and the dashboard's change feed.

export const main = document.getElementById("main");
export const nav = document.getElementById("nav");
export const banner = document.getElementById("banner");
export const dialog = document.getElementById("dialog");

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
