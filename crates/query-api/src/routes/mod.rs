//! HTTP routes of `query-api`.

mod alerts;
mod audit;
mod config;
mod history;
mod latest;
mod machines;
mod stream;

use actix_web::web;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/config", web::get().to(config::show))
        .route("/api/v1/config/update", web::post().to(config::update))
        .route("/api/v1/audit", web::get().to(audit::list))
        .route("/api/v1/alerts", web::get().to(alerts::list))
        .route("/api/v1/stream/ticket", web::post().to(stream::ticket))
        .route("/api/v1/stream", web::get().to(stream::stream))
        .route(
            "/api/v1/alerts/{id}/ack",
            web::post().to(alerts::acknowledge),
        )
        .route("/api/v1/data/latest", web::get().to(latest::fleet))
        .route(
            "/api/v1/data/machine/{id}",
            web::get().to(history::machine_history),
        )
        .route(
            "/api/v1/data/machine/{id}/latest",
            web::get().to(latest::machine),
        )
        .service(
            web::resource("/api/v1/machines")
                .route(web::get().to(machines::list))
                .route(web::post().to(machines::create)),
        )
        .service(
            web::resource("/api/v1/machines/{id}")
                .route(web::get().to(machines::get))
                .route(web::patch().to(machines::update))
                .route(web::delete().to(machines::delete)),
        );
}
