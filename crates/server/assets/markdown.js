// The agent's Markdown: the one place the web UI makes HTML from text, escaping
// everything first so nothing the agent writes can become markup.

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
