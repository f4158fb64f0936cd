// The add / edit form's logic, free of the DOM: labels, the presets in the picker's
// groups, initial values, and what the form sends. Unit-tested.
import type { FieldInfo } from "./bindings/FieldInfo";
import type { PresetInfo } from "./bindings/PresetInfo";
import type { ProfileView } from "./bindings/ProfileView";
import type { ProfileForm } from "./api";

const WORDS: Record<string, string> = { url: "URL", id: "ID", api: "API", uuid: "UUID", http: "http" };
const LABELS: Record<string, string> = {
  base_url: "API base URL",
  allow_insecure_http: "Allow plain http beyond this computer",
  expires_at: "Expires at",
};

/** `workspace_id` -> "Workspace ID", `base_url` -> "API base URL". */
export function label(field: string): string {
  if (LABELS[field]) return LABELS[field];
  const words = field.split("_").filter(Boolean).map((w) => WORDS[w] ?? w);
  const first = words[0] ?? field;
  return [first === first.toLowerCase() ? first[0].toUpperCase() + first.slice(1) : first, ...words.slice(1)].join(" ");
}

/** The presets by service, in the order the app gives them (seed services first). */
export function presetGroups(presets: PresetInfo[]): [string, PresetInfo[]][] {
  const by = new Map<string, PresetInfo[]>();
  for (const p of presets) {
    const g = by.get(p.service);
    if (g) g.push(p);
    else by.set(p.service, [p]);
  }
  return [...by.entries()];
}

/** Fields shown under "Advanced": the plain-http switch. */
export function isAdvanced(f: FieldInfo): boolean {
  return f.name === "allow_insecure_http";
}

export type Values = Record<string, string>;

/** A new profile starts from the preset's defaults; an edited one from its settings. */
export function initialValues(preset: PresetInfo, view: ProfileView | null): Values {
  const v: Values = {};
  for (const f of preset.fields) {
    if (f.secret) v[f.name] = "";
    else if (f.name === "allow_insecure_http") v[f.name] = view?.allow_insecure_http ? "true" : "false";
    else if (view) v[f.name] = view.settings[f.name] ?? "";
    else v[f.name] = f.default ?? "";
  }
  return v;
}

/** What the form sends: trimmed settings and typed secrets, empty ones left out. */
export function formOf(name: string, preset: PresetInfo, values: Values): ProfileForm {
  const settings: Record<string, string> = {};
  const secrets: Record<string, string> = {};
  for (const f of preset.fields) {
    const raw = values[f.name] ?? "";
    if (f.secret) {
      if (raw !== "") secrets[f.name] = raw;
    } else {
      const t = raw.trim();
      if (t !== "") settings[f.name] = t;
    }
  }
  return { name: name.trim(), preset: preset.name, settings, secrets };
}

/** What saving it will do, for the Save button's hint. */
export function saveHint(p: PresetInfo): string {
  switch (p.save) {
    case "static":
      return "Its header is made from the values above; nothing is sent until a tool uses it.";
    case "fetch":
      return "Saving fetches its first token once, and shows how that went.";
    case "login":
      return "After saving, log in to get its first token.";
  }
}
