use platform::ServiceName;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::serve_main(ServiceName::Auth, |settings| async move {
        plantline_auth::build(&settings).await
    })
    .await
}
