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

/// Writes INFO, WARN and ERROR events to standard error, one line each: `LEVEL message
/// field=value …` (a server's own decisions: takeovers, a lost lease, a run that stopped).
struct Stderr;

/// Collects an event's message and fields.
#[derive(Default)]
struct Line(String, String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        } else {
            self.1.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        } else {
            self.1.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Stderr {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = *event.metadata().level();
        if level > tracing::Level::INFO {
            return;
        }
        let mut line = Line::default();
        event.record(&mut line);
        errln!("{level:>5} {}{}", line.0, line.1);
    }
}

/// Installs the OTLP layer if an endpoint is configured, and with `log` the standard-error log.
pub fn init(endpoint: Option<String>, log: bool) -> Telemetry {
    let Some(endpoint) = endpoint
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.is_empty())
    else {
        if log {
            let _ = tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(Stderr),
            );
        }
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
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .with(log.then_some(Stderr));
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        errln!("warning: OTLP export disabled: a tracing subscriber is already installed");
    }
    Telemetry(Some(provider))
}
