import type { State } from "../bindings/State";
import { STATE_LABELS } from "../model";

export function Badge({ state, title }: { state: State | null; title?: string | null }) {
  const s = state ?? "unknown";
  return (
    <span class={`badge ${s}`} data-state={s} title={title ?? undefined}>
      {state ? STATE_LABELS[state] : "unknown"}
    </span>
  );
}
