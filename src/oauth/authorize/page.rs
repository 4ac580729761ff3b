//! The HTML the authorization endpoint answers a browser with: the login
//! page, and the pages for requests that cannot be redirected (400) or
//! are throttled (429).
//!
//! - Server-rendered, one small document, no JavaScript; it loads nothing
//!   (no images, fonts, scripts or style sheets from anywhere): its one
//!   inline `<style>` is allowed by its SHA-256 in the CSP, everything else
//!   is `default-src 'none'`.
//! - Every value it shows or carries in a hidden field is HTML-escaped
//!   ([`escape`]), attribute values always in double quotes.
//! - Headers on every page: `Cache-Control: no-store`, `Pragma:
//!   no-cache`, `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`
//!   (no clickjacking, RFC 9700 §4.16), `Referrer-Policy: no-referrer` (the
//!   query holds the request), `X-Content-Type-Options: nosniff`.
//! - No `form-action` directive: the form's answer is a redirect to the
//!   client, which some browsers check against `form-action` too.

use std::sync::OnceLock;

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::body::{self, Body};

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2430;margin:0}\
main{max-width:24rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.3rem;margin:0 0 1rem}label{display:block;margin:.8rem 0 .2rem;font-weight:600}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}\
button{margin-top:1.2rem;width:100%;padding:.6rem;font-size:1rem;background:#2457d6;color:#fff;border:0;border-radius:4px}\
.error{background:#fde8e8;color:#8a1111;padding:.6rem;border-radius:4px}\
ul{padding-left:1.2rem}code{word-break:break-all}small{color:#5a6270}";

/// The page's Content-Security-Policy: nothing but its own inline style.
fn csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| {
        let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
        HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; frame-ancestors 'none'"
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"))
    })
}

/// HTML-escape text for an element's content or a double-quoted attribute.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(title: &str, main: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{}</title><style>{STYLE}</style></head>\
         <body><main>{main}</main></body></html>\n",
        escape(title)
    )
}

/// A page with the headers every page carries.
pub fn respond(status: StatusCode, html: String) -> Response<Body> {
    let mut r = Response::new(body::full(Bytes::from(html)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp().clone());
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

/// What the login page shows and carries.
pub struct Login<'a> {
    pub client_name: &'a str,
    /// The scopes the client asks for (`None`: all it may have).
    pub scopes: Option<&'a [String]>,
    /// The hidden fields: the authorization request and the CSRF token.
    pub hidden: &'a [(&'a str, &'a str)],
    pub username: &'a str,
    /// An error to show above the form.
    pub error: Option<&'a str>,
}

/// The login page.
pub fn login(p: &Login<'_>) -> String {
    let mut main = String::with_capacity(2048);
    main.push_str("<h1>Sign in</h1>");
    main.push_str(&format!(
        "<p><strong>{}</strong> asks to act on your behalf",
        escape(p.client_name)
    ));
    match p.scopes {
        Some(scopes) if !scopes.is_empty() => {
            main.push_str(" with these scopes:</p><ul>");
            for s in scopes {
                main.push_str(&format!("<li><code>{}</code></li>", escape(s)));
            }
            main.push_str("</ul>");
        }
        Some(_) => main.push_str(" (no scopes).</p>"),
        None => main.push_str(" with the scopes it may be granted.</p>"),
    }
    if let Some(e) = p.error {
        main.push_str(&format!(
            "<p class=\"error\" role=\"alert\">{}</p>",
            escape(e)
        ));
    }
    main.push_str("<form method=\"post\" action=\"/oauth/authorize\">");
    for (name, value) in p.hidden {
        main.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            escape(name),
            escape(value)
        ));
    }
    main.push_str(&format!(
        "<label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username\" autocapitalize=\"none\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form>\
         <p><small>scopegate</small></p>",
        escape(p.username)
    ));
    document("Sign in", &main)
}

/// A request that cannot be redirected (unknown client, unregistered
/// redirect URI) or a refused form (anti-CSRF check): said plainly, with
/// no link anywhere.
pub fn refused(reason: &str) -> String {
    document(
        "Authorization request refused",
        &format!(
            "<h1>This sign-in request cannot be processed</h1><p class=\"error\">{}</p>\
             <p>Return to the application and start again.</p>",
            escape(reason)
        ),
    )
}

/// Throttled: how long to wait.
pub fn throttled(retry_after_secs: u32) -> String {
    document(
        "Too many attempts",
        &format!(
            "<h1>Too many failed sign-in attempts</h1>\
             <p class=\"error\">Try again in {retry_after_secs} seconds.</p>"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn login_page_escapes_what_it_echoes() {
        let scopes = vec!["a\"><b>".to_owned()];
        let html = login(&Login {
            client_name: "<c>",
            scopes: Some(&scopes),
            hidden: &[("state", "\"><script>alert(1)</script>")],
            username: "<u>",
            error: Some("<e>"),
        });
        assert!(!html.contains("<script>alert"));
        assert!(!html.contains("<c>") && !html.contains("<u>") && !html.contains("<e>"));
        assert!(html.contains("value=\"&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(!html.contains("<script") && !html.contains("src="));
    }

    #[test]
    fn headers() {
        let r = respond(
            StatusCode::OK,
            login(&Login {
                client_name: "c",
                scopes: None,
                hidden: &[],
                username: "",
                error: None,
            }),
        );
        let h = r.headers();
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'") && csp.starts_with("default-src 'none'"));
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
    }
}
