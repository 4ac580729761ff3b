//! Which redirect URIs a client may register. At authorization time a
//! presented `redirect_uri` must equal a registered one, character for
//! character (RFC 9700 §4.1.3, OAuth 2.1 §2.3.1): no prefix, pattern,
//! normalization or wildcard matching, so nothing here needs to be
//! clever about paths.
//!
//! Registration accepts:
//! - `https://host[:port]/path[?query]`;
//! - `http://` only on a loopback host (`127.0.0.1`, `[::1]`, `localhost`)
//!   for native apps (RFC 8252 §7.3) and development;
//! - a private-use scheme with a dot in it, e.g. `com.example.app:/cb`
//!   (RFC 8252 §7.1).
//!
//! Always refused: a fragment (RFC 6749 §3.1.2), user information
//! (`user@host`), characters outside visible ASCII, and more than
//! [`MAX_REDIRECT_URI_LEN`] bytes.

use http::Uri;

pub const MAX_REDIRECT_URI_LEN: usize = 2000;

/// Why a redirect URI cannot be registered (the message names the rule).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri:?}: {reason}")]
pub struct InvalidRedirectUri {
    pub uri: String,
    pub reason: &'static str,
}

pub fn check(uri: &str) -> Result<(), InvalidRedirectUri> {
    let fail = |reason| {
        Err(InvalidRedirectUri {
            uri: uri.chars().take(200).collect(),
            reason,
        })
    };
    if uri.is_empty() || uri.len() > MAX_REDIRECT_URI_LEN {
        return fail("must be 1 to 2000 characters");
    }
    if !uri.bytes().all(|b| (0x21..=0x7e).contains(&b)) || uri.contains(['"', '<', '>', '\\']) {
        return fail(
            "must be visible ASCII without '\"', '<', '>' or '\\' (percent-encode the rest)",
        );
    }
    if uri.contains('#') {
        return fail("must not contain a fragment (RFC 6749 §3.1.2)");
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return fail("must be an absolute URI");
    };
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return fail("must be an absolute URI");
    }
    match scheme {
        "https" | "http" => {
            let Ok(parsed) = uri.parse::<Uri>() else {
                return fail("is not a valid URI");
            };
            let Some(authority) = parsed.authority() else {
                return fail("must name a host");
            };
            if authority.as_str().contains('@') {
                return fail("must not contain user information");
            }
            let host = authority.host();
            if host.is_empty() {
                return fail("must name a host");
            }
            if scheme == "http" && !matches!(host, "127.0.0.1" | "[::1]" | "localhost") {
                return fail("http is allowed only on a loopback host (RFC 8252 §7.3); use https");
            }
            Ok(())
        }
        _ if scheme.contains('.') && !rest.is_empty() => Ok(()),
        _ => fail("the scheme must be https, http on a loopback host, or a private-use scheme with a dot (RFC 8252 §7.1)"),
    }
}

/// Append the authorization response parameters to `redirect_uri`
/// (RFC 6749 §4.1.2: keep its query, add ours), form-urlencoded.
pub fn with_params(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(redirect_uri.len() + 128);
    out.push_str(redirect_uri);
    let mut sep = if redirect_uri.contains('?') {
        if redirect_uri.ends_with('?') || redirect_uri.ends_with('&') {
            ""
        } else {
            "&"
        }
    } else {
        "?"
    };
    for (k, v) in params {
        out.push_str(sep);
        out.extend(form_urlencoded::byte_serialize(k.as_bytes()));
        out.push('=');
        out.extend(form_urlencoded::byte_serialize(v.as_bytes()));
        sep = "&";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        for ok in [
            "https://app.example.com/callback",
            "https://app.example.com:8443/cb?tenant=1",
            "http://127.0.0.1:8765/cb",
            "http://localhost/cb",
            "http://[::1]:9000/",
            "com.example.app:/oauth2redirect",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refused() {
        for bad in [
            "",
            "/relative",
            "app.example.com/cb",
            "http://app.example.com/cb",
            "https://app.example.com/cb#frag",
            "https://user@app.example.com/cb",
            "https://app.example.com/c b",
            "https://app.example.com/<x>",
            "javascript:alert(1)",
            "data:text/html,x",
            "file:///etc/passwd",
            "https:///nohost",
            "https://app.example.com/é",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert!(check(&format!("https://a.example/{}", "x".repeat(2000))).is_err());
    }

    #[test]
    fn params_are_appended() {
        assert_eq!(
            with_params("https://a.example/cb", &[("code", "x y"), ("state", "&<")]),
            "https://a.example/cb?code=x+y&state=%26%3C"
        );
        assert_eq!(
            with_params("https://a.example/cb?t=1", &[("code", "c")]),
            "https://a.example/cb?t=1&code=c"
        );
    }
}
