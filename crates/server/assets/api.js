// The HTTP API (API.md), as the page calls it: the login cookie goes along, answers come
// back as {status, body}, and a 401 sends the person to sign in.

let signedOut = () => {};

/** What to do when the server says the cookie no longer signs anyone in. */
export function onSignedOut(callback) {
  signedOut = callback;
}

/** Calls the API; answers {status, body} (body is JSON, text, or null). */
export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const type = response.headers.get("Content-Type") || "";
  let parsed = null;
  if (type.includes("application/json")) parsed = await response.json();
  else parsed = await response.text();
  if (response.status === 401 && path !== "/api/me") {
    signedOut(parsed && parsed.error ? parsed.error.code : "unauthorized");
    throw new Error("signed out");
  }
  return { status: response.status, body: parsed };
}

/** The sentence for people in an error answer. */
export function errorMessage(answer) {
  return answer.body && answer.body.error ? answer.body.error.message : `the server answered ${answer.status}`;
}
