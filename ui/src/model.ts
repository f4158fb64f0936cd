// What the page computes from the agent's data, free of the DOM: labels, countdowns,
// grouping, the worst state, and how each agent event changes the list. Unit-tested.
import type { AccessEntry } from "./bindings/AccessEntry";
import type { AgentEvent } from "./bindings/AgentEvent";
import type { Copied } from "./bindings/Copied";
import type { KeyInfo } from "./bindings/KeyInfo";
import type { ProfileRow } from "./bindings/ProfileRow";
import type { State } from "./bindings/State";
import type { ErrorInfo } from "./bindings/ErrorInfo";
import type { LoginStep } from "./bindings/LoginStep";
import type { Saved } from "./bindings/Saved";
import type { TestResult } from "./bindings/TestResult";

export const STATE_LABELS: Record<State, string> = {
  valid: "valid",
  refreshing: "refreshing",
  expiring: "expiring",
  expired: "expired",
  login_required: "login required",
  error: "error",
};

/** Worst first: what the tray and a group's heading show. */
const SEVERITY: State[] = ["error", "login_required", "expired", "expiring", "refreshing", "valid"];

export function worst(states: Iterable<State>): State | null {
  let best: number | null = null;
  for (const s of states) {
    const i = SEVERITY.indexOf(s);
    if (best === null || i < best) best = i;
  }
  return best === null ? null : SEVERITY[best];
}

/** "in 4 min 20 s", "in 2 h 5 min", "3 min 0 s ago"; "" without an expiry. */
export function countdown(expiresAt: string | null | undefined, now: number): string {
  if (!expiresAt) return "";
  const t = Date.parse(expiresAt);
  if (Number.isNaN(t)) return "";
  let s = Math.round((t - now) / 1000);
  const past = s < 0;
  s = Math.abs(s);
  let text: string;
  if (s < 60) text = `${s} s`;
  else if (s < 3600) text = `${Math.floor(s / 60)} min ${s % 60} s`;
  else if (s < 86400) text = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  else text = `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  return past ? `${text} ago` : `in ${text}`;
}

/** A time as the person reads it, with how far it is: "3 Dec 2026, 14:05 (in 5 min 0 s)". */
export function when(t: string | null | undefined, now: number): string | null {
  if (!t) return null;
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return null;
  return `${d.toLocaleString()} (${countdown(t, now)})`;
}

/** The group of profiles whose preset is for no particular service (bearer, basic, ...). */
export const GENERIC = "generic";

/**
 * The profiles grouped by service, services and names in alphabetical order, the generic
 * presets' group last.
 */
export function groups(rows: Iterable<ProfileRow>): [string, ProfileRow[]][] {
  const by = new Map<string, ProfileRow[]>();
  for (const r of rows) {
    const g = by.get(r.service);
    if (g) g.push(r);
    else by.set(r.service, [r]);
  }
  for (const g of by.values()) g.sort((a, b) => a.name.localeCompare(b.name));
  return [...by.entries()].sort(([a], [b]) => Number(a === GENERIC) - Number(b === GENERIC) || a.localeCompare(b));
}

/** The list in display order (for moving the selection with the arrow keys). */
export function ordered(rows: Iterable<ProfileRow>): string[] {
  return groups(rows).flatMap(([, g]) => g.map((r) => r.name));
}

export type Rows = ReadonlyMap<string, ProfileRow>;

/**
 * The list after `ev`, or "reload" when the event changes what only the config knows (a
 * profile's service and base URL): a new profile, changed settings, or one not listed yet.
 */
export function apply(rows: Rows, ev: AgentEvent): Rows | "reload" {
  switch (ev.event) {
    case "snapshot":
    case "added":
    case "changed":
      return "reload";
    case "removed": {
      if (!rows.has(ev.name)) return rows;
      const next = new Map(rows);
      next.delete(ev.name);
      return next;
    }
    case "state":
    case "renewal_succeeded":
    case "renewal_failed": {
      const r = rows.get(ev.profile.name);
      if (!r) return "reload";
      return new Map(rows).set(r.name, { ...r, status: ev.profile });
    }
    case "renewal_started":
    case "login":
      return rows;
  }
}

export type Outcome = { text: string; bad: boolean };

/** The schemes whose token needs a person to log in (browser or device). */
export function isInteractive(scheme: string): boolean {
  return scheme === "oauth2-auth-code" || scheme === "oauth2-device";
}

/** A login as the window shows it, built from the agent's login steps. */
export type LoginView = {
  phase: "browser" | "device" | "waiting" | "exchanging" | "succeeded" | "failed" | "kept";
  /** The browser flow's login page (to copy when no browser opened). */
  url?: string;
  device?: { uri: string; code: string; complete: string | null };
  /** Until when the login waits for the person (ms since the epoch). */
  until?: number;
  expiresAt?: string | null;
  error?: ErrorInfo;
};

/** Whether a login is still running (not succeeded, failed or kept). */
export function loginRunning(v: LoginView | undefined): boolean {
  return v !== undefined && !["succeeded", "failed", "kept"].includes(v.phase);
}

/** The login after `step`: what a step does not say is kept from before (the code stays
 * shown while waiting). A new login starts afresh. */
export function loginStep(prev: LoginView | undefined, step: LoginStep, now: number): LoginView {
  const base: Partial<LoginView> = prev && loginRunning(prev) ? prev : {};
  switch (step.step) {
    case "open_url":
      return { phase: "browser", url: step.url };
    case "device_code":
      return {
        phase: "device",
        device: { uri: step.verification_uri, code: step.user_code, complete: step.verification_uri_complete },
      };
    case "waiting":
      // (the browser's address and the device code stay shown while waiting)
      return {
        ...base,
        phase: base.phase === "device" || base.phase === "browser" ? base.phase : "waiting",
        until: now + step.timeout_secs * 1000,
      };
    case "exchanging":
      return { ...base, phase: "exchanging" };
    case "already_logged_in":
      return { phase: "kept" };
    case "succeeded":
      return { phase: "succeeded", expiresAt: step.expires_at };
    case "failed":
      return { phase: "failed", error: step.error };
  }
}

/** What saving a profile did, in a line for its detail. */
export function describeSaved(s: Saved): Outcome {
  if (s.fetch_error) return { text: `Saved, but the first token call failed: ${s.fetch_error.message}`, bad: true };
  if (s.needs_login) return { text: "Saved. Log in to get its first token.", bad: false };
  const state = s.status?.state;
  return { text: state ? `Saved: ${STATE_LABELS[state]}` : "Saved", bad: state === "error" || state === "expired" };
}

export function describeTest(t: TestResult): Outcome {
  const why = t.keyport_error ? ` (${t.keyport_error})` : "";
  return { text: `${t.status}${why} · ${Math.round(t.ms)} ms`, bad: t.status >= 400 };
}

/** Access-log entries the helper panel keeps (the app's ring keeps 1000). */
export const LOG_KEEP = 300;

/** `shown` (newest first) with `batch` (oldest first) in front, at most `keep` long. */
export function appendLog(shown: AccessEntry[], batch: AccessEntry[], keep = LOG_KEEP): AccessEntry[] {
  const next = [...batch].reverse().concat(shown);
  return next.length > keep ? next.slice(0, keep) : next;
}

/** Which profiles a key is for, and whether it may only read. */
export function keyScope(k: KeyInfo): string {
  const scope = k.profiles === null ? "every profile" : k.profiles.join(", ");
  return k.read_only ? `${scope} · read-only` : scope;
}

/** What a copy did, in one line. */
export function describeCopied(c: Copied): string {
  return `Copied ${c.what}: paste it into the tool now; the clipboard is cleared in ${c.clears_in_secs} s.`;
}
