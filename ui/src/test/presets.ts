// Two presets in the shape the app's `presets` command gives them (from the real
// improvado.toml and airbyte-widget.toml fields), for the form's tests.
import type { FieldInfo } from "../bindings/FieldInfo";
import type { PresetInfo } from "../bindings/PresetInfo";

const field = (name: string, extra: Partial<FieldInfo> = {}): FieldInfo => ({
  name,
  kind: "text",
  required: false,
  secret: false,
  default: null,
  choices: [],
  aliases: [],
  api_only: false,
  parent_presets: [],
  help: "",
  ...extra,
});

const insecure = field("allow_insecure_http", { kind: "bool", default: "false", help: "Allow plain http" });

export const IMPROVADO: PresetInfo = {
  name: "improvado",
  title: "Improvado Embedded API (workspace token)",
  service: "Improvado",
  seed: "000_dbf2adeb54165092.txt: ...",
  description: "Workspace token from POST {base_url}/token.",
  scheme: "login-endpoint",
  save: "fetch",
  fields: [
    field("base_url", { kind: "url", required: true, default: "https://embedded.improvado.io/api/v3" }),
    field("username", { required: true, help: "Embedded API username" }),
    field("password", { required: true, secret: true, help: "Embedded API password" }),
    field("workspace_id", { kind: "integer", required: true, help: "Workspace the token is for" }),
    insecure,
  ],
};

export const WIDGET: PresetInfo = {
  name: "airbyte-widget",
  title: "Airbyte Embedded (widget token)",
  service: "Airbyte",
  seed: "004_67e3f51d49bbecc6.txt: ...",
  description: "Widget token from POST {parent base_url}/embedded/widget-token.",
  scheme: "token-exchange",
  save: "fetch",
  fields: [
    field("parent", { kind: "profile", required: true, parent_presets: ["airbyte-operator"] }),
    field("allowed_origin", { kind: "origin", required: true }),
    field("region", { kind: "uuid", aliases: ["eu", "us"] }),
    field("source_tags_mode", { choices: ["any", "all"] }),
    insecure,
  ],
};

export const BEARER: PresetInfo = {
  name: "bearer",
  title: "Pasted bearer token",
  service: "generic",
  seed: null,
  description: "A token you paste.",
  scheme: "bearer",
  save: "static",
  fields: [field("token", { required: true, secret: true }), insecure],
};
