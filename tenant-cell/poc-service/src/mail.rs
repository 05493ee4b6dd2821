//! Sending mail to users (password-reset codes): one [`Mailer`] interface, with SMTP for
//! production (lettre, `MRBILL_SMTP_URL_FILE`) and a mailbox directory for local cells
//! (`MRBILL_MAILBOX_DIR`, one `.eml` file per message, 0600) that `mrbill tenant mail` shows.
//!
//! **Invariant:** mail is sent off the request path, so whether an address has an account
//! never shows in how long the request took.

use cell_model::contract::env as var;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// Where mail goes.
#[derive(Clone, Debug, Default)]
pub enum MailConfig {
    /// Nowhere: messages are dropped with a warning (a cell without a mail setup).
    #[default]
    None,
    /// An SMTP server (`smtp://`, `smtps://` or `smtp://…?tls=required`, credentials in the URL).
    Smtp { url: SecretString, from: String },
    /// Files in a directory (local cells).
    Mailbox { dir: PathBuf, from: String },
}

/// One message: plain text, to one address.
#[derive(Clone, Debug)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Sends mail as configured.
#[derive(Clone)]
pub struct Mailer {
    kind: Arc<Kind>,
}

enum Kind {
    None,
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    Mailbox {
        dir: PathBuf,
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match *self.kind {
            Kind::None => "Mailer(none)",
            Kind::Smtp { .. } => "Mailer(smtp)",
            Kind::Mailbox { .. } => "Mailer(mailbox)",
        })
    }
}

impl Mailer {
    pub fn new(config: &MailConfig) -> anyhow::Result<Self> {
        let kind = match config {
            MailConfig::None => Kind::None,
            MailConfig::Smtp { url, from } => Kind::Smtp {
                transport: AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .context("MRBILL_SMTP_URL")?
                    .build(),
                from: from.parse().context(var::MAIL_FROM)?,
            },
            MailConfig::Mailbox { dir, from } => Kind::Mailbox {
                dir: dir.clone(),
                from: from.parse().context(var::MAIL_FROM)?,
            },
        };
        Ok(Self {
            kind: Arc::new(kind),
        })
    }

    /// Sends `mail` now.
    pub async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let message = |from: &Mailbox| -> anyhow::Result<Message> {
            Ok(Message::builder()
                .from(from.clone())
                .to(mail.to.parse().context("recipient")?)
                .subject(&mail.subject)
                .body(mail.body.clone())?)
        };
        match &*self.kind {
            Kind::None => {
                tracing::warn!(subject = %mail.subject, "no mail sender configured; message dropped");
                Ok(())
            }
            Kind::Smtp { transport, from } => {
                transport.send(message(from)?).await?;
                Ok(())
            }
            Kind::Mailbox { dir, from } => {
                let bytes = message(from)?.formatted();
                let name = format!(
                    "{}-{}.eml",
                    time::OffsetDateTime::now_utc().unix_timestamp_nanos(),
                    uuid::Uuid::new_v4().simple()
                );
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    service_kit::secrets::write_secret(
                        &dir.join(name),
                        &String::from_utf8_lossy(&bytes),
                    )
                })
                .await??;
                Ok(())
            }
        }
    }
}
