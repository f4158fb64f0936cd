import { describe, expect, it } from "vitest";
import { formOf, initialValues, label, presetGroups } from "./form";
import { BEARER, IMPROVADO, WIDGET } from "./test/presets";

describe("label", () => {
  it.each([
    ["workspace_id", "Workspace ID"],
    ["base_url", "API base URL"],
    ["api_key", "API key"],
    ["client_secret", "Client secret"],
    ["token_url", "Token URL"],
    ["region", "Region"],
  ])("%s reads %s", (f, want) => expect(label(f)).toBe(want));
});

describe("presetGroups", () => {
  it("keeps the app's order: seed services first, generic last", () => {
    expect(presetGroups([IMPROVADO, WIDGET, BEARER]).map(([s, l]) => [s, l.length])).toEqual([
      ["Improvado", 1],
      ["Airbyte", 1],
      ["generic", 1],
    ]);
  });
});

describe("values", () => {
  it("start from the defaults for a new profile, secrets empty", () => {
    const v = initialValues(IMPROVADO, null);
    expect(v).toEqual({
      base_url: "https://embedded.improvado.io/api/v3",
      username: "",
      password: "",
      workspace_id: "",
      allow_insecure_http: "false",
    });
  });
  it("start from the settings when editing, secrets still empty", () => {
    const v = initialValues(IMPROVADO, {
      name: "imp",
      preset: "improvado",
      scheme: "login-endpoint",
      settings: { username: "analyst@example.com", workspace_id: "42" },
      extra_headers: {},
      allow_insecure_http: true,
      secrets: { password: true },
      keychain_item: "keyport/imp",
    });
    expect(v.username).toBe("analyst@example.com");
    expect(v.base_url).toBe("");
    expect(v.password).toBe("");
    expect(v.allow_insecure_http).toBe("true");
  });
  it("are sent trimmed, secrets as typed, empty ones left out", () => {
    const f = formOf(" imp ", IMPROVADO, {
      base_url: " https://embedded.improvado.io/api/v3 ",
      username: "analyst",
      password: " pass word ",
      workspace_id: "",
      allow_insecure_http: "false",
    });
    expect(f).toEqual({
      name: "imp",
      preset: "improvado",
      settings: { base_url: "https://embedded.improvado.io/api/v3", username: "analyst", allow_insecure_http: "false" },
      secrets: { password: " pass word " },
    });
  });
});
