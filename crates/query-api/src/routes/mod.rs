//! HTTP routes of `query-api`.

mod config;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/config", web::get().to(config::show))
        .route("/api/v1/config/update", web::post().to(config::update));
}
