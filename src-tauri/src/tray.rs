//! The tray icon, built in code: its colour is the worst state across the profiles, its
//! tooltip and first menu line say how many profiles are in which state, then the menu
//! lists the profiles with their states (choosing one opens it in the window), and has
//! Open Keyport, Renew all, Pause helper and Quit.
//!
//! Updates follow the agent's events and the helper's changes (no timer polls anything)
//! and are throttled: an unchanged summary is not sent again, and changes closer together
//! than [`MIN_GAP`] are folded into one. The menu is built once and its items are updated
//! in place, profile lines added or removed only when the profiles themselves change (menus
//! replaced on Linux can go stale). Without a tray host (no StatusNotifierWatcher) the
//! icon simply isn't shown: the app works the same.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use keyport_core::agent::State;
use tauri::image::Image;
use tauri::menu::{CheckMenuItem, Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Runtime};

use crate::AppState;

/// The shortest time between two tray updates.
pub const MIN_GAP: Duration = Duration::from_millis(250);
/// Profiles listed in the menu; more are summed up in one line.
pub const MAX_LISTED: usize = 15;
/// The page event asking the window to show a profile (its name), from the tray's menu.
pub const SELECT_EVENT: &str = "select-profile";
/// The menu position of the first profile line (after the summary and a separator).
const FIRST_PROFILE: usize = 2;

/// How bad a state is, for the icon's colour (higher is worse).
fn rank(s: State) -> u8 {
    match s {
        State::Valid => 0,
        State::Refreshing => 1,
        State::Expiring => 2,
        State::Error => 3,
        State::Expired => 4,
        State::LoginRequired => 5,
    }
}

pub fn label(s: State) -> &'static str {
    match s {
        State::Valid => "valid",
        State::Refreshing => "refreshing",
        State::Expiring => "expiring",
        State::Expired => "expired",
        State::LoginRequired => "login required",
        State::Error => "error",
    }
}

/// What the tray shows for a set of profile states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub worst: Option<State>,
    pub text: String,
    /// The menu's profile lines: (profile, line), at most [`MAX_LISTED`] and then one
    /// line (with an empty name) for the rest.
    pub lines: Vec<(String, String)>,
}

impl Summary {
    pub fn of(states: &BTreeMap<String, State>) -> Summary {
        let worst = states.values().copied().max_by_key(|s| rank(*s));
        let text = match worst {
            None => "Keyport: no profiles".to_string(),
            Some(State::Valid) => format!("Keyport: {} profile(s), all valid", states.len()),
            Some(_) => {
                let mut counts: Vec<(State, usize)> = Vec::new();
                for s in states.values().filter(|s| **s != State::Valid) {
                    match counts.iter_mut().find(|(c, _)| c == s) {
                        Some((_, n)) => *n += 1,
                        None => counts.push((*s, 1)),
                    }
                }
                counts.sort_by_key(|(s, _)| std::cmp::Reverse(rank(*s)));
                let parts: Vec<String> = counts
                    .iter()
                    .map(|(s, n)| format!("{n} {}", label(*s)))
                    .collect();
                format!(
                    "Keyport: {} of {} profile(s) need attention ({})",
                    states.values().filter(|s| **s != State::Valid).count(),
                    states.len(),
                    parts.join(", ")
                )
            }
        };
        let mut lines: Vec<(String, String)> = states
            .iter()
            .take(MAX_LISTED)
            .map(|(n, s)| (n.clone(), format!("{n}: {}", label(*s))))
            .collect();
        if states.len() > MAX_LISTED {
            lines.push((
                String::new(),
                format!("… and {} more (Open Keyport)", states.len() - MAX_LISTED),
            ));
        }
        Summary { worst, text, lines }
    }

    /// A summary with no profile lines: just one line saying what is wrong.
    pub fn problem(text: String) -> Summary {
        Summary {
            worst: Some(State::Error),
            text,
            lines: Vec::new(),
        }
    }
}

/// A 32x32 RGBA disc in the state's colour with a darker rim, on transparency.
pub fn icon(worst: Option<State>) -> Image<'static> {
    let (r, g, b) = match worst.map(rank) {
        None => (0x9e, 0x9e, 0x9e),
        Some(0) => (0x2e, 0x9e, 0x5b),
        Some(1) => (0x3b, 0x82, 0xf6),
        Some(2) => (0xf5, 0x9e, 0x0b),
        Some(_) => (0xdc, 0x26, 0x26),
    };
    const N: usize = 32;
    let mut px = vec![0u8; N * N * 4];
    let c = (N as f32 - 1.0) / 2.0;
    for y in 0..N {
        for x in 0..N {
            let d = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
            let i = (y * N + x) * 4;
            let (rgb, a) = if d <= 11.5 {
                ((r, g, b), 255)
            } else if d <= 14.5 {
                ((r / 2, g / 2, b / 2), 255)
            } else if d <= 15.5 {
                ((r / 2, g / 2, b / 2), ((15.5 - d) * 255.0) as u8)
            } else {
                ((0, 0, 0), 0)
            };
            px[i..i + 4].copy_from_slice(&[rgb.0, rgb.1, rgb.2, a]);
        }
    }
    Image::new_owned(px, N as u32, N as u32)
}

/// What the tray shows and what it should show, under one lock.
struct Shown {
    /// What the icon, tooltip and first menu line show now.
    summary: Summary,
    /// The newest summary (shown at once, or by the folded update).
    latest: Summary,
    at: Option<Instant>,
    /// A folded update is scheduled.
    pending: bool,
}

/// The tray's handles, managed as app state.
pub struct Tray<R: Runtime> {
    icon: TrayIcon<R>,
    menu: Menu<R>,
    status: MenuItem<R>,
    pause: CheckMenuItem<R>,
    /// The profile lines in the menu, in order.
    profiles: Mutex<Vec<(String, MenuItem<R>)>>,
    shown: Mutex<Shown>,
}

/// Builds the tray icon and its menu.
pub fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let status = MenuItem::with_id(app, "status", "Keyport: starting", false, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open Keyport", true, None::<&str>)?;
    let renew = MenuItem::with_id(app, "renew_all", "Renew all", true, None::<&str>)?;
    let pause = CheckMenuItem::with_id(app, "pause", "Pause helper", true, false, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit Keyport", true, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[
            &status,
            &PredefinedMenuItem::separator(app)?,
            // (the profile lines go here)
            &PredefinedMenuItem::separator(app)?,
            &open,
            &renew,
            &pause,
            &quit,
        ],
    )?;
    let icon = TrayIconBuilder::with_id("keyport")
        .icon(icon(None))
        .tooltip("Keyport")
        .title("Keyport")
        .menu(&menu)
        .on_menu_event(|app, ev| match ev.id().as_ref() {
            "open" => crate::show_main(app),
            "renew_all" => renew_all(app.clone()),
            "pause" => toggle_pause(app.clone()),
            "quit" => app.exit(0),
            id => {
                if let Some(name) = id.strip_prefix("profile:") {
                    crate::show_profile(app, name);
                }
            }
        })
        .build(app)?;
    let first = Summary {
        worst: None,
        text: "Keyport: starting".into(),
        lines: Vec::new(),
    };
    app.manage(Tray {
        icon,
        menu,
        status,
        pause,
        profiles: Mutex::new(Vec::new()),
        shown: Mutex::new(Shown {
            summary: first.clone(),
            latest: first,
            at: None,
            pending: false,
        }),
    });
    Ok(())
}

/// Shows whether the helper is paused (its menu item's check mark).
pub fn show_paused<R: Runtime>(app: &AppHandle<R>, paused: bool) {
    if let Some(tray) = app.try_state::<Tray<R>>() {
        if tray.pause.is_checked().ok() != Some(paused) {
            let _ = tray.pause.set_checked(paused);
        }
    }
}

/// Pause helper: pauses or resumes the app's helper (the menu item's check mark follows
/// the helper's own state, through [`show_paused`]; without a helper it stays clear).
fn toggle_pause<R: Runtime>(app: AppHandle<R>) {
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        match state.hosted().await.ok().and_then(|h| h.helper.as_ref()) {
            Some(h) => h.set_paused(!h.status().paused).await,
            // (the menu ticked its item itself: untick it)
            None => show_paused(&app, false),
        }
    });
}

/// Shows `summary` now, or folded into one update [`MIN_GAP`] after the last.
pub fn show<R: Runtime>(app: &AppHandle<R>, summary: Summary) {
    let Some(tray) = app.try_state::<Tray<R>>() else {
        return; // no tray (none could be built)
    };
    let wait = {
        let mut shown = tray.shown.lock().unwrap_or_else(|e| e.into_inner());
        shown.latest = summary;
        if shown.pending {
            return; // the scheduled update shows the latest
        }
        match shown.at.map(|t| t.elapsed()) {
            Some(e) if e < MIN_GAP => {
                shown.pending = true;
                Some(MIN_GAP - e)
            }
            _ => None,
        }
    };
    match wait {
        None => apply(&tray),
        Some(wait) => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                tokio::time::sleep(wait).await;
                if let Some(tray) = app.try_state::<Tray<R>>() {
                    apply(&tray);
                }
            });
        }
    }
}

/// Shows the latest summary unless it is already shown.
fn apply<R: Runtime>(tray: &Tray<R>) {
    let mut shown = tray.shown.lock().unwrap_or_else(|e| e.into_inner());
    shown.pending = false;
    if shown.summary == shown.latest {
        return;
    }
    let latest = shown.latest.clone();
    if latest.worst != shown.summary.worst {
        let _ = tray.icon.set_icon(Some(icon(latest.worst)));
    }
    let _ = tray.icon.set_tooltip(Some(&latest.text));
    let _ = tray.status.set_text(&latest.text);
    show_lines(tray, &latest.lines);
    shown.at = Some(Instant::now());
    shown.summary = latest;
}

/// Puts `lines` in the menu: texts changed in place while the profiles are the same ones,
/// lines removed and added only when they are not.
fn show_lines<R: Runtime>(tray: &Tray<R>, lines: &[(String, String)]) {
    let mut items = tray.profiles.lock().unwrap_or_else(|e| e.into_inner());
    let same = items.len() == lines.len() && items.iter().zip(lines).all(|((a, _), (b, _))| a == b);
    if same {
        for ((_, item), (_, text)) in items.iter().zip(lines) {
            if item.text().ok().as_deref() != Some(text.as_str()) {
                let _ = item.set_text(text);
            }
        }
        return;
    }
    for (_, item) in items.drain(..) {
        let _ = tray.menu.remove(&item);
    }
    let app = tray.icon.app_handle();
    for (i, (name, text)) in lines.iter().enumerate() {
        // (the summing-up line has no profile to open)
        let id = format!("profile:{name}");
        let Ok(item) = MenuItem::with_id(app, id, text, !name.is_empty(), None::<&str>) else {
            continue;
        };
        if tray.menu.insert(&item, FIRST_PROFILE + i).is_ok() {
            items.push((name.clone(), item));
        }
    }
}

/// Renews every profile, each in its own task (the agent renews each once however often
/// it is asked); failures show up as states and notifications, as any renewal's do.
pub fn renew_all<R: Runtime>(app: AppHandle<R>) {
    tauri::async_runtime::spawn(async move {
        let state = app.state::<AppState>();
        let Ok(hosted) = state.hosted().await else {
            return;
        };
        let Ok(all) = hosted.agent.status().await else {
            return;
        };
        for p in all {
            let agent = hosted.agent.clone();
            tauri::async_runtime::spawn(async move {
                let _ = agent.refresh(&p.name).await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(list: &[(&str, State)]) -> BTreeMap<String, State> {
        list.iter().map(|(n, s)| (n.to_string(), *s)).collect()
    }

    #[test]
    fn the_summary_names_the_worst_state_first() {
        assert_eq!(Summary::of(&states(&[])).worst, None);
        let all = Summary::of(&states(&[("a", State::Valid), ("b", State::Valid)]));
        assert_eq!(all.worst, Some(State::Valid));
        assert_eq!(all.text, "Keyport: 2 profile(s), all valid");
        let mixed = Summary::of(&states(&[
            ("a", State::Valid),
            ("b", State::Expiring),
            ("c", State::LoginRequired),
            ("d", State::Expiring),
        ]));
        assert_eq!(mixed.worst, Some(State::LoginRequired));
        assert_eq!(
            mixed.text,
            "Keyport: 3 of 4 profile(s) need attention (1 login required, 2 expiring)"
        );
    }

    #[test]
    fn the_menu_lists_each_profile_with_its_state_up_to_a_limit() {
        let two = Summary::of(&states(&[("a", State::Valid), ("b", State::LoginRequired)]));
        assert_eq!(
            two.lines,
            [
                ("a".to_string(), "a: valid".to_string()),
                ("b".to_string(), "b: login required".to_string())
            ]
        );
        let names: Vec<String> = (0..MAX_LISTED + 3).map(|i| format!("p{i:02}")).collect();
        let many: BTreeMap<String, State> =
            names.iter().map(|n| (n.clone(), State::Valid)).collect();
        let lines = Summary::of(&many).lines;
        assert_eq!(lines.len(), MAX_LISTED + 1);
        assert_eq!(
            lines[MAX_LISTED - 1].1,
            format!("p{:02}: valid", MAX_LISTED - 1)
        );
        assert_eq!(
            lines[MAX_LISTED],
            (String::new(), "… and 3 more (Open Keyport)".to_string())
        );
    }

    #[test]
    fn the_icon_is_a_disc_coloured_by_the_worst_state() {
        let (ok, bad) = (icon(Some(State::Valid)), icon(Some(State::Expired)));
        assert_eq!((ok.width(), ok.height()), (32, 32));
        let centre = (16 * 32 + 16) * 4;
        assert_eq!(&ok.rgba()[centre..centre + 4], &[0x2e, 0x9e, 0x5b, 255]);
        assert_eq!(&bad.rgba()[centre..centre + 4], &[0xdc, 0x26, 0x26, 255]);
        assert_eq!(ok.rgba()[3], 0, "the corners are transparent");
    }
}
