//! Integration tests of the backup library: exhaustive tampering, round trips over sizes, key
//! rotation, sampled verification.

#[cfg(feature = "azure")]
mod arm_server;
#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "aws")]
mod aws_faults;
#[cfg(feature = "aws")]
mod aws_network;
#[cfg(feature = "azure")]
mod azure_blob;
#[cfg(feature = "azure")]
mod azure_network;
mod conformance;
mod copy;
mod rewrap;
mod roundtrip;
mod sample;
mod support;
mod tamper;
