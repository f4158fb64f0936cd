import { cleanup, fireEvent, render, screen, waitFor, within } from "@testing-library/preact";
import { emit } from "@tauri-apps/api/event";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ticking } from "../clock";
import { Backend } from "../test/backend";
import { row, status } from "../test/fixtures";
import { App } from "./App";

let be: Backend;
beforeEach(() => {
  be = new Backend([
    row("zeta", "Patchworks"),
    row("beta", "Frappe", status("beta", "expiring", { expires_at: new Date(Date.now() + 90_000).toISOString() })),
    row("alpha", "Patchworks"),
  ]);
});
afterEach(() => {
  cleanup();
  be.close();
});

async function loaded() {
  render(<App />);
  await waitFor(() => expect(document.body.dataset.loaded).toBe("true"));
  await waitFor(() => expect(document.querySelector("#detail")).not.toBeNull());
}

const entry = (name: string) => document.querySelector<HTMLElement>(`#profiles li[data-profile="${name}"]`)!;
const detail = () => document.getElementById("detail")!;
const action = (a: string) => detail().querySelector<HTMLButtonElement>(`button[data-action="${a}"]`)!;

describe("the window", () => {
  it("lists the profiles by service with their states and selects the first", async () => {
    await loaded();
    const titles = [...document.querySelectorAll("#profiles .group-title")].map((e) => e.textContent);
    expect(titles).toEqual(["Frappe", "Patchworks"]);
    const names = [...document.querySelectorAll("#profiles li[data-profile]")].map((e) => e.getAttribute("data-profile"));
    expect(names).toEqual(["beta", "alpha", "zeta"]);
    expect(entry("beta").dataset.state).toBe("expiring");
    expect(entry("beta").querySelector(".countdown")!.textContent).toMatch(/^in 1 min 3\d s$/);
    expect(detail().dataset.profile).toBe("beta");
    expect(document.querySelector(".count")!.textContent).toBe("3 profiles");
    expect(document.getElementById("helper")!.textContent).toBe("Helper: http://127.0.0.1:7313/PROFILE");
  });

  it("shows settings and whether each secret is set, never a value", async () => {
    await loaded();
    await waitFor(() => expect(detail().querySelector('[data-field="secret:api_key"]')).not.toBeNull());
    expect(detail().querySelector('[data-field="secret:api_key"]')!.textContent).toBe("set");
    expect(detail().querySelector('[data-field="secret:other"]')!.textContent).toBe("not set");
    expect(detail().querySelector('[data-field="setting:region"]')!.textContent).toBe("eu");
    expect(detail().querySelector('[data-field="keychain_item"]')!.textContent).toBe("keyport/beta");
  });

  it("follows the agent's events without asking again, and reloads for new profiles", async () => {
    await loaded();
    const lists = be.count("list_profiles");
    await be.agent({ event: "state", profile: status("zeta", "login_required"), from: "valid" });
    await waitFor(() => expect(entry("zeta").dataset.state).toBe("login_required"));
    expect(be.count("list_profiles")).toBe(lists);

    be.rows = [...be.rows, row("gamma", "Improvado")];
    await be.agent({ event: "added", profile: status("gamma", "valid") });
    await waitFor(() => expect(entry("gamma")).not.toBeNull());
    expect(be.count("list_profiles")).toBe(lists + 1);

    await be.agent({ event: "removed", name: "gamma" });
    await waitFor(() => expect(entry("gamma")).toBeNull());
  });

  it("selects with a click and with the arrow keys", async () => {
    await loaded();
    fireEvent.click(entry("zeta").querySelector("button")!);
    await waitFor(() => expect(detail().dataset.profile).toBe("zeta"));
    fireEvent.keyDown(entry("zeta").querySelector("button")!, { key: "ArrowUp" });
    await waitFor(() => expect(detail().dataset.profile).toBe("alpha"));
    expect(document.activeElement).toBe(entry("alpha").querySelector("button"));
    expect(entry("alpha").querySelector("button")!.getAttribute("aria-current")).toBe("true");
  });

  it("renews and tests, and says how it went", async () => {
    be.handlers.renew = ({ name }) => status(String(name), "valid");
    be.handlers.test_profile = () => ({ url: "http://127.0.0.1:7313/beta/", status: 200, ms: 41.6, keyport_error: null });
    await loaded();
    fireEvent.click(action("renew"));
    await waitFor(() => expect(detail().querySelector(".outcome")!.textContent).toBe("renewed: valid"));
    fireEvent.click(action("test"));
    await waitFor(() => expect(detail().querySelector(".outcome")!.textContent).toBe("200 · 42 ms"));
    expect(be.calls.find(([c]) => c === "test_profile")![1]).toEqual({ name: "beta", path: null });
  });

  it("copies the header through the app and says when the clipboard is cleared", async () => {
    be.handlers.copy_header = ({ name }) => ({ what: `the Authorization header of ${name}`, clears_in_secs: 45 });
    await loaded();
    fireEvent.click(action("copy-header"));
    await waitFor(() =>
      expect(detail().querySelector(".outcome")!.textContent).toBe(
        "Copied the Authorization header of beta: paste it into the tool now; the clipboard is cleared in 45 s.",
      ),
    );
    expect(be.calls.find(([c]) => c === "copy_header")![1]).toEqual({ name: "beta" });
  });

  it("shows a command's error in its words", async () => {
    be.handlers.renew = () => {
      throw { kind: "login_required", message: "beta needs a login: keyport login beta" };
    };
    await loaded();
    fireEvent.click(action("renew"));
    await waitFor(() => expect(detail().querySelector(".outcome")!.textContent).toBe("beta needs a login: keyport login beta"));
    expect(detail().querySelector(".outcome")!.classList.contains("bad")).toBe(true);
  });

  it("deletes only on the second click, and not after leaving the button", async () => {
    be.handlers.delete_profile = ({ name }) => {
      be.rows = be.rows.filter((r) => r.name !== name);
      return null;
    };
    await loaded();
    fireEvent.click(action("delete"));
    expect(action("delete").textContent).toBe("Delete? Click again");
    fireEvent.blur(action("delete"));
    expect(action("delete").textContent).toBe("Delete");
    fireEvent.click(action("delete"));
    expect(be.count("delete_profile")).toBe(0);
    fireEvent.click(action("delete"));
    await waitFor(() => expect(entry("beta")).toBeNull());
    expect(be.count("delete_profile")).toBe(1);
    // The selection moves on to what is left.
    await waitFor(() => expect(detail().dataset.profile).toBe("alpha"));
  });

  it("inspects a JWT as unverified claims and an opaque token as opaque", async () => {
    be.handlers.inspect_token = () => ({
      header: "Authorization",
      scheme_word: "Bearer",
      inspection: {
        kind: "jwt",
        header: { alg: "RS256" },
        claims: { sub: "analyst-7" },
        expires_at: "2030-01-01T00:00:00Z",
        issued_at: null,
        not_before: null,
        issuer: "https://login.example.com",
        subject: "analyst-7",
        audience: ["reports-api"],
        scopes: ["reports:read", "exports:write"],
      },
    });
    await loaded();
    fireEvent.click(action("inspect"));
    const box = await waitFor(() => {
      const b = document.getElementById("inspector");
      expect(b?.dataset.kind).toBe("jwt");
      return b!;
    });
    expect(within(box).getByText(/not verified/)).toBeTruthy();
    const field = (f: string) => box.querySelector(`dd[data-field="${f}"]`)?.textContent;
    expect(field("sent_in")).toBe("Authorization: Bearer …");
    expect(field("scopes")).toBe("reports:read exports:write");
    expect(field("expires")).toContain("2030");

    be.handlers.inspect_token = () => ({ header: "X-Api-Key", scheme_word: null, inspection: { kind: "opaque", length: 17 } });
    fireEvent.click(action("inspect"));
    await waitFor(() => expect(document.getElementById("inspector")!.dataset.kind).toBe("opaque"));
    expect(document.querySelector("#inspector .note")!.textContent).toContain("opaque token (17 characters)");
  });

  it("says when there is nothing yet, and what the agent could not do", async () => {
    be.rows = [];
    render(<App />);
    await waitFor(() => expect(document.getElementById("empty")).not.toBeNull());
    await be.emitError();
    await waitFor(() => expect(screen.getByRole("alert").textContent).toBe("the keychain is locked: unlock it and start Keyport again"));
  });

  it("ticks only while a countdown is shown", async () => {
    await loaded();
    expect(ticking()).toBe(true);
    cleanup();
    expect(ticking()).toBe(false);
  });
});

describe("reveal and the app's own signals", () => {
  it("reveals a secret on request and masks it again after the time the app gives", async () => {
    vi.useFakeTimers({ shouldAdvanceTime: true });
    try {
      be.handlers.reveal_secret = ({ name, field }) => ({ value: `${name}-${field}-value`, hide_after_secs: 10 });
      await loaded();
      const cell = () => detail().querySelector<HTMLElement>('[data-secret="api_key"]')!;
      expect(cell().textContent).not.toContain("value");
      // (a secret that is not set has nothing to reveal)
      expect(detail().querySelector('[data-secret="other"] button')).toBeNull();
      fireEvent.click(within(cell()).getByRole("button", { name: "Reveal the api_key of beta" }));
      await waitFor(() => expect(cell().querySelector(".revealed")!.textContent).toBe("beta-api_key-value"));
      expect(be.calls.find(([c]) => c === "reveal_secret")![1]).toEqual({ name: "beta", field: "api_key" });
      vi.advanceTimersByTime(9_000);
      expect(cell().querySelector(".revealed")).not.toBeNull();
      vi.advanceTimersByTime(1_500);
      await waitFor(() => expect(cell().querySelector(".revealed")).toBeNull());
      expect(cell().textContent).not.toContain("value");
    } finally {
      vi.useRealTimers();
    }
  });

  it("opens on the profile chosen in the tray that opened the window", async () => {
    be.handlers.page_ready = () => "zeta";
    await loaded();
    await waitFor(() => expect(detail().dataset.profile).toBe("zeta"));
    expect(be.count("page_ready")).toBe(1);
  });

  it("tells the app when the first view is rendered, and shows a profile chosen in the tray", async () => {
    await loaded();
    await waitFor(() => expect(be.count("page_ready")).toBe(1));
    await emit("select-profile", "zeta");
    await waitFor(() => expect(detail().dataset.profile).toBe("zeta"));
  });

  it("follows the helper's changes: paused in the header's panel without asking", async () => {
    await loaded();
    fireEvent.click(document.querySelector<HTMLElement>('button[data-action="helper"]')!);
    await waitFor(() => expect(document.querySelector("#helper-panel")).not.toBeNull());
    expect(document.querySelector('#helper-panel [data-field="paused"]')).toBeNull();
    await emit("helper", { port: 7313, url: "http://127.0.0.1:7313", socket: null, error: null, paused: true, requests: 0, refusals: 0, keychain_calls: 0 });
    await waitFor(() => expect(document.querySelector('#helper-panel [data-field="paused"]')).not.toBeNull());
    expect(document.querySelector('#helper-panel button[data-action="pause"]')!.textContent).toBe("Resume helper");
  });
});
