#!/usr/bin/env bash
# Vendored from the team's shared tools (shared/tools/headless-session.sh) so a fresh clone is
# self-contained; keep it in sync by copying, not editing. One change: Xvfb runs with
# -noreset (see there).
# headless-session.sh -- run a command inside a private, throw-away "desktop" session:
#
#   * a private D-Bus session bus (dbus-run-session) WITHOUT service activation, so nothing
#     (gnome-keyring auto-start, gcr-prompter unlock dialogs, dunst, ...) can be started
#     implicitly -- a prompt therefore fails fast instead of hanging a headless test run;
#   * gnome-keyring-daemon (secrets component only) with a fresh "login" keyring, unlocked
#     with a known password and set as the "default" collection (org.freedesktop.secrets);
#   * a notification sink: a fake org.freedesktop.Notifications server that appends every
#     call as one JSON object per line to $NOTIFY_SINK_LOG (or a real dunst, see below);
#     the same process also plays org.kde.StatusNotifierWatcher and logs tray-icon
#     registrations (RegisterStatusNotifierItem + a snapshot of the item's properties);
#   * optionally Xvfb (for GTK / tray / webview code), with DISPLAY exported.
#
# Usage:   headless-session.sh COMMAND [ARGS...]        e.g.  headless-session.sh cargo test
# Env knobs (all optional):
#   HEADLESS_X=auto|1|0          start Xvfb (auto = only if Xvfb is installed and DISPLAY is unset)
#   HEADLESS_NOTIFY=sink|dunst|none   notification server (dunst needs Xvfb); default sink
#   HEADLESS_SNI=1|0             also provide the fake StatusNotifierWatcher (sink mode); default 1
#   HEADLESS_MONITOR=1           also record the whole bus with dbus-monitor to $HEADLESS_SESSION_DIR/dbus-monitor.log
#   HEADLESS_KEYRING_PASSWORD    password of the throw-away login keyring (default: headless)
#   HEADLESS_KEEP=1              keep the temp dir (logs, keyring files) after exit
#   NOTIFY_SINK_INVOKE=KEY|first make the sink answer each Notify that has actions with
#                                ActionInvoked(id, KEY) + NotificationClosed(id, 2) after 200 ms
# Exported to COMMAND:
#   DBUS_SESSION_BUS_ADDRESS, DISPLAY (if Xvfb), HEADLESS_SESSION_DIR, NOTIFY_SINK_LOG,
#   HEADLESS_KEYRING_PASSWORD, NO_AT_BRIDGE=1
# HOME, CARGO_HOME, RUSTUP_HOME are NOT changed; the keyring daemon alone gets private
# XDG_DATA_HOME / XDG_RUNTIME_DIR, so it never touches (or talks to) a real user keyring.
# Needs (Debian 12): dbus (dbus-run-session), gnome-keyring, python3-dbus, python3-gi,
#   optional: xvfb, dunst, libsecret-tools (secret-tool, handy for checks).
set -euo pipefail

log() { printf 'headless-session: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 70; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...   (polls every 50 ms)
  local secs=$1 what=$2; shift 2
  local n=$(( secs * 20 ))
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  die "timed out after ${secs}s waiting for: $what"
}

has_owner() { # has_owner BUSNAME
  dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner "string:$1" 2>/dev/null | grep -q 'boolean true'
}

default_collection_unlocked() {
  local col
  col=$(dbus-send --session --print-reply --dest=org.freedesktop.secrets /org/freedesktop/secrets \
        org.freedesktop.Secret.Service.ReadAlias string:default 2>/dev/null |
        grep -o '/org/freedesktop/secrets/collection/[^"]*') || return 1
  [ -n "$col" ] || return 1
  dbus-send --session --print-reply --dest=org.freedesktop.secrets "$col" \
    org.freedesktop.DBus.Properties.Get string:org.freedesktop.Secret.Collection string:Locked \
    2>/dev/null | grep -q 'boolean false'
}

###########################################################################################
# inner part: runs inside dbus-run-session
###########################################################################################
if [[ ${1:-} == --inner ]]; then
  T=$2; shift 2
  PIDS=()
  cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  }
  trap cleanup EXIT

  # --- Xvfb ---------------------------------------------------------------------------
  want_x=${HEADLESS_X:-auto}
  if [[ $want_x == auto ]]; then
    if [[ -z ${DISPLAY:-} ]] && command -v Xvfb >/dev/null; then want_x=1; else want_x=0; fi
  fi
  if [[ $want_x == 1 ]]; then
    command -v Xvfb >/dev/null || die "HEADLESS_X=1 but Xvfb is not installed (apt-get install xvfb)"
    rm -f "$T/xvfb.display"
    # -displayfd: Xvfb picks a free display number and writes it to fd 3 once it is ready
    # -noreset: an X server resets when its last client leaves, and a client that connects
    # while it does is dropped (GTK: "Failed to initialize GTK"). Tests start and stop one
    # app after another, and bench/app.sh polls with short-lived xdotool clients; a real
    # desktop session always has clients.
    Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -noreset 3>"$T/xvfb.display" >"$T/xvfb.log" 2>&1 &
    PIDS+=($!)
    wait_for 15 "Xvfb" test -s "$T/xvfb.display"
    export DISPLAY=":$(head -n1 "$T/xvfb.display")"
  fi
  export NO_AT_BRIDGE=1 # GTK: don't look for the (absent) accessibility bus

  # --- gnome-keyring ------------------------------------------------------------------
  mkdir -p "$T/keyring-data" "$T/keyring-runtime"; chmod 700 "$T/keyring-runtime"
  # --unlock reads the password from stdin; with a fresh XDG_DATA_HOME it CREATES
  # keyrings/login.keyring with that password, unlocks it and makes it the default alias.
  printf '%s' "$HEADLESS_KEYRING_PASSWORD" |
    env XDG_DATA_HOME="$T/keyring-data" XDG_RUNTIME_DIR="$T/keyring-runtime" \
      gnome-keyring-daemon --foreground --unlock --components=secrets \
      >"$T/gnome-keyring.log" 2>&1 &
  PIDS+=($!)
  # the daemon returns before it owns the bus name: wait until the default collection is
  # really there and unlocked, otherwise the first client call races it.
  wait_for 15 "gnome-keyring default collection unlocked (see $T/gnome-keyring.log)" \
    default_collection_unlocked

  # --- notifications (+ tray watcher) -------------------------------------------------
  case ${HEADLESS_NOTIFY:-sink} in
    sink)
      /usr/bin/python3 "$T/notify-sink.py" >"$T/notify-sink.stdout" 2>&1 &
      PIDS+=($!)
      wait_for 15 "notify sink (see $T/notify-sink.stdout)" has_owner org.freedesktop.Notifications
      if [[ ${HEADLESS_SNI:-1} == 1 ]]; then
        wait_for 15 "StatusNotifierWatcher" has_owner org.kde.StatusNotifierWatcher
      fi
      ;;
    dunst)
      [[ -n ${DISPLAY:-} ]] || die "HEADLESS_NOTIFY=dunst needs an X display (HEADLESS_X=1)"
      dunst >"$T/dunst.log" 2>&1 &
      PIDS+=($!)
      wait_for 15 "dunst" has_owner org.freedesktop.Notifications
      ;;
    none) ;;
    *) die "unknown HEADLESS_NOTIFY=${HEADLESS_NOTIFY}" ;;
  esac

  if [[ ${HEADLESS_MONITOR:-0} == 1 ]]; then
    dbus-monitor --session >"$T/dbus-monitor.log" 2>&1 &
    PIDS+=($!)
    # it prints NameAcquired/NameLost for itself once it has become a monitor
    wait_for 10 "dbus-monitor" grep -q NameLost "$T/dbus-monitor.log"
  fi

  set +e
  "$@"
  rc=$?
  set -e
  exit "$rc"
fi

###########################################################################################
# outer part
###########################################################################################
[[ $# -gt 0 ]] || { sed -n '2,32p' "$0"; exit 64; }
for c in dbus-run-session dbus-daemon dbus-send gnome-keyring-daemon; do
  command -v "$c" >/dev/null || die "'$c' not found (apt-get install dbus gnome-keyring)"
done
if [[ ${HEADLESS_NOTIFY:-sink} == sink ]]; then
  /usr/bin/python3 -c 'import dbus, gi' 2>/dev/null ||
    die "/usr/bin/python3 lacks dbus/gi (apt-get install python3-dbus python3-gi)"
fi

SELF=$(readlink -f "$0")
T=$(mktemp -d "${TMPDIR:-/tmp}/headless-session.XXXXXX")
if [[ ${HEADLESS_KEEP:-0} == 1 ]]; then
  trap 'log "kept $T"' EXIT
else
  trap 'rm -rf "$T"' EXIT
fi
export HEADLESS_SESSION_DIR=$T
export NOTIFY_SINK_LOG=$T/notify-sink.jsonl
export HEADLESS_KEYRING_PASSWORD=${HEADLESS_KEYRING_PASSWORD:-headless}
: >"$NOTIFY_SINK_LOG"

# Session bus config: like /usr/share/dbus-1/session.conf but with NO <standard_session_servicedirs/>
cat >"$T/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:dir=$T</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF

# dbus-daemon wrapper: keeps the daemon's own chatter (e.g. "Failed to set fd limit to
# 65536: Operation not permitted" when run as root in a container) out of the test output.
cat >"$T/dbus-daemon-wrapper" <<EOF
#!/bin/sh
exec dbus-daemon "\$@" 2>>"$T/dbus-daemon.log"
EOF
chmod +x "$T/dbus-daemon-wrapper"

cat >"$T/notify-sink.py" <<'PYEOF'
import json, os, sys, time
import dbus, dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

LOG = os.environ["NOTIFY_SINK_LOG"]
INVOKE = os.environ.get("NOTIFY_SINK_INVOKE")

def plain(v):
    if isinstance(v, dbus.Boolean): return bool(v)
    if isinstance(v, (dbus.Byte, dbus.Int16, dbus.Int32, dbus.Int64,
                      dbus.UInt16, dbus.UInt32, dbus.UInt64)): return int(v)
    if isinstance(v, dbus.Double): return float(v)
    if isinstance(v, (dbus.String, dbus.ObjectPath, dbus.Signature)): return str(v)
    if isinstance(v, dbus.Dictionary): return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, dbus.Array) and v.signature == "y": return "<%d bytes>" % len(v)
    if isinstance(v, (dbus.Array, dbus.Struct, list, tuple)): return [plain(x) for x in v]
    return v

def record(obj):
    obj["ts"] = time.time()
    with open(LOG, "a") as f:
        f.write(json.dumps(obj) + "\n")

N = "org.freedesktop.Notifications"
class Notifications(dbus.service.Object):
    def __init__(self, bus):
        super().__init__(bus, "/org/freedesktop/Notifications"); self.next_id = 1
    @dbus.service.method(N, in_signature="susssasa{sv}i", out_signature="u", sender_keyword="sender")
    def Notify(self, app_name, replaces_id, app_icon, summary, body, actions, hints, expire_timeout, sender=None):
        nid = int(replaces_id) or self.next_id
        if not replaces_id: self.next_id += 1
        acts = [str(a) for a in actions]
        record({"method": "Notify", "id": nid, "sender": str(sender), "app_name": str(app_name),
                "replaces_id": int(replaces_id), "app_icon": str(app_icon), "summary": str(summary),
                "body": str(body), "actions": dict(zip(acts[0::2], acts[1::2])),
                "hints": plain(hints), "expire_timeout": int(expire_timeout)})
        if INVOKE and acts:
            key = acts[0] if INVOKE == "first" else INVOKE
            def fire():
                self.ActionInvoked(dbus.UInt32(nid), key)
                self.NotificationClosed(dbus.UInt32(nid), dbus.UInt32(2))
                record({"method": "(emitted ActionInvoked)", "id": nid, "action": key})
                return False
            GLib.timeout_add(200, fire)
        return dbus.UInt32(nid)
    @dbus.service.method(N, in_signature="u", out_signature="")
    def CloseNotification(self, nid):
        record({"method": "CloseNotification", "id": int(nid)})
        self.NotificationClosed(nid, dbus.UInt32(3))
    @dbus.service.method(N, in_signature="", out_signature="as")
    def GetCapabilities(self):
        return ["actions", "body", "body-markup", "icon-static", "persistence"]
    @dbus.service.method(N, in_signature="", out_signature="ssss")
    def GetServerInformation(self):
        return ("headless-notify-sink", "spike", "0.1", "1.2")
    @dbus.service.signal(N, signature="uu")
    def NotificationClosed(self, nid, reason): pass
    @dbus.service.signal(N, signature="us")
    def ActionInvoked(self, nid, action_key): pass

W = "org.kde.StatusNotifierWatcher"
class Watcher(dbus.service.Object):
    def __init__(self, bus):
        super().__init__(bus, "/StatusNotifierWatcher"); self.bus = bus; self.items = []
    @dbus.service.method(W, in_signature="s", out_signature="", sender_keyword="sender")
    def RegisterStatusNotifierItem(self, service, sender=None):
        service = str(service)
        busname, path = (str(sender), service) if service.startswith("/") else (service, "/StatusNotifierItem")
        item = busname + path
        self.items.append(item)
        record({"method": "RegisterStatusNotifierItem", "arg": service, "sender": str(sender), "item": item})
        self.StatusNotifierItemRegistered(item)
        def snapshot():
            try:
                props = self.bus.get_object(busname, path).GetAll(
                    "org.kde.StatusNotifierItem", dbus_interface="org.freedesktop.DBus.Properties")
                record({"method": "(item properties)", "item": item, "props": plain(props)})
            except Exception as e:
                record({"method": "(item properties)", "item": item, "error": str(e)})
            return False
        GLib.timeout_add(300, snapshot)
    @dbus.service.method(W, in_signature="s", out_signature="")
    def RegisterStatusNotifierHost(self, service):
        record({"method": "RegisterStatusNotifierHost", "arg": str(service)})
    @dbus.service.signal(W, signature="s")
    def StatusNotifierItemRegistered(self, s): pass
    @dbus.service.signal(W, signature="s")
    def StatusNotifierItemUnregistered(self, s): pass
    @dbus.service.signal(W, signature="")
    def StatusNotifierHostRegistered(self): pass
    @dbus.service.method("org.freedesktop.DBus.Properties", in_signature="ss", out_signature="v")
    def Get(self, iface, prop): return self.GetAll(iface)[str(prop)]
    @dbus.service.method("org.freedesktop.DBus.Properties", in_signature="s", out_signature="a{sv}")
    def GetAll(self, iface):
        return {"RegisteredStatusNotifierItems": dbus.Array(self.items, signature="s"),
                "IsStatusNotifierHostRegistered": dbus.Boolean(True),
                "ProtocolVersion": dbus.Int32(0)}

DBusGMainLoop(set_as_default=True)
bus = dbus.SessionBus()
objs = [Notifications(bus)]
names = [dbus.service.BusName(N, bus, do_not_queue=True)]
if os.environ.get("HEADLESS_SNI", "1") == "1":
    objs.append(Watcher(bus))
    names.append(dbus.service.BusName(W, bus, do_not_queue=True))
print("notify-sink ready", flush=True)
GLib.MainLoop().run()
PYEOF

set +e
dbus-run-session --dbus-daemon="$T/dbus-daemon-wrapper" --config-file="$T/bus.conf" -- \
  "$SELF" --inner "$T" "$@"
rc=$?
set -e
exit "$rc"
