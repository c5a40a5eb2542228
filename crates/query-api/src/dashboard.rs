//! The dashboard's static files: read once at start, served from memory (no path ever
//! reaches the filesystem), revalidated by ETag.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use platform::error::ApiError;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

/// The browser may talk to this origin only; styles allow inline because uPlot sizes its
/// elements with style attributes.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

struct Asset {
    body: web::Bytes,
    content_type: &'static str,
    etag: String,
}

/// The built dashboard, or why there is none.
pub struct Dashboard {
    files: HashMap<String, Asset>,
    unavailable: Option<String>,
}

impl Dashboard {
    /// Reads every file under `dir`. A missing or empty folder leaves the API running and
    /// makes the page explain how to build it.
    pub fn load(dir: &Path) -> Self {
        let mut files = HashMap::new();
        let unavailable = match collect(dir, dir, &mut files) {
            Ok(()) if files.contains_key("index.html") => None,
            Ok(()) => Some(format!("{} has no index.html", dir.display())),
            Err(err) => Some(format!("{} is not readable: {err}", dir.display())),
        };
        match &unavailable {
            None => tracing::info!(dir = %dir.display(), files = files.len(), "dashboard loaded"),
            Some(reason) => {
                tracing::warn!(reason = %reason, "dashboard not built; the API works, `/` explains (run `make dashboard`)")
            }
        }
        Self { files, unavailable }
    }

    fn respond(&self, path: &str, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
        if let Some(reason) = &self.unavailable {
            return Ok(HttpResponse::ServiceUnavailable()
                .content_type("text/plain; charset=utf-8")
                .body(format!(
                    "The Plantline dashboard is not built ({reason}). Run `make dashboard` and restart query-api.\n"
                )));
        }
        let asset = self
            .files
            .get(path)
            .ok_or_else(|| ApiError::not_found("no such dashboard file"))?;
        let fresh = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| tags.split(',').any(|t| t.trim() == asset.etag));
        let mut response = if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        response
            .insert_header((header::ETAG, asset.etag.as_str()))
            // Always revalidate: a new build must reach the browser at once.
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::REFERRER_POLICY, "no-referrer"));
        if asset.content_type.starts_with("text/html") {
            response.insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY));
        }
        Ok(if fresh {
            response.finish()
        } else {
            response
                .content_type(asset.content_type)
                .body(asset.body.clone())
        })
    }
}

fn collect(root: &Path, dir: &Path, files: &mut HashMap<String, Asset>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(root, &path, files)?;
            continue;
        }
        let Ok(relative) = path.strip_prefix(root) else {
            continue;
        };
        let name = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let body = std::fs::read(&path)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        body.hash(&mut hasher);
        files.insert(
            name.clone(),
            Asset {
                etag: format!("\"{:016x}\"", hasher.finish()),
                content_type: content_type(&name),
                body: body.into(),
            },
        );
    }
    Ok(())
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "text/plain; charset=utf-8",
    }
}

/// The dashboard (static; it logs in through the API).
#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard page", content_type = "text/html"),
        (status = 503, description = "Not built (`make dashboard`)", content_type = "text/plain")))]
pub async fn index(
    dashboard: web::Data<Dashboard>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    dashboard.respond("index.html", &req)
}

/// The dashboard's scripts, styles and vendored libraries.
#[utoipa::path(get, path = "/ui/{path}", tag = "dashboard",
    params(("path" = String, Path, description = "A file of the built dashboard")),
    responses((status = 200, description = "The file; ETag, revalidate with If-None-Match"),
        (status = 304, description = "Unchanged"),
        (status = 404, description = "No such file", body = platform::openapi::ErrorResponse)))]
pub async fn asset(
    dashboard: web::Data<Dashboard>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    dashboard.respond(&path, &req)
}

/// The whole API as one document: `proto-docs/openapi.json`, compiled in (a test keeps it
/// equal to what the services generate).
pub const MERGED_OPENAPI: &str = include_str!("../../../proto-docs/openapi.json");

/// Every service's routes in one OpenAPI document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "dashboard",
    responses((status = 200, description = "OpenAPI 3.1 of auth, ingest-api and query-api", content_type = "application/json")))]
pub async fn merged_openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(MERGED_OPENAPI)
}

/// Interactive API reference (Redoc, vendored) over `/api/v1/openapi.json`.
#[utoipa::path(get, path = "/docs", tag = "dashboard",
    responses((status = 200, description = "The API reference page", content_type = "text/html")))]
pub async fn docs(
    dashboard: web::Data<Dashboard>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    dashboard.respond("docs.html", &req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type("vendor/uPlot.iife.min.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("vendor/VERSIONS"), "text/plain; charset=utf-8");
    }
}
