//! The database probe of `GET /health`.

/// One trivial statement: the connection works and the server answers.
pub(crate) async fn ping(client: &impl tokio_postgres::GenericClient) -> Result<(), tokio_postgres::Error> {
    client.query_one("SELECT 1", &[]).await.map(|_| ())
}
