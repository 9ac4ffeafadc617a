// The conversation view: a session's events drawn as messages, tool calls (in the chat and
// the tool pane), plans, questions with their answers, and system lines — quiet ones
// folded into one line. It draws; the live connection (chat.js) feeds it.

import { h } from "./dom.js";
import { contentText, exactTime, inlineCode, when } from "./format.js";
import { markdown } from "./markdown.js";

/** When a message was sent: relative, exact on hover. */
function stamp(at) {
  return at ? h("time", { class: "stamp", datetime: at, title: exactTime(at) }, when(at)) : null;
}

const SYSTEM_TEXTS = { session_started: "Session started", session_resumed: "Session resumed",
  agent_context_resumed: "The agent resumed its earlier context", session_closed: "Session closed", agent_ready: "Agent ready" };
/** System lines that say something went wrong: red, and never folded. */
const BAD_CODES = ["agent_error", "turn_timeout", "agent_needs_credentials"];

/**
 * `messages` and `toolsList` are where it draws; `answer(questionId, optionId)` sends a
 * person's answer (true when sent); `onTurnEnd(data, live)` hears each turn end.
 */
export function conversationView({ messages, toolsList, toolsEmpty, answer, onTurnEnd }) {
  let lastSeq = 0;
  let agentBubble = null;
  let thoughtBubble = null;
  // While the history is drawn, events go into a fragment and Markdown waits: one layout
  // at the end instead of one per event.
  let history = null;
  const unrendered = new Set();
  let systemLines = null;
  const append = (element) => {
    // Anything drawn ends the fold of quiet system lines.
    systemLines.interrupt();
    if (history) history.append(element);
    else messages.append(element);
    return element;
  };
  systemLines = systemLineView(append);
  const tools = toolCallViews(append, toolsList, toolsEmpty);
  const questions = questionCards(append, answer, tools);

  const render = (event) => {
    if (event.seq <= lastSeq) return;
    lastSeq = event.seq;
    const data = event.data || {};
    if (event.kind !== "agent_message") agentBubble = null;
    if (event.kind !== "agent_thought") thoughtBubble = null;
    switch (event.kind) {
      case "user_message":
        append(h("div", { class: "msg user" }, data.text || contentText(data.content), stamp(event.at)));
        break;
      case "agent_message":
        agentBubble = agentBubble || agentMessage(append, event.at);
        agentBubble.text += contentText(data.content);
        if (history) unrendered.add(agentBubble);
        else agentBubble.body.innerHTML = markdown(agentBubble.text);
        break;
      case "agent_thought":
        thoughtBubble = thoughtBubble || append(h("div", { class: "msg thought" }));
        thoughtBubble.textContent += contentText(data.content);
        break;
      case "tool_call":
      case "tool_call_update":
        if (data.toolCallId) tools.entry(data.toolCallId, data);
        break;
      case "plan":
        append(plan(data));
        break;
      case "question":
        if (data.question) questions.card(data.question);
        break;
      case "answer":
        questions.answered(data);
        break;
      case "turn_end":
        tools.endTurn(data.stop_reason === "cancelled");
        if (data.stop_reason === "cancelled") append(h("div", { class: "msg system" }, "Stopped."));
        onTurnEnd(data, !history);
        break;
      case "system":
        systemLines.render(data, event.at);
        break;
      default:
        break;
    }
  };

  keepStampsFresh(messages);
  return {
    render,
    lastSeq: () => lastSeq,
    /** Draws a page of history at once (one layout). */
    drawHistory: async (pages) => {
      history = document.createDocumentFragment();
      await pages(render);
      unrendered.forEach((bubble) => { bubble.body.innerHTML = markdown(bubble.text); });
      unrendered.clear();
      const drawn = history;
      history = null;
      messages.append(drawn);
    },
    /** A question the agent waits on now: its card, ready to answer. */
    ask: (question) => questions.ask(question),
    /** The person pressed Stop: what runs now ends as cancelled, not failed. */
    markStopped: () => tools.markStopped(),
    /** The session ended: nothing waits any more, the tool pane empties. */
    end: () => {
      tools.clearPane();
      questions.endAll();
    },
  };
}

/** An agent's message: its words come in pieces and are drawn as Markdown. */
function agentMessage(append, at) {
  const body = h("div", { class: "msg-body" });
  const bubble = { text: "", body, element: h("div", { class: "msg agent" }, body, stamp(at)) };
  append(bubble.element);
  return bubble;
}

/** The agent's plan: its entries with their status. */
function plan(data) {
  return h("div", { class: "msg agent plan" }, h("strong", {}, "Plan"),
    h("ol", {}, (data.entries || []).map((entry) => h("li", { "data-status": entry.status || "" },
      `${entry.content}${entry.status ? ` (${entry.status.replace("_", " ")})` : ""}`))));
}

/** Relative times go stale: they are written again every minute while the chat is shown. */
function keepStampsFresh(messages) {
  const refresh = setInterval(() => {
    if (!messages.isConnected) return clearInterval(refresh);
    for (const time of messages.querySelectorAll("time.stamp")) time.textContent = when(time.getAttribute("datetime"));
  }, 60000);
}

/** Tool calls, each drawn twice: a folding block in the chat with its output, and a line
 * in the tool pane; both carry its status. */
function toolCallViews(append, toolsList, toolsEmpty) {
  const tools = new Map();
  // The tool calls of the turn under way: a turn the person stopped ends those that
  // failed as cancelled — live and when the history is drawn again alike.
  let turn = new Set();
  const show = (tool, label) => {
    for (const el of [tool.status, tool.paneStatus]) { el.textContent = label.replace("_", " "); el.dataset.status = label; }
  };
  const entry = (id, data) => {
    let tool = tools.get(id);
    if (!tool) {
      const status = h("span", { class: "status" });
      const title = h("span", {});
      const output = h("pre", {});
      const element = h("details", { class: "tool", "data-tool": id }, h("summary", {}, status, title), output);
      const paneStatus = h("span", { class: "status" });
      const paneTitle = h("span", {});
      const pane = h("li", { "data-tool": id }, paneStatus, paneTitle);
      tool = { element, status, title, output, paneStatus, paneTitle, pane };
      tools.set(id, tool);
      append(element);
      toolsList.append(pane);
      toolsEmpty.hidden = true;
    }
    if (data.title) { tool.title.replaceChildren(...inlineCode(data.title)); tool.paneTitle.replaceChildren(...inlineCode(data.title)); }
    if (data.content) {
      // A running command's output follows its tail, unless the person scrolled up in it.
      const output = tool.output;
      const following = output.scrollTop + output.clientHeight >= output.scrollHeight - 20;
      output.textContent = contentText(data.content);
      if (output.textContent) tool.element.open = true;
      if (following) output.scrollTop = output.scrollHeight;
    }
    // A new tool call without a status is pending (ACP's default).
    const status = data.status || (tool.status.dataset.status ? null : "pending");
    if (status) show(tool, toolLabel(status, data, tool));
    turn.add(tool);
    return tool;
  };
  /** A failed tool call says why when berth knows: the session ended under it, the person
   *  rejected it or stopped it — none of which is the command failing. */
  const toolLabel = (status, data, tool) => {
    if (status !== "failed") return status;
    if (data.reason === "session_ended") return "interrupted";
    if (tool.rejected || /^Rejected\b/.test(tool.output.textContent)) return "rejected";
    if (tool.stopped || /^Cancelled\b/.test(tool.output.textContent)) return "cancelled";
    return "failed";
  };

  return {
    entry,
    get: (id) => tools.get(id),
    /** The person pressed Stop: what runs now ends as cancelled, not failed. */
    markStopped: () => {
      for (const tool of tools.values()) if (["pending", "in_progress"].includes(tool.status.dataset.status)) tool.stopped = true;
    },
    clearPane: () => {
      toolsList.replaceChildren();
      toolsEmpty.hidden = false;
    },
    /** A turn ended; `cancelled` when the person stopped it. */
    endTurn: (cancelled) => {
      if (cancelled) for (const tool of turn) if (tool.status.dataset.status === "failed") show(tool, "cancelled");
      turn = new Set();
    },
  };
}

/** Questions as cards: their options as buttons while the agent waits, then the answer
 * given (a rejected command marks its tool call). */
function questionCards(append, answer, tools) {
  const questions = new Map();
  const pending = new Set();
  const card = (question) => {
    let shown = questions.get(question.id);
    if (!shown) {
      const buttons = (question.options || []).map((option) => h("button", {
        type: "button", "data-option": option.id, "data-kind": option.kind || "",
        class: option.kind && option.kind.startsWith("allow") ? "primary" : "",
        onclick: () => {
          if (answer(question.id, option.id)) buttons.forEach((button) => { button.disabled = true; });
        } }, option.label || option.id));
      const state = h("p", { class: "muted answer-state" });
      shown = { element: h("div", { class: "question", "data-question": question.id, role: "group", "aria-label": question.title },
        h("strong", {}, ...inlineCode(question.title)), h("div", { class: "options" }, buttons), state), buttons, state, question };
      questions.set(question.id, shown);
      // A question about a tool call already drawn goes into its card: the command is
      // drawn once, with its question under it.
      const asked = question.tool_call && tools.get(question.tool_call.toolCallId);
      if (asked) {
        shown.element.classList.add("in-tool");
        asked.element.append(shown.element);
        asked.element.open = true;
      } else append(shown.element);
    }
    const waiting = pending.has(question.id);
    shown.buttons.forEach((button) => { button.disabled = !waiting; });
    if (!waiting && !shown.element.classList.contains("answered")) shown.state.textContent = "No longer waiting.";
    if (waiting) shown.state.textContent = "The agent is waiting for your answer.";
    return shown;
  };

  const answered = (data) => {
    pending.delete(data.question_id);
    const shown = questions.get(data.question_id);
    if (!shown) return;
    const option = (shown.question.options || []).find((item) => item.id === data.option_id);
    const asked = shown.question.tool_call && tools.get(shown.question.tool_call.toolCallId);
    if (asked && option && (option.kind || "").startsWith("reject")) asked.rejected = true;
    shown.element.classList.add("answered");
    shown.buttons.forEach((button) => { button.disabled = true; });
    shown.state.textContent = data.outcome === "cancelled" ? "Cancelled." : `Answered: ${option ? option.label : data.option_id}`;
  };

  return {
    card,
    answered,
    /** A question the agent waits on now: its card, ready to answer. */
    ask: (question) => {
      pending.add(question.id);
      return card(question);
    },
    /** The session ended: nothing waits any more. */
    endAll: () => {
      pending.clear();
      questions.forEach((shown) => shown.buttons.forEach((button) => { button.disabled = true; }));
    },
  };
}

/** System lines. Each session starts below a dated separator; quiet lines that follow one
 * another (started, ready, resumed…) fold into one, counting repeats, until anything
 * else is drawn (`interrupt`). */
function systemLineView(append) {
  // The quiet system line that more quiet lines fold into, while nothing came between.
  let quietLine = null;
  const render = (data, at) => {
    const bad = BAD_CODES.includes(data.code);
    const text = data.message || SYSTEM_TEXTS[data.code] || data.code.replaceAll("_", " ");
    const separator = data.code === "session_started";
    const quiet = !bad && !data.message;
    if (quiet && !separator && quietLine) {
      quietLine.counts.set(text, (quietLine.counts.get(text) || 0) + 1);
      quietLine.codes.add(data.code);
      quietLine.text.textContent = [...quietLine.counts].map(([said, times]) => (times > 1 ? `${said} (×${times})` : said)).join(" · ");
      quietLine.element.dataset.codes = [...quietLine.codes].join(" ");
      return;
    }
    const words = h("span", {}, text);
    const element = h("div", { class: `msg system${bad ? " bad" : ""}${separator ? " separator" : ""}`, "data-code": data.code, "data-codes": data.code },
      words, separator ? [" · ", h("time", { datetime: at, title: exactTime(at) }, exactTime(at))] : null,
      // What the agent itself said as it failed: the end of its error output, its reason.
      [data.stderr_tail, data.detail].filter((said) => typeof said === "string" && said.trim())
        .map((said) => h("pre", { class: "agent-said" }, said.trim())));
    append(element);
    if (quiet) quietLine = { element, text: words, counts: new Map([[text, 1]]), codes: new Set([data.code]) };
  };

  return { render, interrupt: () => { quietLine = null; } };
}
