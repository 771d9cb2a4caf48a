//! Drover adapters: the actions a runbook's steps call.
//!
//! - [`builtin_catalogue`]: the schema of every built-in action, which the compiler checks runbooks
//!   against.
//! - [`backup`]: the Drover backup format — envelope-encrypted, chunked AES-256-GCM with SHA-256
//!   manifests — with key providers and locations behind traits; the `backup.rehydrate` and
//!   `backup.verify` actions call it.
//!
//! The remaining providers (`local_*`, `aws_route53`, `aws_ec2`, `aws_s3`, `aws_kms`,
//! `azure_network`) follow, each behind the engine's adapter trait.

#[cfg(feature = "aws")]
mod aws_common;
#[cfg(feature = "aws")]
pub mod aws_ec2;
#[cfg(feature = "aws")]
pub mod aws_kms;
#[cfg(feature = "aws")]
pub mod aws_route53;
#[cfg(feature = "aws")]
pub mod aws_s3;
#[cfg(feature = "azure")]
pub mod azure_blob;
#[cfg(feature = "azure")]
pub mod azure_common;
#[cfg(feature = "azure")]
pub mod azure_network;
pub mod backup;
#[cfg(any(feature = "aws", feature = "azure"))]
mod capture;
mod catalogue;
#[cfg(any(feature = "aws", feature = "azure"))]
mod cloud_common;
pub mod local;
#[cfg(any(feature = "aws", feature = "azure"))]
mod object_io;

pub use catalogue::{
    DNS_WAIT_TIMEOUT_MS, HTTP_CHECK_TIMEOUT_MS, SHELL_TIMEOUT_MS, builtin_catalogue,
};

/// Every adapter this build has, ready to run steps: the local actions (printing `notify`
/// messages through `notify`), and the AWS and Azure ones in builds with those features. Each
/// catalogue action is run by exactly one of them (in a build with every feature).
#[must_use]
pub fn builtin_adapters(
    notify: local::NotifySink,
) -> Vec<std::sync::Arc<dyn drover_schema::Adapter>> {
    #[allow(unused_mut, reason = "the cloud adapters are behind features")]
    let mut all: Vec<std::sync::Arc<dyn drover_schema::Adapter>> =
        vec![std::sync::Arc::new(local::LocalAdapter::new(notify))];
    #[cfg(feature = "aws")]
    {
        all.push(std::sync::Arc::new(aws_s3::AwsS3Adapter));
        all.push(std::sync::Arc::new(aws_route53::AwsRoute53Adapter));
        all.push(std::sync::Arc::new(aws_ec2::AwsEc2Adapter));
    }
    #[cfg(feature = "azure")]
    all.push(std::sync::Arc::new(
        azure_network::AzureNetworkAdapter::default(),
    ));
    all
}
