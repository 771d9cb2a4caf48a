//! Integration tests of the runbook language.
