//! Rebuilds the crate when a migration file changes: `sqlx::migrate!` embeds the
//! files at compile time, and stable Rust cannot track them on its own.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
