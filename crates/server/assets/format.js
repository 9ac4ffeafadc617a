// Turning the API's values into what a person reads: state badges, times, titles, inline
// code and the text of ACP content. (The agent's Markdown is markdown.js.)

import { h } from "./dom.js";

export function badge(state) {
  const labels = { initialising: "Initialising", ready: "Ready", active: "Active", idle: "Idle", error: "Error",
    starting: "Starting", disconnected: "Disconnected", ended: "Ended" };
  return h("span", { class: "badge", "data-state": state }, labels[state] || state);
}

/** What every page shows as a workspace's state: its live session's (starting, active,
 * disconnected) while it has one, else the workspace's own — one source for all pages. */
export function shownState(workspace) {
  return workspace.active_session ? workspace.active_session.state : workspace.state;
}

export function when(time) {
  if (!time) return "never";
  const seconds = Math.round((Date.now() - new Date(time).getTime()) / 1000);
  if (seconds < -30) return ahead(-seconds, time);
  if (seconds < 60) return "just now";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return new Date(time).toLocaleString();
}

/** A time still to come (a token's expiry), `seconds` from now. */
function ahead(seconds, time) {
  if (seconds < 3600) return `in ${Math.max(1, Math.round(seconds / 60))} min`;
  if (seconds < 86400) return `in ${Math.round(seconds / 3600)} h`;
  if (seconds < 60 * 86400) {
    const days = Math.round(seconds / 86400);
    return days === 1 ? "in 1 day" : `in ${days} days`;
  }
  return new Date(time).toLocaleString();
}

// One formatter for every time shown: making one per call (`toLocaleString` with options)
// costs more than drawing the message it dates.
const EXACT = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** A time as the person's locale writes it, to the second. */
export function exactTime(time) {
  return EXACT.format(new Date(time));
}

/** A log as a terminal shows it: a carriage return goes back to the start of its line, so
 * git's progress counters overwrite one another instead of running together. */
export function terminalText(text) {
  return text.split("\n").map((line) => {
    let shown = "";
    for (const part of line.split("\r")) shown = part + shown.slice(part.length);
    return shown;
  }).join("\n");
}

export function setTitle(text) {
  document.title = text ? `${text} · berth` : "berth";
}

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

/** Text of an ACP content value: a block, a list of blocks, or tool-call content. */
export function contentText(content) {
  if (!content) return "";
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map(contentText).join("");
  if (content.type === "text") return content.text || "";
  if (content.type === "content") return contentText(content.content);
  if (content.type === "diff") return `--- ${content.path}\n${content.newText || ""}`;
  return "";
}
