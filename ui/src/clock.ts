// One shared one-second tick for every countdown on the page. It runs only while a
// countdown is mounted and the window is visible, so a hidden window wakes nobody.
import { useEffect, useState } from "preact/hooks";

type Listener = (now: number) => void;
const listeners = new Set<Listener>();
let timer: ReturnType<typeof setInterval> | null = null;

function sync() {
  const want = listeners.size > 0 && document.visibilityState === "visible";
  if (want && timer === null) {
    timer = setInterval(() => {
      const now = Date.now();
      for (const l of listeners) l(now);
    }, 1000);
  } else if (!want && timer !== null) {
    clearInterval(timer);
    timer = null;
  }
}

document.addEventListener("visibilitychange", () => {
  sync();
  // Back from hidden: show the right time at once, not a second later.
  if (document.visibilityState === "visible") for (const l of listeners) l(Date.now());
});

/** Whether the shared tick is running (for tests). */
export function ticking(): boolean {
  return timer !== null;
}

/** The current time, updated each second while `active`. */
export function useNow(active = true): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!active) return;
    setNow(Date.now());
    listeners.add(setNow);
    sync();
    return () => {
      listeners.delete(setNow);
      sync();
    };
  }, [active]);
  return now;
}
