// When the agent needs the person while their tab is hidden — it asks a question, or it
// finished a turn — the tab's title and icon say so until they come back, and a desktop
// notification tells them if they allowed it (asked once, from a click).

import { h } from "./dom.js";

const ICON = "/assets/icon.svg";
const ATTENTION_ICON = "/assets/icon-attention.svg";
let quietTitle = null;

function setIcon(href) {
  const link = document.querySelector("link[rel=icon]");
  if (link) link.setAttribute("href", href);
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden || quietTitle === null) return;
  document.title = quietTitle;
  quietTitle = null;
  setIcon(ICON);
});

/** Says `what` (a few words) in the hidden tab's title and icon, and as a notification. */
export function callAttention(what, detail = "") {
  if (!document.hidden) return;
  if (quietTitle === null) quietTitle = document.title;
  document.title = `● ${what} — ${quietTitle}`;
  setIcon(ATTENTION_ICON);
  if ("Notification" in window && Notification.permission === "granted") {
    new Notification(`berth: ${what}`, { body: detail, tag: "berth-attention", icon: ATTENTION_ICON });
  }
}

/** A button offering desktop notifications, while the browser has not been asked yet. */
export function notificationOffer() {
  if (!("Notification" in window) || Notification.permission !== "default") return null;
  const button = h("button", { type: "button", class: "link", id: "offer-notifications", onclick: async () => {
    await Notification.requestPermission();
    button.remove();
  } }, "Notify me when the agent needs me");
  return button;
}
