// The Files tab over `…/files`: a directory's entries (directories first), a path to
// climb back, a file's text — and an editor to change it, a new file, rename, delete.
// The checkout is read and written in a sandbox; a link is shown with its target, never
// followed. A save names the version read (`expected_sha`): when the agent changed the
// file meanwhile the person is told, and sees both before choosing.

import { api, errorMessage } from "./api.js";
import { h, toast } from "./dom.js";
import { askToConfirm } from "./shell.js";

/** Bytes as a person reads them. */
function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

// ---- the editor: CodeMirror 5, its prebuilt files loaded on the first edit

const MODES = { js: "javascript", mjs: "javascript", cjs: "javascript", ts: "javascript", jsx: "javascript", tsx: "javascript",
  json: "javascript", py: "python", rs: "rust", go: "go", sh: "shell", bash: "shell", md: "markdown", css: "css",
  html: "htmlmixed", htm: "htmlmixed", xml: "xml", svg: "xml", yml: "yaml", yaml: "yaml", toml: "toml",
  c: "clike", h: "clike", cc: "clike", cpp: "clike", hpp: "clike", java: "clike", kt: "clike", cs: "clike",
  sql: "sql", diff: "diff", patch: "diff" };
const MIMES = { ts: "text/typescript", tsx: "text/typescript-jsx", jsx: "text/jsx", json: "application/json",
  c: "text/x-csrc", h: "text/x-csrc", cc: "text/x-c++src", cpp: "text/x-c++src", hpp: "text/x-c++src",
  java: "text/x-java", kt: "text/x-kotlin", cs: "text/x-csharp" };

/** The editor's mode for a file name (its extension, or `Dockerfile`). */
function modeOf(path) {
  const name = path.split("/").pop();
  if (/^Dockerfile/.test(name)) return { file: "dockerfile", spec: "dockerfile" };
  const extension = name.includes(".") ? name.split(".").pop().toLowerCase() : "";
  const file = MODES[extension];
  return file ? { file, spec: MIMES[extension] || file } : null;
}

const loaded = new Map();
/** A script of berth's own, once. */
function script(path) {
  if (!loaded.has(path)) {
    loaded.set(path, new Promise((resolve, reject) => {
      const element = h("script", { src: new URL(path, import.meta.url).href });
      element.addEventListener("load", resolve);
      element.addEventListener("error", () => reject(new Error(`${path} did not load`)));
      document.head.append(element);
    }));
  }
  return loaded.get(path);
}

/** CodeMirror with the mode of `path` (and the modes that mode builds on). */
async function loadEditor(path) {
  if (!loaded.has("css")) {
    loaded.set("css", true);
    document.head.append(h("link", { rel: "stylesheet", href: new URL("./vendor/codemirror/codemirror.css", import.meta.url).href }));
  }
  await script("./vendor/codemirror/codemirror.js");
  const mode = modeOf(path);
  if (!mode) return null;
  const needs = { htmlmixed: ["xml", "javascript", "css"], markdown: ["xml"], rust: ["@simple"], dockerfile: ["@simple"] };
  for (const need of needs[mode.file] || []) {
    await script(need === "@simple" ? "./vendor/codemirror/addon/simple.js" : `./vendor/codemirror/mode/${need}.js`);
  }
  await script(`./vendor/codemirror/mode/${mode.file}.js`);
  return mode.spec;
}

/** The panel, `activate` (its tab was opened) and `refresh` (the checkout may have changed). */
export function filesPanel(workspace) {
  const crumbs = h("nav", { class: "crumbs", id: "files-path", "aria-label": "Folder" });
  const actions = h("div", { class: "row", id: "files-actions" });
  const body = h("div", { id: "files-body" });
  const url = (path) => `/api/workspaces/${encodeURIComponent(workspace.id)}/files?path=${encodeURIComponent(path)}`;
  // The folder last listed, and the path last shown (what a refresh shows again).
  let here = "";
  let shown = "";
  let started = false;
  // An editor with unsaved text is never replaced by a refresh.
  let editing = null;

  const show = async (path) => {
    const answer = await api("GET", url(path));
    if (answer.status !== 200) {
      body.replaceChildren(h("p", { class: "error-text", id: "files-error" }, errorMessage(answer)));
      actions.replaceChildren();
      return;
    }
    editing = null;
    const found = answer.body;
    shown = found.path;
    if (found.kind === "dir") here = found.path;
    drawCrumbs(found.path, found.kind === "dir");
    if (found.kind === "dir") drawFolder(found);
    else if (found.kind === "symlink") {
      actions.replaceChildren(renameButton(found.path), deleteButton(found.path));
      body.replaceChildren(h("p", { id: "file-link" }, "A link to ", h("code", { class: "wrap" }, found.target),
        h("span", { class: "muted" }, " — berth does not follow links.")));
    } else drawFile(found);
  };

  const drawFolder = (found) => {
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
    actions.replaceChildren(h("button", { type: "button", id: "file-new", onclick: () => newFile(found.path) }, "New file"));
    body.replaceChildren(rows.length ? h("ul", { class: "entries", id: "files-entries" }, rows) : h("p", { class: "muted" }, "Empty folder."));
    if (found.truncated) body.append(h("p", { class: "muted" }, "More entries than shown (5,000)."));
  };

  const drawFile = (found) => {
    const edit = h("button", { type: "button", id: "file-edit", onclick: () => openEditor(found) }, "Edit");
    // Only a whole file can be saved back.
    edit.disabled = found.truncated || !found.sha;
    actions.replaceChildren(edit, renameButton(found.path), deleteButton(found.path));
    body.replaceChildren(h("p", { class: "muted" }, size(found.size), found.truncated ? " — only the first MiB is shown" : ""),
      h("pre", { class: "file-view", id: "file-view" }, found.content));
  };

  /** The file in an editor; Save writes it over the version read. */
  const openEditor = async (found) => {
    const area = h("textarea", { id: "file-editor", "aria-label": `Text of ${found.path}`, spellcheck: "false" });
    area.value = found.content;
    const state = { path: found.path, sha: found.sha, text: () => area.value, dirty: false };
    editing = state;
    const conflict = h("div", { id: "file-conflict" });
    const save = h("button", { type: "button", class: "primary", id: "file-save", onclick: () => write(state, conflict, save) }, "Save");
    actions.replaceChildren(save, h("button", { type: "button", id: "file-cancel", onclick: () => show(found.path) }, "Cancel"));
    body.replaceChildren(conflict, area);
    area.addEventListener("input", () => { state.dirty = true; });
    try {
      const mode = await loadEditor(found.path);
      if (editing !== state || !window.CodeMirror) return;
      const editor = window.CodeMirror.fromTextArea(area, { lineNumbers: true, mode, indentUnit: 4, viewportMargin: 50 });
      editor.on("change", () => { state.dirty = true; });
      state.text = () => editor.getValue();
      state.editor = editor;
      editor.focus();
    } catch (error) {
      // The plain text area still edits and saves.
      toast(`The editor did not load: ${error.message}`, "bad");
    }
  };

  const write = async (state, conflict, button, overwrite = null) => {
    button.disabled = true;
    const expected = overwrite === null ? state.sha : overwrite;
    const answer = await api("PUT", url(state.path), { content: state.text(), expected_sha: expected });
    button.disabled = false;
    if (answer.status === 200) {
      state.sha = answer.body.sha;
      state.dirty = false;
      conflict.replaceChildren();
      toast(`Saved ${state.path}`);
      return;
    }
    const error = answer.body && answer.body.error;
    if (!error || error.code !== "file_changed") return toast(`Not saved: ${errorMessage(answer)}`, "bad");
    // Someone else — the agent — wrote the file since it was opened: both are shown.
    const theirs = await api("GET", url(state.path));
    const theirText = theirs.status === 200 ? theirs.body.content : "(the file is gone)";
    conflict.replaceChildren(h("div", { class: "notice warn", id: "file-changed" },
      h("p", {}, h("strong", {}, "The file changed since you opened it. "),
        "The agent (or another tab) wrote it; your text is not saved yet."),
      h("details", { id: "file-theirs" }, h("summary", {}, "See their version"), h("pre", { class: "file-view" }, theirText)),
      h("div", { class: "row" },
        h("button", { type: "button", class: "danger", id: "file-keep-mine",
          onclick: (event) => write(state, conflict, event.target, error.sha ?? null) }, "Save mine over theirs"),
        h("button", { type: "button", id: "file-take-theirs", onclick: () => show(state.path) }, "Take theirs"))));
  };

  const newFile = (folder) => {
    const name = h("input", { id: "file-new-name", "aria-label": "New file's path", placeholder: "name.txt or dir/name.txt" });
    const form = h("form", { class: "row", id: "file-new-form", onsubmit: async (event) => {
      event.preventDefault();
      const path = [folder, name.value.trim()].filter(Boolean).join("/");
      if (!name.value.trim()) return;
      const answer = await api("PUT", url(path), { content: "", expected_sha: null });
      if (answer.status !== 200) return toast(`Not created: ${errorMessage(answer)}`, "bad");
      toast(`Created ${path}`);
      await show(path);
      const made = await api("GET", url(path));
      if (made.status === 200) openEditor(made.body);
    } }, name, h("button", { type: "submit", class: "primary" }, "Create"));
    actions.replaceChildren(form);
    name.focus();
  };

  const renameButton = (path) => h("button", { type: "button", id: "file-rename", onclick: () => {
    const name = h("input", { id: "file-rename-to", "aria-label": "New path", value: path });
    actions.replaceChildren(h("form", { class: "row", onsubmit: async (event) => {
      event.preventDefault();
      const answer = await api("POST", `/api/workspaces/${encodeURIComponent(workspace.id)}/files/rename`, { from: path, to: name.value.trim() });
      if (answer.status !== 200) return toast(`Not renamed: ${errorMessage(answer)}`, "bad");
      toast(`Renamed to ${answer.body.path}`);
      show(answer.body.path);
    } }, name, h("button", { type: "submit", class: "primary" }, "Rename"),
    h("button", { type: "button", onclick: () => show(path) }, "Cancel")));
    name.focus();
  } }, "Rename");

  const deleteButton = (path) => h("button", { type: "button", class: "danger", id: "file-delete", onclick: async () => {
    if (!await askToConfirm(`Delete ${path}?`, "The file goes from the checkout (git still has what was committed).", "Delete")) return;
    const answer = await api("DELETE", url(path));
    if (answer.status !== 204) return toast(`Not deleted: ${errorMessage(answer)}`, "bad");
    toast(`Deleted ${path}`);
    show(path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "");
  } }, "Delete");

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

  const element = h("section", { class: "panel files", id: "files", "aria-labelledby": "files-title" },
    h("h2", { id: "files-title" }, "Files"), crumbs, actions, body);
  const activate = () => {
    if (editing) return;
    started = true;
    show(shown);
  };
  const refresh = () => { if (started && !element.hidden && !editing) show(shown); };
  return { element, activate, refresh };
}
