// Where local tools reach the helper, or why they can't (its port in use, say).
import type { HelperInfo } from "../bindings/HelperInfo";

export function HelperLine({ info }: { info: HelperInfo | null }) {
  if (!info) return <span id="helper" role="status" />;
  const parts: string[] = [];
  if (info.url) parts.push(`Helper: ${info.url}/PROFILE`);
  if (info.error) parts.push(`Helper: ${info.error}`);
  return (
    <span id="helper" role="status" class={info.error ? "bad" : undefined}>
      {parts.join(" · ")}
    </span>
  );
}
