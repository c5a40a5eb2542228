use platform::ServiceName;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    platform::server::serve_main(ServiceName::MqttBridge, |settings| async move {
        plantline_mqtt_bridge::build(&settings).await
    })
    .await
}
