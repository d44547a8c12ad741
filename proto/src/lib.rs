//! The data sandbox's gRPC API (package `sandbox.v1`), generated at build time from the
//! `.proto` files in `sandbox/v1/`: messages, clients and server traits.

#![allow(missing_debug_implementations, unreachable_pub, unused_qualifications, clippy::all)]

/// Package `sandbox.v1`.
pub mod v1 {
    tonic::include_proto!("sandbox.v1");

    /// The encoded `FileDescriptorSet` of every service, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
}
