//! What Drover's Azure actions cost on top of the ARM call they make: N route next-hop changes
//! through `azure_network.update_route` (read the route, save the capture with fsync, read again,
//! PUT, await the operation) against N bare azure_mgmt_network `create_or_update` calls (PUT, await
//! the operation), on the same local ARM stand-in in the same run. Run through
//! `bench/azure_overhead.sh`.

#[path = "../tests/it/arm_server.rs"]
mod arm_server;

use arm_server::{ArmServer, RG, SUB, TOKEN};
use drover_adapters::azure_network::AzureNetworkAdapter;
use drover_schema::{Adapter, Inputs, StepContext};
use serde_json::json;
use std::time::{Duration, Instant};

fn ctx(dir: &std::path::Path, step: String) -> StepContext {
    StepContext {
        run_id: "bench".into(),
        idempotency_key: format!("bench/{step}"),
        step_id: step,
        action: "azure_network.update_route".into(),
        attempt: 1,
        mode: drover_schema::Mode::Failover,
        state_dir: dir.to_path_buf(),
        production: Vec::new(),
        production_tags: Default::default(),
        progress: Default::default(),
        ..Default::default()
    }
}

#[allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
fn now() -> Instant {
    Instant::now()
}

fn per_op(d: Duration, n: u32) -> f64 {
    d.as_secs_f64() * 1000.0 / f64::from(n)
}

#[derive(Debug)]
struct Token;

#[async_trait::async_trait]
impl azure_core::auth::TokenCredential for Token {
    async fn get_token(&self, _: &[&str]) -> azure_core::Result<azure_core::auth::AccessToken> {
        Ok(azure_core::auth::AccessToken::new(
            azure_core::auth::Secret::new(TOKEN),
            time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        ))
    }

    async fn clear_cache(&self) -> azure_core::Result<()> {
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let server = ArmServer::start();
    let dir = tempfile::tempdir().expect("tmp");
    let adapter = AzureNetworkAdapter::default().with_token(TOKEN);
    let hop = |k: u32| format!("10.60.{}.{}", k / 250, k % 250 + 1);

    let client = azure_mgmt_network::ClientBuilder::new(std::sync::Arc::new(Token))
        .endpoint(azure_core::Url::parse(&server.url).expect("url"))
        .scopes(&["https://management.azure.com/.default"])
        .build()
        .expect("client");
    let t = now();
    for k in 0..n {
        let route: azure_mgmt_network::models::Route = serde_json::from_value(json!({
            "properties": {
                "addressPrefix": "0.0.0.0/0",
                "nextHopType": "VirtualAppliance",
                "nextHopIpAddress": hop(k),
            }
        }))
        .expect("route");
        client
            .routes_client()
            .create_or_update(RG, "rt-ehr-app", "default-egress", route, SUB)
            .await
            .expect("bare PUT");
    }
    let bare = t.elapsed();

    let t = now();
    for k in 0..n {
        let mut i: Inputs = serde_json::from_value(json!({
            "subscription": SUB,
            "resource_group": RG,
            "endpoint": server.url,
            "route_table": "rt-ehr-app",
            "route": "default-egress",
            "next_hop_type": "VirtualAppliance",
        }))
        .expect("inputs");
        i.insert("next_hop_ip".into(), json!(hop(k + n)));
        adapter
            .execute(
                "azure_network.update_route",
                &i,
                &ctx(dir.path(), format!("s{k}")),
            )
            .await
            .expect("step");
    }
    let step = t.elapsed();
    println!(
        "{n} route changes: bare azure_mgmt_network {:.2} ms/op, Drover step {:.2} ms/op, ratio {:.2}x",
        per_op(bare, n),
        per_op(step, n),
        step.as_secs_f64() / bare.as_secs_f64()
    );
}
