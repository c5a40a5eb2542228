use platform::ServiceName;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::serve_main(ServiceName::QueryApi, |settings| async move {
        plantline_query_api::build(&settings).await
    })
    .await
}
