// The loopback helper: where local tools reach it, its counters, its keys and its live
// access log. Key secrets never reach this page: Copy, Rotate and Create have the app put
// the key on the clipboard (and clear it again); the page only says what was copied.
// The log is watched only while this panel is shown and the window visible.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, message, onAccessLog } from "../api";
import type { AccessEntry } from "../bindings/AccessEntry";
import type { HelperInfo } from "../bindings/HelperInfo";
import type { KeyInfo } from "../bindings/KeyInfo";
import { useNow } from "../clock";
import { appendLog, describeCopied, keyScope, when, type Outcome } from "../model";
import { ConfirmButton } from "./ConfirmButton";

type Props = {
  info: HelperInfo | null;
  /** Every profile's name, for a new key's scope. */
  profiles: string[];
  onInfo: (info: HelperInfo) => void;
};

export function HelperPanel({ info, profiles, onInfo }: Props) {
  const [keys, setKeys] = useState<KeyInfo[] | { error: string } | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);

  // The keys again with each log batch too: their "last used" moves with the requests.
  const [keysRev, setKeysRev] = useState(0);
  useEffect(() => {
    let live = true;
    api.helperKeys().then(
      (k) => live && setKeys(k),
      (e) => live && setKeys({ error: message(e) }),
    );
    return () => {
      live = false;
    };
  }, [keysRev]);

  const run = async (fn: () => Promise<string>) => {
    try {
      setOutcome({ text: await fn(), bad: false });
    } catch (e) {
      setOutcome({ text: message(e), bad: true });
    }
  };
  const copy = () => run(async () => describeCopied(await api.copyHelperKey()));
  const rotate = () =>
    run(async () => {
      const c = await api.rotateHelperKey();
      setKeys(c.keys);
      return `${describeCopied(c.copied)} Tools using the old key now get 401.`;
    });
  const revoke = (name: string) =>
    run(async () => {
      setKeys(await api.revokeHelperKey(name));
      return `Revoked ${name}: requests with it are refused from now on.`;
    });

  const list = keys && !("error" in keys) ? keys : [];
  const def = list.find((k) => k.name === "default");
  const now = useNow(Boolean(def?.last_used_at));
  const scoped = list.filter((k) => k.name !== "default");
  return (
    <article id="helper-panel" aria-labelledby="helper-title">
      <header class="detail-head">
        <h2 id="helper-title">Loopback helper</h2>
      </header>
      {info?.error && <p class="banner bad" data-field="helper_error">{info.error}</p>}
      {info?.paused && (
        <p class="banner info" data-field="paused">
          Paused: every request from a tool is refused (503, <code>helper_paused</code>) until you resume.
        </p>
      )}
      <div class="actions">
        <button
          type="button"
          data-action="pause"
          aria-pressed={Boolean(info?.paused)}
          onClick={() => void run(async () => {
            const next = await api.pauseHelper(!info?.paused);
            onInfo(next);
            return next.paused ? "Paused: tools are refused until you resume." : "Resumed: tools are served again.";
          })}
        >
          {info?.paused ? "Resume helper" : "Pause helper"}
        </button>
      </div>
      <dl class="facts">
        <dt>URL</dt>
        <dd data-field="url" class="mono">
          {info?.url ? `${info.url}/PROFILE/PATH` : "not listening on TCP"}
        </dd>
        {info?.socket && (
          <>
            <dt>Unix socket</dt>
            <dd data-field="socket" class="mono">
              {info.socket}
            </dd>
          </>
        )}
        <dt>Requests</dt>
        <dd data-field="requests">{info?.requests ?? 0}</dd>
        <dt>Refused</dt>
        <dd data-field="refusals">{info?.refusals ?? 0}</dd>
        <dt>Keychain calls</dt>
        <dd data-field="keychain_calls" title="of the whole app so far; a proxied request makes none">
          {info?.keychain_calls ?? 0}
        </dd>
      </dl>

      <section aria-labelledby="default-key-title">
        <h3 id="default-key-title">Default key</h3>
        <p class="note">
          For every profile. Scripts read it with <code>keyport helper key</code>; a tool with a key field
          takes it as <code>X-Keyport-Key</code>, a bearer token or a Basic password.
        </p>
        <div class="actions">
          <button type="button" class="primary" data-action="copy-key" onClick={copy}>
            Copy key
          </button>
          <ConfirmButton
            action="rotate-key"
            label="Rotate"
            confirm="Replace the key? Click again"
            ariaLabel="Rotate the default helper key"
            onConfirm={rotate}
          />
          {def && (
            <span class="note" data-field="default_used">
              {def.last_used_at ? `last used ${when(def.last_used_at, now)}` : "not used yet"}
            </span>
          )}
        </div>
        <p class={`outcome${outcome?.bad ? " bad" : ""}`} role="status" data-field="key_outcome">
          {outcome?.text ?? ""}
        </p>
      </section>

      <section id="scoped-keys" aria-labelledby="keys-title">
        <h3 id="keys-title">Scoped keys</h3>
        {keys && "error" in keys && <p class="bad">{keys.error}</p>}
        {scoped.length === 0 ? (
          <p class="note">
            None yet. A scoped key reaches only the profiles you choose, and can be limited to reading.
          </p>
        ) : (
          <table id="keys" class="grid">
            <thead>
              <tr>
                <th>Name</th>
                <th>For</th>
                <th>Created</th>
                <th>Last used</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {scoped.map((k) => (
                <tr key={k.name} data-key={k.name}>
                  <td class="mono nowrap">{k.name}</td>
                  <td data-field="scope">{keyScope(k)}{k.ephemeral ? " · keyport exec" : ""}</td>
                  <td class="nowrap">{new Date(k.created_at).toLocaleDateString()}</td>
                  <td class="nowrap" data-field="last_used">{k.last_used_at ? new Date(k.last_used_at).toLocaleTimeString() : "never"}</td>
                  <td class="row-actions">
                    <ConfirmButton
                      action="revoke-key"
                      label="Revoke"
                      confirm="Revoke? Click again"
                      ariaLabel={`Revoke the helper key ${k.name}`}
                      onConfirm={() => revoke(k.name)}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <NewKey
          profiles={profiles}
          taken={list.map((k) => k.name)}
          onCreated={(keys, text) => {
            setKeys(keys);
            setOutcome({ text, bad: false });
          }}
        />
      </section>

      <AccessLog
        onBatch={() => {
          void api.helperInfo().then(onInfo, () => {});
          setKeysRev((n) => n + 1);
        }}
      />
    </article>
  );
}

function NewKey({
  profiles,
  taken,
  onCreated,
}: {
  profiles: string[];
  taken: string[];
  onCreated: (keys: KeyInfo[], text: string) => void;
}) {
  const [name, setName] = useState("");
  const [chosen, setChosen] = useState<ReadonlySet<string>>(new Set());
  const [readOnly, setReadOnly] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const clash = taken.includes(name.trim()) ? `A key named ${name.trim()} exists: choose another name.` : null;
  const ready = name.trim() !== "" && chosen.size > 0 && !clash && !busy;
  const toggle = (p: string) =>
    setChosen((s) => {
      const n = new Set(s);
      if (n.has(p)) n.delete(p);
      else n.add(p);
      return n;
    });
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!ready) return;
    setBusy(true);
    try {
      const c = await api.createHelperKey(name.trim(), [...chosen], readOnly);
      onCreated(c.keys, describeCopied(c.copied));
      setName("");
      setChosen(new Set());
      setReadOnly(false);
      setError(null);
    } catch (err) {
      setError(message(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form id="new-key" class="new-key" onSubmit={submit} aria-label="New scoped key">
      <label>
        <span>Name</span>
        <input
          id="new-key-name"
          value={name}
          placeholder="bi-dashboard"
          autocomplete="off"
          spellcheck={false}
          onInput={(e) => setName(e.currentTarget.value)}
        />
      </label>
      <fieldset>
        <legend>For the profiles</legend>
        {profiles.length === 0 && <span class="note">Add a profile first.</span>}
        {profiles.map((p) => (
          <label key={p} class="check">
            <input type="checkbox" name="key-profile" value={p} checked={chosen.has(p)} onChange={() => toggle(p)} />
            {p}
          </label>
        ))}
      </fieldset>
      <label class="check">
        <input id="new-key-read-only" type="checkbox" checked={readOnly} onChange={() => setReadOnly(!readOnly)} />
        Read-only (GET, HEAD and OPTIONS)
      </label>
      <div class="actions">
        <button type="submit" data-action="create-key" disabled={!ready}>
          Create and copy
        </button>
        {(error ?? clash) && (
          <span class="bad" role="alert">
            {error ?? clash}
          </span>
        )}
      </div>
    </form>
  );
}

/** The live access log, newest first; Keyport's refusals stand out. */
function AccessLog({ onBatch }: { onBatch: () => void }) {
  const [log, setLog] = useState<AccessEntry[]>([]);
  const [missed, setMissed] = useState(0);
  const [error, setError] = useState<string | null>(null);
  const batchRef = useRef(onBatch);
  batchRef.current = onBatch;

  useEffect(() => {
    let live = true;
    let off: (() => void) | null = null;
    // Batches that arrive while a watch is starting wait for its ring (they are newer).
    let early: AccessEntry[] | null = null;
    const start = async () => {
      early = [];
      try {
        const ring = await api.watchAccessLog();
        if (!live) return;
        const after = early ?? [];
        early = null;
        setLog(appendLog(appendLog([], ring), after));
        setError(null);
      } catch (e) {
        early = null;
        if (live) setError(message(e));
      }
    };
    const visibility = () => {
      if (document.visibilityState === "visible") void start();
      else void api.unwatchAccessLog().catch(() => {});
    };
    (async () => {
      const unlisten = await onAccessLog((b) => {
        if (early) early.push(...b.entries);
        else setLog((l) => appendLog(l, b.entries));
        if (b.missed > 0) setMissed((m) => m + b.missed);
        batchRef.current();
      });
      if (!live) return unlisten();
      off = unlisten;
      document.addEventListener("visibilitychange", visibility);
      await start();
    })();
    return () => {
      live = false;
      off?.();
      document.removeEventListener("visibilitychange", visibility);
      void api.unwatchAccessLog().catch(() => {});
    };
  }, []);

  return (
    <section aria-labelledby="log-title">
      <h3 id="log-title">Access log</h3>
      {error && <p class="bad">{error}</p>}
      {missed > 0 && (
        <p class="note" data-field="missed">
          {missed} requests came too fast to show here: <code>keyport helper log</code> has them.
        </p>
      )}
      {log.length === 0 ? (
        <p class="note">No request yet. Requests and refusals show here as they happen.</p>
      ) : (
        <table id="access-log" class="grid">
          <thead>
            <tr>
              <th>Time</th>
              <th>Key</th>
              <th>Request</th>
              <th>Status</th>
              <th>ms</th>
              <th>Why refused</th>
            </tr>
          </thead>
          <tbody>
            {log.map((e, i) => (
              <tr
                key={`${e.at}-${log.length - i}`}
                data-status={e.status}
                data-refusal={e.refusal ?? undefined}
                class={e.refusal ? "refused" : e.status >= 400 ? "failed" : undefined}
              >
                <td class="nowrap">{new Date(e.at).toLocaleTimeString()}</td>
                <td class="mono nowrap">{e.key ?? "socket"}</td>
                <td class="mono">
                  {e.method} {e.path}
                </td>
                <td>{e.status}</td>
                <td>{Math.round(e.ms)}</td>
                <td title={e.refusal ?? undefined}>{e.refusal ? (e.reason ?? e.refusal) : ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
