//! AFL++ entry point for [`scopegate_fuzz::path_route`]: see that module for
//! the input format and the properties checked.

fn main() {
    // Before the fork server starts: one-time setup is not coverage.
    scopegate_fuzz::path_route::init();
    afl::fuzz!(|data: &[u8]| scopegate_fuzz::path_route::check(data));
}
