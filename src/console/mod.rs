//! `baton console`: live management of the fleet in a browser.
//!
//! The console sits beside the CLI, above [`crate::client`]: it sends the same requests through
//! the same client, so its results are accounted exactly as `baton rpc`'s are. Its parts:
//! `registry` (the nodes, from the broker's registry at start and the registration exchange),
//! `rollouts` (every rollout, live, from the events exchange), `jobs` (requests sent for a user,
//! with their live results), `store` (SQLite: nodes and job history across restarts), `auth`
//! (users, sessions, forgery checks) and `server` (axum: the embedded page and its API).
//!
//! Safe by default: it listens on 127.0.0.1, and refuses to listen anywhere else without a
//! users file (and on `0.0.0.0`/`::` without `--origin`, the names it answers to). Without a
//! users file there is no login: anyone who can connect to the loopback address (every local
//! user) can drive the fleet with the operator's key, so that mode is for single-user machines.

pub mod auth;
pub mod jobs;
pub mod metrics;
pub mod registry;
pub mod rollouts;
pub mod server;
pub mod store;

pub use auth::{PublicOrigin, UsersError, add_user};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::agents::catalog::Catalog;
use crate::broker::{Broker, ConnectMode};
use crate::config::ClientConfig;
use crate::security::SharedSecurity;

/// How `baton console` was asked to run.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub listen: SocketAddr,
    /// The users file; when given, everyone must log in.
    pub users: Option<PathBuf>,
    /// The SQLite file for nodes and job history.
    pub database: PathBuf,
    /// How often nodes register (their `registration.interval_secs`).
    pub registration_interval: Duration,
    /// With `ed25519`: a directory of users' private keys (`user=NAME.key`), to sign as them.
    pub user_keys: Option<PathBuf>,
    /// The addresses people reach the console at (`--origin`), e.g. through a reverse proxy.
    pub origins: Vec<auth::PublicOrigin>,
}

/// Why the console did not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The console's metrics could not be set up (a bug: the names are fixed).
    #[error("cannot set up the console's metrics: {0}")]
    Metrics(String),
    #[error(
        "refusing to listen on {0} without a login: give --users FILE (add users with: baton console --users FILE --add-user NAME), or listen on 127.0.0.1"
    )]
    NoLogin(SocketAddr),
    #[error(
        "refusing to listen on {0} without --origin: give the address people type to reach the console, e.g. --origin https://console.example:8443 (repeatable), so that requests for any other host name are refused; or listen on one address, e.g. --listen 192.0.2.7:8443"
    )]
    NoOrigin(SocketAddr),
    #[error(
        "--origin {0} is not on this machine: it needs a login, give --users FILE (add users with: baton console --users FILE --add-user NAME)"
    )]
    OriginWithoutLogin(String),
    #[error("the users file {0} has no users (add one with: baton console --users FILE --add-user NAME)")]
    NoUsers(PathBuf),
    #[error("--user-keys only applies with security.scheme = \"ed25519\"")]
    UserKeysWithoutEd25519,
    #[error(transparent)]
    Users(#[from] auth::UsersError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error(
        "cannot listen on {address}: {error} (is another process using that port? stop it, or choose another address with --listen)"
    )]
    Listen { address: SocketAddr, error: std::io::Error },
    #[error("the web server failed: {0}")]
    Serve(std::io::Error),
    #[error("stopped following node registrations ({0}); restart the console")]
    RegistrationsEnded(String),
}

impl ConsoleError {
    /// Whether the operator must change the command line or files (exit 2), rather than a
    /// broker or the network failing (exit 5).
    pub fn is_usage(&self) -> bool {
        match self {
            ConsoleError::Client(error) => error.is_usage(),
            // The address is the operator's to change: another process may hold the port.
            ConsoleError::Listen { .. } => true,
            ConsoleError::Serve(_) | ConsoleError::RegistrationsEnded(_) => false,
            _ => true,
        }
    }
}

/// The default database: `$XDG_STATE_HOME/baton/console.sqlite`, or under `~/.local/state`.
pub fn default_database() -> PathBuf {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|value| !value.is_empty()) {
        Some(state) => PathBuf::from(state),
        None => std::env::var_os("HOME")
            .map_or_else(|| PathBuf::from("."), |home| PathBuf::from(home).join(".local/state")),
    };
    base.join("baton/console.sqlite")
}

/// Runs the console until `shutdown` resolves. `on_listening` is told the address once the
/// server listens (the port, when 0 was asked for). Each notification of `reload` (SIGHUP)
/// loads the keys again, as `batond` does ([`jobs::Jobs::reload_keys`]).
pub async fn run(
    config: ClientConfig,
    options: ConsoleOptions,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    reload: Arc<tokio::sync::Notify>,
) -> Result<(), ConsoleError> {
    let users = match &options.users {
        Some(path) => {
            let users = auth::Users::load(path)?;
            if users.is_empty() {
                return Err(ConsoleError::NoUsers(path.clone()));
            }
            Some(users)
        }
        None if !options.listen.ip().is_loopback() => return Err(ConsoleError::NoLogin(options.listen)),
        None => {
            if let Some(origin) = options.origins.iter().find(|origin| !origin.is_loopback()) {
                return Err(ConsoleError::OriginWithoutLogin(origin.origin()));
            }
            None
        }
    };
    if options.listen.ip().is_unspecified() && options.origins.is_empty() {
        return Err(ConsoleError::NoOrigin(options.listen));
    }
    let loaded = config.security.load_security().map_err(crate::client::ClientError::from)?;
    if options.user_keys.is_some() && !loaded.proves_callers() {
        return Err(ConsoleError::UserKeysWithoutEd25519);
    }
    if users.is_some() && loaded.proves_callers() && options.user_keys.is_none() {
        warn!(
            key = %loaded.key_id(),
            "ed25519 without --user-keys: requests are signed with the console's own key, so nodes see it as the caller"
        );
    }
    let security = Arc::new(SharedSecurity::new(loaded));
    let store = Arc::new(store::Store::open(&options.database)?);
    let registry = Arc::new(registry::Registry::load(
        &config.collective,
        store.clone(),
        options.registration_interval,
        Duration::from_secs(config.security.clock_skew_secs),
        crate::protocol::now_ms(),
    )?);
    let settings = crate::config::broker_settings(
        &config.broker,
        &config.tls,
        format!("baton console {}", config.identity),
    )
    .map_err(crate::client::ClientError::from)?;
    let broker =
        Broker::connect(settings, ConnectMode::FailFast).await.map_err(crate::client::ClientError::from)?;

    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut stop_registry = stop.subscribe();
    let follower = tokio::spawn(registry::follow(
        registry.clone(),
        broker.clone(),
        security.clone(),
        config.broker.max_message_bytes,
        async move {
            let _ = stop_registry.recv().await;
        },
    ));

    // Rollouts are a view, not the console's job: a broker without events costs a warning.
    let board = Arc::new(rollouts::Board::new(security.clone()));
    let mut stop_rollouts = stop.subscribe();
    let following = rollouts::follow(board.clone(), broker.clone(), config.collective.clone(), async move {
        let _ = stop_rollouts.recv().await;
    });
    tokio::spawn(async move {
        if let Err(error) = following.await {
            warn!(%error, "rollouts are not shown: cannot follow the events exchange");
        }
    });

    let (catalog, problems) = Catalog::load(config.definitions_dir.as_deref());
    for problem in problems {
        warn!(%problem, "agent definition not loaded");
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|error| ConsoleError::Listen { address: options.listen, error })?;
    let address =
        listener.local_addr().map_err(|error| ConsoleError::Listen { address: options.listen, error })?;
    let hosts = auth::AllowedHosts::new(address, options.origins.clone());
    let console = Arc::new(server::Console {
        users,
        sessions: auth::Sessions::default(),
        anonymous_csrf: auth::random_token(),
        hosts,
        registry: registry.clone(),
        rollouts: board,
        jobs: jobs::Jobs::new(
            config.clone(),
            broker.clone(),
            security,
            options.user_keys.clone(),
            catalog,
            registry,
            store.clone(),
        ),
        store,
        collective: config.collective.clone(),
        registration_interval: options.registration_interval,
        password_checks: tokio::sync::Semaphore::new(server::PASSWORD_CHECKS),
        login_throttle: auth::LoginThrottle::default(),
        behind_proxy: !options.origins.is_empty(),
        metrics: metrics::ConsoleMetrics::new().map_err(|error| ConsoleError::Metrics(error.to_string()))?,
    });
    // Nodes that registered before the console started are listed at once, not when they next
    // register: from the registry (or the fleet's inventories) while the page is being served.
    let filling = console.clone();
    let registry_settings = crate::client::registry::RegistrySettings::of(&config);
    let fill_timeout = Duration::from_secs(config.timeout_secs);
    tokio::spawn(async move {
        match filling.jobs.own_client().await {
            Ok(client) => {
                registry::fill(filling.registry.clone(), client, registry_settings, fill_timeout).await;
            }
            Err(error) => {
                let error = error.to_string();
                warn!(%error, "cannot fill the node list at start; nodes are listed as they register");
                filling.registry.set_filling(registry::Filling::Registrations { error });
            }
        }
    });
    on_listening(address);
    let serve = std::future::IntoFuture::into_future(axum::serve(
        listener,
        server::router(console.clone()).into_make_service_with_connect_info::<SocketAddr>(),
    ));
    tokio::pin!(serve, shutdown, follower);
    let served = loop {
        tokio::select! {
            served = &mut serve => break served.map_err(ConsoleError::Serve),
            // Open event streams would hold a graceful shutdown forever; jobs in flight end with
            // the process, and their requests are already on their way.
            () = &mut shutdown => break Ok(()),
            // The registration listener only stops early when the broker is gone for good.
            followed = &mut follower => {
                break match followed {
                    Ok(Err(error)) => Err(ConsoleError::Client(error.into())),
                    Ok(Ok(())) => Err(ConsoleError::RegistrationsEnded("the broker closed the subscription".to_owned())),
                    Err(error) => Err(ConsoleError::RegistrationsEnded(error.to_string())),
                };
            }
            () = reload.notified() => {
                info!("reloading keys (SIGHUP)");
                console.jobs.reload_keys().await;
            }
        }
    };
    let _ = stop.send(());
    broker.close().await;
    served
}
