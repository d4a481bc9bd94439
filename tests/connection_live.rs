//! `connection` against a real PostgreSQL server: a throwaway cluster started
//! here with a test CA (scram-sha-256 auth on 127.0.0.1, TLS optional, trust on
//! its own Unix socket); never the machine's shared server.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use pg_integrity::db::connection::{connect, ConnectOptions, ConnectionError};

/// HOME for every test: nonexistent, so the real ~/.pgpass and
/// ~/.postgresql/root.crt of whoever runs the tests never play a part.
const NO_HOME: &str = "/nonexistent/pg-integrity-test-home";

fn env_with(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut map: HashMap<String, String> = HashMap::from([("HOME".into(), NO_HOME.into())]);
    map.extend(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    move |k| map.get(k).cloned()
}

fn resolve(conninfo: &str, env: &[(&str, &str)]) -> ConnectOptions {
    ConnectOptions::resolve(Some(conninfo), &env_with(env)).expect("conninfo resolves")
}

fn render(err: &ConnectionError) -> String {
    pg_integrity::diag::render_plain(err)
}

fn help(err: &ConnectionError) -> String {
    miette::Diagnostic::help(err)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl query")
        .get(0)
}

// ---------------------------------------------------------------------------
// Plain (non-TLS) connections, to the throwaway cluster below (never the
// machine's shared server): TCP with sslmode=disable, and its Unix socket
// ---------------------------------------------------------------------------

#[tokio::test]
async fn plain_server_connects_and_reports_application_name() {
    let c = tls_cluster();
    let opts = resolve(
        &format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres?sslmode=disable",
            c.port
        ),
        &[],
    )
    .with_application_name("pg-integrity-test");
    assert_eq!(
        opts.redacted(),
        format!("{USER}@127.0.0.1:{}/postgres", c.port)
    );
    let client = connect(&opts).await.expect("connects");
    let row = client
        .query_one(
            "SELECT current_database(), current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert_eq!(row.get::<_, String>(1), "pg-integrity-test");
    assert!(!uses_tls(&client).await);
}

#[tokio::test]
async fn unix_socket_never_uses_tls_whatever_sslmode() {
    // verify-full with no root certificate would fail over TCP; sockets skip TLS.
    let c = tls_cluster();
    let opts = resolve(
        &format!(
            "host={} port={} user={USER} dbname=postgres sslmode=verify-full",
            c.dir.path().display(),
            c.port
        ),
        &[],
    );
    let client = connect(&opts).await.expect("connects over the socket");
    assert!(!uses_tls(&client).await);
}

#[tokio::test]
async fn wrong_database_is_database_not_found() {
    let c = tls_cluster();
    let opts = resolve(
        &c.with_password("host=127.0.0.1 dbname=no_such_db_pgint sslmode=disable"),
        &[],
    );
    let err = connect(&opts).await.unwrap_err();
    assert!(
        matches!(&err, ConnectionError::DatabaseNotFound { dbname, .. } if dbname == "no_such_db_pgint"),
        "{err:?}"
    );
    assert!(!err.is_input_error());
    assert!(help(&err).contains("PGDATABASE"));
}

#[tokio::test]
async fn closed_port_is_connection_refused() {
    let opts = resolve("host=127.0.0.1 port=1 user=postgres dbname=test", &[]);
    let err = connect(&opts).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::ConnectionRefused { .. }),
        "{err:?}"
    );
    assert!(!err.is_input_error());
    assert!(
        help(&err).contains("is the server running on 127.0.0.1:1"),
        "{}",
        help(&err)
    );
}

#[tokio::test]
async fn unknown_host_is_host_not_found() {
    let opts = resolve("host=nonexistent.invalid user=postgres dbname=test", &[]);
    let err = connect(&opts).await.unwrap_err();
    assert!(
        matches!(&err, ConnectionError::HostNotFound { host, .. } if host == "nonexistent.invalid"),
        "{err:?}"
    );
    assert!(!err.is_input_error());
}

#[tokio::test]
async fn silent_servers_hit_connect_timeout_and_the_next_host_is_tried() {
    // Local listeners that never accept: the kernel completes the TCP
    // handshake, then nobody answers the startup packet. Behaviour, not timing
    // (that belongs in benches): the first host's attempt ends with the
    // timeout and the second host is tried; the error names the host it
    // gave up on last and the limit.
    let silent_a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, b) = (
        silent_a.local_addr().unwrap().port(),
        silent_b.local_addr().unwrap().port(),
    );
    let opts = resolve(
        &format!(
            "host=127.0.0.1,127.0.0.1 port={a},{b} user=postgres dbname=test connect_timeout=2"
        ),
        &[],
    );
    // A guard against a hang, not a window: without the timeout this never ends.
    let err = tokio::time::timeout(Duration::from_secs(120), connect(&opts))
        .await
        .expect("connect_timeout ends each attempt")
        .unwrap_err();
    assert!(
        matches!(&err, ConnectionError::Timeout { seconds: 2, addr } if addr == &format!("127.0.0.1:{b}")),
        "{err:?}"
    );
    let text = render(&err);
    assert!(text.contains(&format!("127.0.0.1:{b}")), "{text}");
    assert!(text.contains("timed out after 2s"), "{text}");
    assert!(help(&err).contains("PGCONNECT_TIMEOUT"));
    drop((silent_a, silent_b));
}

#[tokio::test]
async fn next_host_is_tried_after_a_failure() {
    let c = tls_cluster();
    let opts = resolve(
        &format!(
            "host=127.0.0.1,127.0.0.1 port=1,{} user={USER} password={PASSWORD} dbname=postgres sslmode=disable",
            c.port
        ),
        &[],
    );
    assert_eq!(
        opts.redacted(),
        format!("{USER}@127.0.0.1:1,127.0.0.1:{}/postgres", c.port)
    );
    connect(&opts).await.expect("second host answers");
}

// ---------------------------------------------------------------------------
// A throwaway TLS cluster
// ---------------------------------------------------------------------------

const USER: &str = "tester";
const PASSWORD: &str = "Tls-Pa55word-9f3k";
/// Role that logs in with a client certificate (pg_hba `cert`), no password.
const CERT_USER: &str = "certuser";

/// One initdb'd cluster with ssl=on and scram auth, shared by the tests that
/// run at the same time and stopped (by Drop, also when a test panics) once
/// the last of them lets go of it.
struct TlsCluster {
    dir: tempfile::TempDir,
    port: u16,
    /// The CA that signed the server certificate (SAN: DNS localhost, IP 127.0.0.1).
    ca: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
    /// initdb/pg_ctl refuse to run as root: run them as this (uid, gid).
    run_as: Option<(u32, u32)>,
}

static CLUSTER: Mutex<Weak<TlsCluster>> = Mutex::new(Weak::new());

fn tls_cluster() -> Arc<TlsCluster> {
    let mut slot = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(cluster) = slot.upgrade() {
        return cluster;
    }
    let cluster = Arc::new(TlsCluster::start());
    *slot = Arc::downgrade(&cluster);
    cluster
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ensure_openssl() {
    let works = || {
        Command::new("openssl")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works() && nix::unistd::geteuid().is_root() {
        run(Command::new("apt-get").args(["install", "-y", "openssl"]));
    }
    assert!(
        works(),
        "the openssl command is needed to make test certificates"
    );
}

const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
";

fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let cert = dir.join(format!("{name}.crt"));
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-new", "-nodes", "-days", "2"])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-config", "openssl.cnf", "-extensions", "v3_ca"])
        .args(["-subj", &format!("/CN=pg-integrity test {name}")])
        .args(["-keyout", &format!("{name}.key"), "-out"])
        .arg(&cert));
    cert
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), uid, gid);
        }
    }
}

impl TlsCluster {
    fn start() -> Self {
        ensure_openssl();
        let dir = tempfile::Builder::new()
            .prefix("pgint-tls")
            .tempdir()
            .unwrap();
        let d = dir.path();
        fs::write(d.join("openssl.cnf"), OPENSSL_CONFIG).unwrap();
        let ca = make_ca(d, "ca");
        let other_ca = make_ca(d, "other-ca");
        run(Command::new("openssl")
            .current_dir(d)
            .args(["req", "-new", "-nodes", "-config", "openssl.cnf"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args([
                "-subj",
                "/CN=localhost",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
            ]));
        run(Command::new("openssl")
            .current_dir(d)
            .args(["x509", "-req", "-days", "2", "-in", "server.csr"])
            .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-extfile", "openssl.cnf", "-extensions", "v3_server"])
            .args(["-out", "server.crt"]));
        run(Command::new("openssl")
            .current_dir(d)
            .args(["req", "-new", "-nodes", "-config", "openssl.cnf"])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .args(["-subj", &format!("/CN={CERT_USER}")])
            .args(["-keyout", "client.key", "-out", "client.csr"]));
        run(Command::new("openssl")
            .current_dir(d)
            .args(["x509", "-req", "-days", "2", "-in", "client.csr"])
            .args(["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-extfile", "openssl.cnf", "-extensions", "v3_client"])
            .args(["-out", "client.crt"]));
        for key in ["server.key", "client.key"] {
            fs::set_permissions(d.join(key), fs::Permissions::from_mode(0o600)).unwrap();
        }
        fs::write(d.join("pwfile"), format!("{PASSWORD}\n")).unwrap();

        let run_as = nix::unistd::geteuid().is_root().then(|| {
            let pg = nix::unistd::User::from_name("postgres")
                .unwrap()
                .expect("an OS user named postgres to run the server as");
            chown_tree(d, pg.uid.as_raw(), pg.gid.as_raw());
            (pg.uid.as_raw(), pg.gid.as_raw())
        });
        let cluster = TlsCluster {
            port: free_port(),
            ca,
            other_ca,
            run_as,
            dir,
        };
        let d = cluster.dir.path();
        let data = d.join("data");
        run(cluster
            .pg_command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--pwfile=pwfile", "--auth-local=trust"])
            .args(["--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"]));
        let mut conf = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        conf.push_str(&format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n\
             fsync = off\nmax_connections = 20\nshared_buffers = 16MB\n",
            cluster.port,
            d.display(),
            d.join("server.crt").display(),
            d.join("server.key").display(),
            cluster.ca.display(),
        ));
        fs::write(data.join("postgresql.conf"), conf).unwrap();
        // `host` (not `hostssl`) lets both TLS and plain connections in.
        fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\nhostssl all {CERT_USER} 127.0.0.1/32 cert\n\
                 host all all 127.0.0.1/32 scram-sha-256\n"
            ),
        )
        .unwrap();
        run(cluster
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(d.join("server.log"))
            .args(["-w", "-t", "60", "start"]));
        run(cluster
            .pg_command("psql")
            .arg("-h")
            .arg(d)
            .args([
                "-p",
                &cluster.port.to_string(),
                "-U",
                USER,
                "-d",
                "postgres",
            ])
            .args([
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("CREATE ROLE {CERT_USER} LOGIN"),
            ]));
        cluster
    }

    fn pg_command(&self, program: &str) -> Command {
        // The same server binaries the throwaway servers use (PG_INTEGRITY_PG_BIN, PATH, ...).
        let bindir = pg_integrity::db::sandbox::find_bindir().expect("PostgreSQL server binaries");
        let exe = pg_integrity::db::sandbox::client_program(&bindir, program);
        let mut cmd = Command::new(&exe);
        let lib = bindir.join("../lib");
        if exe.starts_with(&bindir) && lib.join("libpq.so.5").exists() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        cmd.current_dir(self.dir.path());
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// key=value conninfo for the test user; `extra` adds or overrides.
    fn conninfo(&self, extra: &str) -> String {
        format!(
            "host=localhost port={} user={USER} dbname=postgres {extra}",
            self.port
        )
    }

    fn with_password(&self, extra: &str) -> String {
        self.conninfo(&format!("password={PASSWORD} {extra}"))
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        let _ = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        // The TempDir field then removes the files.
    }
}

async fn assert_connects_with_tls(conninfo: &str, expect_tls: bool) {
    let opts = resolve(conninfo, &[]);
    let client = connect(&opts)
        .await
        .unwrap_or_else(|e| panic!("{} should connect: {}", opts.redacted(), render(&e)));
    assert_eq!(uses_tls(&client).await, expect_tls, "{}", opts.redacted());
}

async fn assert_tls_error(conninfo: &str) -> ConnectionError {
    let opts = resolve(conninfo, &[]);
    let err = connect(&opts).await.expect_err("must fail");
    assert!(matches!(err, ConnectionError::Tls { .. }), "{err:?}");
    assert!(!err.is_input_error());
    err
}

#[tokio::test]
async fn verify_full_with_the_ca_succeeds_for_localhost() {
    let c = tls_cluster();
    let ca = c.ca.display();
    assert_connects_with_tls(
        &c.with_password(&format!("sslmode=verify-full sslrootcert={ca}")),
        true,
    )
    .await;
}

#[tokio::test]
async fn verify_full_by_ip_succeeds_when_the_san_has_the_ip() {
    let c = tls_cluster();
    let ca = c.ca.display();
    let conninfo = c.with_password(&format!(
        "host=127.0.0.1 sslmode=verify-full sslrootcert={ca}"
    ));
    assert_connects_with_tls(&conninfo, true).await;
}

#[tokio::test]
async fn verify_full_rejects_a_name_the_certificate_lacks() {
    let c = tls_cluster();
    let ca = c.ca.display();
    // Connect to 127.0.0.1 but expect the certificate to name another host.
    let err = assert_tls_error(&c.with_password(&format!(
        "host=db.pgint.test hostaddr=127.0.0.1 sslmode=verify-full sslrootcert={ca}"
    )))
    .await;
    assert!(err.to_string().contains("db.pgint.test"), "{err}");
    assert!(help(&err).contains("verify-ca"), "{}", help(&err));
}

#[tokio::test]
async fn verify_full_with_the_wrong_ca_fails_with_tls() {
    let c = tls_cluster();
    let other = c.other_ca.display();
    let err =
        assert_tls_error(&c.with_password(&format!("sslmode=verify-full sslrootcert={other}")))
            .await;
    assert!(help(&err).contains("sslrootcert"), "{}", help(&err));
}

#[tokio::test]
async fn verify_ca_ignores_the_host_name() {
    let c = tls_cluster();
    let ca = c.ca.display();
    let conninfo = c.with_password(&format!(
        "host=db.pgint.test hostaddr=127.0.0.1 sslmode=verify-ca sslrootcert={ca}"
    ));
    assert_connects_with_tls(&conninfo, true).await;
}

#[tokio::test]
async fn verify_ca_with_the_wrong_ca_fails_with_tls() {
    let c = tls_cluster();
    let other = c.other_ca.display();
    assert_tls_error(&c.with_password(&format!("sslmode=verify-ca sslrootcert={other}"))).await;
}

#[tokio::test]
async fn verify_ca_without_a_root_certificate_fails_with_tls() {
    let c = tls_cluster();
    // HOME is nonexistent, so the default ~/.postgresql/root.crt is missing.
    let err = assert_tls_error(&c.with_password("sslmode=verify-ca")).await;
    assert!(
        err.to_string().contains("root.crt\" does not exist"),
        "{err}"
    );
}

#[tokio::test]
async fn require_without_a_ca_succeeds() {
    let c = tls_cluster();
    assert_connects_with_tls(&c.with_password("sslmode=require"), true).await;
}

#[tokio::test]
async fn require_with_a_root_certificate_acts_as_verify_ca() {
    let c = tls_cluster();
    let other = c.other_ca.display();
    assert_tls_error(&c.with_password(&format!("sslmode=require sslrootcert={other}"))).await;
    let ca = c.ca.display();
    let mismatch =
        format!("host=db.pgint.test hostaddr=127.0.0.1 sslmode=require sslrootcert={ca}");
    assert_connects_with_tls(&c.with_password(&mismatch), true).await;
}

#[tokio::test]
async fn prefer_uses_tls_without_verifying() {
    let c = tls_cluster();
    assert_connects_with_tls(&c.with_password("sslmode=prefer"), true).await;
    let other = c.other_ca.display();
    assert_connects_with_tls(
        &c.with_password(&format!("sslmode=prefer sslrootcert={other}")),
        true,
    )
    .await;
}

#[tokio::test]
async fn disable_connects_in_plain_text() {
    let c = tls_cluster();
    assert_connects_with_tls(&c.with_password("sslmode=disable"), false).await;
}

#[tokio::test]
async fn url_form_with_tls_parameters() {
    let c = tls_cluster();
    let url = format!(
        "postgresql://{USER}:{PASSWORD}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        c.port,
        c.ca.display()
    );
    assert_connects_with_tls(&url, true).await;
}

#[tokio::test]
async fn socket_of_the_tls_cluster_skips_tls() {
    let c = tls_cluster();
    let conninfo = format!(
        "host={} port={} user={USER} dbname=postgres sslmode=verify-full",
        c.dir.path().display(),
        c.port
    );
    assert_connects_with_tls(&conninfo, false).await;
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_and_never_shown() {
    let c = tls_cluster();
    let secret = "Wr0ng-Pa55-zq8x";
    let url = format!(
        "postgres://{USER}:{secret}@localhost:{}/postgres?sslmode=require",
        c.port
    );
    let opts = resolve(&url, &[]);
    let err = connect(&opts).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(!err.is_input_error());
    let texts = [
        err.to_string(),
        format!("{err:?}"),
        render(&err),
        format!("{opts:?}"),
        opts.redacted(),
    ];
    for text in &texts {
        assert!(!text.contains(secret), "password leaked: {text}");
    }
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
    assert!(help(&err).contains("PGPASSWORD"), "{}", help(&err));
    assert!(help(&err).contains("~/.pgpass"), "{}", help(&err));
}

#[tokio::test]
async fn missing_password_is_authentication_failed() {
    let c = tls_cluster();
    let opts = resolve(&c.conninfo("sslmode=require"), &[]);
    let err = connect(&opts).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(
        help(&err).contains("no password was supplied"),
        "{}",
        help(&err)
    );
}

#[tokio::test]
async fn password_file_supplies_the_password() {
    let c = tls_cluster();
    let home = tempfile::tempdir().unwrap();
    let passfile = home.path().join("pgpass");
    fs::write(
        &passfile,
        format!("# test\nlocalhost:{}:*:{USER}:{PASSWORD}\n", c.port),
    )
    .unwrap();
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).unwrap();
    let passfile = passfile.to_str().unwrap();

    let opts = resolve(&c.conninfo("sslmode=require"), &[("PGPASSFILE", passfile)]);
    assert!(opts.warnings().is_empty());
    assert!(!format!("{opts:?}").contains(PASSWORD));
    let client = connect(&opts)
        .await
        .unwrap_or_else(|e| panic!("{}", render(&e)));
    assert!(uses_tls(&client).await);

    // Group-readable: libpq ignores the file with a warning, so no password.
    fs::set_permissions(passfile, fs::Permissions::from_mode(0o640)).unwrap();
    let opts = resolve(&c.conninfo("sslmode=require"), &[("PGPASSFILE", passfile)]);
    assert_eq!(opts.warnings().len(), 1, "{:?}", opts.warnings());
    let err = connect(&opts).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::AuthenticationFailed { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_password_from_the_file_names_the_file() {
    let c = tls_cluster();
    let home = tempfile::tempdir().unwrap();
    let passfile = home.path().join("pgpass");
    fs::write(&passfile, format!("*:*:*:{USER}:not-the-password\n")).unwrap();
    fs::set_permissions(&passfile, fs::Permissions::from_mode(0o600)).unwrap();
    let opts = resolve(
        &c.conninfo("sslmode=require"),
        &[("PGPASSFILE", passfile.to_str().unwrap())],
    );
    let err = connect(&opts).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(
        help(&err).contains(passfile.to_str().unwrap()),
        "{}",
        help(&err)
    );
    assert!(!render(&err).contains("not-the-password"));
}

#[tokio::test]
async fn client_certificate_authenticates() {
    let c = tls_cluster();
    let d = c.dir.path();
    let conninfo = format!(
        "host=localhost port={} user={CERT_USER} dbname=postgres sslmode=verify-full \
         sslrootcert={} sslcert={} sslkey={}",
        c.port,
        c.ca.display(),
        d.join("client.crt").display(),
        d.join("client.key").display()
    );
    assert_connects_with_tls(&conninfo, true).await;

    // Without the certificate, the `cert` rule turns us away (SQLSTATE 28000).
    let opts = resolve(
        &format!(
            "host=localhost port={} user={CERT_USER} dbname=postgres sslmode=require",
            c.port
        ),
        &[],
    );
    let err = connect(&opts).await.unwrap_err();
    assert!(
        matches!(err, ConnectionError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn client_certificate_without_its_key_is_a_tls_error() {
    let c = tls_cluster();
    let conninfo = format!(
        "host=localhost port={} user={CERT_USER} dbname=postgres sslmode=require \
         sslcert={} sslkey=/nonexistent/client.key",
        c.port,
        c.dir.path().join("client.crt").display()
    );
    let err = assert_tls_error(&conninfo).await;
    assert!(err.to_string().contains("not private key file"), "{err}");
}
