// The window: a header with the helper's status, the profiles grouped by service on the
// left, the selected profile on the right. The list follows the agent's events ("agent"):
// no polling. A secret or a token reaches this page only when the person clicks Reveal.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, message, onAgentError, onAgentEvent, onHelper, onSelectProfile } from "../api";
import type { HelperInfo } from "../bindings/HelperInfo";
import type { ProfileRow } from "../bindings/ProfileRow";
import type { Saved } from "../bindings/Saved";
import { apply, describeSaved, loginStep, ordered, type LoginView, type Outcome, type Rows } from "../model";
import { HelperLine } from "./HelperLine";
import { HelperPanel } from "./HelperPanel";
import { ProfileDetail } from "./ProfileDetail";
import { ProfileEditor } from "./ProfileEditor";
import { ProfileList } from "./ProfileList";
import { SettingsPanel } from "./SettingsPanel";

/** What the right-hand pane shows. */
type Mode = { kind: "view" } | { kind: "add" } | { kind: "edit"; row: ProfileRow } | { kind: "helper" } | { kind: "settings" };

export function App() {
  const [rows, setRows] = useState<Rows>(new Map());
  const rowsRef = useRef<Rows>(rows);
  const [selected, setSelected] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [helper, setHelper] = useState<HelperInfo | null>(null);
  const [loaded, setLoaded] = useState(false);
  // Bumped on each reload of the config's view, so the detail reads its settings again.
  const [configRev, setConfigRev] = useState(0);
  const [mode, setMode] = useState<Mode>({ kind: "view" });
  /** Each profile's latest login, from the agent's login steps. */
  const [logins, setLogins] = useState<ReadonlyMap<string, LoginView>>(new Map());
  /** A save's outcome, shown in the saved profile's detail. */
  const [notice, setNotice] = useState<{ name: string; outcome: Outcome } | null>(null);

  const show = useCallback((next: Rows) => {
    rowsRef.current = next;
    setRows(next);
  }, []);

  // One reload at a time; events arriving meanwhile fold into one more.
  const reloading = useRef<Promise<void> | null>(null);
  const again = useRef(false);
  const reload = useCallback(async (): Promise<void> => {
    if (reloading.current) {
      again.current = true;
      return reloading.current;
    }
    const run = async () => {
      do {
        again.current = false;
        try {
          const list = await api.listProfiles();
          show(new Map(list.map((r) => [r.name, r])));
          setConfigRev((n) => n + 1);
          setError(null);
        } catch (e) {
          setError(message(e));
        }
      } while (again.current);
    };
    reloading.current = run().finally(() => {
      reloading.current = null;
    });
    return reloading.current;
  }, [show]);

  useEffect(() => {
    const offs: (() => void)[] = [];
    let gone = false;
    (async () => {
      const subs = await Promise.all([
        onAgentEvent((ev) => {
          if (ev.event === "login") {
            const { name, step } = ev;
            setLogins((m) => new Map(m).set(name, loginStep(m.get(name), step, Date.now())));
          }
          const next = apply(rowsRef.current, ev);
          if (next === "reload") void reload();
          else if (next !== rowsRef.current) show(next);
        }),
        onAgentError((e) => setError(e.message)),
        onHelper(setHelper),
        onSelectProfile((name) => {
          setSelected(name);
          setMode({ kind: "view" });
        }),
      ]);
      if (gone) subs.forEach((f) => f());
      else offs.push(...subs);
      await reload();
      try {
        setHelper(await api.helperInfo());
      } catch {
        setHelper(null);
      }
      setLoaded(true);
    })();
    return () => {
      gone = true;
      offs.forEach((f) => f());
    };
  }, [reload, show]);

  // Keep a selection while there are profiles: the first one, or the next after a delete.
  const order = ordered(rows.values());
  const current = selected !== null && rows.has(selected) ? selected : (order[0] ?? null);
  useEffect(() => {
    if (current !== selected) setSelected(current);
  }, [current, selected]);
  useEffect(() => {
    if (!loaded) return;
    // Rendered (effects run after the DOM is updated): the app shows its window, created
    // hidden so it never flashes empty. (No requestAnimationFrame: a hidden page gets none.)
    void api
      .pageReady()
      .then((chosen) => {
        if (chosen) {
          setSelected(chosen);
          setMode({ kind: "view" });
        }
      })
      .catch(() => {})
      .finally(() => {
        document.body.dataset.loaded = "true";
      });
  }, [loaded]);

  const row = current !== null ? rows.get(current) : undefined;
  const onSaved = async (s: Saved) => {
    await reload();
    setSelected(s.name);
    setNotice({ name: s.name, outcome: describeSaved(s) });
    setMode({ kind: "view" });
  };
  const select = (name: string) => {
    setSelected(name);
    setMode({ kind: "view" });
  };
  return (
    <div class="shell">
      <header class="top">
        <h1>Keyport</h1>
        <span class="count" role="status">
          {rows.size === 1 ? "1 profile" : `${rows.size} profiles`}
        </span>
        <HelperLine info={helper} open={mode.kind === "helper"} onOpen={() => setMode({ kind: "helper" })} />
        <button
          type="button"
          data-action="settings"
          aria-pressed={mode.kind === "settings"}
          onClick={() => setMode({ kind: "settings" })}
        >
          Settings
        </button>
        <button
          type="button"
          class="primary"
          data-action="add"
          aria-pressed={mode.kind === "add"}
          onClick={() => setMode({ kind: "add" })}
        >
          Add profile
        </button>
      </header>
      {error && (
        <p id="error" class="banner bad" role="alert">
          {error}
        </p>
      )}
      <div class="panes">
        <ProfileList rows={rows} selected={mode.kind === "view" || mode.kind === "edit" ? current : null} onSelect={select} />
        <main class="detail-pane">
          {mode.kind === "settings" ? (
            <SettingsPanel onSaved={() => void api.helperInfo().then(setHelper, () => {})} />
          ) : mode.kind === "helper" ? (
            <HelperPanel info={helper} profiles={order} onInfo={setHelper} />
          ) : mode.kind === "add" || mode.kind === "edit" ? (
            <ProfileEditor
              key={mode.kind === "edit" ? `edit:${mode.row.name}` : "add"}
              editing={mode.kind === "edit" ? mode.row : null}
              profiles={[...rows.values()]}
              onSaved={(s) => void onSaved(s)}
              onCancel={() => setMode({ kind: "view" })}
            />
          ) : row ? (
            <ProfileDetail
              key={row.name}
              row={row}
              configRev={configRev}
              notice={notice?.name === row.name ? notice.outcome : null}
              login={logins.get(row.name)}
              onEdit={() => setMode({ kind: "edit", row })}
              onGone={() => void reload()}
            />
          ) : (
            loaded && (
              <div id="empty" class="empty">
                <h2>No profiles yet</h2>
                <p>A profile holds one service account: how it signs in, and where its secrets are kept.</p>
                <button type="button" class="primary" onClick={() => setMode({ kind: "add" })}>
                  Add a profile
                </button>
              </div>
            )
          )}
        </main>
      </div>
    </div>
  );
}
