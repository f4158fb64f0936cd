// Where local tools reach the helper, or why they can't (its port in use, say); a click
// opens the helper panel.
import type { HelperInfo } from "../bindings/HelperInfo";

export function HelperLine({ info, open, onOpen }: { info: HelperInfo | null; open: boolean; onOpen: () => void }) {
  if (!info) return <span id="helper" role="status" />;
  const parts: string[] = [];
  if (info.url) parts.push(`Helper: ${info.url}/PROFILE`);
  if (info.error) parts.push(`Helper: ${info.error}`);
  return (
    <button
      type="button"
      id="helper"
      data-action="helper"
      class={`link${info.error ? " bad" : ""}`}
      aria-pressed={open}
      title="The helper's keys and access log"
      onClick={onOpen}
    >
      {parts.join(" · ")}
    </button>
  );
}
