//! Generated gRPC code for the `dge.identity.v1` package.
//!
//! The `.proto` files live in `proto/dge/identity/v1/` at the workspace root.
//! Domain crates convert these messages into their own types; nothing outside
//! the `grpc` modules of the service crates should use them directly.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// `dge.identity.v1`: every service and message.
pub mod v1 {
    tonic::include_proto!("dge.identity.v1");
}

/// The encoded file descriptor set, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("dge_identity_descriptor");
