// Delete asks once more in place (no modal): the first click arms it, the second deletes
// the profile and its keychain items; Escape or leaving the button disarms it.
import { useState } from "preact/hooks";

export function DeleteButton({ name, onDelete }: { name: string; onDelete: () => Promise<void> }) {
  const [armed, setArmed] = useState(false);
  const [busy, setBusy] = useState(false);
  return (
    <button
      type="button"
      data-action="delete"
      class={armed ? "danger" : "quiet"}
      aria-label={`Delete ${name}`}
      disabled={busy}
      onBlur={() => setArmed(false)}
      onKeyDown={(e) => e.key === "Escape" && setArmed(false)}
      onClick={async () => {
        if (!armed) return setArmed(true);
        setBusy(true);
        await onDelete();
        setBusy(false);
        setArmed(false);
      }}
    >
      {armed ? "Delete? Click again" : "Delete"}
    </button>
  );
}
