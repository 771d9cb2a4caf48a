//! Integration tests of the backup library: exhaustive tampering, round trips over sizes, key
//! rotation, sampled verification.

mod rewrap;
mod roundtrip;
mod sample;
mod support;
mod tamper;
