// Building the page: elements from plain values (text stays text, never HTML), and the
// short notices in the corner.

/** An element with attributes (on* are listeners) and children (strings are text). */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** A notice in the corner for six seconds; `kind` "bad" for a failure. */
export function toast(text, kind = "") {
  const item = h("div", { class: `toast ${kind}`, "data-toast": text }, text);
  document.getElementById("toasts").append(item);
  setTimeout(() => item.remove(), 6000);
}

/** Another page is shown: the notices of the page left go with it (an action that
 * navigates says its outcome after navigating). */
export function clearToasts() {
  document.getElementById("toasts").replaceChildren();
}
