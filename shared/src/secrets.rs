//! Secrets Manager access. Secrets are read once at init and held as `SecretString`, so they
//! never reach a log line or a Debug print.

use secrecy::SecretString;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secret store unreachable: {0}")]
    Unavailable(String),
    #[error("secret {arn} is not a JSON object")]
    NotJson { arn: String },
    #[error("secret {arn} has no field {field}")]
    MissingField { arn: String, field: String },
}

/// A JSON secret's fields. Values are kept as secrets; only field names are ever printed.
pub struct JsonSecret {
    arn: String,
    fields: Map<String, Value>,
}

impl std::fmt::Debug for JsonSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSecret")
            .field("arn", &self.arn)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl JsonSecret {
    pub fn parse(arn: &str, text: &str) -> Result<Self, SecretsError> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => Ok(Self {
                arn: arn.to_owned(),
                fields,
            }),
            _ => Err(SecretsError::NotJson { arn: arn.to_owned() }),
        }
    }

    /// A string field (numbers are stringified: RDS secrets store `port` as a number).
    pub fn get(&self, field: &str) -> Option<SecretString> {
        match self.fields.get(field)? {
            Value::String(s) if !s.is_empty() => Some(SecretString::from(s.clone())),
            Value::Number(n) => Some(SecretString::from(n.to_string())),
            _ => None,
        }
    }

    pub fn require(&self, field: &str) -> Result<SecretString, SecretsError> {
        self.get(field).ok_or_else(|| SecretsError::MissingField {
            arn: self.arn.clone(),
            field: field.to_owned(),
        })
    }
}

/// Thin wrapper over the AWS client, built once in `main`.
#[derive(Clone, Debug)]
pub struct SecretsClient {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsClient {
    pub fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        Self {
            client: aws_sdk_secretsmanager::Client::new(sdk_config),
        }
    }

    pub async fn json(&self, arn: &str) -> Result<JsonSecret, SecretsError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| {
                SecretsError::Unavailable(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
            })?;
        let text = out
            .secret_string()
            .ok_or_else(|| SecretsError::NotJson { arn: arn.to_owned() })?;
        JsonSecret::parse(arn, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn debug_never_shows_values() {
        let s = JsonSecret::parse("arn:x", r#"{"username":"calseta","password":"hunter2","port":5432}"#).expect("json");
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.require("port").expect("port").expose_secret(), "5432");
        assert!(matches!(s.require("host"), Err(SecretsError::MissingField { .. })));
    }
}
