//! OpenAPI documents, generated from the handlers' `#[utoipa::path]` annotations. Each
//! service registers its routes with [`http_routes!`](crate::http_routes), which also lists
//! them and collects their operations, so a test can prove the two sets are equal; each
//! service serves its document at `/openapi.json`, and `proto-docs/openapi.json` is the
//! merged copy (checked against the generated one by a test).

use crate::ServiceName;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, LicenseBuilder, OpenApi as Document};
use utoipa::{OpenApi, ToSchema};

/// The `status` of every successful answer: always `success`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Success {
    #[default]
    Success,
}

/// The body of every 4xx and 5xx answer (`ApiError`).
#[derive(ToSchema)]
#[allow(dead_code)] // A schema only: the real body is serialised by `ApiError`.
pub struct ErrorResponse {
    /// Always `error`.
    #[schema(example = "error")]
    status: String,
    /// Stable machine-readable code: `validation_failed`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `precondition_failed`, `payload_too_large`,
    /// `rate_limited`, `unavailable`, `internal_error`, …
    #[schema(example = "validation_failed")]
    code: String,
    /// What went wrong, in words.
    message: String,
    /// Every problem with the request, one per field or parameter.
    errors: Option<Vec<crate::error::FieldError>>,
}

/// The probes and the document itself, served by every service.
#[derive(OpenApi)]
#[openapi(
    paths(
        crate::health::healthz,
        crate::health::readyz,
        crate::health::metrics,
        document_route
    ),
    components(schemas(ErrorResponse))
)]
struct Common;

/// `(method, path)` of the routes every service registers besides its own.
pub const COMMON_ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

/// This service's OpenAPI document (this very document, as JSON).
#[utoipa::path(get, path = "/openapi.json", tag = "probes",
    responses((status = 200, description = "The service's OpenAPI 3.1 document", content_type = "application/json")))]
#[allow(dead_code)] // Documents the route `http_routes!` registers.
fn document_route() {}

/// The full document of `service`: its routes, the common ones, the bearer scheme.
pub fn document(service: ServiceName, routes: Document) -> Document {
    let mut doc = Common::openapi();
    doc.merge(routes);
    doc.info = InfoBuilder::new()
        .title(format!("Plantline {}", service.as_str()))
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Generated from the handlers. Errors: see the ErrorResponse schema. \
             Permissions per role: crates/domain/src/rbac.rs and proto-docs/README.md.",
        ))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    add_security_schemes(&mut doc);
    name_operations(&mut doc);
    doc
}

/// Every service's document in one (the probes appear once): `proto-docs/openapi.json`.
pub fn merged(documents: Vec<Document>) -> Document {
    let mut merged = Common::openapi();
    for doc in documents {
        merged.merge(doc);
    }
    merged.info = InfoBuilder::new()
        .title("Plantline API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Every service's routes behind one nginx: auth (/api/v1/auth, /api/v1/users, \
             /api/v1/gateways, /.well-known/jwks.json), ingest-api (/api/v1/data/ingest), query-api \
             (everything else under /api/v1, the dashboard at /). The probes and /openapi.json \
             exist on every service (through nginx: /svc/<service>/…). Errors: ErrorResponse. \
             Permissions per role: proto-docs/README.md.",
        ))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    add_security_schemes(&mut merged);
    name_operations(&mut merged);
    merged
}

/// Operation ids from method and path (`get_api_v1_machines_id`): handler names repeat
/// across modules (`list`, `get`), and OpenAPI wants them unique.
fn name_operations(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("patch", &mut item.patch),
            ("delete", &mut item.delete),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                operation.operation_id = Some(operation_id(method, path));
            }
        }
    }
}

fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<String> = path
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    if words.is_empty() {
        format!("{method}_root")
    } else {
        format!("{method}_{}", words.join("_"))
    }
}

/// Access tokens everywhere; for the InfluxDB-compatible writes also a gateway's client id
/// and secret, as InfluxDB's tools send them.
fn add_security_schemes(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT (EdDSA), from POST /api/v1/auth/login or /api/v1/auth/token")
                .build(),
        ),
    );
    components.add_security_scheme(
        "gateway_basic",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Basic)
                .description(Some(
                    "A gateway client's client_id and client_secret (InfluxDB 1.x tools; `u`/`p` work too)",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "gateway_token",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "Authorization",
            "`Token <client_id>:<client_secret>` (InfluxDB 2.x tools), or `Token <access token>`",
        ))),
    );
}

/// `(method, path)` of every operation in `doc`, paths in actix's spelling without regexes.
pub fn operations(doc: &Document) -> Vec<(String, String)> {
    let value = serde_json::to_value(doc).unwrap_or_default();
    let mut found = Vec::new();
    if let Some(paths) = value["paths"].as_object() {
        for (path, item) in paths {
            for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
                if item.get(method).is_some() {
                    found.push((method.to_owned(), path.clone()));
                }
            }
        }
    }
    found.sort();
    found
}

/// `{name:regex}` → `{name}`, as OpenAPI writes a path parameter.
pub fn without_regex(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let (mut in_param, mut in_regex) = (false, false);
    for c in path.chars() {
        match c {
            '{' if !in_param => {
                in_param = true;
                out.push(c);
            }
            ':' if in_param => in_regex = true,
            '}' if in_param => {
                (in_param, in_regex) = (false, false);
                out.push(c);
            }
            _ if in_regex => {}
            _ => out.push(c),
        }
    }
    out
}

/// Registers a service's routes and derives, from the same list, `ROUTES` (what is
/// registered) and `openapi()` (what is documented), so neither can miss a route silently:
///
/// ```ignore
/// platform::http_routes! {
///     service: ServiceName::QueryApi;
///     "/api/v1/machines" => { get: machines::list, post: machines::create },
/// }
/// ```
/// The document as served at `/openapi.json` (empty if it cannot be serialised, which a
/// derived document cannot fail).
pub fn to_bytes(document: &utoipa::openapi::OpenApi) -> Vec<u8> {
    serde_json::to_vec(document).unwrap_or_default()
}

#[macro_export]
macro_rules! http_routes {
    (
        service: $service:expr;
        $( $path:literal => { $( $method:ident : $($handler:ident)::+ ),+ $(,)? } ),* $(,)?
    ) => {
        /// Registers every route of this service and its `/openapi.json`.
        pub fn configure(cfg: &mut ::actix_web::web::ServiceConfig) {
            $(
                cfg.service(
                    ::actix_web::web::resource($path)
                        $( .route(::actix_web::web::$method().to($($handler)::+)) )+
                );
            )*
            let document = $crate::openapi::to_bytes(&openapi());
            cfg.route(
                "/openapi.json",
                ::actix_web::web::get().to(move || {
                    let document = document.clone();
                    async move {
                        ::actix_web::HttpResponse::Ok()
                            .content_type("application/json")
                            .body(document)
                    }
                }),
            );
        }

        /// Every `(method, path)` that `configure` registers for this service's own routes.
        pub const ROUTES: &[(&str, &str)] = &[ $( $( (stringify!($method), $path), )+ )* ];

        #[derive(::utoipa::OpenApi)]
        #[openapi(paths( $( $( $($handler)::+ ),+ ),* ))]
        struct RoutesDoc;

        /// This service's OpenAPI document.
        pub fn openapi() -> ::utoipa::openapi::OpenApi {
            $crate::openapi::document($service, <RoutesDoc as ::utoipa::OpenApi>::openapi())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_come_from_method_and_path() {
        assert_eq!(
            operation_id("get", "/api/v1/machines/{id}"),
            "get_api_v1_machines_id"
        );
        assert_eq!(
            operation_id("post", "/api/v1/alerts/{id}/ack"),
            "post_api_v1_alerts_id_ack"
        );
        assert_eq!(operation_id("get", "/"), "get_root");
        assert_eq!(
            operation_id("get", "/.well-known/jwks.json"),
            "get_well_known_jwks_json"
        );
    }

    #[test]
    fn regexes_leave_path_parameters() {
        assert_eq!(without_regex("/ui/{path:.*}"), "/ui/{path}");
        assert_eq!(
            without_regex("/api/v1/machines/{id}"),
            "/api/v1/machines/{id}"
        );
    }
}
