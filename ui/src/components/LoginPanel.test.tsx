import { cleanup, fireEvent, render, waitFor } from "@testing-library/preact";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Backend } from "../test/backend";
import { row, status } from "../test/fixtures";
import { App } from "./App";

let be: Backend;
let finish: ((v: unknown) => void) | null = null;
beforeEach(() => {
  be = new Backend([{ ...row("dev", "generic", status("dev", "login_required")), scheme: "oauth2-device" }]);
  // The login command answers when the login ends (here: when the test says so).
  be.handlers.login = () => new Promise((r) => (finish = r));
  be.handlers.cancel_login = () => null;
  be.handlers.open_login_page = () => null;
});
afterEach(() => {
  cleanup();
  be.close();
  finish = null;
});

const q = (sel: string) => document.querySelector<HTMLElement>(sel)!;

describe("a login in the window", () => {
  it("shows the device code, opens the page, cancels, and says how it ended", async () => {
    render(<App />);
    await waitFor(() => expect(document.querySelector('#detail button[data-action="login"]')).not.toBeNull());
    expect(q('#detail button[data-action="login"]').textContent).toBe("Log in");
    fireEvent.click(q('#detail button[data-action="login"]'));
    await waitFor(() => expect(be.count("login")).toBe(1));
    expect(be.calls.find(([c]) => c === "login")![1]).toEqual({ name: "dev", force: false });
    expect((q('#detail button[data-action="login"]') as HTMLButtonElement).disabled).toBe(true);

    await be.agent({
      event: "login",
      name: "dev",
      step: {
        step: "device_code",
        verification_uri: "http://127.0.0.1:3000/device",
        user_code: "WDJB-MJHT",
        verification_uri_complete: null,
        open: null,
      },
    });
    await be.agent({ event: "login", name: "dev", step: { step: "waiting", timeout_secs: 300 } });
    await waitFor(() => expect(document.getElementById("login")?.dataset.phase).toBe("device"));
    expect(q('#login [data-field="user_code"]').textContent).toBe("WDJB-MJHT");
    expect(q('#login [data-field="verification_uri"]').textContent).toBe("http://127.0.0.1:3000/device");
    expect(q("#login").textContent).toContain("Waiting up to 5 min");

    fireEvent.click(q('#login button[data-action="open-page"]'));
    await waitFor(() => expect(be.count("open_login_page")).toBe(1));
    fireEvent.click(q('#login button[data-action="cancel-login"]'));
    await waitFor(() => expect(be.calls.find(([c]) => c === "cancel_login")?.[1]).toEqual({ name: "dev" }));

    await be.agent({ event: "login", name: "dev", step: { step: "failed", error: { kind: "cancelled", message: "the login was cancelled" } } });
    await waitFor(() => expect(document.getElementById("login")?.dataset.phase).toBe("failed"));
    expect(q("#login").textContent).toContain("Login cancelled.");
    expect(document.querySelector('#login button[data-action="cancel-login"]')).toBeNull();
    finish!(Promise.reject({ kind: "cancelled", message: "the login was cancelled" }));
    await waitFor(() => expect((q('#detail button[data-action="login"]') as HTMLButtonElement).disabled).toBe(false));
    expect(q("#detail .outcome").textContent).toBe("");
  });

  it("shows a login started elsewhere (a notification, the CLI) and its success", async () => {
    render(<App />);
    await waitFor(() => expect(document.getElementById("detail")).not.toBeNull());
    await be.agent({ event: "login", name: "dev", step: { step: "open_url", url: "http://127.0.0.1:3000/auth?state=s", open: "http://127.0.0.1:4/o/1" } });
    await waitFor(() => expect(document.getElementById("login")?.dataset.phase).toBe("browser"));
    expect(q("#login").textContent).toContain("Keyport opened the login page");
    await be.agent({ event: "login", name: "dev", step: { step: "succeeded", expires_at: null } });
    await waitFor(() => expect(document.getElementById("login")?.dataset.phase).toBe("succeeded"));
    expect(q("#login").textContent).toContain("Logged in.");
  });
});
