//! The one Mailer of the server: an enum of backends, built once per saved-settings version
//! (not per send) and swapped when the settings change.

use super::{MailConfig, OutgoingMessage, SmtpTarget, TargetAuth, classify::classify, mailbox};
use crate::{
    mail::{SmtpFailure, Step},
    smtp_settings::types::TlsMode,
    state::Db,
};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    transport::smtp::{
        PoolConfig,
        authentication::{Credentials, Mechanism},
        client::Tls,
    },
};
use secrecy::ExposeSecret;
use std::sync::{Arc, Mutex};
use tokio::sync::Mutex as AsyncMutex;

pub enum Mailer {
    /// The admin's own SMTP server, with pooled connections.
    Smtp { target: SmtpTarget, transport: AsyncSmtpTransport<Tokio1Executor> },
    /// The default service pointed at `MAILROOM_DEFAULT_SMTP_URL`.
    Relay { transport: AsyncSmtpTransport<Tokio1Executor> },
    /// The default service without a relay: mail is stored and shown under Admin > Mailbox.
    LocalMailbox { db: Db },
    /// Unit tests only: keeps what was sent.
    Memory { sent: Arc<Mutex<Vec<Message>>> },
}

impl Mailer {
    pub fn default_service(db: Db, config: &MailConfig) -> Result<Self, SmtpFailure> {
        match &config.default_relay {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| SmtpFailure::Other { detail: format!("MAILROOM_DEFAULT_SMTP_URL: {e}") })?
                    .timeout(Some(config.step_timeout))
                    .build();
                Ok(Self::Relay { transport })
            }
            None => Ok(Self::LocalMailbox { db }),
        }
    }

    /// A pooled transport for `target`; OAuth 2.0 targets need a current `token`.
    pub fn smtp(
        target: SmtpTarget,
        config: &MailConfig,
        token: Option<&secrecy::SecretString>,
        pool_size: u32,
    ) -> Result<Self, SmtpFailure> {
        let host = target.host.to_string();
        let tls = if target.tls.enabled {
            let params = super::tls_parameters(&target.host, target.tls.min_version, config)?;
            if target.tls.mode == TlsMode::Implicit { Tls::Wrapper(params) } else { Tls::Required(params) }
        } else {
            Tls::None
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(target.port)
            .tls(tls)
            .timeout(Some(config.step_timeout))
            .pool_config(PoolConfig::new().max_size(pool_size));
        match &target.auth {
            TargetAuth::None => {}
            TargetAuth::Basic { username, password } => {
                builder = builder
                    .credentials(Credentials::new(username.clone(), password.expose_secret().to_owned()))
                    .authentication(vec![Mechanism::Plain, Mechanism::Login]);
            }
            TargetAuth::OAuth2 { username, .. } => {
                let token = token.ok_or_else(|| SmtpFailure::Other { detail: "no OAuth 2.0 token".into() })?;
                builder = builder
                    .credentials(Credentials::new(username.clone(), token.expose_secret().to_owned()))
                    .authentication(vec![Mechanism::Xoauth2]);
            }
        }
        Ok(Self::Smtp { target, transport: builder.build() })
    }

    /// Connects (and logs in) without sending: the health check of a transport.
    pub async fn check(&self, config: &MailConfig) -> Result<(), SmtpFailure> {
        let limit = config.overall_timeout;
        let test = |transport: &AsyncSmtpTransport<Tokio1Executor>| {
            let transport = transport.clone();
            async move { tokio::time::timeout(limit, transport.test_connection()).await }
        };
        match self {
            Self::Smtp { target, transport } => match test(transport).await {
                Ok(Ok(true)) => Ok(()),
                Ok(Ok(false)) => Err(SmtpFailure::ConnectionLost { step: Step::Greeting }),
                Ok(Err(err)) => Err(classify(&err, Step::Greeting, target)),
                Err(_) => Err(SmtpFailure::Timeout { step: Step::Greeting, secs: limit.as_secs().max(1) }),
            },
            Self::Relay { transport } => match test(transport).await {
                Ok(Ok(true)) => Ok(()),
                Ok(Ok(false)) => Err(SmtpFailure::ConnectionLost { step: Step::Greeting }),
                Ok(Err(err)) => Err(SmtpFailure::Other { detail: format!("default relay: {err}") }),
                Err(_) => Err(SmtpFailure::Timeout { step: Step::Greeting, secs: limit.as_secs().max(1) }),
            },
            Self::LocalMailbox { .. } | Self::Memory { .. } => Ok(()),
        }
    }

    /// Sends one message under the overall limit.
    pub async fn send(&self, message: &OutgoingMessage, config: &MailConfig) -> Result<(), SmtpFailure> {
        let built = message.build()?;
        let limit = config.overall_timeout;
        let timed_out = || SmtpFailure::Timeout { step: Step::Data, secs: limit.as_secs().max(1) };
        match self {
            Self::Smtp { target, transport } => match tokio::time::timeout(limit, transport.send(built)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(classify(&err, Step::Data, target)),
                Err(_) => Err(timed_out()),
            },
            Self::Relay { transport } => match tokio::time::timeout(limit, transport.send(built)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(err)) => Err(SmtpFailure::Other { detail: format!("default relay: {err}") }),
                Err(_) => Err(timed_out()),
            },
            Self::LocalMailbox { db } => mailbox::store(db, message, &built).await,
            Self::Memory { sent } => {
                sent.lock().expect("memory mailer lock").push(built);
                Ok(())
            }
        }
    }
}

/// The Mailer for the saved settings, rebuilt only when their version (or the OAuth 2.0 token)
/// changes: the key says which.
#[derive(Default)]
pub struct MailerCache {
    current: AsyncMutex<Option<(String, Arc<Mailer>)>>,
}

impl MailerCache {
    pub async fn get_or_build(
        &self,
        key: String,
        build: impl AsyncFnOnce() -> Result<Mailer, SmtpFailure>,
    ) -> Result<Arc<Mailer>, SmtpFailure> {
        let mut current = self.current.lock().await;
        if let Some((built_for, mailer)) = current.as_ref()
            && *built_for == key
        {
            return Ok(mailer.clone());
        }
        let mailer = Arc::new(build().await?);
        *current = Some((key, mailer.clone()));
        Ok(mailer)
    }

    pub async fn invalidate(&self) {
        *self.current.lock().await = None;
    }
}
