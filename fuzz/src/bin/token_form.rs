//! AFL++ entry point for [`scopegate_fuzz::token_form`]: see that module for
//! the input format and the properties checked.

fn main() {
    afl::fuzz!(|data: &[u8]| scopegate_fuzz::token_form::check(data));
}
