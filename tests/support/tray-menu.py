#!/usr/bin/python3
"""A tray host's view of a StatusNotifierItem's menu (com.canonical.dbusmenu), for tests.

  tray-menu.py layout BUS ITEM_PATH         prints the menu as JSON lines:
                                            {"id", "label", "enabled", "toggle_state"}
  tray-menu.py click BUS ITEM_PATH LABEL    clicks the item whose label starts with LABEL,
                                            as a tray host does when the user chooses it

BUS and ITEM_PATH are the item's (the StatusNotifierWatcher records them); the menu's
own path is the item's `Menu` property. Uses the session bus of the environment.
"""
import json
import sys
import time

import dbus

ITEM = "org.kde.StatusNotifierItem"
MENU = "com.canonical.dbusmenu"


def menu(bus, name, item_path):
    props = dbus.Interface(bus.get_object(name, item_path), "org.freedesktop.DBus.Properties")
    path = props.Get(ITEM, "Menu")
    return dbus.Interface(bus.get_object(name, path), MENU)


def plain(label):
    """A GTK mnemonic label as shown: `_` marks the access key, `__` is one underscore."""
    return "\0".join(part.replace("_", "") for part in label.split("__")).replace("\0", "_")


def items(m):
    _, layout = m.GetLayout(0, -1, dbus.Array([], signature="s"))
    out = []

    def walk(node):
        nid, props, children = node
        if nid != 0 and props.get("type", "standard") != "separator":
            out.append({
                "id": int(nid),
                "label": plain(str(props.get("label", ""))),
                "enabled": bool(props.get("enabled", True)),
                "toggle_state": int(props.get("toggle-state", -1)),
            })
        for c in children:
            walk(c)

    walk(layout)
    return out


def main():
    cmd, name, path = sys.argv[1:4]
    bus = dbus.SessionBus()
    m = menu(bus, name, path)
    if cmd == "layout":
        for i in items(m):
            print(json.dumps(i))
    elif cmd == "click":
        want = sys.argv[4]
        for i in items(m):
            if i["label"].startswith(want):
                m.Event(i["id"], "clicked", dbus.Int32(0, variant_level=1), dbus.UInt32(int(time.time())))
                print(json.dumps(i))
                return
        sys.exit(f"no menu item labelled {want!r}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
