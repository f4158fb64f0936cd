fn main() {
    // The app's own commands get permissions (`allow-list-profiles`, ...), so the window's
    // capability lists exactly the ones its page calls.
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(
        tauri_build::AppManifest::new().commands(&[
            "list_profiles",
            "show_profile",
            "delete_profile",
            "reveal_secret",
            "presets",
            "check_profile",
            "add_profile",
            "edit_profile",
            "renew",
            "test_profile",
            "inspect_token",
            "copy_header",
            "reveal_token",
            "login",
            "cancel_login",
            "open_login_page",
            "helper_info",
            "snippets",
            "helper_keys",
            "copy_helper_key",
            "rotate_helper_key",
            "create_helper_key",
            "revoke_helper_key",
            "watch_access_log",
            "unwatch_access_log",
            "settings",
            "save_settings",
            "pause_helper",
            "page_ready",
        ]),
    ))
    .expect("tauri-build failed");
}
