// One profile: its state and token times, settings and secrets (set or not; a value only
// on Reveal, masked again after a few seconds), actions, the commands that use it through
// the helper, and the token inspector.
import { Fragment } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, message } from "../api";
import type { ProfileRow } from "../bindings/ProfileRow";
import type { ProfileView } from "../bindings/ProfileView";
import type { TokenDetails } from "../bindings/TokenDetails";
import { useNow } from "../clock";
import { describeCopied, describeTest, isInteractive, loginRunning, STATE_LABELS, when, type LoginView, type Outcome } from "../model";
import { LoginPanel } from "./LoginPanel";
import { Badge } from "./Badge";
import { Countdown } from "./Countdown";
import { DeleteButton } from "./DeleteButton";
import { Inspector } from "./Inspector";
import { Reveal } from "./Reveal";
import { UseSnippets } from "./UseSnippets";

type Props = {
  row: ProfileRow;
  configRev: number;
  /** What just happened to it (a save), shown as the first outcome. */
  notice?: Outcome | null;
  /** Its latest login, if one ran since the window opened. */
  login?: LoginView;
  onEdit: () => void;
  onGone: () => void;
};

export function ProfileDetail({ row, configRev, notice, login, onEdit, onGone }: Props) {
  const name = row.name;
  const st = row.status;
  const [view, setView] = useState<ProfileView | null>(null);
  const [viewError, setViewError] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(notice ?? null);
  const [busy, setBusy] = useState<string | null>(null);
  const [token, setToken] = useState<TokenDetails | { error: string } | null>(null);
  const now = useNow(Boolean(st?.next_refresh_at || st?.last_refresh_at));

  useEffect(() => {
    let live = true;
    api.showProfile(name).then(
      (v) => live && (setView(v), setViewError(null)),
      (e) => live && setViewError(message(e)),
    );
    return () => {
      live = false;
    };
  }, [name, configRev]);

  const act = (what: string, fn: () => Promise<Outcome>) => async () => {
    setBusy(what);
    setOutcome(await fn().catch((e) => ({ text: message(e), bad: true })));
    setBusy(null);
  };
  const renew = act("renew", async () => {
    const s = await api.renew(name);
    return { text: `renewed: ${STATE_LABELS[s.state]}`, bad: s.state !== "valid" };
  });
  const test = act("test", async () => describeTest(await api.testProfile(name, row.test_path)));
  const copyHeader = act("copy", async () => ({ text: describeCopied(await api.copyHeader(name)), bad: false }));
  const interactive = isInteractive(row.scheme);
  const loggingIn = busy === "login" || loginRunning(login) || Boolean(st?.login_in_progress);
  const logIn = async () => {
    setBusy("login");
    setOutcome(null);
    try {
      const s = await api.login(name, st?.state === "valid");
      setOutcome({ text: `logged in: ${STATE_LABELS[s.state]}`, bad: s.state !== "valid" });
    } catch (e) {
      // (a cancelled or failed login is said in the login panel; anything else here)
      const kind = (e as { kind?: string } | null)?.kind;
      if (kind !== "cancelled" && kind !== "login_failed") setOutcome({ text: message(e), bad: true });
    } finally {
      setBusy(null);
    }
  };
  const inspect = async () => {
    setBusy("inspect");
    setToken(await api.inspectToken(name).catch((e) => ({ error: message(e) })));
    setBusy(null);
  };
  const remove = async () => {
    try {
      await api.deleteProfile(name);
      onGone();
    } catch (e) {
      setOutcome({ text: message(e), bad: true });
    }
  };

  const settings = Object.entries(view?.settings ?? {}).filter(([k]) => k !== "base_url");
  const secrets = Object.entries(view?.secrets ?? {});
  return (
    <article id="detail" data-profile={name} aria-labelledby="detail-title">
      <header class="detail-head">
        <h2 id="detail-title">{name}</h2>
        <Badge state={st?.state ?? null} />
        <Countdown at={st?.expires_at} />
      </header>
      {st?.state === "login_required" && interactive ? (
        // (the agent's own line names the CLI command; here the button is right below)
        <p class="banner info" data-field="last_error">
          Log in to get a token: there is no session yet, or it ended.
        </p>
      ) : (
        st?.last_error && (
          <p class="banner bad" data-field="last_error">
            {st.last_error}
          </p>
        )
      )}
      <div class="actions" role="group" aria-label={`Actions for ${name}`}>
        {interactive && (
          <button
            type="button"
            data-action="login"
            class={st?.state === "valid" ? undefined : "primary"}
            disabled={loggingIn}
            onClick={logIn}
            aria-label={`Log in to ${name}`}
          >
            {st?.state === "valid" ? "Log in again" : "Log in"}
          </button>
        )}
        <button type="button" data-action="renew" class={interactive ? undefined : "primary"} disabled={busy !== null} onClick={renew} aria-label={`Renew ${name} now`}>
          Renew now
        </button>
        <button type="button" data-action="test" disabled={busy !== null} onClick={test} aria-label={`Test ${name} through the helper`}>
          Test
        </button>
        <button type="button" data-action="inspect" disabled={busy !== null} onClick={inspect} aria-label={`Inspect the token of ${name}`}>
          Inspect token
        </button>
        <button
          type="button"
          data-action="copy-header"
          disabled={busy !== null}
          onClick={copyHeader}
          aria-label={`Copy the auth header of ${name}`}
          title="For a tool the helper cannot sit in front of: the header goes to the clipboard, and is cleared from it again"
        >
          Copy header
        </button>
        <button type="button" data-action="edit" disabled={busy !== null} onClick={onEdit} aria-label={`Edit ${name}`}>
          Edit
        </button>
        <DeleteButton name={name} onDelete={remove} />
        <span class={`outcome${outcome?.bad ? " bad" : ""}`} role="status">
          {busy && busy !== "login" ? "…" : (outcome?.text ?? "")}
        </span>
      </div>

      {login && <LoginPanel name={name} view={login} />}
      {token && <Inspector name={name} details={token} />}

      <section aria-labelledby="facts-title">
        <h3 id="facts-title">Profile</h3>
        <dl class="facts">
          <Fact k="Service" field="service" v={row.service} />
          <Fact k="Preset" field="preset" v={row.preset} />
          <Fact k="Sent as" field="scheme" v={row.scheme} />
          <Fact k="API base URL" field="base_url" v={row.base_url} />
          <Fact k="Expires" field="expires" v={when(st?.expires_at, now)} />
          <Fact k="Last renewal" field="last_refresh" v={when(st?.last_refresh_at, now)} />
          <Fact k="Next renewal" field="next_refresh" v={when(st?.next_refresh_at, now)} />
          {st && st.failures > 0 && <Fact k="Failures in a row" field="failures" v={String(st.failures)} />}
          {settings.map(([k, v]) => (
            <Fact key={k} k={k} field={`setting:${k}`} v={v} mono />
          ))}
        </dl>
      </section>

      <section aria-labelledby="secrets-title">
        <h3 id="secrets-title">Secrets</h3>
        {viewError ? (
          <p class="bad">{viewError}</p>
        ) : secrets.length === 0 ? (
          <p class="note">{view ? "This preset keeps no secret." : "…"}</p>
        ) : (
          <dl class="facts">
            {secrets.map(([k, set]) => (
              <Fragment key={k}>
                <dt>{k}</dt>
                <dd data-secret={k} class="secret">
                  <span data-field={`secret:${k}`}>{set ? "set" : "not set"}</span>
                  {set && <Reveal id={k} what={`the ${k} of ${name}`} fetch={() => api.revealSecret(name, k)} />}
                </dd>
              </Fragment>
            ))}
            <Fact k="Keychain item" field="keychain_item" v={view?.keychain_item} mono />
          </dl>
        )}
      </section>

      <UseSnippets name={name} />
    </article>
  );
}

function Fact({ k, v, field, mono }: { k: string; v: string | null | undefined; field: string; mono?: boolean }) {
  if (!v) return null;
  return (
    <>
      <dt>{k}</dt>
      <dd data-field={field} class={mono ? "mono" : undefined}>
        {v}
      </dd>
    </>
  );
}
