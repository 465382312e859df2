//! Services: what the front doors (REST in `api/`, MCP in `mcp/`) share. A service takes a
//! database connection and typed arguments and returns serializable results or a
//! [`ServiceError`]; it knows nothing about HTTP, keys or envelopes, so each adapter stays a thin
//! "parse → service → render" layer. Services never import the adapters (see the layering test).

pub mod alerts;
pub mod catalog;
pub mod enrichments;
pub mod indicators;
pub mod metrics;

use crate::db::DbError;

/// Who made a change, for the activity log (`actor_type`, `actor_key_prefix`).
#[derive(Debug, Clone)]
pub struct Actor {
    pub kind: ActorKind,
    pub key_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Api,
    Mcp,
}

impl Actor {
    /// The activity log's view of this actor.
    pub fn as_activity(&self) -> crate::db::activity::Actor<'_> {
        crate::db::activity::Actor {
            actor_type: self.kind.as_str(),
            key_prefix: Some(&self.key_prefix),
        }
    }
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Api => "api",
            ActorKind::Mcp => "mcp",
        }
    }
}

/// Why a service call failed; adapters map it to their own error shape.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The named thing (e.g. "Alert") does not exist (or its id is malformed).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An argument breaks a rule; `field` is the argument's bare name.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
        kind: &'static str,
    },
    /// A collaborator this process does not have (e.g. no enrichment engine here).
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A uuid given as text (MCP arguments and resource URIs): a malformed one is `what`'s
/// "not found", the same answer as an unknown one.
pub(crate) fn parse_uuid(uuid: &str, what: &'static str) -> Result<uuid::Uuid, ServiceError> {
    uuid::Uuid::parse_str(uuid.trim()).map_err(|_| ServiceError::NotFound(what))
}

impl From<tokio_postgres::Error> for ServiceError {
    fn from(e: tokio_postgres::Error) -> Self {
        ServiceError::Db(DbError::from(e))
    }
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>, kind: &'static str) -> Self {
        ServiceError::Invalid {
            field,
            message: message.into(),
            kind,
        }
    }
}
