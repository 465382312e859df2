//! The process's one TLS crypto provider, ring, for every outbound HTTPS client (providers,
//! agents, AWS APIs) and Postgres TLS. The AWS SDK's default HTTPS client and reqwest's
//! default `rustls` feature would each bring aws-lc-rs as a second provider (about 2 MB more per
//! Lambda binary); both are built here with ring instead.

use std::sync::Once;

/// Installs ring as the process-wide rustls provider (once; later calls do nothing). reqwest is
/// built without a provider of its own (`rustls-no-provider`), so this must run before any
/// reqwest client is built — every constructor in this crate calls it.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err only when a provider is already installed: then that one is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The AWS SDK's HTTP client: hyper + rustls with ring (what `default-https-client` builds, with
/// the other provider).
pub fn aws_http_client() -> aws_sdk_sqs::config::SharedHttpClient {
    use aws_smithy_http_client::{tls, Builder};
    Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reqwest_builds_with_the_one_provider() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
        reqwest::Client::builder().build().expect("client");
        let _ = super::aws_http_client();
    }
}
