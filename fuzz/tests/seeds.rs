//! Every committed seed through its target's checks, without AFL++
//! (`cargo test` in `fuzz/`): the checks run, and the seeds pass them.

use std::fs;
use std::path::Path;

fn run(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let mut n = 0;
    for entry in fs::read_dir(&dir).expect("the seed folder exists") {
        let path = entry.expect("a readable seed folder").path();
        check(&fs::read(&path).expect("a readable seed"));
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn path_route() {
    run("path_route", scopegate_fuzz::path_route::check);
}

#[test]
fn bearer() {
    run("bearer", scopegate_fuzz::bearer::check);
}

#[test]
fn token_form() {
    run("token_form", scopegate_fuzz::token_form::check);
}

#[test]
fn login_form() {
    run("login_form", scopegate_fuzz::login_form::check);
}
