// Test data in the shapes the Rust types give (bindings/).
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

