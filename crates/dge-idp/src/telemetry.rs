//! Logs: human-readable by default, JSON with `DGE_LOG_FORMAT=json`; level from
//! `RUST_LOG` (default `info`). Traces: the same spans, exported over OTLP/HTTP
//! when `[telemetry] otlp_endpoint` is set ([`export`]).

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider,
};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry, reload};

type OtelLayer =
    tracing_opentelemetry::OpenTelemetryLayer<Registry, opentelemetry_sdk::trace::Tracer>;

/// Where [`export`] installs the OpenTelemetry layer once the configuration is read.
static EXPORT_SLOT: OnceLock<reload::Handle<Option<OtelLayer>, Registry>> = OnceLock::new();

/// Installs the global subscriber. Safe to call once per process.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (otel, slot) = reload::Layer::new(None::<OtelLayer>);
    // Colours only for a terminal (not as escape codes in a file or a journal), and
    // not there either when `NO_COLOR` is set.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colours);
    let json = std::env::var("DGE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let result = Registry::default()
        .with(otel)
        .with(filter)
        .with(fmt)
        .try_init();
    // A second call (tests) keeps the first subscriber.
    if result.is_ok() {
        drop(EXPORT_SLOT.set(slot));
    }
}

/// What `[telemetry]` asks for.
#[derive(Debug, Clone)]
pub struct ExportSettings {
    /// The collector's OTLP/HTTP base URL; spans go to `{endpoint}/v1/traces`.
    pub otlp_endpoint: String,
    /// `service.name` of every span.
    pub service_name: String,
    /// Share of traces kept, 0.0 to 1.0.
    pub sampling_ratio: f64,
}

/// Exports spans while alive; flushes what is queued when dropped.
pub struct Exporting(SdkTracerProvider);

impl Drop for Exporting {
    fn drop(&mut self) {
        // Bounded by the exporter's timeout: a collector that is down delays the exit
        // by a few seconds at most.
        drop(self.0.shutdown());
    }
}

/// Batches leave every few seconds from a thread of their own; when the collector is
/// slow or down, spans beyond the queue are dropped rather than requests held up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts exporting the spans of [`init`]'s subscriber over OTLP/HTTP (protobuf).
///
/// # Errors
/// The exporter cannot be built, or [`init`] did not install the subscriber.
pub fn export(settings: &ExportSettings) -> anyhow::Result<Exporting> {
    let slot = EXPORT_SLOT
        .get()
        .ok_or_else(|| anyhow::anyhow!("the log subscriber is not ours"))?;
    let endpoint = format!("{}/v1/traces", settings.otlp_endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()?;
    let batches = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(Duration::from_secs(2))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(batches)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sampling_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("dge-idp");
    slot.reload(Some(tracing_opentelemetry::layer().with_tracer(tracer)))?;
    tracing::info!(service = %settings.service_name, "exporting traces over OTLP");
    Ok(Exporting(provider))
}
