//! The connection tests: parsing, the environment, defaults, pgpass, errors.

use super::errors::*;
use super::options::*;
use super::pgpass;
use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn fixed_defaults(socket_dir_exists: bool, home: Option<&Path>) -> Defaults {
    Defaults {
        socket_dir_exists,
        os_user: Some("osuser".into()),
        home: home.map(Path::to_path_buf),
    }
}

fn resolve(
    conninfo: Option<&str>,
    env: &[(&str, &str)],
) -> Result<ConnectOptions, ConnectionError> {
    ConnectOptions::resolve_with(conninfo, &env_of(env), &fixed_defaults(false, None))
}

fn target(host: Option<&str>, hostaddr: Option<&str>, port: u16) -> Target {
    Target {
        host: host.map(str::to_owned),
        hostaddr: hostaddr.map(|a| a.parse().unwrap()),
        port,
    }
}

fn render(err: &ConnectionError) -> String {
    crate::diag::render_plain(err)
}

#[test]
fn url_with_every_part() {
    let o = resolve(
        Some(
            "postgresql://alice:s%40cret@db.example.com:6432/sales?sslmode=verify-full\
             &sslrootcert=/etc/ca.pem&application_name=audit&connect_timeout=5\
             &options=-c%20statement_timeout%3D5s",
        ),
        &[],
    )
    .unwrap();
    assert_eq!(o.user(), "alice");
    assert_eq!(o.password.as_deref(), Some("s@cret"));
    assert_eq!(o.targets, vec![target(Some("db.example.com"), None, 6432)]);
    assert_eq!(o.dbname(), "sales");
    assert_eq!(o.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(o.ssl_root_cert, RootCert::File("/etc/ca.pem".into()));
    assert_eq!(o.application_name.as_deref(), Some("audit"));
    assert_eq!(o.connect_timeout(), Some(Duration::from_secs(5)));
    assert_eq!(o.extra.get_options(), Some("-c statement_timeout=5s"));
    assert_eq!(o.redacted(), "alice@db.example.com:6432/sales");
}

#[test]
fn url_multi_host_ipv6_and_socket_path() {
    let o = resolve(Some("postgres://u@[::1]:5433,%2Ftmp%2Fsock,db2/x"), &[]).unwrap();
    assert_eq!(
        o.targets,
        vec![
            target(Some("::1"), None, 5433),
            target(Some("/tmp/sock"), None, 5432),
            target(Some("db2"), None, 5432),
        ]
    );
    assert_eq!(o.redacted(), "u@[::1]:5433,/tmp/sock:5432,db2:5432/x");
}

#[test]
fn url_details_follow_libpq() {
    // '?' before '@' still belongs to the password; '@' after '/' is not a credential.
    let o = resolve(Some("postgres://u:p?ss@h/db"), &[]).unwrap();
    assert_eq!(o.password.as_deref(), Some("p?ss"));
    assert_eq!(o.targets[0].host.as_deref(), Some("h"));
    // ssl=true is JDBC's spelling of sslmode=require.
    let o = resolve(Some("postgres://h/db?ssl=true"), &[]).unwrap();
    assert_eq!(o.ssl_mode(), SslMode::Require);
    // No host or port in the URL: the environment fills them in.
    let o = resolve(
        Some("postgres:///mydb"),
        &[
            ("PGHOST", "envhost"),
            ("PGPORT", "7777"),
            ("PGUSER", "envuser"),
        ],
    )
    .unwrap();
    assert_eq!(o.targets, vec![target(Some("envhost"), None, 7777)]);
    assert_eq!((o.user(), o.dbname()), ("envuser", "mydb"));
}

#[test]
fn keyword_value_quoting_and_escapes() {
    let o = resolve(
        Some(concat!(
            r"host=h1,h2 port = 5432,5433 user='bob smith' password='a\'b c' dbname=d\ b",
            "  sslmode=verify-ca\tsslcert=/c.crt sslkey=/c.key",
        )),
        &[],
    )
    .unwrap();
    assert_eq!(
        o.targets,
        vec![
            target(Some("h1"), None, 5432),
            target(Some("h2"), None, 5433)
        ]
    );
    assert_eq!(o.user(), "bob smith");
    assert_eq!(o.password.as_deref(), Some("a'b c"));
    assert_eq!(o.dbname(), "d b");
    assert_eq!(o.ssl_mode(), SslMode::VerifyCa);
    assert_eq!(o.ssl_cert.as_deref(), Some(Path::new("/c.crt")));
    assert_eq!(o.ssl_key.as_deref(), Some(Path::new("/c.key")));
}

#[test]
fn hostaddr_pairs_with_host() {
    let o = resolve(Some("host=db.internal hostaddr=127.0.0.1 port=5"), &[]).unwrap();
    assert_eq!(
        o.targets,
        vec![target(Some("db.internal"), Some("127.0.0.1"), 5)]
    );
    let o = resolve(Some("hostaddr=::1"), &[]).unwrap();
    assert_eq!(o.targets, vec![target(None, Some("::1"), 5432)]);
    assert_eq!(o.redacted(), "osuser@[::1]:5432/osuser");
}

#[test]
fn environment_fills_gaps_and_conninfo_wins() {
    let env = [
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpw"),
        ("PGDATABASE", "envdb"),
        ("PGSSLMODE", "require"),
        ("PGSSLROOTCERT", "/env/ca.pem"),
        ("PGCONNECT_TIMEOUT", "7"),
        ("PGAPPNAME", "envapp"),
    ];
    let o = resolve(Some("host=h dbname=d"), &env).unwrap();
    assert_eq!(o.targets, vec![target(Some("h"), None, 6000)]);
    assert_eq!((o.user(), o.dbname()), ("envuser", "d"));
    assert_eq!(o.password.as_deref(), Some("envpw"));
    assert_eq!(o.ssl_mode(), SslMode::Require);
    assert_eq!(o.ssl_root_cert, RootCert::File("/env/ca.pem".into()));
    assert_eq!(o.connect_timeout(), Some(Duration::from_secs(7)));
    assert_eq!(o.application_name.as_deref(), Some("envapp"));

    let o = resolve(None, &env).unwrap();
    assert_eq!(o.redacted(), "envuser@envhost:6000/envdb");

    // A keyword written in the string, even empty, blocks its variable (libpq).
    let o = resolve(Some("host=''"), &[("PGHOST", "envhost")]).unwrap();
    assert_eq!(o.targets, vec![target(Some("localhost"), None, 5432)]);
}

#[test]
fn defaults_when_nothing_is_given() {
    let env = env_of(&[]);
    let o = ConnectOptions::resolve_with(None, &env, &fixed_defaults(false, None)).unwrap();
    assert_eq!(o.targets, vec![target(Some("localhost"), None, 5432)]);
    assert_eq!((o.user(), o.dbname()), ("osuser", "osuser"));
    assert_eq!(o.password, None);
    assert_eq!(o.ssl_mode(), SslMode::Prefer);
    assert_eq!(o.connect_timeout(), Some(DEFAULT_CONNECT_TIMEOUT));
    assert_eq!(o.ssl_root_cert, RootCert::Unset);

    let home = Path::new("/home/someone");
    let o = ConnectOptions::resolve_with(None, &env, &fixed_defaults(true, Some(home))).unwrap();
    assert_eq!(
        o.targets,
        vec![target(Some(DEFAULT_SOCKET_DIR), None, 5432)]
    );
    assert_eq!(
        o.ssl_root_cert,
        RootCert::File(home.join(".postgresql/root.crt"))
    );
    assert_eq!(o.ssl_cert, Some(home.join(".postgresql/postgresql.crt")));
    assert_eq!(o.ssl_key, Some(home.join(".postgresql/postgresql.key")));
    assert_eq!(o.passfile, Some(home.join(".pgpass")));

    // The real system lookup finds some user (HOME set: no real ~/.pgpass is read).
    let env = env_of(&[("HOME", "/nonexistent/home")]);
    assert!(!ConnectOptions::resolve(None, &env)
        .unwrap()
        .user()
        .is_empty());
}

#[test]
fn connect_timeout_follows_libpq() {
    let timeout = |v: &str| resolve(Some(&format!("connect_timeout='{v}'")), &[]);
    assert_eq!(timeout("0").unwrap().connect_timeout(), None);
    assert_eq!(timeout("-3").unwrap().connect_timeout(), None);
    assert_eq!(
        timeout("1").unwrap().connect_timeout(),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        timeout(" 15 ").unwrap().connect_timeout(),
        Some(Duration::from_secs(15))
    );
    assert!(timeout("soon").unwrap_err().is_input_error());
    let o = resolve(None, &[("PGCONNECT_TIMEOUT", "3")]).unwrap();
    assert_eq!(o.connect_timeout(), Some(Duration::from_secs(3)));
}

#[test]
fn sslrootcert_system_means_verify_full() {
    let o = resolve(Some("sslrootcert=system"), &[]).unwrap();
    assert_eq!(o.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(o.ssl_root_cert, RootCert::System);
    let err = resolve(Some("sslrootcert=system sslmode=require"), &[]).unwrap_err();
    assert!(err.is_input_error(), "{err}");
}

#[test]
fn malformed_input_is_an_input_error() {
    let cases = [
        "postgres://u@h/db?sslmode=bogus",
        "sslmode=allow",
        "port=0",
        "port=99999",
        "port=abc",
        "host=a,b port=1,2,3",
        "host=a hostaddr=127.0.0.1,127.0.0.2",
        "hostaddr=not-an-ip",
        "dbname='unterminated",
        "justaword",
        "=value",
        "postgres://h/db?novalue",
        "postgres://[::1/db",
        "postgres://[]/db",
        "postgres://[::1]x/db",
        "postgres://u:%zz@h/db",
        "postgres://h/%ff",
        "nosuchoption=1",
        "keepalives=maybe",
    ];
    for case in cases {
        match resolve(Some(case), &[]) {
            Err(e @ ConnectionError::InvalidConnInfo { .. }) => {
                assert!(e.is_input_error());
                let code = miette::Diagnostic::code(&e).unwrap().to_string();
                assert_eq!(code, "pg_integrity::connection::invalid_conninfo");
                assert!(miette::Diagnostic::help(&e).is_some());
            }
            other => panic!("{case:?} gave {other:?}"),
        }
    }
    let e = resolve(Some("host=a,b port=1,2,3"), &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid connection string: could not match 3 port numbers to 2 hosts"
    );
    let e = resolve(Some("nosuchoption=1"), &[]).unwrap_err();
    assert!(e.to_string().contains("nosuchoption"), "{e}");
}

#[test]
fn malformed_input_never_echoes_the_password() {
    let secret = "Sup3rS3cretValue";
    let cases = [
        format!("postgres://u:{secret}@h:notaport/db"),
        format!("postgres://u:{secret}@h/db?bogus=1"),
        format!("postgres://u:{secret}@h/db?sslmode=nope"),
        format!("user=u password={secret} port=x"),
        format!("user=u {secret}"),
        format!("user=u password='{secret}"),
    ];
    for case in &cases {
        let err = resolve(Some(case), &[]).unwrap_err();
        assert!(err.is_input_error(), "{case}: {err}");
        for text in [err.to_string(), format!("{err:?}"), render(&err)] {
            assert!(!text.contains(secret), "{case} leaked: {text}");
        }
    }
}

#[test]
fn debug_and_redacted_hide_the_password() {
    let o = resolve(
        Some("postgres://postgres:hunter2secret@127.0.0.1:5432/test"),
        &[],
    )
    .unwrap();
    assert_eq!(o.redacted(), "postgres@127.0.0.1:5432/test");
    let debug = format!("{o:?}");
    assert!(!debug.contains("hunter2secret"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    let o = resolve(Some("host=/var/run/postgresql user=u dbname=d"), &[]).unwrap();
    assert_eq!(o.redacted(), "u@/var/run/postgresql:5432/d");
}

#[test]
fn with_application_name_is_a_fallback() {
    let o = resolve(None, &[])
        .unwrap()
        .with_application_name("pg-integrity");
    assert_eq!(o.fallback_application_name.as_deref(), Some("pg-integrity"));
    assert_eq!(o.application_name, None);
    let o = resolve(None, &[("PGAPPNAME", "mine")])
        .unwrap()
        .with_application_name("pg-integrity");
    assert_eq!(o.application_name.as_deref(), Some("mine"));
}

#[test]
fn pgpass_matching_follows_libpq() {
    let text = "# comment\n\
                db.example.com:5432:sales:alice:pw1\n\
                incomplete:5432:sales:alice\n\
                *:*:*:bob:pw\\:with\\\\colon:ignored\n\
                host\\:x:5432:*:carol:pw3\r\n\
                \\*:*:*:dave:literal-star\n\
                *:*:*:dave:wild\n\
                localhost:5432:*:*:local\n";
    let entries = pgpass::parse(text);
    let find = |h: &str, p: &str, d: &str, u: &str| pgpass::lookup(&entries, h, p, d, u);
    assert_eq!(
        find("db.example.com", "5432", "sales", "alice").as_deref(),
        Some("pw1")
    );
    assert_eq!(find("db.example.com", "5433", "sales", "alice"), None);
    assert_eq!(find("db.example.com", "5432", "other", "alice"), None);
    assert_eq!(
        find("any", "1", "db", "bob").as_deref(),
        Some("pw:with\\colon")
    );
    assert_eq!(
        find("host:x", "5432", "db", "carol").as_deref(),
        Some("pw3")
    );
    assert_eq!(
        find("*", "5432", "db", "dave").as_deref(),
        Some("literal-star")
    );
    assert_eq!(find("h", "5432", "db", "dave").as_deref(), Some("wild"));
    assert_eq!(
        find("localhost", "5432", "db", "eve").as_deref(),
        Some("local")
    );
    assert_eq!(find("localhost", "5433", "db", "eve"), None);
}

#[test]
fn pgpass_file_is_read_per_host_and_checked_for_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pgpass");
    fs::write(
        &file,
        "localhost:5432:app:u:socketpw\nh2:5433:app:u:h2pw\n10.0.0.9:5432:app:u:addrpw\n",
    )
    .unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let passfile = file.to_str().unwrap();
    let env = [("PGPASSFILE", passfile)];

    let o = resolve(
        Some("host=/var/run/postgresql,h2,,nomatch port=5432,5433,5432,5432 user=u dbname=app"),
        &env,
    )
    .unwrap();
    let found: Vec<Option<&str>> = o.pgpass_passwords.iter().map(|p| p.as_deref()).collect();
    // The default socket directory and an empty host both look up "localhost".
    assert_eq!(
        found,
        [Some("socketpw"), Some("h2pw"), Some("socketpw"), None]
    );
    assert!(o.warnings().is_empty());
    assert!(!format!("{o:?}").contains("socketpw"));

    let o = resolve(Some("hostaddr=10.0.0.9 user=u dbname=app"), &env).unwrap();
    assert_eq!(o.pgpass_passwords, [Some("addrpw".to_owned())]);

    // An explicit password wins; the file is not even read.
    let o = resolve(
        Some("host=h2 port=5433 user=u dbname=app password=given"),
        &env,
    )
    .unwrap();
    assert!(o.pgpass_passwords.is_empty());

    // Group/world-accessible: ignored with libpq's warning.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let o = resolve(Some("host=h2 port=5433 user=u dbname=app"), &env).unwrap();
    assert_eq!(o.pgpass_passwords, [None]);
    assert_eq!(o.warnings().len(), 1);
    assert!(
        o.warnings()[0].contains("has group or world access"),
        "{:?}",
        o.warnings()
    );

    // Missing file: silently nothing.
    let o = resolve(Some("user=u"), &[("PGPASSFILE", "/nonexistent/pgpass")]).unwrap();
    assert!(o.warnings().is_empty());
    assert_eq!(o.pgpass_passwords, [None]);
}

#[test]
fn sslmode_spellings() {
    for mode in [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ] {
        assert_eq!(SslMode::parse(mode.as_str()).unwrap(), mode);
        assert_eq!(mode.to_string(), mode.as_str());
    }
}

#[test]
fn only_invalid_conninfo_is_an_input_error() {
    let errors = [
        ConnectionError::HostNotFound {
            host: "h".into(),
            message: "m".into(),
        },
        ConnectionError::ConnectionRefused {
            addr: "h:1".into(),
            message: "m".into(),
        },
        ConnectionError::Timeout {
            addr: "h:1".into(),
            seconds: 2,
        },
        ConnectionError::DatabaseNotFound {
            addr: "h:1".into(),
            dbname: "d".into(),
        },
    ];
    for e in errors {
        assert!(!e.is_input_error());
        assert!(miette::Diagnostic::help(&e).is_some());
    }
}

#[test]
fn keepalives_default_on_and_short_unless_given() {
    let o = resolve(Some("host=db.example.com"), &[]).unwrap();
    assert_eq!(o.extra.get_keepalives_idle(), DEFAULT_KEEPALIVES_IDLE);
    assert_eq!(
        o.extra.get_keepalives_interval(),
        Some(DEFAULT_KEEPALIVES_INTERVAL)
    );
    assert_eq!(
        o.extra.get_keepalives_retries(),
        Some(DEFAULT_KEEPALIVES_RETRIES)
    );
    assert_eq!(
        o.extra.get_tcp_user_timeout(),
        Some(&DEFAULT_TCP_USER_TIMEOUT)
    );
    let o = resolve(
        Some("host=db.example.com keepalives_idle=120 tcp_user_timeout=5"),
        &[],
    )
    .unwrap();
    assert_eq!(o.extra.get_keepalives_idle(), Duration::from_secs(120));
    assert_eq!(
        o.extra.get_tcp_user_timeout(),
        Some(&Duration::from_secs(5))
    );
}
