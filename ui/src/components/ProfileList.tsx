// The profiles, grouped by service, each with its state and a live countdown. Up and down
// arrows move the selection; Tab reaches each entry.
import { GENERIC, groups, ordered, type Rows } from "../model";
import { Badge } from "./Badge";
import { Countdown } from "./Countdown";

type Props = { rows: Rows; selected: string | null; onSelect: (name: string) => void };

export function ProfileList({ rows, selected, onSelect }: Props) {
  const onKey = (e: KeyboardEvent) => {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    const order = ordered(rows.values());
    const i = selected === null ? -1 : order.indexOf(selected);
    const next = order[Math.max(0, Math.min(order.length - 1, i + (e.key === "ArrowDown" ? 1 : -1)))];
    if (next === undefined) return;
    e.preventDefault();
    onSelect(next);
    const el = (e.currentTarget as HTMLElement).querySelector<HTMLButtonElement>(
      `li[data-profile="${CSS.escape(next)}"] button`,
    );
    el?.focus();
  };
  return (
    <nav id="profiles" class="list-pane" aria-label="Profiles" onKeyDown={onKey}>
      {groups(rows.values()).map(([service, list]) => (
        <section key={service} class="group" data-service={service} aria-label={service}>
          <h2 class="group-title">{service === GENERIC ? "Other" : service}</h2>
          <ul>
            {list.map((r) => (
              <li key={r.name} data-profile={r.name} data-state={r.status?.state ?? "unknown"}>
                <button
                  type="button"
                  class="entry"
                  aria-current={r.name === selected ? "true" : undefined}
                  onClick={() => onSelect(r.name)}
                >
                  <span class="entry-name">{r.name}</span>
                  <Badge state={r.status?.state ?? null} title={r.status?.last_error} />
                  <span class="entry-sub">
                    <span class="entry-preset">{r.preset}</span>
                    <Countdown at={r.status?.expires_at} />
                  </span>
                </button>
              </li>
            ))}
          </ul>
        </section>
      ))}
    </nav>
  );
}
