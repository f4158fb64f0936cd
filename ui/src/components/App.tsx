// The window: a header with the helper's status, the profiles grouped by service on the
// left, the selected profile on the right. The list follows the agent's events ("agent"):
// no polling. No secret and no token ever reaches this page.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { api, message, onAgentError, onAgentEvent } from "../api";
import type { HelperInfo } from "../bindings/HelperInfo";
import { apply, ordered, type Rows } from "../model";
import { HelperLine } from "./HelperLine";
import { ProfileDetail } from "./ProfileDetail";
import { ProfileList } from "./ProfileList";

export function App() {
  const [rows, setRows] = useState<Rows>(new Map());
  const rowsRef = useRef<Rows>(rows);
  const [selected, setSelected] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [helper, setHelper] = useState<HelperInfo | null>(null);
  const [loaded, setLoaded] = useState(false);
  // Bumped on each reload of the config's view, so the detail reads its settings again.
  const [configRev, setConfigRev] = useState(0);

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
          const next = apply(rowsRef.current, ev);
          if (next === "reload") void reload();
          else if (next !== rowsRef.current) show(next);
        }),
        onAgentError((e) => setError(e.message)),
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
    document.body.dataset.loaded = String(loaded);
  }, [loaded]);

  const row = current !== null ? rows.get(current) : undefined;
  return (
    <div class="shell">
      <header class="top">
        <h1>Keyport</h1>
        <span class="count" role="status">
          {rows.size === 1 ? "1 profile" : `${rows.size} profiles`}
        </span>
        <HelperLine info={helper} />
      </header>
      {error && (
        <p id="error" class="banner bad" role="alert">
          {error}
        </p>
      )}
      <div class="panes">
        <ProfileList rows={rows} selected={current} onSelect={setSelected} />
        <main class="detail-pane">
          {row ? (
            <ProfileDetail
              key={row.name}
              row={row}
              configRev={configRev}
              onGone={() => void reload()}
            />
          ) : (
            loaded && (
              <div id="empty" class="empty">
                <h2>No profiles yet</h2>
                <p>
                  Add one with <code>keyport profile add NAME --preset PRESET</code>.
                </p>
              </div>
            )
          )}
        </main>
      </div>
    </div>
  );
}
