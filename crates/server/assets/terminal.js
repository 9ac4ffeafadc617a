// The Terminal tab: shells in the live session's sandbox (`…/terminals`), each on a
// WebSocket of its own — the screen as the server keeps it first, then the output; what
// is typed and the size go back. A dropped connection comes back to the same screen.
// xterm.js is loaded when the tab is first opened, so the page's first paint never waits
// for it.

import { api, errorMessage } from "./api.js";
import { h, toast } from "./dom.js";

let xterm = null;
/** xterm.js and its fit add-on, loaded once. */
function loadXterm() {
  if (!xterm) {
    document.head.append(h("link", { rel: "stylesheet", href: new URL("./vendor/xterm/xterm.css", import.meta.url).href }));
    xterm = Promise.all([import("./vendor/xterm/xterm.mjs"), import("./vendor/xterm/addon-fit.mjs")]);
  }
  return xterm;
}

/** The pane, `activate` (the tab was opened) and `close` (the session ended). */
export function terminalPane(currentSession) {
  const list = h("div", { class: "row terminal-tabs", id: "terminal-tabs", role: "tablist", "aria-label": "Terminals" });
  const screens = h("div", { class: "terminal-screens", id: "terminal-screens" });
  const note = h("p", { class: "muted", id: "terminal-note" }, "Loading the terminal…");
  const newButton = h("button", { type: "button", id: "terminal-new", onclick: () => openNew() }, "New terminal");
  const terminals = new Map();
  let shown = null;
  let started = false;
  let ended = false;
  const base = () => `/api/sessions/${encodeURIComponent(currentSession().id)}/terminals`;

  const show = (id) => {
    shown = id;
    for (const [key, entry] of terminals) {
      entry.holder.hidden = key !== id;
      entry.tab.setAttribute("aria-selected", String(key === id));
    }
    const entry = terminals.get(id);
    if (entry) { entry.fit.fit(); entry.term.focus(); }
  };

  const attach = async (id) => {
    const [{ Terminal }, { FitAddon }] = await loadXterm();
    const dark = matchMedia("(prefers-color-scheme: dark)").matches;
    const term = new Terminal({ cursorBlink: true, fontSize: 13, scrollback: 5000,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, monospace',
      theme: dark ? { background: "#0a0e12" } : { background: "#1b1f24", foreground: "#e3e8ee" } });
    const fit = new FitAddon();
    term.loadAddon(fit);
    const holder = h("div", { class: "terminal", "data-terminal": id });
    screens.append(holder);
    term.open(holder);
    const number = terminals.size + 1;
    const tab = h("span", { class: "terminal-tab" },
      h("button", { type: "button", role: "tab", "data-terminal-tab": id, onclick: () => show(id) }, `Shell ${number}`),
      h("button", { type: "button", class: "link", title: "Close this terminal", "aria-label": `Close shell ${number}`,
        onclick: () => closeOne(id) }, "×"));
    list.append(tab);
    const entry = { id, term, fit, holder, tab, socket: null, closed: false };
    terminals.set(id, entry);
    term.onData((data) => send(entry, { type: "input", data }));
    term.onResize(({ cols, rows }) => send(entry, { type: "resize", cols, rows }));
    connect(entry);
    show(id);
  };

  const send = (entry, frame) => {
    if (entry.socket && entry.socket.readyState === WebSocket.OPEN) entry.socket.send(JSON.stringify(frame));
  };

  const connect = (entry) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}${base()}/${encodeURIComponent(entry.id)}/live`);
    socket.binaryType = "arraybuffer";
    entry.socket = socket;
    socket.onopen = () => {
      // The server redraws the screen: start from a blank one.
      entry.term.reset();
      entry.holder.classList.remove("reconnecting");
      send(entry, { type: "resize", cols: entry.term.cols, rows: entry.term.rows });
    };
    socket.onmessage = (message) => {
      if (typeof message.data === "string") {
        const frame = JSON.parse(message.data);
        if (frame.type === "error") toast(frame.error.message, "bad");
      } else entry.term.write(new Uint8Array(message.data));
    };
    socket.onclose = async () => {
      if (entry.closed || ended) return;
      // Still there (a dropped connection)? Then back to the same screen; else it ended.
      entry.holder.classList.add("reconnecting");
      const answer = await api("GET", base());
      const there = answer.status === 200 && answer.body.terminals.some((terminal) => terminal.id === entry.id);
      if (there) setTimeout(() => { if (!entry.closed && !ended) connect(entry); }, 500);
      else finished(entry, "This terminal ended.");
    };
  };

  const finished = (entry, words) => {
    entry.closed = true;
    entry.holder.classList.remove("reconnecting");
    entry.term.write(`\r\n\x1b[2m[${words}]\x1b[0m\r\n`);
    entry.tab.classList.add("ended");
  };

  const closeOne = async (id) => {
    const entry = terminals.get(id);
    if (!entry) return;
    entry.closed = true;
    await api("DELETE", `${base()}/${encodeURIComponent(id)}`);
    entry.socket?.close();
    entry.term.dispose();
    entry.holder.remove();
    entry.tab.remove();
    terminals.delete(id);
    if (shown === id) show(terminals.keys().next().value);
  };

  const openNew = async () => {
    if (ended) return;
    newButton.disabled = true;
    const answer = await api("POST", base(), { cols: 80, rows: 24 });
    newButton.disabled = false;
    if (answer.status !== 201) { note.textContent = errorMessage(answer); note.hidden = false; return; }
    note.hidden = true;
    await attach(answer.body.id);
  };

  /** The tab was opened: the terminals there are, or a first one. */
  const activate = async () => {
    if (started) { if (shown) show(shown); return; }
    started = true;
    const answer = await api("GET", base());
    if (answer.status !== 200) { note.textContent = errorMessage(answer); return; }
    note.hidden = true;
    for (const terminal of answer.body.terminals) await attach(terminal.id);
    if (!terminals.size) await openNew();
  };

  const fitShown = () => { const entry = terminals.get(shown); if (entry && !entry.holder.hidden) entry.fit.fit(); };
  const observer = new ResizeObserver(() => fitShown());
  observer.observe(screens);

  const close = () => {
    ended = true;
    newButton.disabled = true;
    for (const entry of terminals.values()) if (!entry.closed) finished(entry, "The session ended; its terminals with it.");
  };
  const element = h("section", { class: "panel terminal-pane", id: "terminal", "aria-labelledby": "terminal-title" },
    h("div", { class: "row" }, h("h2", { id: "terminal-title" }, "Terminal"), list, h("span", { class: "spacer" }), newButton),
    note, screens);
  return { element, activate, close, dispose: () => { observer.disconnect(); for (const entry of terminals.values()) { entry.closed = true; entry.socket?.close(); } } };
}
