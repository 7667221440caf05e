//! The start-up handshake: the TLS policy, SCRAM-SHA-256(-PLUS) against the
//! stored verifier, and logging and throttling of failed logins.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    StartupHandler, finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionHandle, ConnectionManager, METADATA_DATABASE, METADATA_USER, PgWireConnectionState,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use sluice_catalog::{Catalog, DEFAULT_NAMESPACE};
use tracing::warn;

use crate::auth::{AdminAuth, verifier_of};
use crate::namespace::Namespace;
use crate::namespaces::Namespaces;
use crate::scram::{self, AwaitingClientFinal, SCRAM_SHA_256, SCRAM_SHA_256_PLUS, ScramError, Verifier};
use crate::session_binding::Binding;
use crate::session_settings::{ServerDefaults, SessionSettings};
use crate::throttle::LoginThrottle;

/// How clients log in; shared by every connection.
pub struct LoginPolicy {
    pub auth: AdminAuth,
    /// The catalog, whose roles log in too.
    pub roles: Arc<Catalog>,
    pub throttle: LoginThrottle,
    /// The `tls-server-end-point` hash of the server certificate, when TLS
    /// is configured and the certificate allows channel binding.
    pub channel_binding: Option<Vec<u8>>,
    /// Refuse sessions that did not negotiate TLS.
    pub require_tls: bool,
    /// The server-wide defaults of every session's settings.
    pub session_defaults: ServerDefaults,
    /// pgwire's registry of live connections, for cancel requests.
    pub connections: Arc<ConnectionManager>,
    pub pids: RandomPidSecretKeyGenerator,
    /// The databases a login's `dbname` names.
    pub namespaces: Arc<Namespaces>,
}

impl LoginPolicy {
    /// The database `user` logs in to with `dbname`: the namespace of that
    /// name, or the default one when the client named none of its own
    /// (no `dbname`, the user's name as libpq defaults to, or `postgres`).
    /// A role needs a privilege on a database other than the default one;
    /// without one it learns no more than that it may not connect, whether
    /// the database exists or not.
    fn database(&self, user: &str, dbname: Option<&str>) -> Result<Arc<Namespace>, PgWireError> {
        let name = dbname.filter(|name| !name.is_empty()).unwrap_or(user);
        let found = self.namespaces.get(name);
        let superuser = user == self.auth.user();
        let allowed = superuser
            || name == DEFAULT_NAMESPACE
            || (found.is_some() && matches!(self.roles.privilege(name, user), Ok(Some(_))));
        match found {
            Some(namespace) if allowed => Ok(namespace),
            None if name == user || name == "postgres" => Ok(self.namespaces.default_namespace()),
            None if superuser => Err(fatal_with_hint(
                "3D000",
                format!("database \"{name}\" does not exist"),
                "CREATE DATABASE makes one; \\l lists them.",
            )),
            _ => Err(fatal_with_hint(
                "42501",
                format!("permission denied for database \"{name}\""),
                &format!("The superuser grants it with GRANT USAGE ON DATABASE {name} TO {user}."),
            )),
        }
    }

    /// The verifier `user`'s login is checked against: the built-in
    /// user's, a role's that may log in and has a password, else a made-up
    /// one that fails the same way whether the role exists or not.
    fn verifier(&self, user: &str) -> Verifier {
        if user != self.auth.user() {
            match self.roles.role(user) {
                Ok(Some(role)) if role.login => {
                    if let Some(verifier) = role.verifier.as_ref().and_then(verifier_of) {
                        return verifier;
                    }
                }
                Ok(_) => {}
                Err(e) => warn!(user, error = %e, "cannot read the role"),
            }
        }
        self.auth.verifier(user)
    }
}

/// Where one connection's login stands.
enum Exchange {
    AwaitingStartup,
    AwaitingClientFirst { mechanisms: Vec<String> },
    AwaitingClientFinal(Box<AwaitingClientFinal>),
    Over,
}

/// One connection's start-up handler.
pub struct LoginHandler {
    policy: Arc<LoginPolicy>,
    exchange: Mutex<Exchange>,
    /// The session's settings, started when the login succeeds.
    settings: SessionSettings,
    /// The session's database, bound when the login succeeds.
    binding: Arc<Binding>,
}

impl LoginHandler {
    pub fn new(policy: Arc<LoginPolicy>, settings: SessionSettings, binding: Arc<Binding>) -> Self {
        Self {
            policy,
            exchange: Mutex::new(Exchange::AwaitingStartup),
            settings,
            binding,
        }
    }

    fn take_exchange(&self) -> Exchange {
        std::mem::replace(
            &mut *self.exchange.lock().unwrap_or_else(|p| p.into_inner()),
            Exchange::Over,
        )
    }

    fn set_exchange(&self, exchange: Exchange) {
        *self.exchange.lock().unwrap_or_else(|p| p.into_inner()) = exchange;
    }

    /// Logs and counts a failed login; the client learns only that it failed.
    fn failed<C: ClientInfo>(&self, client: &C, reason: &dyn std::fmt::Display) -> PgWireError {
        let user = user_of(client);
        let peer = client.socket_addr();
        warn!(user, %peer, %reason, "login failed");
        self.policy.throttle.failed(peer.ip());
        fatal("28P01", format!("password authentication failed for user \"{user}\""))
    }

    async fn on_client_first<C>(
        &self,
        client: &mut C,
        msg: PasswordMessageFamily,
        offered: &[String],
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let initial = msg
            .into_sasl_initial_response()
            .map_err(|_| self.failed(client, &ScramError::Malformed("not a SASL initial response")))?;
        if !offered.contains(&initial.auth_method) {
            let reason = format!("mechanism {} was not offered", initial.auth_method);
            return Err(self.failed(client, &reason));
        }
        tokio::time::sleep(self.policy.throttle.delay(client.socket_addr().ip())).await;
        let binding = self.policy.channel_binding.as_deref().filter(|_| client.is_secure());
        let verifier = self.policy.verifier(&user_of(client));
        let data = initial.data.unwrap_or_default();
        let (server_first, waiting) =
            scram::server_first(&initial.auth_method, &data, binding, verifier).map_err(|e| self.failed(client, &e))?;
        self.set_exchange(Exchange::AwaitingClientFinal(Box::new(waiting)));
        client
            .send(PgWireBackendMessage::Authentication(Authentication::SASLContinue(
                Bytes::from(server_first),
            )))
            .await?;
        Ok(())
    }

    async fn on_client_final<C>(
        &self,
        client: &mut C,
        msg: PasswordMessageFamily,
        waiting: AwaitingClientFinal,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let response = msg
            .into_sasl_response()
            .map_err(|_| self.failed(client, &ScramError::Malformed("not a SASL response")))?;
        let server_final = waiting.finish(&response.data).map_err(|e| self.failed(client, &e))?;
        self.policy.throttle.succeeded(client.socket_addr().ip());
        client
            .send(PgWireBackendMessage::Authentication(Authentication::SASLFinal(
                Bytes::from(server_final),
            )))
            .await?;
        let (pid, secret_key) = self.policy.pids.generate(&*client);
        let (handle, guard) = self.policy.connections.register(pid, secret_key.clone());
        client.set_pid_and_secret_key(pid, secret_key);
        client.session_extensions().insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert(guard);
        let user = user_of(client);
        let dbname = client.metadata().get(METADATA_DATABASE).cloned();
        let namespace = self.policy.database(&user, dbname.as_deref()).inspect_err(|_| {
            warn!(user, database = dbname.as_deref().unwrap_or(""), peer = %client.socket_addr(), "login refused: database");
        })?;
        // Clients read the database they are in from the start-up parameters.
        client
            .metadata_mut()
            .insert(METADATA_DATABASE.to_owned(), namespace.name.clone());
        self.binding.bind(namespace, &user);
        self.settings.start(&self.policy.session_defaults, &*client);
        finish_authentication(client, &self.settings).await
    }
}

#[async_trait]
impl StartupHandler for LoginHandler {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match (self.take_exchange(), message) {
            (Exchange::AwaitingStartup, PgWireFrontendMessage::Startup(startup)) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                if self.policy.require_tls && !client.is_secure() {
                    warn!(user = user_of(client), peer = %client.socket_addr(), reason = "TLS required", "login failed");
                    return Err(fatal(
                        "28000",
                        "this server accepts only TLS connections (--require-tls); connect with sslmode=require or stricter"
                            .into(),
                    ));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let mut mechanisms = Vec::new();
                if client.is_secure() && self.policy.channel_binding.is_some() {
                    mechanisms.push(SCRAM_SHA_256_PLUS.to_owned());
                }
                mechanisms.push(SCRAM_SHA_256.to_owned());
                self.set_exchange(Exchange::AwaitingClientFirst {
                    mechanisms: mechanisms.clone(),
                });
                client
                    .send(PgWireBackendMessage::Authentication(Authentication::SASL(mechanisms)))
                    .await?;
                Ok(())
            }
            (Exchange::AwaitingClientFirst { mechanisms }, PgWireFrontendMessage::PasswordMessageFamily(msg)) => {
                self.on_client_first(client, msg, &mechanisms).await
            }
            (Exchange::AwaitingClientFinal(waiting), PgWireFrontendMessage::PasswordMessageFamily(msg)) => {
                self.on_client_final(client, msg, *waiting).await
            }
            _ => Err(self.failed(client, &"unexpected message during authentication")),
        }
    }
}

fn user_of<C: ClientInfo>(client: &C) -> String {
    client.metadata().get(METADATA_USER).cloned().unwrap_or_default()
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

fn fatal_with_hint(code: &str, message: String, hint: &str) -> PgWireError {
    let mut info = ErrorInfo::new("FATAL".into(), code.into(), message);
    info.hint = Some(hint.to_owned());
    PgWireError::UserError(Box::new(info))
}
