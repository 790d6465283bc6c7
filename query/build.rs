//! Builds the web UI (`ui/`, TypeScript and Vite) into `ui/dist` when it is missing or older
//! than its sources, so that a plain `cargo build` or `cargo run` on a fresh clone embeds the
//! real dashboard. Needs Node.js and npm; `MESHSCOPE_SKIP_UI_BUILD=1` builds without them
//! (the binary then answers `/` with a note that the UI was not built).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn main() {
    let ui = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("../ui");
    let dist = ui.join("dist");
    for input in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
        "dist",
    ] {
        println!("cargo:rerun-if-changed={}", ui.join(input).display());
    }
    println!("cargo:rerun-if-env-changed=MESHSCOPE_SKIP_UI_BUILD");

    let skip = std::env::var_os("MESHSCOPE_SKIP_UI_BUILD").is_some_and(|v| v != "0");
    let built = modified(&dist.join("index.html"));
    let sources = ["src", "index.html", "package-lock.json", "vite.config.ts"]
        .iter()
        .filter_map(|p| newest(&ui.join(p)))
        .max();
    let fresh = matches!((built, sources), (Some(b), Some(s)) if b >= s);
    if !skip && !fresh {
        if let Some(why) = install_needed(&ui) {
            println!("cargo:warning=running `npm ci` in ui/: {why}");
            npm(&ui, &["ci", "--no-audit", "--no-fund"]);
        }
        npm(&ui, &["run", "build"]);
    }
    // The embedding needs the folder even when the UI is skipped.
    std::fs::create_dir_all(&dist).expect("cannot create ui/dist");
}

/// Why `ui/node_modules` must be installed again, if it must. npm writes
/// `node_modules/.package-lock.json` on every install, so a lock file newer than it means a
/// pull brought dependencies that the installed tree lacks, and the build would fail on them.
fn install_needed(ui: &Path) -> Option<&'static str> {
    let installed = ui.join("node_modules");
    if !installed.is_dir() {
        return Some("node_modules is missing");
    }
    let Some(installed_at) = modified(&installed.join(".package-lock.json")) else {
        return Some("node_modules/.package-lock.json is missing");
    };
    match modified(&ui.join("package-lock.json")) {
        Some(locked_at) if locked_at > installed_at => {
            Some("package-lock.json is newer than node_modules/.package-lock.json")
        }
        _ => None,
    }
}

fn npm(dir: &Path, args: &[&str]) {
    let status = Command::new("npm").args(args).current_dir(dir).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("`npm {}` in ui/ failed ({s})", args.join(" ")),
        Err(e) => panic!(
            "building the web UI needs Node.js 20+ and npm on PATH ({e}); \
             set MESHSCOPE_SKIP_UI_BUILD=1 to build without the UI"
        ),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of anything under a directory.
fn newest(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| newest(&entry.path()))
        .max()
}
