//! TEMPORARY minimal connection module; replaced by the full libpq-compatible one.

use std::time::Duration;

#[derive(Clone)]
pub struct ConnectOptions {
    config: tokio_postgres::Config,
    display: String,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConnectionError {
    #[error("invalid connection string: {0}")]
    #[diagnostic(code(pg_integrity::connection::invalid))]
    InvalidConnInfo(String),
    #[error("could not connect to {target}: {message}")]
    #[diagnostic(code(pg_integrity::connection::failed))]
    Other { target: String, message: String },
}

impl ConnectionError {
    pub fn is_input_error(&self) -> bool {
        matches!(self, ConnectionError::InvalidConnInfo(_))
    }
}

impl ConnectOptions {
    pub fn resolve(
        conninfo: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConnectionError> {
        let s = conninfo
            .map(str::to_string)
            .or_else(|| env("DATABASE_URL"))
            .unwrap_or_else(|| "host=/var/run/postgresql".into());
        let mut config: tokio_postgres::Config = s
            .parse()
            .map_err(|e: tokio_postgres::Error| ConnectionError::InvalidConnInfo(e.to_string()))?;
        if config.get_user().is_none() {
            config.user(env("PGUSER").as_deref().unwrap_or("postgres"));
        }
        config.connect_timeout(Duration::from_secs(10));
        let display = format!("{:?}/{:?}", config.get_hosts(), config.get_dbname());
        Ok(ConnectOptions { config, display })
    }

    pub fn from_socket(dir: &std::path::Path, port: u16, user: &str, dbname: &str) -> Self {
        let mut config = tokio_postgres::Config::new();
        config.host_path(dir).port(port).user(user).dbname(dbname);
        ConnectOptions {
            config,
            display: format!("{user}@{}:{port}/{dbname}", dir.display()),
        }
    }

    pub fn with_application_name(mut self, name: &str) -> Self {
        self.config.application_name(name);
        self
    }

    pub fn with_dbname(mut self, name: &str) -> Self {
        self.config.dbname(name);
        self
    }

    pub fn redacted(&self) -> String {
        self.display.clone()
    }

    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }
}

pub async fn connect(opts: &ConnectOptions) -> Result<tokio_postgres::Client, ConnectionError> {
    let (client, conn) = opts
        .config
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| ConnectionError::Other {
            target: opts.redacted(),
            message: e.to_string(),
        })?;
    tokio::spawn(conn);
    Ok(client)
}
