// A login in progress, as the agent's steps tell it: the browser flow's page (opened by
// the app; its address to copy should no browser appear), or the device flow's code and
// verification page; then the outcome. Cancel stops it wherever it was started.
import { useState } from "preact/hooks";
import { api, message } from "../api";
import { loginRunning, when, type LoginView } from "../model";
import { useNow } from "../clock";

export function LoginPanel({ name, view }: { name: string; view: LoginView }) {
  const running = loginRunning(view);
  const now = useNow(running && view.until !== undefined);
  const [note, setNote] = useState<string | null>(null);
  const copy = (text: string, what: string) =>
    navigator.clipboard.writeText(text).then(
      () => setNote(`${what} copied`),
      () => setNote("Select it and copy"),
    );
  const open = () => api.openLoginPage(name).then(() => setNote("Opened in your browser"), (e) => setNote(message(e)));
  const left = view.until !== undefined ? Math.max(0, Math.round((view.until - now) / 60000)) : null;

  let body;
  switch (view.phase) {
    case "browser":
    case "waiting":
      body = (
        <>
          <p>Log in with your browser: Keyport opened the login page. Come back here when you are done.</p>
          {view.url && (
            <p class="note">
              No browser window? Copy the address and open it yourself.{" "}
              <button type="button" class="quiet" onClick={() => copy(view.url!, "Address")}>
                Copy address
              </button>
            </p>
          )}
        </>
      );
      break;
    case "device":
      body = (
        <>
          <p>
            Open <code data-field="verification_uri">{view.device!.uri}</code> on any device and enter this code:
          </p>
          <p class="user-code" data-field="user_code" aria-label="Code to enter">
            {view.device!.code}
          </p>
          <div class="actions">
            <button type="button" class="primary" data-action="open-page" onClick={open}>
              Open the page
            </button>
            <button type="button" data-action="copy-code" onClick={() => copy(view.device!.code, "Code")}>
              Copy code
            </button>
          </div>
        </>
      );
      break;
    case "exchanging":
      body = <p>Signed in at the provider; getting the tokens…</p>;
      break;
    case "succeeded":
      body = <p>Logged in.{view.expiresAt ? ` The token expires ${when(view.expiresAt, Date.now())}.` : ""}</p>;
      break;
    case "kept":
      body = <p>Still logged in: the session is valid, so nothing was asked. Log in again to sign in anew.</p>;
      break;
    case "failed":
      body = (
        <p class={view.error?.kind === "cancelled" ? undefined : "bad"}>
          {view.error?.kind === "cancelled" ? "Login cancelled." : `Login failed: ${view.error?.message}`}
        </p>
      );
      break;
  }
  return (
    <section id="login" data-phase={view.phase} aria-labelledby="login-title" aria-live="polite">
      <h3 id="login-title">Log in to {name}</h3>
      {body}
      {running && (
        <div class="actions">
          {left !== null && <span class="note">Waiting up to {left} min</span>}
          <button type="button" data-action="cancel-login" onClick={() => void api.cancelLogin(name)}>
            Cancel
          </button>
        </div>
      )}
      {note && (
        <p class="note" role="status">
          {note}
        </p>
      )}
    </section>
  );
}
