//! `database.url`: `sslmode`, `sslrootcert` and the URL tokio-postgres gets.

use super::*;

fn database(url: &str) -> DatabaseConfig {
    parse(&format!("[database]\nurl = {url:?}\n"))
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .database
}

#[test]
fn sslmode_values() {
    for (mode, tls) in [
        ("disable", TlsMode::Disable),
        ("prefer", TlsMode::Prefer),
        ("require", TlsMode::Require),
    ] {
        let url = format!("postgres://u@h/db?sslmode={mode}");
        let d = database(&url);
        assert_eq!(d.tls, tls, "{mode}");
        assert!(d.ca_file.is_none());
        // tokio-postgres understands these itself: the URL is left as it is.
        assert_eq!(d.pg_url().unwrap().expose(), url);
    }
    assert!(!TlsMode::Prefer.is_required());
    assert!(TlsMode::Require.is_required() && !TlsMode::Require.verifies());
    assert!(TlsMode::VerifyCa.is_required() && TlsMode::VerifyCa.verifies());

    let d = database(
        "postgres://u:pw@h:5433/db?application_name=sg&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20file.pem&connect_timeout=3",
    );
    assert_eq!(d.tls, TlsMode::VerifyFull);
    assert_eq!(d.ca_file.as_deref(), Some(Path::new("/etc/ca file.pem")));
    // The configured URL is kept as written; tokio-postgres gets one it
    // parses, that still insists on TLS.
    assert!(d.url.as_ref().unwrap().expose().contains("verify-full"));
    let pg = d.pg_url().unwrap();
    assert_eq!(
        pg.expose(),
        "postgres://u:pw@h:5433/db?application_name=sg&sslmode=require&connect_timeout=3"
    );
    let parsed: tokio_postgres::Config = pg.expose().parse().unwrap();
    assert_eq!(
        parsed.get_ssl_mode(),
        tokio_postgres::config::SslMode::Require
    );
    assert_eq!(parsed.get_application_name(), Some("sg"));

    let d = database("postgresql://h/db?sslrootcert=/ca.pem&sslmode=verify-ca");
    assert_eq!(d.tls, TlsMode::VerifyCa);
    assert_eq!(d.ca_file.as_deref(), Some(Path::new("/ca.pem")));
    assert_eq!(
        d.pg_url().unwrap().expose(),
        "postgresql://h/db?sslmode=require"
    );

    // A later sslmode overrides an earlier one, as in libpq.
    let d = database("postgres://h/db?sslmode=verify-full&sslmode=disable");
    assert_eq!(d.tls, TlsMode::Disable);
    assert_eq!(
        d.pg_url().unwrap().expose(),
        "postgres://h/db?sslmode=require&sslmode=disable"
    );

    // sslrootcert alone is kept in the config and removed for tokio-postgres.
    let d = database("postgres://h/db?sslrootcert=ca.pem");
    assert_eq!(d.tls, TlsMode::Prefer);
    assert_eq!(d.ca_file.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(d.pg_url().unwrap().expose(), "postgres://h/db");
}

#[test]
fn sslmode_in_key_value_form() {
    let d = database("host=db user=sg password='p w?' sslmode = verify-full sslrootcert='/etc/my ca.pem' dbname=x");
    assert_eq!(d.tls, TlsMode::VerifyFull);
    assert_eq!(d.ca_file.as_deref(), Some(Path::new("/etc/my ca.pem")));
    let pg = d.pg_url().unwrap();
    assert_eq!(
        pg.expose(),
        "host=db user=sg password='p w?' sslmode=require dbname=x"
    );
    let parsed: tokio_postgres::Config = pg.expose().parse().unwrap();
    assert_eq!(parsed.get_password(), Some(&b"p w?"[..]));
    assert_eq!(parsed.get_dbname(), Some("x"));
    let d = database("host=db sslrootcert=/a\\ b.pem sslmode=verify-ca");
    assert_eq!(d.ca_file.as_deref(), Some(Path::new("/a b.pem")));
    assert_eq!(d.pg_url().unwrap().expose(), "host=db sslmode=require");
}

#[test]
fn sslmode_errors() {
    for (url, needle) in [
        (
            "postgres://u:hunter2@h/db?sslmode=verify-full",
            "sslmode=verify-full needs sslrootcert=PATH",
        ),
        (
            "postgres://u:hunter2@h/db?sslmode=verify-ca",
            "sslmode=verify-ca needs sslrootcert=PATH",
        ),
        (
            "host=h password=hunter2 sslmode=verify-ca",
            "sslmode=verify-ca needs sslrootcert=PATH",
        ),
        (
            "postgres://u:hunter2@h/db?sslmode=allow",
            "sslmode=\"allow\" is not one of disable, prefer, require, verify-ca, verify-full",
        ),
        (
            "postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=",
            "sslrootcert must name a file",
        ),
        (
            "postgres://u:hunter2@h/db?nosuch=1",
            "not a valid Postgres connection string",
        ),
    ] {
        let e = errors(&format!("[database]\nurl = {url:?}\n"));
        assert_eq!(e.len(), 1, "{url}: {e:?}");
        assert!(e[0].starts_with("test.toml: database.url: "), "{e:?}");
        assert!(e[0].contains(needle), "{url}: {e:?}");
        assert!(!e[0].contains("hunter2"), "{e:?}");
    }
    let env = EnvOverrides {
        database_url: Some("postgres://h/db?sslmode=verify-full".into()),
        listen: None,
    };
    let e = Config::parse("", "f", &env).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert!(
        e.0[0]
            .to_string()
            .starts_with("f: SCOPEGATE_DATABASE_URL: sslmode=verify-full needs"),
        "{e}"
    );
}

#[test]
fn pg_url_without_tls_parameters_is_unchanged() {
    for url in [
        "postgres://u:p@h/db",
        "postgres://u:p?w@h/db?application_name=a",
        "postgres://h",
        "host=h dbname=x",
        // Not well-formed: left for tokio-postgres to report.
        "postgres://h/db?sslrootcert",
        "host=h sslrootcert='unterminated",
    ] {
        assert_eq!(pg_url(&Secret::new(url)).expose(), url);
    }
    // The password may contain `?`: parameters start after the user info.
    assert_eq!(
        pg_url(&Secret::new(
            "postgres://u:p?sslmode=x@h/db?sslmode=verify-ca"
        ))
        .expose(),
        "postgres://u:p?sslmode=x@h/db?sslmode=require"
    );
}
