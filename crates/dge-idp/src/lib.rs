//! The DGE Identity server, as a library so tests can run it in-process.
//!
//! - [`cli`]: command-line arguments.
//! - [`settings`]: everything `run` needs, whatever filled it.
//! - [`seed`]: demo clients, organisations, modules and the bootstrap administrator.
//! - [`app`]: builds every service and serves HTTP and gRPC until shutdown.
//! - [`config`]: the production configuration (file and environment).
//! - [`dev`]: the embedded default (`dge-idp dev`).
//! - [`serve`]: production (`serve`, `check-config`, `migrate`, admin tokens).
//! - [`http_server`]: the HTTP accept loop with its timeouts and connection cap.
//! - [`grpc_server`]: the gRPC accept loop with its handshake deadline and connection cap.
//! - [`grpc_errors`]: malformed gRPC requests answered `INVALID_ARGUMENT`.
//! - [`metrics`]: Prometheus metrics and their listener.
//! - [`request_id`]: request ids on HTTP and gRPC, kept only when plausible.
//! - [`telemetry`]: log format and levels.

pub mod app;
pub mod cli;
pub mod config;
pub mod dev;
pub mod grpc_errors;
pub mod grpc_server;
pub mod http_server;
pub mod metrics;
pub mod request_id;
pub mod seed;
pub mod serve;
pub mod settings;
pub mod telemetry;
