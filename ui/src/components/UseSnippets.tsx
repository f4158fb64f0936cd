// Copy as curl / HTTPie / Python: commands built by the app that reach the profile through
// the helper and read the key themselves when they run, so none holds a secret.
import { useEffect, useState } from "preact/hooks";
import { api, message } from "../api";
import type { Snippets } from "../bindings/Snippets";

const KINDS = [
  ["curl", "curl"],
  ["HTTPie", "httpie"],
  ["Python requests", "python"],
] as const;

export function UseSnippets({ name }: { name: string }) {
  const [s, setS] = useState<Snippets | { error: string } | null>(null);
  useEffect(() => {
    let live = true;
    api.snippets(name).then(
      (v) => live && setS(v),
      (e) => live && setS({ error: message(e) }),
    );
    return () => {
      live = false;
    };
  }, [name]);
  return (
    <section id="use" aria-labelledby="use-title">
      <h3 id="use-title">Use from a tool</h3>
      <p class="note">
        Through the helper: each command reads the helper key with <code>keyport helper key</code> when it
        runs.
      </p>
      {s === null ? null : "error" in s ? (
        <p class="bad">{s.error}</p>
      ) : (
        KINDS.map(([label, key]) => <Snippet key={key} label={label} kind={key} text={s[key]} />)
      )}
    </section>
  );
}

function Snippet({ label, kind, text }: { label: string; kind: string; text: string }) {
  const [copied, setCopied] = useState<string | null>(null);
  return (
    <div class="snippet">
      <div class="snippet-head">
        <span>{label}</span>
        <button
          type="button"
          class="quiet"
          aria-label={`Copy as ${label}`}
          onClick={() =>
            navigator.clipboard.writeText(text).then(
              () => setCopied("Copied"),
              () => setCopied("Select and copy"),
            )
          }
        >
          {copied ?? "Copy"}
        </button>
      </div>
      <pre data-snippet={kind}>{text}</pre>
    </div>
  );
}
