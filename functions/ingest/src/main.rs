//! `ingest` Lambda (API Gateway REST proxy): `POST /v1/ingest/{source}` and `POST /v1/alerts`.
//! See `calseta::ingest`.

use calseta::{api, app, config, telemetry};
use lambda_http::{http::HeaderValue, request::RequestContext, tower::ServiceExt, Request, RequestExt};

/// The request id the API answers with and the alert's enrich and dispatch logs carry: the
/// caller's `x-request-id`, else API Gateway's own request id (what its access logs show).
fn with_gateway_request_id(mut req: Request) -> Request {
    if req.headers().contains_key(api::REQUEST_ID) {
        return req;
    }
    let id = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(c)) => c.request_id.clone(),
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        _ => None,
    };
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        req.headers_mut().insert(api::REQUEST_ID, v);
    }
    req
}

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    telemetry::init_from_env();
    let sdk = config::aws_sdk_config().await;
    let state = app::lambda::ingest(&sdk).await?;
    let router = api::ingest_router(state).map_request(with_gateway_request_id);
    lambda_http::run(router).await
}
