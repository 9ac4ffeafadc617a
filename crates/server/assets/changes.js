// The workspace's changes: each uncommitted file with its diff (additions and deletions
// coloured), the commits no remote has, Commit and Push. Everything comes from
// GET /api/workspaces/{id}/diff, which git answers from inside a sandbox.

import { h, toast } from "./dom.js";
import { api, errorMessage } from "./api.js";
import { pushWorkspace } from "./dashboard.js";

const LABELS = { added: "new", modified: "changed", deleted: "deleted", renamed: "renamed" };

/** One diff line, coloured by what it is. */
function diffLine(line) {
  let kind = "context";
  if (line.startsWith("+++") || line.startsWith("---") || line.startsWith("diff --git") || line.startsWith("index ")) kind = "meta";
  else if (line.startsWith("+")) kind = "add";
  else if (line.startsWith("-")) kind = "del";
  else if (line.startsWith("@@")) kind = "hunk";
  return h("span", { class: `diff-${kind}` }, `${line}\n`);
}

function fileEntry(file) {
  const counts = file.binary ? h("span", { class: "muted" }, "binary")
    : h("span", {}, h("span", { class: "diff-add" }, `+${file.additions ?? 0}`), " ", h("span", { class: "diff-del" }, `−${file.deletions ?? 0}`));
  // A diff's lines are drawn when its file is first opened: a 200-file change costs 200
  // summaries, not thousands of coloured lines nobody looked at.
  const drawDiff = (event) => {
    const entry = event.currentTarget;
    if (!entry.open || entry.dataset.drawn) return;
    entry.dataset.drawn = "1";
    entry.append(file.binary ? h("p", { class: "muted" }, "A binary file: no diff to show.")
      : h("pre", { class: "diff" }, (file.diff || "").split("\n").filter((line, index, lines) => line || index < lines.length - 1).map(diffLine)));
    if (file.diff_truncated) entry.append(h("p", { class: "muted" }, "The diff is cut here (256 KiB)."));
  };
  return h("details", { class: "change", "data-path": file.path, ontoggle: drawDiff },
    h("summary", {}, h("code", {}, file.old_path ? `${file.old_path} → ${file.path}` : file.path), " ",
      h("span", { class: "badge", "data-change": file.status }, LABELS[file.status] || file.status), " ", counts));
}

/** The panel and a `refresh` to call when the checkout may have changed (a turn ended);
 * the page calls it first once its conversation is drawn. */
export function changesPanel(workspace) {
  const list = h("div", { id: "changes-list" }, h("p", { class: "muted" }, "Reading the changes…"));
  const commits = h("ul", { id: "unpushed-commits", class: "commits" });
  const message = h("textarea", { id: "commit-message", rows: 2, maxlength: 10240, placeholder: "What this commit does", "aria-label": "Commit message" });
  const commitButton = h("button", { type: "submit", id: "commit", class: "primary" }, "Commit");
  const pushButton = h("button", { type: "button", id: "changes-push" }, "Push");
  let changed = 0;

  const refresh = async () => {
    const answer = await api("GET", `/api/workspaces/${encodeURIComponent(workspace.id)}/diff`);
    if (answer.status !== 200) {
      list.replaceChildren(h("p", { class: "error-text" }, errorMessage(answer)));
      return;
    }
    const { files, unpushed, truncated } = answer.body;
    changed = files.length;
    const entries = files.length ? files.map(fileEntry) : [h("p", { class: "muted", id: "no-changes" }, "No uncommitted changes.")];
    if (truncated) entries.push(h("p", { class: "muted" }, "There are more changes than shown."));
    list.replaceChildren(...entries);
    commits.replaceChildren(...unpushed.map((commit) => h("li", { "data-sha": commit.sha },
      h("code", {}, commit.sha.slice(0, 7)), " ", commit.subject)));
    commitButton.disabled = files.length === 0;
    pushButton.disabled = unpushed.length === 0;
  };

  const commit = async (event) => {
    event.preventDefault();
    if (!changed) return;
    if (!message.value.trim()) {
      toast("Say what the commit does first", "bad");
      message.focus();
      return;
    }
    commitButton.disabled = true;
    const answer = await api("POST", `/api/workspaces/${encodeURIComponent(workspace.id)}/commit`, { message: message.value });
    if (answer.status === 200) {
      toast(`Committed ${answer.body.head.slice(0, 7)}`);
      message.value = "";
    } else {
      toast(`Commit failed: ${errorMessage(answer)}`, "bad");
    }
    refresh();
  };

  const push = async () => {
    pushButton.disabled = true;
    await pushWorkspace(workspace);
    refresh();
  };
  pushButton.addEventListener("click", push);

  const element = h("section", { class: "panel", "aria-labelledby": "changes-title", id: "changes" },
    h("div", { class: "row" }, h("h2", { id: "changes-title" }, "Changes"), h("span", { class: "spacer" }),
      h("button", { type: "button", id: "changes-refresh", onclick: () => refresh() }, "Refresh")),
    list,
    h("form", { id: "commit-form", onsubmit: commit }, message, h("div", { class: "row" }, commitButton)),
    h("h3", {}, "Not pushed yet"), commits, workspace.pushable ? h("div", { class: "row" }, pushButton) : null);
  return { element, refresh };
}
