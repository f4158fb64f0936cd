import { describe, expect, it } from "vitest";
import type { ProfileRow } from "./bindings/ProfileRow";
import { entry, key, row, status } from "./test/fixtures";
import { appendLog, describeCopied, keyScope, apply, countdown, describeSaved, describeTest, isInteractive, loginRunning, loginStep, groups, ordered, worst, type Rows } from "./model";

const rows = (...r: ProfileRow[]): Rows => new Map(r.map((x) => [x.name, x]));

describe("countdown", () => {
  const now = Date.parse("2026-12-03T12:00:00Z");
  it.each([
    ["2026-12-03T12:00:42Z", "in 42 s"],
    ["2026-12-03T12:04:20Z", "in 4 min 20 s"],
    ["2026-12-03T14:05:59Z", "in 2 h 5 min"],
    ["2026-12-05T15:00:00Z", "in 2 d 3 h"],
    ["2026-12-03T11:57:00Z", "3 min 0 s ago"],
  ])("%s reads %s", (at, want) => {
    expect(countdown(at, now)).toBe(want);
  });
  it("is empty without an expiry or with a garbled one", () => {
    expect(countdown(null, now)).toBe("");
    expect(countdown("soon", now)).toBe("");
  });
});

describe("worst", () => {
  it("ranks error over login required over expired over expiring over valid", () => {
    expect(worst(["valid", "expiring", "expired"])).toBe("expired");
    expect(worst(["valid", "login_required", "expired"])).toBe("login_required");
    expect(worst(["refreshing", "valid"])).toBe("refreshing");
    expect(worst(["valid", "error", "login_required"])).toBe("error");
    expect(worst([])).toBeNull();
  });
});

describe("groups", () => {
  it("groups by service, both in alphabetical order", () => {
    const g = groups([row("zeta", "Patchworks"), row("beta", "Frappe"), row("alpha", "Patchworks")]);
    expect(g.map(([s, l]) => [s, l.map((r) => r.name)])).toEqual([
      ["Frappe", ["beta"]],
      ["Patchworks", ["alpha", "zeta"]],
    ]);
    expect(ordered(g.flatMap(([, l]) => l))).toEqual(["beta", "alpha", "zeta"]);
  });
  it("puts the generic presets last", () => {
    const g = groups([row("t", "generic"), row("z", "Patchworks"), row("a", "Airbyte Embedded")]);
    expect(g.map(([s]) => s)).toEqual(["Airbyte Embedded", "Patchworks", "generic"]);
  });
});

describe("apply", () => {
  const before = rows(row("a", "Frappe"), row("b", "Patchworks"));
  it("updates one profile's state in place and leaves the others alone", () => {
    const next = apply(before, { event: "state", profile: status("b", "expired"), from: "valid" });
    expect(next).not.toBe("reload");
    const m = next as Rows;
    expect(m.get("b")?.status?.state).toBe("expired");
    expect(m.get("a")).toBe(before.get("a"));
    expect(before.get("b")?.status?.state).toBe("valid");
  });
  it("keeps a failed renewal's error", () => {
    const next = apply(before, {
      event: "renewal_failed",
      profile: status("a", "error", { last_error: "the token endpoint answered 500", failures: 3 }),
      error: { kind: "unavailable", message: "the token endpoint answered 500" },
    }) as Rows;
    expect(next.get("a")?.status?.last_error).toBe("the token endpoint answered 500");
  });
  it("drops a removed profile", () => {
    const next = apply(before, { event: "removed", name: "a" }) as Rows;
    expect([...next.keys()]).toEqual(["b"]);
    expect(apply(before, { event: "removed", name: "nobody" })).toBe(before);
  });
  it("reloads for what only the config knows", () => {
    expect(apply(before, { event: "added", profile: status("c", "valid") })).toBe("reload");
    expect(apply(before, { event: "changed", profile: status("a", "valid") })).toBe("reload");
    expect(apply(before, { event: "snapshot", profiles: [] })).toBe("reload");
    expect(apply(before, { event: "state", profile: status("new", "valid"), from: "expired" })).toBe("reload");
  });
  it("ignores a renewal starting (its state event follows)", () => {
    expect(apply(before, { event: "renewal_started", name: "a" })).toBe(before);
  });
});

describe("describeTest", () => {
  it("says the status, Keyport's refusal and the latency", () => {
    expect(describeTest({ url: "u", status: 200, ms: 12.4, keyport_error: null })).toEqual({ text: "200 · 12 ms", bad: false });
    expect(describeTest({ url: "u", status: 503, ms: 3, keyport_error: "login_required" })).toEqual({
      text: "503 (login_required) · 3 ms",
      bad: true,
    });
  });
});

describe("describeSaved", () => {
  it("says the first token call's failure, a login to do, or the state", () => {
    expect(describeSaved({ name: "p", status: null, needs_login: false, fetch_error: { kind: "rejected", message: "wrong password" } })).toEqual({
      text: "Saved, but the first token call failed: wrong password",
      bad: true,
    });
    expect(describeSaved({ name: "p", status: status("p", "login_required"), needs_login: true, fetch_error: null }).text).toBe(
      "Saved. Log in to get its first token.",
    );
    expect(describeSaved({ name: "p", status: status("p", "valid"), needs_login: false, fetch_error: null })).toEqual({ text: "Saved: valid", bad: false });
  });
});

describe("loginStep", () => {
  const now = 1_000_000;
  it("keeps the device code while waiting, then says the outcome", () => {
    let v = loginStep(undefined, {
      step: "device_code",
      verification_uri: "http://idp/device",
      user_code: "WDJB-MJHT",
      verification_uri_complete: "http://idp/device?user_code=WDJB-MJHT",
      open: "http://127.0.0.1:5/o/x",
    }, now);
    v = loginStep(v, { step: "waiting", timeout_secs: 300 }, now);
    expect(v.phase).toBe("device");
    expect(v.device?.code).toBe("WDJB-MJHT");
    expect(v.until).toBe(now + 300_000);
    expect(loginRunning(v)).toBe(true);
    v = loginStep(v, { step: "exchanging" }, now);
    expect(v.phase).toBe("exchanging");
    v = loginStep(v, { step: "succeeded", expires_at: "2026-12-03T13:00:00Z" }, now);
    expect(v).toEqual({ phase: "succeeded", expiresAt: "2026-12-03T13:00:00Z" });
    expect(loginRunning(v)).toBe(false);
  });
  it("keeps the browser's address while waiting, and a new login starts afresh", () => {
    let v = loginStep(undefined, { step: "open_url", url: "http://idp/auth?x", open: "http://127.0.0.1:5/o/y" }, now);
    v = loginStep(v, { step: "waiting", timeout_secs: 60 }, now);
    expect([v.phase, v.url]).toEqual(["browser", "http://idp/auth?x"]);
    v = loginStep(v, { step: "failed", error: { kind: "cancelled", message: "cancelled" } }, now);
    expect(v.phase).toBe("failed");
    v = loginStep(v, { step: "waiting", timeout_secs: 60 }, now);
    expect([v.phase, v.url]).toEqual(["waiting", undefined]);
  });
});

describe("isInteractive", () => {
  it("is the browser and device logins only", () => {
    expect(["oauth2-auth-code", "oauth2-device", "oauth2-client-credentials", "login-endpoint"].map(isInteractive)).toEqual([
      true,
      true,
      false,
      false,
    ]);
  });
});

describe("appendLog", () => {
  it("puts a batch newest first in front and keeps at most the limit", () => {
    let shown = appendLog([], [entry("/a/1"), entry("/a/2")], 3);
    expect(shown.map((e) => e.path)).toEqual(["/a/2", "/a/1"]);
    shown = appendLog(shown, [entry("/a/3"), entry("/a/4")], 3);
    expect(shown.map((e) => e.path)).toEqual(["/a/4", "/a/3", "/a/2"]);
  });
});

describe("keys", () => {
  it("says which profiles a key is for and whether it only reads", () => {
    expect(keyScope(key("default"))).toBe("every profile");
    expect(keyScope(key("bi", { profiles: ["imp", "pw"], read_only: true }))).toBe("imp, pw · read-only");
  });
  it("says what was copied and when it is cleared", () => {
    expect(describeCopied({ what: "the default helper key", clears_in_secs: 45 })).toBe(
      "Copied the default helper key: paste it into the tool now; the clipboard is cleared in 45 s.",
    );
  });
});
