//! Keyport's desktop app: see the `keyport_app` library (the composition root).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    keyport_app::run()
}
