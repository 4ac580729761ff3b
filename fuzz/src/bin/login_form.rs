//! AFL++ entry point for [`scopegate_fuzz::login_form`]: see that module for
//! the input format and the properties checked.

fn main() {
    // Before the fork server starts: one-time setup is not coverage.
    scopegate_fuzz::login_form::init();
    afl::fuzz!(|data: &[u8]| scopegate_fuzz::login_form::check(data));
}
