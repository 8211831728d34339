//! Rebuilds the crate when a migration file changes: `sqlx::migrate!` embeds the
//! files at compile time, and stable Rust cannot track them on its own. Cargo scans
//! a directory given here recursively, so this covers both dialects' folders
//! (`migrations/sqlite`, `migrations/postgres`), files added to them included.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
