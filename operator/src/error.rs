//! A failed reconcile, and the reason it is reported under (conditions, Events, metrics).

/// A failed reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("{action}: {code}: {message}")]
    Aws {
        action: String,
        code: String,
        message: String,
    },
    #[error("{0}")]
    Render(String),
}

impl Error {
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }

    /// A short CamelCase reason: the API server's (`Forbidden`, `Conflict`, `Invalid`, …),
    /// `ApiUnreachable` when it could not be asked, `RenderFailed` for our own bugs.
    pub fn reason(&self) -> String {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if !status.reason.is_empty() => status.reason.clone(),
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } => format!("Http{}", status.code),
            Error::Kube { .. } => "ApiUnreachable".into(),
            Error::Aws { code, .. } => code.clone(),
            Error::Render(_) => "RenderFailed".into(),
        }
    }
}
