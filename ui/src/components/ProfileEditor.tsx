// Add / edit a profile: pick a preset (the five seed services first), then a form made
// from the preset's field metadata. Checks run in the core as the person leaves each field,
// and its messages appear beside the field they are about.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, errorField, message } from "../api";
import type { FieldInfo } from "../bindings/FieldInfo";
import type { PresetInfo } from "../bindings/PresetInfo";
import type { ProfileRow } from "../bindings/ProfileRow";
import type { ProfileView } from "../bindings/ProfileView";
import type { Saved } from "../bindings/Saved";
import { formOf, initialValues, isAdvanced, label, presetGroups, saveHint, type Values } from "../form";

type Props = {
  /** Edit this profile; none: add a new one. */
  editing: ProfileRow | null;
  profiles: ProfileRow[];
  onSaved: (s: Saved) => void;
  onCancel: () => void;
};

export function ProfileEditor({ editing, profiles, onSaved, onCancel }: Props) {
  const [presets, setPresets] = useState<PresetInfo[] | null>(null);
  const [preset, setPreset] = useState<PresetInfo | null>(null);
  const [view, setView] = useState<ProfileView | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    (async () => {
      try {
        const all = await api.presets();
        if (!live) return;
        setPresets(all);
        if (editing) {
          const v = await api.showProfile(editing.name);
          if (!live) return;
          setView(v);
          setPreset(all.find((p) => p.name === editing.preset) ?? null);
        }
      } catch (e) {
        if (live) setError(message(e));
      }
    })();
    return () => {
      live = false;
    };
  }, [editing]);

  const title = editing ? `Edit ${editing.name}` : preset ? `New ${preset.title} profile` : "Add a profile";
  return (
    <section id="editor" data-mode={editing ? "edit" : "add"} aria-labelledby="editor-title">
      <header class="detail-head">
        <h2 id="editor-title">{title}</h2>
      </header>
      {error && <p class="banner bad">{error}</p>}
      {!preset && !editing && presets && <PresetPicker presets={presets} onPick={setPreset} onCancel={onCancel} />}
      {preset && (!editing || view) && (
        <Form
          key={preset.name}
          preset={preset}
          editing={editing}
          view={view}
          profiles={profiles}
          onSaved={onSaved}
          onBack={editing ? onCancel : () => setPreset(null)}
        />
      )}
    </section>
  );
}

function PresetPicker({ presets, onPick, onCancel }: { presets: PresetInfo[]; onPick: (p: PresetInfo) => void; onCancel: () => void }) {
  const first = useRef<HTMLButtonElement>(null);
  useEffect(() => first.current?.focus(), []);
  let i = 0;
  return (
    <div class="picker">
      <p class="note">Choose what the profile signs in to. Each preset knows its service's way of authenticating.</p>
      {presetGroups(presets).map(([service, list]) => (
        <section key={service} class="picker-group" aria-label={service === "generic" ? "Other" : service}>
          <h3>{service === "generic" ? "Other APIs" : service}</h3>
          <div class="cards">
            {list.map((p) => (
              <button
                key={p.name}
                type="button"
                class="card"
                data-preset={p.name}
                ref={i++ === 0 ? first : undefined}
                onClick={() => onPick(p)}
              >
                <span class="card-title">{p.title}</span>
                <span class="card-text">{p.description}</span>
              </button>
            ))}
          </div>
        </section>
      ))}
      <div class="form-actions">
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </div>
  );
}

type FormProps = {
  preset: PresetInfo;
  editing: ProfileRow | null;
  view: ProfileView | null;
  profiles: ProfileRow[];
  onSaved: (s: Saved) => void;
  onBack: () => void;
};

function Form({ preset, editing, view, profiles, onSaved, onBack }: FormProps) {
  const [name, setName] = useState(editing?.name ?? "");
  const [values, setValues] = useState<Values>(() => initialValues(preset, view));
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [banner, setBanner] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const touched = useRef(new Set<string>());
  const form = useRef<HTMLFormElement>(null);

  useEffect(() => {
    form.current?.querySelector<HTMLElement>("input, select")?.focus();
  }, []);

  const set = (field: string, v: string) => setValues((old) => ({ ...old, [field]: v }));

  /** Shows `e` beside its field, or above the form; answers that field. */
  const show = (e: unknown, onlyTouched: boolean): string | null => {
    const field = errorField(e);
    const known = field !== null && (field === "name" || preset.fields.some((f) => f.name === field));
    if (known && (!onlyTouched || touched.current.has(field!))) {
      setErrors({ [field!]: message(e) });
      return field;
    }
    if (!onlyTouched) setBanner(message(e));
    return null;
  };

  // Leaving a field asks the core about the whole profile as typed so far (nothing is
  // saved, no secret is read); its message shows if it is about a field already visited.
  const check = async (field: string) => {
    touched.current.add(field);
    if (editing) return;
    try {
      await api.checkProfile(formOf(name, preset, values));
      setErrors({});
    } catch (e) {
      setErrors({});
      show(e, true);
    }
  };

  const submit = async (ev: Event) => {
    ev.preventDefault();
    setBusy(true);
    setBanner(null);
    setErrors({});
    try {
      const f = formOf(name, preset, values);
      onSaved(await (editing ? api.editProfile(f) : api.addProfile(f)));
    } catch (e) {
      const field = show(e, false);
      if (field) form.current?.querySelector<HTMLElement>(`[name="${field}"]`)?.focus();
    } finally {
      setBusy(false);
    }
  };

  const plain = preset.fields.filter((f) => !isAdvanced(f));
  const advanced = preset.fields.filter(isAdvanced);
  const input = (f: FieldInfo) => (
    <Field
      key={f.name}
      f={f}
      value={values[f.name] ?? ""}
      error={errors[f.name]}
      stored={editing && f.secret ? Boolean(view?.secrets[f.name]) : null}
      profiles={profiles}
      onInput={(v) => set(f.name, v)}
      onBlur={() => void check(f.name)}
    />
  );
  return (
    <form ref={form} class="form" data-preset={preset.name} onSubmit={submit} noValidate>
      <p class="note">{preset.description}</p>
      {banner && (
        <p class="banner bad" role="alert">
          {banner}
        </p>
      )}
      <div class={`field${errors.name ? " invalid" : ""}`}>
        <label for="f-name">
          Profile name <span class="req" aria-hidden="true">*</span>
        </label>
        <input
          id="f-name"
          name="name"
          value={name}
          readOnly={Boolean(editing)}
          required
          autocomplete="off"
          spellcheck={false}
          aria-invalid={errors.name ? true : undefined}
          aria-describedby="f-name-help"
          onInput={(e) => setName((e.currentTarget as HTMLInputElement).value)}
          onBlur={() => void check("name")}
        />
        <small id="f-name-help" class="help">
          {errors.name ?? "Letters a-z, digits, - and _: tools reach it through the helper under this name."}
        </small>
      </div>
      {plain.map(input)}
      {advanced.length > 0 && (
        <details class="advanced" open={advanced.some((f) => values[f.name] === "true")}>
          <summary>Advanced</summary>
          {advanced.map(input)}
        </details>
      )}
      <div class="form-actions">
        <button type="submit" class="primary" disabled={busy} data-action="save">
          {busy ? "Saving…" : editing ? "Save changes" : "Save profile"}
        </button>
        <button type="button" onClick={onBack} disabled={busy}>
          {editing ? "Cancel" : "Back"}
        </button>
        <small class="help">{saveHint(preset)}</small>
      </div>
    </form>
  );
}

type FieldProps = {
  f: FieldInfo;
  value: string;
  error: string | undefined;
  /** Edit: whether the secret is set now (the input stays empty: typing replaces it). */
  stored: boolean | null;
  profiles: ProfileRow[];
  onInput: (v: string) => void;
  onBlur: () => void;
};

function Field({ f, value, error, stored, profiles, onInput, onBlur }: FieldProps) {
  const id = `f-${f.name}`;
  const help = error ?? f.help;
  const common = {
    id,
    name: f.name,
    "aria-invalid": error ? true : undefined,
    "aria-describedby": `${id}-help`,
    onBlur,
  };
  const val = (e: Event) => (e.currentTarget as HTMLInputElement | HTMLSelectElement).value;
  let control;
  if (f.kind === "bool") {
    return (
      <div class={`field check${error ? " invalid" : ""}`}>
        <input
          type="checkbox"
          {...common}
          checked={value === "true"}
          onChange={(e) => onInput((e.currentTarget as HTMLInputElement).checked ? "true" : "false")}
        />
        <label for={id}>{label(f.name)}</label>
        <small id={`${id}-help`} class="help">
          {help}
        </small>
      </div>
    );
  } else if (f.choices.length > 0 || f.kind === "profile") {
    const options =
      f.kind === "profile"
        ? profiles.filter((p) => f.parent_presets.length === 0 || f.parent_presets.includes(p.preset)).map((p) => p.name)
        : f.choices;
    control = (
      <select {...common} value={value} required={f.required} onChange={(e) => onInput(val(e))}>
        <option value="">{f.required ? "Choose…" : "(default)"}</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    );
  } else {
    control = (
      <input
        {...common}
        type={f.secret ? "password" : f.kind === "integer" ? "number" : "text"}
        inputMode={f.kind === "url" || f.kind === "origin" ? "url" : undefined}
        value={value}
        required={f.required && !stored}
        placeholder={stored === null ? (f.default ?? "") : stored ? "set: leave empty to keep it" : "not set"}
        autocomplete={f.secret ? "new-password" : "off"}
        spellcheck={false}
        list={f.aliases.length ? `${id}-aliases` : undefined}
        onInput={(e) => onInput(val(e))}
      />
    );
  }
  return (
    <div class={`field${error ? " invalid" : ""}`} data-field={f.name}>
      <label for={id}>
        {label(f.name)}
        {f.required && (
          <span class="req" aria-hidden="true">
            {" "}
            *
          </span>
        )}
        {f.secret && <span class="tag">secret · kept in the keychain</span>}
      </label>
      {control}
      {f.aliases.length > 0 && (
        <datalist id={`${id}-aliases`}>
          {f.aliases.map((a) => (
            <option key={a} value={a} />
          ))}
        </datalist>
      )}
      <small id={`${id}-help`} class="help">
        {help}
      </small>
    </div>
  );
}
