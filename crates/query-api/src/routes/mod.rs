//! HTTP routes of `query-api`.

mod alerts;
mod audit;
mod config;
mod history;
mod latest;
mod machines;
mod stream;

use crate::dashboard;

pub use stream::StreamSlots;

platform::http_routes! {
    service: platform::ServiceName::QueryApi;
    "/api/v1/config" => { get: config::show },
    "/api/v1/config/update" => { post: config::update },
    "/api/v1/audit" => { get: audit::list },
    "/api/v1/alerts" => { get: alerts::list },
    "/api/v1/alerts/{id}/ack" => { post: alerts::acknowledge },
    "/api/v1/stream/ticket" => { post: stream::ticket },
    "/api/v1/stream" => { get: stream::stream },
    "/api/v1/data/latest" => { get: latest::fleet },
    "/api/v1/data/machine" => { post: machines::seed_create },
    "/api/v1/data/machines" => { get: machines::seed_list },
    "/api/v1/data/machine/{id}" => { get: history::machine_history },
    "/api/v1/data/machine/{id}/latest" => { get: latest::machine },
    "/api/v1/machines" => { get: machines::list, post: machines::create },
    "/api/v1/machines/{id}" => {
        get: machines::get,
        patch: machines::update,
        delete: machines::delete,
    },
    "/api/v1/openapi.json" => { get: dashboard::merged_openapi },
    "/" => { get: dashboard::index },
    "/docs" => { get: dashboard::docs },
    "/ui/{path:.*}" => { get: dashboard::asset },
}
