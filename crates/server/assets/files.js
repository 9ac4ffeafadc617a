// A read-only file browser over GET /api/workspaces/{id}/files: a directory's entries
// (directories first), a path to climb back, and a text viewer. The checkout is read in a
// sandbox; a link is shown with its target, never followed.

import { api, errorMessage } from "./api.js";
import { h } from "./dom.js";

/** Bytes as a person reads them. */
function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** The panel and a `refresh` to call when the checkout may have changed. */
export function filesPanel(workspace) {
  const crumbs = h("nav", { class: "crumbs", id: "files-path", "aria-label": "Folder" });
  const body = h("div", { id: "files-body" });
  // The folder last listed, and the path last shown (what a refresh shows again).
  let here = "";
  let shown = "";

  const show = async (path) => {
    const answer = await api("GET", `/api/workspaces/${encodeURIComponent(workspace.id)}/files?path=${encodeURIComponent(path)}`);
    if (answer.status !== 200) {
      body.replaceChildren(h("p", { class: "error-text", id: "files-error" }, errorMessage(answer)));
      return;
    }
    const found = answer.body;
    shown = found.path;
    if (found.kind === "dir") here = found.path;
    drawCrumbs(found.path, found.kind === "dir");
    if (found.kind === "dir") {
      const rows = found.entries.map((entry) => {
        const child = found.path ? `${found.path}/${entry.name}` : entry.name;
        const label = entry.kind === "dir" ? `${entry.name}/` : entry.name;
        const open = ["dir", "file", "symlink"].includes(entry.kind)
          ? h("button", { type: "button", class: "link", "data-entry": entry.name, onclick: () => show(child) }, label)
          : h("span", { "data-entry": entry.name }, label);
        return h("li", { "data-kind": entry.kind }, open,
          entry.kind === "file" ? h("span", { class: "muted" }, size(entry.size)) : null,
          entry.kind === "symlink" ? h("span", { class: "muted" }, "link") : null);
      });
      body.replaceChildren(rows.length ? h("ul", { class: "entries", id: "files-entries" }, rows) : h("p", { class: "muted" }, "Empty folder."));
      if (found.truncated) body.append(h("p", { class: "muted" }, "More entries than shown (5,000)."));
    } else if (found.kind === "symlink") {
      body.replaceChildren(h("p", { id: "file-link" }, "A link to ", h("code", { class: "wrap" }, found.target),
        h("span", { class: "muted" }, " — berth does not follow links.")));
    } else {
      body.replaceChildren(h("p", { class: "muted" }, size(found.size), found.truncated ? " — only the first MiB is shown" : ""),
        h("pre", { class: "file-view", id: "file-view" }, found.content));
    }
  };

  /** `checkout / src / lib` — each part a way back up. */
  const drawCrumbs = (path, isDir) => {
    const names = path ? path.split("/") : [];
    const parts = [h("button", { type: "button", class: "link", "data-crumb": "", onclick: () => show("") }, "checkout")];
    names.forEach((name, index) => {
      const to = names.slice(0, index + 1).join("/");
      const last = index === names.length - 1;
      parts.push(" / ", last && !isDir ? h("strong", {}, name)
        : h("button", { type: "button", class: "link", "data-crumb": to, onclick: () => show(to) }, name));
    });
    crumbs.replaceChildren(...parts);
  };

  const element = h("details", { class: "panel files", id: "files", ontoggle: (event) => { if (event.target.open) show(here); } },
    h("summary", {}, h("h2", { id: "files-title" }, "Files")), crumbs, body);
  return { element, refresh: () => { if (element.open) show(shown); } };
}
