use platform::ServiceName;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::serve_main(ServiceName::IngestApi, |settings| async move {
        plantline_ingest_api::build(&settings).await
    })
    .await
}
