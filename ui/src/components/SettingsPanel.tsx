// Settings: notifications and their lead time, start at login, the helper's port and the
// browser origins allowed to call it. Saved to profiles.toml by the app and put in force in
// the running agent at once; a problem is said beside its field, and then nothing changed.
import { useEffect, useState } from "preact/hooks";
import { api, errorField, message } from "../api";
import type { Settings } from "../bindings/Settings";

type Props = { onSaved?: (s: Settings) => void };

/** The form's text, as typed. */
type Form = { notifications: boolean; lead: string; port: string; origins: string; autostart: boolean };

function formOf(s: Settings): Form {
  return {
    notifications: s.notifications,
    lead: String(s.lead),
    port: String(s.port),
    origins: s.allowed_origins.join("\n"),
    autostart: s.autostart,
  };
}

/** The settings a form says, or the field whose text is not a number. */
export function settingsOf(f: Form): Settings | { field: string; message: string } {
  const int = (t: string) => (/^\s*\d+\s*$/.test(t) ? Number(t) : null);
  const lead = int(f.lead);
  if (lead === null) return { field: "lead", message: "a whole number of seconds, e.g. 120" };
  const port = int(f.port);
  if (port === null || port > 65535) return { field: "port", message: "a port number from 1 to 65535, e.g. 7137" };
  return {
    notifications: f.notifications,
    lead,
    port,
    allowed_origins: f.origins
      .split(/[\s,]+/)
      .map((o) => o.trim())
      .filter(Boolean),
    autostart: f.autostart,
  };
}

export function SettingsPanel({ onSaved }: Props) {
  const [form, setForm] = useState<Form | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [outcome, setOutcome] = useState<{ text: string; bad: boolean } | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.settings().then(
      (s) => setForm(formOf(s)),
      (e) => setLoadError(message(e)),
    );
  }, []);

  if (!form) {
    return (
      <article id="settings" aria-labelledby="settings-title">
        <h2 id="settings-title">Settings</h2>
        <p class={loadError ? "bad" : "note"}>{loadError ?? "…"}</p>
      </article>
    );
  }
  const set = (patch: Partial<Form>) => {
    setForm({ ...form, ...patch });
    setOutcome(null);
  };
  const save = async (ev: Event) => {
    ev.preventDefault();
    setErrors({});
    setOutcome(null);
    const s = settingsOf(form);
    if ("field" in s) {
      setErrors({ [s.field]: s.message });
      return;
    }
    setBusy(true);
    try {
      const saved = await api.saveSettings(s);
      setForm(formOf(saved));
      setOutcome({ text: "Saved: in force now.", bad: false });
      onSaved?.(saved);
    } catch (e) {
      const field = errorField(e);
      // the core names the origin rule's field `allowed_origins`
      if (field) setErrors({ [field === "allowed_origins" ? "origins" : field]: message(e) });
      else setOutcome({ text: message(e), bad: true });
    } finally {
      setBusy(false);
    }
  };
  const help = (field: string, text: string) => (
    <small id={`s-${field}-help`} class="help">
      {errors[field] ?? text}
    </small>
  );
  const cls = (field: string, extra = "") => `field${extra}${errors[field] ? " invalid" : ""}`;
  const check = (field: "notifications" | "autostart", label: string, text: string) => (
    <div class={cls(field, " check")} data-field={field}>
      <input
        id={`s-${field}`}
        type="checkbox"
        checked={form[field]}
        aria-describedby={`s-${field}-help`}
        onChange={(e) => set({ [field]: (e.currentTarget as HTMLInputElement).checked } as Partial<Form>)}
      />
      <label for={`s-${field}`}>{label}</label>
      {help(field, text)}
    </div>
  );
  return (
    <article id="settings" aria-labelledby="settings-title">
      <header class="detail-head">
        <h2 id="settings-title">Settings</h2>
      </header>
      <form class="form" onSubmit={save} noValidate>
        <fieldset>
          <legend>Notifications</legend>
          {check(
            "notifications",
            "Tell me when a token needs me",
            "Expiring, expired, renewal failing, login required. Per profile: its notify setting.",
          )}
          <div class={cls("lead")} data-field="lead">
            <label for="s-lead">Lead time (seconds)</label>
            <input
              id="s-lead"
              name="lead"
              type="number"
              min={0}
              value={form.lead}
              aria-invalid={errors.lead ? true : undefined}
              aria-describedby="s-lead-help"
              onInput={(e) => set({ lead: (e.currentTarget as HTMLInputElement).value })}
            />
            {help("lead", "Tokens are renewed at the latest this long before they expire; one that can't be renewed is announced this long before.")}
          </div>
        </fieldset>
        <fieldset>
          <legend>Start</legend>
          {check(
            "autostart",
            "Start Keyport when I log in",
            "It starts in the tray, with this window hidden, and keeps tokens valid from the start.",
          )}
        </fieldset>
        <fieldset>
          <legend>Loopback helper</legend>
          <div class={cls("port")} data-field="port">
            <label for="s-port">Port on 127.0.0.1</label>
            <input
              id="s-port"
              name="port"
              type="number"
              min={1}
              max={65535}
              value={form.port}
              aria-invalid={errors.port ? true : undefined}
              aria-describedby="s-port-help"
              onInput={(e) => set({ port: (e.currentTarget as HTMLInputElement).value })}
            />
            {help("port", "Tools keep their URLs while it stays the same. A new port applies at once: open connections end, and tools still using the old port fail until you give them the new URL.")}
          </div>
          <div class={cls("origins")} data-field="origins">
            <label for="s-origins">Allowed browser origins</label>
            <textarea
              id="s-origins"
              name="origins"
              rows={3}
              spellcheck={false}
              placeholder="http://localhost:5173"
              value={form.origins}
              aria-invalid={errors.origins ? true : undefined}
              aria-describedby="s-origins-help"
              onInput={(e) => set({ origins: (e.currentTarget as HTMLTextAreaElement).value })}
            />
            {help("origins", "One per line, scheme://host[:port]. Web pages from anywhere else are refused by the helper.")}
          </div>
        </fieldset>
        <div class="form-actions">
          <button type="submit" class="primary" disabled={busy} data-action="save-settings">
            {busy ? "Saving…" : "Save settings"}
          </button>
          <span class={`outcome${outcome?.bad ? " bad" : ""}`} role="status">
            {outcome?.text ?? ""}
          </span>
        </div>
      </form>
    </article>
  );
}
