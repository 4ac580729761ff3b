//! The properties the fuzz targets check, one module per target. Each
//! `check(data)` panics (and so makes AFL++ record a crash) when scopegate
//! breaks a property on `data`, and returns quietly otherwise; "does not
//! panic" alone is never the whole check.
//!
//! The oracles here are written independently of the code under test
//! (other crates' decoders, RFC grammars spelled out again), so that a
//! shared misunderstanding does not pass for agreement.
//!
//! `tests/seeds.rs` runs every committed seed through its target with plain
//! `cargo test`, so the checks themselves are exercised without AFL++.

pub mod bearer;
pub mod login_form;
pub mod path_route;
pub mod token_form;
