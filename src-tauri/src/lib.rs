//! Keyport's desktop app: a thin Tauri shell over keyport-core that hosts the user
//! session's one agent.
//!
//! This is the app's composition root. [`configure`] adds, to any Tauri runtime (the real
//! one in [`run`], the mock one in the unit tests): the [`AppState`] (the core and the
//! embedded agent host, see [`host`]), the page's commands ([`commands`], grouped by area),
//! the tray ([`tray`]), close-to-tray, and one task that follows the agent's state
//! subscription and forwards every event to the page (as [`AGENT_EVENT`]) and to the tray,
//! so the window is live without polling. [`run`] registers the single-instance plugin
//! first (starting the app again focuses the window), makes SIGTERM quit like the tray's
//! Quit does, and stops the agent cleanly when the app exits.
//!
//! The window exists only while it is open: it is made hidden and shown when its page has
//! rendered (the `page_ready` command), so it never flashes empty, and closing it destroys
//! it with its WebKit processes while the app and its agent stay in the tray (an idle
//! Keyport is one process). Started at login ([`autostart::ARG`]) it makes no window at all.
//!
//! The CLI talks to the app's agent exactly as to `keyport agent` (the control socket), so
//! a change made with the CLI reaches the window through the same subscription; the
//! helper's own changes (paused, port, problems) reach the page as [`HELPER_EVENT`] and the
//! tray's Pause helper item the same way.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

pub mod autostart;
pub mod clipboard;
pub mod commands;
pub mod host;
pub mod tray;

use std::collections::BTreeMap;

use keyport_core::agent::{AgentEvent, State};
use keyport_core::Keyport;
use tauri::{AppHandle, Emitter, Manager, Runtime, WindowEvent};

pub use host::{AppOptions, AppState, Hosted, UiError};

/// The page event carrying each of the agent's events, as the core serializes
/// [`AgentEvent`] (`{"event": "state", ...}`).
pub const AGENT_EVENT: &str = "agent";
/// The page event saying the agent could not start (an [`UiError`]).
pub const AGENT_ERROR_EVENT: &str = "agent-error";
/// The page event carrying the helper's status whenever it changes other than its counters
/// (a `HelperInfo`: paused or resumed, a new port, a problem).
pub const HELPER_EVENT: &str = "helper";
/// If the page has not said it is ready by then, the window is shown anyway.
const SHOW_AT_THE_LATEST: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything the app is, except the plugins that need a desktop session.
pub fn configure<R: Runtime>(builder: tauri::Builder<R>, state: AppState) -> tauri::Builder<R> {
    builder
        .manage(state)
        .manage(commands::logins::LoginPages::default())
        .manage(commands::helper::LogWatch::default())
        .invoke_handler(tauri::generate_handler![
            commands::profiles::list_profiles,
            commands::profiles::show_profile,
            commands::profiles::delete_profile,
            commands::profiles::reveal_secret,
            commands::profiles::presets,
            commands::profiles::check_profile,
            commands::profiles::add_profile,
            commands::profiles::edit_profile,
            commands::tokens::renew,
            commands::tokens::test_profile,
            commands::tokens::inspect_token,
            commands::tokens::copy_header,
            commands::tokens::reveal_token,
            commands::logins::login,
            commands::logins::cancel_login,
            commands::logins::open_login_page,
            commands::helper::helper_info,
            commands::helper::snippets,
            commands::helper::helper_keys,
            commands::helper::copy_helper_key,
            commands::helper::rotate_helper_key,
            commands::helper::create_helper_key,
            commands::helper::revoke_helper_key,
            commands::helper::watch_access_log,
            commands::helper::unwatch_access_log,
            commands::settings::settings,
            commands::settings::save_settings,
            commands::settings::pause_helper,
            page_ready,
        ])
        .on_window_event(|window, event| {
            // Closing the window leaves the app in the tray, the agent running; the window
            // and its WebKit processes go (they are made again when it is opened).
            if let WindowEvent::Destroyed = event {
                if window.label() == MAIN {
                    // Nobody sees the access log now (a new page watches again).
                    window.state::<commands::helper::LogWatch>().stop();
                }
            }
        })
        .setup(|app| {
            let tray = app.state::<AppState>().options().tray;
            if let Err(e) = tray.then(|| tray::create(app.handle())).transpose() {
                eprintln!("keyport: no tray icon ({e}); the window and the agent work without it");
            }
            tauri::async_runtime::spawn(follow(app.handle().clone()));
            if !app.state::<AppState>().options().start_hidden {
                show_main(app.handle());
            }
            Ok(())
        })
}

/// The page has rendered its first view: its window is shown. Answers the profile to show
/// first, if one was chosen in the tray's menu before the window was there.
#[tauri::command]
async fn page_ready<R: Runtime>(
    window: tauri::WebviewWindow<R>,
    state: tauri::State<'_, AppState>,
) -> Result<Option<String>, UiError> {
    present(&window);
    Ok(state.take_selection())
}

/// Starts the agent, then forwards its events to the page and the tray until it stops.
async fn follow<R: Runtime>(app: AppHandle<R>) {
    let state = app.state::<AppState>();
    let sub = match state.hosted().await {
        Ok(h) => h.agent.subscribe().await.map_err(UiError::from),
        Err(e) => Err(e),
    };
    let mut sub = match sub {
        Ok(s) => s,
        Err(e) => {
            eprintln!("keyport: {}", e.message);
            let _ = app.emit(AGENT_ERROR_EVENT, &e);
            tray::show(
                &app,
                tray::Summary::problem(format!("Keyport: {}", e.message)),
            );
            return;
        }
    };
    if let Some(helper) = state.hosted().await.ok().and_then(|h| h.helper.clone()) {
        tauri::async_runtime::spawn(follow_helper(app.clone(), helper));
    }
    let mut states = BTreeMap::new();
    while let Some(ev) = sub.next().await {
        track(&mut states, &ev);
        let _ = app.emit(AGENT_EVENT, &ev);
        tray::show(&app, tray::Summary::of(&states));
    }
}

/// Forwards the helper's changes (paused, port, problems) to the page and the tray.
async fn follow_helper<R: Runtime>(app: AppHandle<R>, helper: keyport_core::helper::Helper) {
    let mut changes = helper.watch();
    loop {
        let info = helper.status();
        tray::show_paused(&app, info.paused);
        let _ = app.emit(HELPER_EVENT, &info);
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Each profile's state after `ev`.
fn track(states: &mut BTreeMap<String, State>, ev: &AgentEvent) {
    match ev {
        AgentEvent::Snapshot { profiles } => {
            *states = profiles.iter().map(|p| (p.name.clone(), p.state)).collect();
        }
        AgentEvent::Added { profile }
        | AgentEvent::Changed { profile }
        | AgentEvent::State { profile, .. }
        | AgentEvent::RenewalSucceeded { profile }
        | AgentEvent::RenewalFailed { profile, .. } => {
            states.insert(profile.name.clone(), profile.state);
        }
        AgentEvent::Removed { name } => {
            states.remove(name);
        }
        AgentEvent::RenewalStarted { .. } | AgentEvent::Login { .. } => {}
    }
}

/// The main window's label.
pub const MAIN: &str = "main";

/// Shows the main window, making it when there is none (it is made hidden and shown when
/// its page has rendered, so it never flashes empty; at the latest after
/// `SHOW_AT_THE_LATEST`).
pub fn show_main<R: Runtime>(app: &AppHandle<R>) {
    if let Some(w) = app.get_webview_window(MAIN) {
        present(&w);
        return;
    }
    let Some(config) = app.config().app.windows.iter().find(|w| w.label == MAIN) else {
        return;
    };
    match tauri::WebviewWindowBuilder::from_config(app, config).and_then(|b| b.build()) {
        Ok(w) => {
            tauri::async_runtime::spawn(async move {
                tokio::time::sleep(SHOW_AT_THE_LATEST).await;
                if matches!(w.is_visible(), Ok(false)) {
                    present(&w);
                }
            });
        }
        Err(e) => eprintln!("keyport: cannot open the window ({e})"),
    }
}

/// Shows `w` in front.
fn present<R: Runtime>(w: &tauri::WebviewWindow<R>) {
    let _ = w.unminimize();
    let _ = w.show();
    let _ = w.set_focus();
}

/// Opens the window on profile `name` (the tray's menu): the page shows it when it is
/// there, or asks for it when it is made.
pub fn show_profile<R: Runtime>(app: &AppHandle<R>, name: &str) {
    // Both: a page that is there follows the event, one still loading asks at page_ready.
    app.state::<AppState>().select(name);
    show_main(app);
    let _ = app.emit(tray::SELECT_EVENT, name);
}

/// The desktop app.
pub fn run() {
    // A crash must not write the secrets and tokens in memory to disk.
    let _ = keyport_core::process::harden();
    // Set before WebKit starts (no other thread runs yet); its processes inherit them.
    #[cfg(target_os = "linux")]
    for (var, value) in WEBKIT_ENV {
        // (not for the browser Keyport opens: it is the user's)
        keyport_core::process::set_own_env(var, value);
    }
    #[cfg(target_os = "linux")]
    if let Err(message) = open_display() {
        eprintln!("{message}");
        std::process::exit(1);
    }
    // Open the core once: this also refuses keyring's in-memory mock. A failure is shown in
    // the window rather than crashing, so the user sees what to fix.
    let kp = Keyport::open().map_err(UiError::from);
    // Single instance first: a second start focuses this window and exits (a start at
    // login while the app runs changes nothing).
    let builder =
        tauri::Builder::default().plugin(tauri_plugin_single_instance::init(|app, args, _cwd| {
            if !args.iter().any(|a| a == autostart::ARG) {
                show_main(app)
            }
        }));
    let env_num = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let defaults = AppOptions::default();
    let opts = AppOptions {
        // The same override `keyport agent` reads (`--helper-port` has this env).
        helper_port: env_num("KEYPORT_HELPER_PORT").and_then(|p| u16::try_from(p).ok()),
        // How long a copied key stays on the clipboard (tests: a short time).
        clipboard_clear: env_num("KEYPORT_CLIPBOARD_CLEAR_SECS")
            .map_or(defaults.clipboard_clear, std::time::Duration::from_secs),
        start_hidden: std::env::args().any(|a| a == autostart::ARG),
        ..defaults
    };
    let app = configure(builder, AppState::new(kp, opts))
        .build(tauri::generate_context!())
        .expect("error while building Keyport");
    #[cfg(unix)]
    {
        // SIGTERM (a session ending, `kill`) quits like Quit: the agent stops cleanly.
        let handle = app.handle().clone();
        tauri::async_runtime::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                term.recv().await;
                handle.exit(0);
            }
        });
    }
    app.run(|app, event| match event {
        // The window closed: the app stays in the tray (Quit and SIGTERM exit with a code).
        tauri::RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        tauri::RunEvent::Exit => tauri::async_runtime::block_on(app.state::<AppState>().stop()),
        _ => {}
    });
}

/// Starts GTK (after [`WEBKIT_ENV`], which it reads), so that a session without a display
/// (ssh, a service) is told so in one line, not by a panic in tao's event loop; the event
/// loop's own `gtk::init` then finds GTK started.
#[cfg(target_os = "linux")]
fn open_display() -> Result<(), String> {
    gtk::init().map_err(|_| {
        let var = |name| std::env::var(name).unwrap_or_else(|_| "unset".into());
        format!(
            "keyport-app: cannot open a display (DISPLAY {}, WAYLAND_DISPLAY {}): start Keyport \
             from a desktop session; without one, `keyport agent` runs the agent and the helper",
            var("DISPLAY"),
            var("WAYLAND_DISPLAY")
        )
    })
}

/// WebKit's environment for a one-page app that mostly sits in the tray (unless the user
/// set them): no memory pressure monitor (it polls /proc/meminfo every 5 s for as long as
/// the app runs), no accelerated compositing (a GL compositor costs the web process ~7 MB and
/// gives a static form nothing), no JavaScript JIT (~4 MB less; the page's script is small,
/// and no JIT is less attack surface). And no OpenGL in the app's own process: GTK would
/// load it for its GL visuals (`GDK_GL`), WebKit for the DMA-BUF renderer and to find the
/// render node; with Mesa each load maps libLLVM (~30 MB, 23 MB of the window's PSS). The
/// page comes over in shared memory instead; the web process keeps its own EGL display.
/// Measured by bench/app.sh.
#[cfg(target_os = "linux")]
const WEBKIT_ENV: [(&str, &str); 6] = [
    ("WEBKIT_DISABLE_MEMORY_PRESSURE_MONITOR", "1"),
    ("WEBKIT_DISABLE_COMPOSITING_MODE", "1"),
    ("JSC_useJIT", "0"),
    ("GDK_GL", "disable"),
    ("WEBKIT_DISABLE_DMABUF_RENDERER", "1"),
    // (read instead of asking EGL; no GPU buffers are made, so no device is opened)
    ("WEBKIT_WEB_RENDER_DEVICE_FILE", "none"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use keyport_core::agent::ProfileStatus;

    fn status(name: &str, state: State) -> ProfileStatus {
        ProfileStatus {
            name: name.into(),
            preset: "patchworks-api-key".into(),
            scheme: "api-key".into(),
            state,
            expires_at: None,
            next_refresh_at: None,
            last_refresh_at: None,
            failures: 0,
            last_error: None,
            last_error_kind: None,
            login_in_progress: false,
        }
    }

    #[test]
    fn events_keep_each_profiles_state() {
        let mut s = BTreeMap::new();
        track(
            &mut s,
            &AgentEvent::Snapshot {
                profiles: vec![status("a", State::Valid), status("b", State::Valid)],
            },
        );
        track(
            &mut s,
            &AgentEvent::State {
                profile: status("b", State::Expired),
                from: State::Valid,
            },
        );
        track(&mut s, &AgentEvent::Removed { name: "a".into() });
        track(
            &mut s,
            &AgentEvent::Added {
                profile: status("c", State::LoginRequired),
            },
        );
        let want: BTreeMap<String, State> = [
            ("b".to_string(), State::Expired),
            ("c".to_string(), State::LoginRequired),
        ]
        .into();
        assert_eq!(s, want);
    }
}
