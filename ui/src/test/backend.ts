// A stand-in for the app's commands under @tauri-apps/api's IPC mock, so components run
// against the real `invoke` and `listen`: it answers from plain data and records calls.
import { emit } from "@tauri-apps/api/event";
import { clearMocks, mockIPC } from "@tauri-apps/api/mocks";
import type { AgentEvent } from "../bindings/AgentEvent";
import type { ProfileRow } from "../bindings/ProfileRow";

export type Handler = (args: Record<string, unknown>) => unknown;

export class Backend {
  calls: [string, Record<string, unknown>][] = [];
  handlers: Record<string, Handler> = {};

  constructor(public rows: ProfileRow[]) {
    this.handlers = {
      list_profiles: () => this.rows,
      helper_info: () => ({ port: 7313, url: "http://127.0.0.1:7313", socket: null, error: null, paused: false, requests: 0, refusals: 0, keychain_calls: 0 }),
      page_ready: () => null,
      show_profile: ({ name }) => ({
        name,
        preset: "patchworks-api-key",
        scheme: "api-key",
        settings: { base_url: "https://app.wearepatchworks.com", region: "eu" },
        extra_headers: {},
        allow_insecure_http: false,
        secrets: { api_key: true, other: false },
        keychain_item: `keyport/${name}`,
      }),
      snippets: ({ name }) => ({
        url: `http://127.0.0.1:7313/${name}/`,
        curl: `curl "http://127.0.0.1:7313/${name}/"`,
        httpie: "http",
        python: "import requests",
      }),
    };
    mockIPC(
      (cmd, payload) => {
        const args = (payload ?? {}) as Record<string, unknown>;
        this.calls.push([cmd, args]);
        const h = this.handlers[cmd];
        if (!h) throw { kind: "internal", message: `no command ${cmd}` };
        return h(args);
      },
      { shouldMockEvents: true },
    );
  }

  count(cmd: string): number {
    return this.calls.filter(([c]) => c === cmd).length;
  }

  /** What the app's `follow` task does with each of the agent's events. */
  agent(ev: AgentEvent): Promise<void> {
    return emit("agent", ev);
  }

  /** The agent could not start (the app's `agent-error` event). */
  emitError(): Promise<void> {
    return emit("agent-error", { kind: "keychain", message: "the keychain is locked: unlock it and start Keyport again" });
  }

  close() {
    clearMocks();
  }
}
