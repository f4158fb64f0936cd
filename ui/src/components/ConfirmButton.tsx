// An action that asks once more in place (no modal): the first click arms it, the second
// runs it; Escape or leaving the button disarms it. Delete, Rotate and Revoke use it.
import { useState } from "preact/hooks";

type Props = {
  action: string;
  label: string;
  /** What the armed button says ("Delete? Click again"). */
  confirm: string;
  ariaLabel: string;
  onConfirm: () => Promise<void>;
};

export function ConfirmButton({ action, label, confirm, ariaLabel, onConfirm }: Props) {
  const [armed, setArmed] = useState(false);
  const [busy, setBusy] = useState(false);
  return (
    <button
      type="button"
      data-action={action}
      data-armed={String(armed)}
      class={armed ? "danger" : "quiet"}
      aria-label={ariaLabel}
      disabled={busy}
      onBlur={() => setArmed(false)}
      onKeyDown={(e) => e.key === "Escape" && setArmed(false)}
      onClick={async () => {
        if (!armed) return setArmed(true);
        setBusy(true);
        try {
          await onConfirm();
        } finally {
          setBusy(false);
          setArmed(false);
        }
      }}
    >
      {armed ? confirm : label}
    </button>
  );
}
