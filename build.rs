//! The migrations under `migrations/` are embedded at compile time
//! (`src/db/migrate.rs`): rebuild when one is added or changed.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
