import { useNow } from "../clock";
import { countdown } from "../model";

/** "in 4 min 20 s", live; nothing (and no tick) without an expiry. */
export function Countdown({ at }: { at: string | null | undefined }) {
  const now = useNow(Boolean(at));
  if (!at) return <span class="countdown" />;
  return (
    <time class="countdown" dateTime={at} data-expires-at={at}>
      {countdown(at, now)}
    </time>
  );
}
