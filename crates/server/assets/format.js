// Turning the API's values into what a person reads: state badges, times, titles, the
// agent's Markdown (the one place HTML is made, escaping everything first) and inline code.

import { h } from "./dom.js";

export function badge(state) {
  const labels = { initialising: "Initialising", ready: "Ready", active: "Active", idle: "Idle", error: "Error",
    starting: "Starting", disconnected: "Disconnected", ended: "Ended" };
  return h("span", { class: "badge", "data-state": state }, labels[state] || state);
}

export function when(time) {
  if (!time) return "never";
  const seconds = Math.round((Date.now() - new Date(time).getTime()) / 1000);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(time).toLocaleString();
}

/** A time as the person's locale writes it, to the second. */
export function exactTime(time) {
  return new Date(time).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function setTitle(text) {
  document.title = text ? `${text} · berth` : "berth";
}

/** A small Markdown subset (paragraphs, lists, code, emphasis, links), escaped first so
 * nothing the agent writes can become markup. */
export function markdown(text) {
  const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  const inline = (s) => escape(s)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/\*([^*\s][^*]*)\*/g, "<em>$1</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, '<a href="$2" rel="noopener noreferrer" target="_blank">$1</a>');
  const blocks = [];
  const parts = text.split(/```/);
  parts.forEach((part, index) => {
    if (index % 2 === 1) {
      blocks.push(`<pre><code>${escape(part.replace(/^[^\n]*\n/, ""))}</code></pre>`);
      return;
    }
    for (const paragraph of part.split(/\n{2,}/)) {
      const lines = paragraph.split("\n").filter((line) => line.trim() !== "");
      if (lines.length === 0) continue;
      if (lines.every((line) => /^\s*[-*] /.test(line))) {
        blocks.push(`<ul>${lines.map((line) => `<li>${inline(line.replace(/^\s*[-*] /, ""))}</li>`).join("")}</ul>`);
      } else if (lines.every((line) => /^\s*\d+\. /.test(line))) {
        blocks.push(`<ol>${lines.map((line) => `<li>${inline(line.replace(/^\s*\d+\. /, ""))}</li>`).join("")}</ol>`);
      } else {
        blocks.push(`<p>${lines.map(inline).join("<br>")}</p>`);
      }
    }
  });
  return blocks.join("");
}

/** Text of an ACP content value: a block, a list of blocks, or tool-call content. */
/** `text` with its `backticked` parts as code: text nodes and <code> elements. */
export function inlineCode(text) {
  const parts = String(text).split("`");
  // An unmatched backtick is only a character.
  if (parts.length % 2 === 0) {
    const last = parts.pop();
    parts[parts.length - 1] += `\`${last}`;
  }
  return parts.map((part, index) => (index % 2 ? h("code", {}, part) : part)).filter((part) => part !== "");
}

export function contentText(content) {
  if (!content) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map(contentText).join("");
  if (content.type === "text") return content.text || "";
  if (content.type === "content") return contentText(content.content);
  if (content.type === "diff") return `--- ${content.path}\n${content.newText || ""}`;
  return "";
}
