// The token inspector: what the token says about itself, decoded by the core and labelled
// as unverified. The token itself reaches the page only on Reveal, for a few seconds.
import { Fragment } from "preact";
import { useEffect, useRef } from "preact/hooks";
import type { TokenDetails } from "../bindings/TokenDetails";
import { useNow } from "../clock";
import { api } from "../api";
import { when } from "../model";
import { Reveal } from "./Reveal";

type Props = { name: string; details: TokenDetails | { error: string } };

export function Inspector({ name, details }: Props) {
  const now = useNow();
  const box = useRef<HTMLElement>(null);
  useEffect(() => box.current?.scrollIntoView?.({ block: "nearest" }), [details]);
  let kind = "error";
  let note: string;
  let items: [string, string, string | null | undefined][] = [];
  let raw: string | null = null;
  if ("error" in details) {
    note = details.error;
  } else {
    const i = details.inspection;
    kind = i?.kind ?? "none";
    if (!i) note = "No valid credential right now: its state says why.";
    else if (i.kind === "opaque") note = `An opaque token (${i.length} characters): nothing can be read from it.`;
    else {
      note = "A JWT, decoded here and not verified: Keyport holds no key to check its signature.";
      raw = JSON.stringify({ header: i.header, claims: i.claims }, null, 2);
    }
    const sent = details.header && (details.scheme_word ? `${details.header}: ${details.scheme_word} …` : `${details.header}: …`);
    const jwt = i?.kind === "jwt" ? i : null;
    items = [
      ["Sent in", "sent_in", sent],
      ["Expires", "expires", when(jwt?.expires_at, now)],
      ["Issued", "issued", when(jwt?.issued_at, now)],
      ["Not before", "not_before", when(jwt?.not_before, now)],
      ["Issuer", "issuer", jwt?.issuer],
      ["Subject", "subject", jwt?.subject],
      ["Audience", "audience", jwt?.audience.join(", ")],
      ["Scopes", "scopes", jwt?.scopes.join(" ")],
    ];
  }
  return (
    <section id="inspector" ref={box} data-kind={kind} aria-labelledby="inspector-title">
      <h3 id="inspector-title">Token of {name}</h3>
      <p class="note">{note}</p>
      <dl class="facts">
        {items
          .filter(([, , v]) => v)
          .map(([k, f, v]) => (
            <Fragment key={f}>
              <dt>{k}</dt>
              <dd data-field={f}>{v}</dd>
            </Fragment>
          ))}
      </dl>
      {!("error" in details) && details.inspection && details.scheme_word?.toLowerCase() !== "basic" && (
        <p class="reveal-row">
          <span class="note">The token itself: </span>
          <Reveal id="token" what={`the token of ${name}`} fetch={() => api.revealToken(name)} />
        </p>
      )}
      {raw && (
        <details>
          <summary>Header and claims</summary>
          <pre id="claims">{raw}</pre>
        </details>
      )}
    </section>
  );
}
