import { cleanup, fireEvent, render, waitFor } from "@testing-library/preact";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Settings } from "../bindings/Settings";
import { Backend } from "../test/backend";
import { row } from "../test/fixtures";
import { App } from "./App";
import { settingsOf } from "./SettingsPanel";

let be: Backend;
let stored: Settings;
beforeEach(() => {
  be = new Backend([row("pw", "Patchworks")]);
  stored = { notifications: true, lead: 120, port: 7137, allowed_origins: [], autostart: false };
  be.handlers.settings = () => stored;
  be.handlers.save_settings = ({ settings }) => {
    const s = settings as Settings;
    if (s.allowed_origins.some((o) => o.endsWith("/"))) {
      throw { kind: "invalid", field: "allowed_origins", message: `'${s.allowed_origins[0]}' is not a web origin` };
    }
    if (s.port === 80) throw { kind: "invalid", field: "port", message: "port 80 on 127.0.0.1 is in use" };
    return (stored = s);
  };
});
afterEach(() => {
  cleanup();
  be.close();
});

const q = <T extends HTMLElement = HTMLElement>(sel: string) => document.querySelector<T>(sel)!;
const type = (sel: string, value: string) => fireEvent.input(q<HTMLInputElement>(sel), { target: { value } });

async function open() {
  render(<App />);
  await waitFor(() => expect(document.body.dataset.loaded).toBe("true"));
  fireEvent.click(q('button[data-action="settings"]'));
  await waitFor(() => expect(document.querySelector("#settings form")).not.toBeNull());
}

describe("the settings panel", () => {
  it("shows the settings in force and saves every field at once", async () => {
    await open();
    expect(q<HTMLInputElement>("#s-notifications").checked).toBe(true);
    expect(q<HTMLInputElement>("#s-lead").value).toBe("120");
    expect(q<HTMLInputElement>("#s-port").value).toBe("7137");
    fireEvent.click(q("#s-notifications"));
    type("#s-lead", "300");
    type("#s-port", "7200");
    fireEvent.input(q("#s-origins"), { target: { value: "http://localhost:5173\nhttps://dev.example:8443" } });
    fireEvent.click(q("#s-autostart"));
    const infos = be.count("helper_info");
    fireEvent.click(q('button[data-action="save-settings"]'));
    await waitFor(() => expect(q("#settings .outcome").textContent).toBe("Saved: in force now."));
    expect(stored).toEqual({
      notifications: false,
      lead: 300,
      port: 7200,
      allowed_origins: ["http://localhost:5173", "https://dev.example:8443"],
      autostart: true,
    });
    // the header's helper address is read again (the port moved)
    await waitFor(() => expect(be.count("helper_info")).toBe(infos + 1));
  });

  it("says the core's refusal beside its field and keeps what was typed", async () => {
    await open();
    fireEvent.input(q("#s-origins"), { target: { value: "http://localhost:5173/" } });
    fireEvent.click(q('button[data-action="save-settings"]'));
    await waitFor(() => expect(q('[data-field="origins"]').classList.contains("invalid")).toBe(true));
    expect(q("#s-origins-help").textContent).toBe("'http://localhost:5173/' is not a web origin");
    expect(q<HTMLTextAreaElement>("#s-origins").value).toBe("http://localhost:5173/");
    type("#s-origins", "");
    type("#s-port", "80");
    fireEvent.click(q('button[data-action="save-settings"]'));
    await waitFor(() => expect(q("#s-port-help").textContent).toBe("port 80 on 127.0.0.1 is in use"));
    expect(q('[data-field="origins"]').classList.contains("invalid")).toBe(false);
    expect(stored.port).toBe(7137);
  });

  it("refuses text that is not a number before asking the app", () => {
    const form = { notifications: true, lead: "2 min", port: "7137", origins: "", autostart: false };
    expect(settingsOf(form)).toEqual({ field: "lead", message: "a whole number of seconds, e.g. 120" });
    expect(settingsOf({ ...form, lead: "60", port: "70000" })).toMatchObject({ field: "port" });
    expect(settingsOf({ ...form, lead: " 60 ", origins: "a, b\n\nc" })).toMatchObject({ lead: 60, allowed_origins: ["a", "b", "c"] });
  });
});
