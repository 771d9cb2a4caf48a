//! OTLP export of the engine's `tracing` spans (a span per run and per step), switched on by
//! `--otlp ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`. Off by default: nothing is sent anywhere.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use tracing_subscriber::layer::SubscriberExt;

/// Keeps the exporter alive; flushes on [`Telemetry::shutdown`].
pub struct Telemetry(Option<opentelemetry_sdk::trace::SdkTracerProvider>);

impl Telemetry {
    /// Flushes and stops the exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.0
            && let Err(e) = p.shutdown()
        {
            errln!("warning: OTLP export: {e}");
        }
    }
}

/// Installs the OTLP layer if an endpoint is configured.
pub fn init(endpoint: Option<String>) -> Telemetry {
    let Some(endpoint) = endpoint
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.is_empty())
    else {
        return Telemetry(None);
    };
    let url = if endpoint.ends_with("/v1/traces") {
        endpoint
    } else {
        format!("{}/v1/traces", endpoint.trim_end_matches('/'))
    };
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url)
        .build()
    {
        Ok(e) => e,
        Err(e) => {
            errln!("warning: OTLP export disabled: {e}");
            return Telemetry(None);
        }
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("drover")
                .build(),
        )
        .build();
    let tracer = provider.tracer("drover");
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        errln!("warning: OTLP export disabled: a tracing subscriber is already installed");
    }
    Telemetry(Some(provider))
}
