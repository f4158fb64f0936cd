// Test data in the shapes the Rust types give (bindings/).
import type { AccessEntry } from "../bindings/AccessEntry";
import type { KeyInfo } from "../bindings/KeyInfo";
import type { ProfileRow } from "../bindings/ProfileRow";
import type { ProfileStatus } from "../bindings/ProfileStatus";

export function status(name: string, state: ProfileStatus["state"], extra: Partial<ProfileStatus> = {}): ProfileStatus {
  return {
    name,
    preset: "patchworks-api-key",
    scheme: "api-key",
    state,
    expires_at: null,
    next_refresh_at: null,
    last_refresh_at: null,
    failures: 0,
    last_error: null,
    last_error_kind: null,
    login_in_progress: false,
    ...extra,
  };
}

export function row(name: string, service: string, st: ProfileStatus | null = status(name, "valid")): ProfileRow {
  return {
    name,
    preset: "patchworks-api-key",
    service,
    scheme: "api-key",
    base_url: "https://app.wearepatchworks.com",
    test_path: null,
    status: st,
  };
}


export function entry(path: string, extra: Partial<AccessEntry> = {}): AccessEntry {
  return {
    at: "2026-12-04T10:00:00Z",
    key: "default",
    profile: path.split("/")[1] ?? null,
    method: "GET",
    path,
    status: 200,
    ms: 12.4,
    bytes: 10,
    refusal: null,
    reason: null,
    ...extra,
  };
}

export function key(name: string, extra: Partial<KeyInfo> = {}): KeyInfo {
  return {
    name,
    profiles: name === "default" ? null : ["pw"],
    read_only: false,
    created_at: "2026-12-01T09:00:00Z",
    last_used_at: null,
    ephemeral: false,
    ...extra,
  };
}
