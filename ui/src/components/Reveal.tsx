// Reveal on demand: a secret or a token is fetched from the app only when the person
// clicks, shown for the few seconds the app allows, then masked again (and dropped from
// the page's state). Hide masks it at once.
import { useEffect, useState } from "preact/hooks";
import { message } from "../api";
import type { Revealed } from "../bindings/Revealed";

type Props = {
  /** What is revealed, for the button's label ("the password of imp"). */
  what: string;
  /** `data-reveal` of the control, for tests and styling. */
  id: string;
  fetch: () => Promise<Revealed>;
};

export function Reveal({ what, id, fetch }: Props) {
  const [shown, setShown] = useState<Revealed | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!shown) return;
    const t = setTimeout(() => setShown(null), shown.hide_after_secs * 1000);
    return () => clearTimeout(t);
  }, [shown]);

  const reveal = async () => {
    setBusy(true);
    setError(null);
    try {
      setShown(await fetch());
    } catch (e) {
      setError(message(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <span class="reveal" data-reveal={id}>
      {shown ? (
        <>
          <code class="revealed" data-field="revealed">
            {shown.value}
          </code>
          <button type="button" class="quiet small" onClick={() => setShown(null)} aria-label={`Hide ${what}`}>
            Hide
          </button>
          <small class="help">hidden again in {shown.hide_after_secs} s</small>
        </>
      ) : (
        <button type="button" class="quiet small" disabled={busy} onClick={reveal} aria-label={`Reveal ${what}`}>
          Reveal
        </button>
      )}
      {error && <small class="bad">{error}</small>}
    </span>
  );
}
