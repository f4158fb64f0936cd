import { cleanup, fireEvent, render, waitFor } from "@testing-library/preact";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Backend } from "../test/backend";
import { row, status } from "../test/fixtures";
import { BEARER, IMPROVADO, WIDGET } from "../test/presets";
import { App } from "./App";

let be: Backend;
beforeEach(() => {
  be = new Backend([row("pw", "Patchworks"), { ...row("op", "Airbyte"), preset: "airbyte-operator" }]);
  be.handlers.presets = () => [IMPROVADO, WIDGET, BEARER];
  be.handlers.check_profile = () => null;
});
afterEach(() => {
  cleanup();
  be.close();
});

const q = <T extends Element = HTMLElement>(sel: string) => document.querySelector<T>(sel)!;
const type = (sel: string, v: string) => {
  const el = q<HTMLInputElement>(sel);
  fireEvent.input(el, { target: { value: v } });
};

async function openForm(preset: string) {
  render(<App />);
  await waitFor(() => expect(document.body.dataset.loaded).toBe("true"));
  fireEvent.click(q('button[data-action="add"]'));
  await waitFor(() => expect(document.querySelector(`.card[data-preset="${preset}"]`)).not.toBeNull());
  fireEvent.click(q(`.card[data-preset="${preset}"]`));
  await waitFor(() => expect(document.querySelector(`form[data-preset="${preset}"]`)).not.toBeNull());
}

describe("the add form", () => {
  it("offers the presets by service, seed services first", async () => {
    render(<App />);
    await waitFor(() => expect(document.body.dataset.loaded).toBe("true"));
    fireEvent.click(q('button[data-action="add"]'));
    await waitFor(() => expect(document.querySelectorAll(".picker-group").length).toBe(3));
    const groups = [...document.querySelectorAll(".picker-group h3")].map((h) => h.textContent);
    expect(groups).toEqual(["Improvado", "Airbyte", "Other APIs"]);
    await waitFor(() => expect(document.activeElement).toBe(q('.card[data-preset="improvado"]')));
  });

  it("is made from the preset's fields: labels, defaults, required marks, password inputs", async () => {
    await openForm("improvado");
    expect(q<HTMLInputElement>("#f-base_url").value).toBe("https://embedded.improvado.io/api/v3");
    expect(q<HTMLInputElement>("#f-password").type).toBe("password");
    expect(q<HTMLInputElement>("#f-workspace_id").type).toBe("number");
    expect(q('label[for="f-workspace_id"]').textContent).toContain("Workspace ID");
    expect(q('label[for="f-username"] .req')).not.toBeNull();
    expect(q("#f-username-help").textContent).toBe("Embedded API username");
    expect(q<HTMLDetailsElement>("details.advanced").open).toBe(false);
    await waitFor(() => expect(document.activeElement).toBe(q("#f-name")));
  });

  it("shows the core's message beside a visited field, and not for fields not reached yet", async () => {
    await openForm("improvado");
    be.handlers.check_profile = () => {
      throw { kind: "invalid", message: "invalid value for 'base_url': plain http only to loopback", field: "base_url" };
    };
    type("#f-base_url", "http://embedded.improvado.io");
    fireEvent.blur(q("#f-base_url"));
    await waitFor(() => expect(q("#f-base_url-help").textContent).toBe("invalid value for 'base_url': plain http only to loopback"));
    expect(q("#f-base_url").getAttribute("aria-invalid")).toBe("true");
    expect(be.calls.filter(([c]) => c === "check_profile").slice(-1)[0][1]).toMatchObject({
      form: { preset: "improvado", settings: { base_url: "http://embedded.improvado.io" } },
    });

    be.handlers.check_profile = () => {
      throw { kind: "invalid", message: "missing required field 'password'", field: "password" };
    };
    fireEvent.blur(q("#f-base_url"));
    await waitFor(() => expect(q("#f-base_url-help").textContent).toBe(""));
    expect(q("#f-password-help").textContent).toBe("Embedded API password");
  });

  it("saves, then shows the new profile with how its first token call went", async () => {
    await openForm("improvado");
    type("#f-name", "imp");
    type("#f-username", "analyst@example.com");
    type("#f-password", "s3cret");
    type("#f-workspace_id", "42");
    be.handlers.add_profile = ({ form }) => {
      const f = form as { name: string };
      be.rows = [...be.rows, { ...row(f.name, "Improvado"), preset: "improvado" }];
      return { name: f.name, status: status(f.name, "valid"), fetch_error: null, needs_login: false };
    };
    fireEvent.submit(q("form"));
    await waitFor(() => expect(document.getElementById("detail")?.dataset.profile).toBe("imp"));
    expect(q("#detail .outcome").textContent).toBe("Saved: valid");
    expect(be.calls.find(([c]) => c === "add_profile")![1]).toEqual({
      form: {
        name: "imp",
        preset: "improvado",
        settings: {
          base_url: "https://embedded.improvado.io/api/v3",
          username: "analyst@example.com",
          workspace_id: "42",
          allow_insecure_http: "false",
        },
        secrets: { password: "s3cret" },
      },
    });
    expect(q('#profiles li[data-profile="imp"] button').getAttribute("aria-current")).toBe("true");
  });

  it("puts a refusal beside its field and focuses it; other errors above the form", async () => {
    await openForm("bearer");
    be.handlers.add_profile = () => {
      throw { kind: "exists", message: "a profile named 'pw' already exists", field: "name" };
    };
    type("#f-name", "pw");
    type("#f-token", "t");
    fireEvent.submit(q("form"));
    await waitFor(() => expect(q("#f-name-help").textContent).toBe("a profile named 'pw' already exists"));
    expect(document.activeElement).toBe(q("#f-name"));
    be.handlers.add_profile = () => {
      throw { kind: "keychain", message: "the keychain is locked: unlock it and try again" };
    };
    fireEvent.submit(q("form"));
    await waitFor(() => expect(q('form [role="alert"]').textContent).toBe("the keychain is locked: unlock it and try again"));
  });

  it("offers only fitting parents, the choices and the aliases", async () => {
    await openForm("airbyte-widget");
    const parents = [...q<HTMLSelectElement>("#f-parent").options].map((o) => o.value);
    expect(parents).toEqual(["", "op"]);
    const modes = [...q<HTMLSelectElement>("#f-source_tags_mode").options].map((o) => o.value);
    expect(modes).toEqual(["", "any", "all"]);
    const aliases = [...document.querySelectorAll("#f-region-aliases option")].map((o) => o.getAttribute("value"));
    expect(aliases).toEqual(["eu", "us"]);
  });
});

describe("the edit form", () => {
  it("starts from the settings, keeps a secret left empty, and saves all at once", async () => {
    be.rows = [{ ...row("imp", "Improvado"), preset: "improvado" }];
    be.handlers.show_profile = () => ({
      name: "imp",
      preset: "improvado",
      scheme: "login-endpoint",
      settings: { base_url: "https://embedded.improvado.io/api/v3", username: "analyst", workspace_id: "42" },
      extra_headers: {},
      allow_insecure_http: false,
      secrets: { password: true },
      keychain_item: "keyport/imp",
    });
    be.handlers.edit_profile = () => ({ name: "imp", status: status("imp", "valid"), fetch_error: null, needs_login: false });
    render(<App />);
    await waitFor(() => expect(document.getElementById("detail")).not.toBeNull());
    fireEvent.click(q('#detail button[data-action="edit"]'));
    await waitFor(() => expect(document.querySelector('form[data-preset="improvado"]')).not.toBeNull());
    expect(q<HTMLInputElement>("#f-name").readOnly).toBe(true);
    expect(q<HTMLInputElement>("#f-username").value).toBe("analyst");
    expect(q<HTMLInputElement>("#f-password").value).toBe("");
    expect(q<HTMLInputElement>("#f-password").placeholder).toBe("set: leave empty to keep it");
    type("#f-workspace_id", "43");
    fireEvent.submit(q("form"));
    await waitFor(() => expect(document.getElementById("detail")).not.toBeNull());
    expect(be.calls.find(([c]) => c === "edit_profile")![1]).toEqual({
      form: {
        name: "imp",
        preset: "improvado",
        settings: {
          base_url: "https://embedded.improvado.io/api/v3",
          username: "analyst",
          workspace_id: "43",
          allow_insecure_http: "false",
        },
        secrets: {},
      },
    });
    expect(q("#detail .outcome").textContent).toBe("Saved: valid");
  });
});
