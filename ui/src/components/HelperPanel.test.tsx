import { cleanup, fireEvent, render, waitFor } from "@testing-library/preact";
import { emit } from "@tauri-apps/api/event";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { KeyInfo } from "../bindings/KeyInfo";
import { Backend } from "../test/backend";
import { entry, key, row } from "../test/fixtures";
import { App } from "./App";

let be: Backend;
let keys: KeyInfo[];
beforeEach(() => {
  be = new Backend([row("pw", "Patchworks"), row("imp", "Improvado")]);
  keys = [key("default", { last_used_at: "2026-12-04T09:00:00Z" }), key("old-bi")];
  be.handlers.helper_keys = () => keys;
  be.handlers.copy_helper_key = () => ({ what: "the default helper key", clears_in_secs: 45 });
  be.handlers.rotate_helper_key = () => ({ keys, copied: { what: "the new default helper key", clears_in_secs: 45 } });
  be.handlers.create_helper_key = ({ name, profiles, readOnly }) => {
    keys = [...keys, key(name as string, { profiles: profiles as string[], read_only: readOnly as boolean })];
    return { keys, copied: { what: `the helper key '${name}'`, clears_in_secs: 45 } };
  };
  be.handlers.revoke_helper_key = ({ name }) => (keys = keys.filter((k) => k.name !== name));
  be.handlers.watch_access_log = () => [entry("/pw/a"), entry("/pw/b", { status: 401, refusal: "wrong_key", reason: "the helper key is wrong" })];
  be.handlers.unwatch_access_log = () => null;
});
afterEach(() => {
  cleanup();
  be.close();
});

const q = (sel: string) => document.querySelector<HTMLElement>(sel)!;
const openPanel = async () => {
  render(<App />);
  await waitFor(() => expect(document.querySelector('button[data-action="helper"]')).not.toBeNull());
  fireEvent.click(q('button[data-action="helper"]'));
  await waitFor(() => expect(document.querySelector("#helper-panel #access-log")).not.toBeNull());
};

describe("the helper panel", () => {
  it("shows where the helper listens, its keys, and the log newest first with refusals marked", async () => {
    await openPanel();
    expect(q('#helper-panel [data-field="url"]').textContent).toBe("http://127.0.0.1:7313/PROFILE/PATH");
    await waitFor(() => expect(document.querySelector('#keys tr[data-key="old-bi"]')).not.toBeNull());
    expect(document.querySelector('#keys tr[data-key="default"]')).toBeNull();
    expect(q('#keys tr[data-key="old-bi"] [data-field="scope"]').textContent).toBe("pw");
    const rows = () => [...document.querySelectorAll<HTMLElement>("#access-log tbody tr")];
    expect(rows().map((r) => r.dataset.status)).toEqual(["401", "200"]);
    expect(rows()[0].classList.contains("refused")).toBe(true);
    expect(rows()[0].dataset.refusal).toBe("wrong_key");
    expect(rows()[0].textContent).toContain("the helper key is wrong");
    // No profile is selected while the panel is open.
    expect(document.querySelector("#profiles [aria-current]")).toBeNull();
  });

  it("follows the log live and refreshes the counters with each batch", async () => {
    await openPanel();
    const infos = be.count("helper_info");
    const keyLists = be.count("helper_keys");
    await emit("access-log", { entries: [entry("/imp/c"), entry("/imp/d")], missed: 3 });
    await waitFor(() => expect(document.querySelectorAll("#access-log tbody tr").length).toBe(4));
    expect(q("#access-log tbody tr").textContent).toContain("GET /imp/d");
    expect(q('[data-field="missed"]').textContent).toContain("3 requests came too fast");
    await waitFor(() => expect(be.count("helper_info")).toBe(infos + 1));
    // (the keys' "last used" moves with the requests)
    await waitFor(() => expect(be.count("helper_keys")).toBe(keyLists + 1));
  });

  it("copies and rotates the key without ever seeing it, rotation asks twice", async () => {
    await openPanel();
    fireEvent.click(q('button[data-action="copy-key"]'));
    await waitFor(() => expect(q('[data-field="key_outcome"]').textContent).toContain("Copied the default helper key"));
    fireEvent.click(q('button[data-action="rotate-key"]'));
    expect(be.count("rotate_helper_key")).toBe(0);
    expect(q('button[data-action="rotate-key"]').textContent).toBe("Replace the key? Click again");
    fireEvent.click(q('button[data-action="rotate-key"]'));
    await waitFor(() => expect(be.count("rotate_helper_key")).toBe(1));
    await waitFor(() => expect(q('[data-field="key_outcome"]').textContent).toContain("Tools using the old key now get 401."));
  });

  it("creates a scoped key for the chosen profiles and revokes one", async () => {
    await openPanel();
    const create = () => q('button[data-action="create-key"]') as HTMLButtonElement;
    expect(create().disabled).toBe(true);
    fireEvent.input(q("#new-key-name"), { target: { value: "old-bi" } });
    fireEvent.click(q('input[name="key-profile"][value="imp"]'));
    await waitFor(() => expect(q("#new-key [role=alert]").textContent).toContain("A key named old-bi exists"));
    expect(create().disabled).toBe(true);
    fireEvent.input(q("#new-key-name"), { target: { value: "notebook" } });
    fireEvent.click(q("#new-key-read-only"));
    await waitFor(() => expect(create().disabled).toBe(false));
    fireEvent.click(create());
    await waitFor(() => expect(be.count("create_helper_key")).toBe(1));
    expect(be.calls.find(([c]) => c === "create_helper_key")![1]).toEqual({ name: "notebook", profiles: ["imp"], readOnly: true });
    await waitFor(() => expect(document.querySelector('#keys tr[data-key="notebook"]')).not.toBeNull());
    expect(q('#keys tr[data-key="notebook"] [data-field="scope"]').textContent).toBe("imp · read-only");
    expect(q('[data-field="key_outcome"]').textContent).toContain("Copied the helper key 'notebook'");
    expect((q("#new-key-name") as HTMLInputElement).value).toBe("");

    const revoke = () => q('#keys tr[data-key="old-bi"] button[data-action="revoke-key"]');
    fireEvent.click(revoke());
    expect(be.count("revoke_helper_key")).toBe(0);
    fireEvent.click(revoke());
    await waitFor(() => expect(document.querySelector('#keys tr[data-key="old-bi"]')).toBeNull());
    expect(be.calls.find(([c]) => c === "revoke_helper_key")![1]).toEqual({ name: "old-bi" });
  });

  it("stops watching the log when the panel closes", async () => {
    await openPanel();
    await waitFor(() => expect(be.count("watch_access_log")).toBe(1));
    fireEvent.click(q('#profiles li[data-profile="pw"] button'));
    await waitFor(() => expect(document.getElementById("detail")).not.toBeNull());
    await waitFor(() => expect(be.count("unwatch_access_log")).toBe(1));
  });

  it("pauses and resumes the helper", async () => {
    let paused = false;
    be.handlers.pause_helper = ({ paused: p }) => {
      paused = p as boolean;
      return { port: 7313, url: "http://127.0.0.1:7313", socket: null, error: null, paused, requests: 0, refusals: 0, keychain_calls: 0 };
    };
    await openPanel();
    const button = () => q('#helper-panel button[data-action="pause"]');
    expect(button().textContent).toBe("Pause helper");
    fireEvent.click(button());
    await waitFor(() => expect(q('#helper-panel [data-field="paused"]').textContent).toContain("helper_paused"));
    expect(paused).toBe(true);
    expect(button().textContent).toBe("Resume helper");
    expect(button().getAttribute("aria-pressed")).toBe("true");
    fireEvent.click(button());
    await waitFor(() => expect(document.querySelector('#helper-panel [data-field="paused"]')).toBeNull());
    expect(paused).toBe(false);
  });
});
