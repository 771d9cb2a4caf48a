//! Drover adapters: the actions a runbook's steps call.
//!
//! Today this crate provides the built-in action catalogue ([`builtin_catalogue`]), the schemas the
//! compiler checks runbooks against. The implementations follow, one module per provider
//! (`local_*`, `backup`, `aws_route53`, `aws_ec2`, `aws_s3`, `aws_kms`, `azure_network`), each
//! behind the engine's adapter trait.

mod catalogue;

pub use catalogue::builtin_catalogue;
