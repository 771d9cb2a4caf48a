//! The `azure_network.*` actions on azure_mgmt_network: a route's next hop, a subnet's route
//! table, security rules, and moving a public IP between network interfaces.
//!
//! Each action reads the resource it is about to change and saves it before the first call
//! (`capture.rs`); `observe` reads the world back so a resume after a crash never repeats an
//! effect; the built-in undo (`compensate`) puts the captured state back. Long-running operations
//! are awaited (the client polls `Azure-AsyncOperation`). Resources are handled as the ARM JSON
//! the typed models (de)serialize, so what ARM returns is what is saved and restored.

use crate::azure_common::{Arm, Clock, DELETE_POLL, DELETE_POLLS, not_found, sleep};
use crate::capture;
use crate::cloud_common::{input_str, refuse_production_tags, require_str, still_changed};
use azure_mgmt_network::models;
use drover_schema::{AdapterError, Inputs, Observation, Outputs, StepContext};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

/// The `azure_network.*` actions.
#[derive(Clone, Default)]
pub struct AzureNetworkAdapter {
    /// Overrides the run's clock (the step context's) for throttling and deletion waits.
    clock: Option<Arc<dyn Clock>>,
    token: Option<String>,
}

impl std::fmt::Debug for AzureNetworkAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("AzureNetworkAdapter")
            .field("clock", &self.clock)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AzureNetworkAdapter {
    /// An adapter that waits (throttling, deletions) on `clock` instead of the run's clock.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// An adapter that sends this pre-acquired bearer token instead of using the credential
    /// chain (what `DROVER_AZURE_TOKEN` does for the CLI).
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    fn arm<'a>(&self, inputs: &Inputs, ctx: &'a StepContext) -> Result<Arm<'a>, AdapterError> {
        let clock = self
            .clock
            .clone()
            .unwrap_or_else(|| Arc::clone(&ctx.clock.0));
        Arm::new(inputs, ctx, clock, self.token.as_deref())
    }
}

/// What a step changed, saved before the change: the resource as it was (`None`: absent).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Before {
    previous: Option<Value>,
}

fn typed<T: serde::de::DeserializeOwned>(v: Value, what: &str) -> Result<T, AdapterError> {
    serde_json::from_value(v)
        .map_err(|e| AdapterError::permanent(format!("cannot form the ARM {what} body: {e}")))
}

fn json_of<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `properties.KEY` of an ARM resource.
fn prop<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.get("properties").and_then(|p| p.get(key))
}

fn set_prop(v: &mut Value, key: &str, value: Value) {
    if !v.get("properties").is_some_and(Value::is_object) {
        v["properties"] = json!({});
    }
    match value {
        Value::Null => {
            if let Some(p) = v["properties"].as_object_mut() {
                p.remove(key);
            }
        }
        value => v["properties"][key] = value,
    }
}

/// Outputs of a change.
fn changed(changed: bool, before: &Before) -> Outputs {
    let mut o = Outputs::new();
    o.insert("changed".into(), json!(changed));
    o.insert(
        "previous".into(),
        before.previous.clone().unwrap_or(Value::Null),
    );
    o
}

// ---- routes ------------------------------------------------------------------------------

struct RouteWant<'i> {
    table: &'i str,
    route: &'i str,
    hop_type: &'i str,
    hop_ip: Option<&'i str>,
    prefix: Option<&'i str>,
}

impl<'i> RouteWant<'i> {
    fn from(inputs: &'i Inputs, action: &str) -> Result<Self, AdapterError> {
        Ok(Self {
            table: require_str(inputs, "route_table", action)?,
            route: require_str(inputs, "route", action)?,
            hop_type: require_str(inputs, "next_hop_type", action)?,
            hop_ip: input_str(inputs, "next_hop_ip"),
            prefix: input_str(inputs, "address_prefix"),
        })
    }

    fn name(&self) -> String {
        format!("route {} of route table {}", self.route, self.table)
    }

    fn satisfied_by(&self, current: Option<&Value>) -> bool {
        let Some(c) = current else { return false };
        prop(c, "nextHopType").and_then(Value::as_str) == Some(self.hop_type)
            && prop(c, "nextHopIpAddress").and_then(Value::as_str) == self.hop_ip
            && self
                .prefix
                .is_none_or(|p| prop(c, "addressPrefix").and_then(Value::as_str) == Some(p))
    }
}

async fn get_route(a: &Arm<'_>, table: &str, route: &str) -> Result<Option<Value>, AdapterError> {
    match a
        .client
        .routes_client()
        .get(&a.resource_group, table, route, &a.subscription)
        .await
    {
        Ok(r) => Ok(Some(json_of(&r))),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(a.err("GET", &format!("route {route} of route table {table}"), &e)),
    }
}

async fn put_route(a: &Arm<'_>, table: &str, route: &str, body: Value) -> Result<(), AdapterError> {
    let model: models::Route = typed(body, "route")?;
    a.client
        .routes_client()
        .create_or_update(&a.resource_group, table, route, model, &a.subscription)
        .await
        .map(|_| ())
        .map_err(|e| a.err("PUT", &format!("route {route} of route table {table}"), &e))
}

async fn delete_route(a: &Arm<'_>, table: &str, route: &str) -> Result<(), AdapterError> {
    let what = format!("route {route} of route table {table}");
    match a
        .client
        .routes_client()
        .delete(&a.resource_group, table, route, &a.subscription)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(a.err("DELETE", &what, &e)),
    }
    until_gone(a, &what, || get_route(a, table, route)).await
}

/// Waits until a deleted resource reads as absent (ARM deletes asynchronously).
async fn until_gone<F, Fut>(a: &Arm<'_>, what: &str, mut read: F) -> Result<(), AdapterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<Value>, AdapterError>>,
{
    for _ in 0..DELETE_POLLS {
        if read().await?.is_none() {
            return Ok(());
        }
        sleep(a.clock.as_ref(), DELETE_POLL).await;
    }
    Err(AdapterError::transient(format!(
        "step {}: {what} is still being deleted",
        a.ctx.step_id
    )))
}

async fn update_route(a: &Arm<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
    let w = RouteWant::from(inputs, "azure_network.update_route")?;
    let before = capture::first(a.ctx, async {
        Ok(Before {
            previous: get_route(a, w.table, w.route).await?,
        })
    })
    .await?;
    let current = get_route(a, w.table, w.route).await?;
    if w.satisfied_by(current.as_ref()) {
        return Ok(changed(false, &before));
    }
    let mut body = current.unwrap_or_else(|| json!({ "properties": {} }));
    set_prop(&mut body, "nextHopType", json!(w.hop_type));
    set_prop(
        &mut body,
        "nextHopIpAddress",
        w.hop_ip.map_or(Value::Null, |ip| json!(ip)),
    );
    if let Some(p) = w.prefix {
        set_prop(&mut body, "addressPrefix", json!(p));
    }
    if prop(&body, "addressPrefix").is_none() {
        return Err(AdapterError::permanent(format!(
            "step {}: {} does not exist; give `address_prefix` to create it",
            a.ctx.step_id,
            w.name()
        )));
    }
    a.expect_version(Some(&body));
    let put = put_route(a, w.table, w.route, body).await;
    a.expect_version(None);
    put?;
    Ok(changed(true, &before))
}

/// Puts a captured resource back: PUT it when it existed, DELETE what the step created.
async fn restore_route(a: &Arm<'_>, inputs: &Inputs, before: &Before) -> Result<(), AdapterError> {
    let w = RouteWant::from(inputs, "azure_network.update_route")?;
    let current = get_route(a, w.table, w.route).await?;
    match before.previous.clone() {
        None => delete_route(a, w.table, w.route).await,
        Some(prev) if same_props(current.as_ref(), &prev) => Ok(()),
        Some(prev) => put_route(a, w.table, w.route, prev).await,
    }
}

/// Whether `current` has `prev`'s properties (ignoring what ARM sets: provisioning state, etag).
fn same_props(current: Option<&Value>, prev: &Value) -> bool {
    let strip = |v: &Value| {
        let mut p = v.get("properties").cloned().unwrap_or(Value::Null);
        if let Some(o) = p.as_object_mut() {
            o.remove("provisioningState");
        }
        p
    };
    current.is_some_and(|c| strip(c) == strip(prev))
}

// ---- subnets -----------------------------------------------------------------------------

/// Reads route table `table`: preflight's check that it exists.
async fn route_table_exists(a: &Arm<'_>, table: &str) -> Result<(), AdapterError> {
    a.client
        .route_tables_client()
        .get(&a.resource_group, table, &a.subscription)
        .await
        .map(|_| ())
        .map_err(|e| a.err("GET", &format!("route table {table}"), &e))
}

async fn get_subnet(a: &Arm<'_>, vnet: &str, subnet: &str) -> Result<Value, AdapterError> {
    a.client
        .subnets_client()
        .get(&a.resource_group, vnet, subnet, &a.subscription)
        .await
        .map(|s| json_of(&s))
        .map_err(|e| a.err("GET", &format!("subnet {subnet} of {vnet}"), &e))
}

async fn put_subnet(
    a: &Arm<'_>,
    vnet: &str,
    subnet: &str,
    body: Value,
) -> Result<(), AdapterError> {
    let model: models::Subnet = typed(body, "subnet")?;
    a.client
        .subnets_client()
        .create_or_update(&a.resource_group, vnet, subnet, model, &a.subscription)
        .await
        .map(|_| ())
        .map_err(|e| a.err("PUT", &format!("subnet {subnet} of {vnet}"), &e))
}

fn route_table_of(subnet: &Value) -> Option<String> {
    prop(subnet, "routeTable")
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Points the subnet at `table` (an ARM id; `None` detaches).
async fn attach_table(
    a: &Arm<'_>,
    vnet: &str,
    subnet: &str,
    table: Option<&str>,
) -> Result<bool, AdapterError> {
    let mut s = get_subnet(a, vnet, subnet).await?;
    if route_table_of(&s).as_deref().map(str::to_ascii_lowercase)
        == table.map(str::to_ascii_lowercase)
    {
        return Ok(false);
    }
    set_prop(
        &mut s,
        "routeTable",
        table.map_or(Value::Null, |id| json!({ "id": id })),
    );
    a.expect_version(Some(&s));
    let put = put_subnet(a, vnet, subnet, s).await;
    a.expect_version(None);
    put?;
    Ok(true)
}

// ---- security rules ----------------------------------------------------------------------

fn rule_props(inputs: &Inputs, action: &str) -> Result<Value, AdapterError> {
    let priority = inputs
        .get("priority")
        .and_then(Value::as_i64)
        .filter(|p| (100..=4096).contains(p))
        .ok_or_else(|| {
            AdapterError::permanent(format!("`{action}` needs a `priority` from 100 to 4096"))
        })?;
    Ok(json!({
        "priority": priority,
        "direction": require_str(inputs, "direction", action)?,
        "access": require_str(inputs, "access", action)?,
        "protocol": input_str(inputs, "protocol").unwrap_or("Tcp"),
        "sourceAddressPrefix": input_str(inputs, "source").unwrap_or("*"),
        "sourcePortRange": "*",
        "destinationAddressPrefix": "*",
        "destinationPortRange": input_str(inputs, "destination_port").unwrap_or("*"),
    }))
}

/// Only the rule fields the step sets (for updating an existing rule: what it does not set
/// stays as it is).
fn rule_update(inputs: &Inputs, action: &str) -> Result<Value, AdapterError> {
    let mut all = rule_props(inputs, action)?;
    if let Some(props) = all.as_object_mut() {
        for (field, input) in [
            ("protocol", "protocol"),
            ("sourceAddressPrefix", "source"),
            ("destinationPortRange", "destination_port"),
        ] {
            if input_str(inputs, input).is_none() {
                props.remove(field);
            }
        }
        props.remove("sourcePortRange");
        props.remove("destinationAddressPrefix");
    }
    Ok(all)
}

fn rule_matches(current: Option<&Value>, want: &Value) -> bool {
    let Some(c) = current else { return false };
    want.as_object()
        .is_some_and(|w| w.iter().all(|(k, v)| prop(c, k) == Some(v)))
}

async fn get_rule(a: &Arm<'_>, nsg: &str, rule: &str) -> Result<Option<Value>, AdapterError> {
    match a
        .client
        .security_rules_client()
        .get(&a.resource_group, nsg, rule, &a.subscription)
        .await
    {
        Ok(r) => Ok(Some(json_of(&r))),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(a.err("GET", &format!("security rule {rule} of {nsg}"), &e)),
    }
}

async fn put_rule(a: &Arm<'_>, nsg: &str, rule: &str, body: Value) -> Result<(), AdapterError> {
    let model: models::SecurityRule = typed(body, "security rule")?;
    a.client
        .security_rules_client()
        .create_or_update(&a.resource_group, nsg, rule, model, &a.subscription)
        .await
        .map(|_| ())
        .map_err(|e| a.err("PUT", &format!("security rule {rule} of {nsg}"), &e))
}

async fn delete_rule(a: &Arm<'_>, nsg: &str, rule: &str) -> Result<(), AdapterError> {
    let what = format!("security rule {rule} of {nsg}");
    match a
        .client
        .security_rules_client()
        .delete(&a.resource_group, nsg, rule, &a.subscription)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(a.err("DELETE", &what, &e)),
    }
    until_gone(a, &what, || get_rule(a, nsg, rule)).await
}

// ---- public IPs --------------------------------------------------------------------------

/// A NIC's IP configuration, by names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Slot {
    nic: String,
    ip_config: String,
}

impl Slot {
    /// From an ARM id `…/networkInterfaces/NIC/ipConfigurations/CFG`.
    fn from_id(id: &str) -> Option<Self> {
        let parts: Vec<&str> = id.split('/').collect();
        let at = parts
            .iter()
            .position(|p| p.eq_ignore_ascii_case("networkInterfaces"))?;
        Some(Self {
            nic: (*parts.get(at + 1)?).to_owned(),
            ip_config: (*parts.get(at + 3)?).to_owned(),
        })
    }
}

async fn get_pip(a: &Arm<'_>, pip: &str) -> Result<Value, AdapterError> {
    a.client
        .public_ip_addresses_client()
        .get(&a.resource_group, pip, &a.subscription)
        .await
        .map(|p| json_of(&p))
        .map_err(|e| a.err("GET", &format!("public IP {pip}"), &e))
}

fn pip_slot(pip: &Value) -> Option<Slot> {
    prop(pip, "ipConfiguration")
        .and_then(|c| c.get("id"))
        .and_then(Value::as_str)
        .and_then(Slot::from_id)
}

async fn get_nic(a: &Arm<'_>, nic: &str) -> Result<Value, AdapterError> {
    a.client
        .network_interfaces_client()
        .get(&a.resource_group, nic, &a.subscription)
        .await
        .map(|n| json_of(&n))
        .map_err(|e| a.err("GET", &format!("network interface {nic}"), &e))
}

/// Sets (or with `None` clears) the public IP of a NIC's IP configuration, and PUTs the NIC.
async fn set_nic_pip(a: &Arm<'_>, slot: &Slot, pip_id: Option<&str>) -> Result<(), AdapterError> {
    let mut nic = get_nic(a, &slot.nic).await?;
    let configs = nic
        .get_mut("properties")
        .and_then(|p| p.get_mut("ipConfigurations"))
        .and_then(Value::as_array_mut)
        .ok_or_else(|| {
            AdapterError::permanent(format!(
                "step {}: network interface {} has no IP configurations",
                a.ctx.step_id, slot.nic
            ))
        })?;
    let cfg = configs
        .iter_mut()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(slot.ip_config.as_str()))
        .ok_or_else(|| {
            AdapterError::permanent(format!(
                "step {}: network interface {} has no IP configuration {}",
                a.ctx.step_id, slot.nic, slot.ip_config
            ))
        })?;
    set_prop(
        cfg,
        "publicIPAddress",
        pip_id.map_or(Value::Null, |id| json!({ "id": id })),
    );
    a.expect_version(Some(&nic));
    let model: models::NetworkInterface = typed(nic, "network interface")?;
    let put = a
        .client
        .network_interfaces_client()
        .create_or_update(&a.resource_group, &slot.nic, model, &a.subscription)
        .await
        .map(|_| ())
        .map_err(|e| a.err("PUT", &format!("network interface {}", slot.nic), &e));
    a.expect_version(None);
    put
}

/// A top-level network resource (route table, security group, virtual network) as JSON.
async fn get_top(a: &Arm<'_>, kind: &str, name: &str) -> Result<Value, AdapterError> {
    let (rg, sub) = (&a.resource_group, &a.subscription);
    let r = match kind {
        "routeTables" => a
            .client
            .route_tables_client()
            .get(rg, name, sub)
            .await
            .map(|v| json_of(&v)),
        "networkSecurityGroups" => a
            .client
            .network_security_groups_client()
            .get(rg, name, sub)
            .await
            .map(|v| json_of(&v)),
        _ => a
            .client
            .virtual_networks_client()
            .get(rg, name, sub)
            .await
            .map(|v| json_of(&v)),
    };
    r.map_err(|e| a.err("GET", &format!("{kind}/{name}"), &e))
}

/// In a drill, reads the tags of every resource the step changes or points at and refuses,
/// before the first change, when one marks production. (A public-IP move reads the address and
/// both interfaces in `move_pip`.)
async fn drill_guard(a: &Arm<'_>, action: &str, inputs: &Inputs) -> Result<(), AdapterError> {
    if a.ctx.mode != drover_schema::Mode::Drill || a.ctx.production_tags.is_empty() {
        return Ok(());
    }
    let touched: &[(&str, &str)] = match action {
        "azure_network.update_route" => &[("routeTables", "route_table")],
        "azure_network.set_subnet_route_table" => {
            &[("virtualNetworks", "vnet"), ("routeTables", "route_table")]
        }
        "azure_network.set_nsg_rule" | "azure_network.remove_nsg_rule" => {
            &[("networkSecurityGroups", "nsg")]
        }
        _ => &[],
    };
    let mut found = Vec::new();
    for (kind, input) in touched {
        let name = require_str(inputs, input, action)?;
        found.extend(tags(&get_top(a, kind, name).await?, name));
    }
    refuse_production_tags(
        a.ctx,
        found
            .iter()
            .map(|(r, k, v)| (r.as_str(), k.as_str(), v.as_str())),
    )
}

/// The (resource, key, value) tags of an ARM resource.
fn tags(v: &Value, resource: &str) -> Vec<(String, String, String)> {
    v.get("tags")
        .and_then(Value::as_object)
        .map(|t| {
            t.iter()
                .map(|(k, val)| {
                    (
                        resource.to_owned(),
                        k.clone(),
                        val.as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Moves the public IP from where it is to `to` (`None`: detached). Returns whether it moved.
async fn move_pip(a: &Arm<'_>, pip_name: &str, to: Option<&Slot>) -> Result<bool, AdapterError> {
    let pip = get_pip(a, pip_name).await?;
    let from = pip_slot(&pip);
    if from.as_ref() == to {
        return Ok(false);
    }
    // In a drill, every resource the move touches is checked before the first change.
    let mut touched = tags(&pip, pip_name);
    for slot in from.iter().chain(to) {
        touched.extend(tags(&get_nic(a, &slot.nic).await?, &slot.nic));
    }
    refuse_production_tags(
        a.ctx,
        touched
            .iter()
            .map(|(r, k, v)| (r.as_str(), k.as_str(), v.as_str())),
    )?;
    let pip_id = a.id("publicIPAddresses", pip_name);
    // A public IP belongs to one IP configuration at a time: free it first.
    if let Some(from) = &from {
        set_nic_pip(a, from, None).await?;
    }
    if let Some(to) = to
        && let Err(e) = set_nic_pip(a, to, Some(&pip_id)).await
    {
        // Put it back where it was: a failed move leaves the world as it found it.
        if let Some(from) = &from {
            if let Err(back) = set_nic_pip(a, from, Some(&pip_id)).await {
                return Err(AdapterError::permanent(format!(
                    "{e}; putting public IP {pip_name} back on {} failed too: {back}",
                    from.nic
                )));
            }
            let mut e = e;
            e.message = format!(
                "{}; public IP {pip_name} is back on {}",
                e.message, from.nic
            );
            return Err(e);
        }
        return Err(e);
    }
    Ok(true)
}

fn target_slot(inputs: &Inputs) -> Result<Slot, AdapterError> {
    Ok(Slot {
        nic: require_str(inputs, "nic", "azure_network.associate_public_ip")?.to_owned(),
        ip_config: input_str(inputs, "ip_config")
            .unwrap_or("ipconfig1")
            .to_owned(),
    })
}

// ---- the adapter -------------------------------------------------------------------------

#[async_trait::async_trait]
impl drover_schema::Adapter for AzureNetworkAdapter {
    fn schemas(&self) -> Vec<drover_schema::ActionSchema> {
        crate::builtin_catalogue()
            .actions()
            .iter()
            .filter(|a| a.provider() == "azure_network")
            .cloned()
            .collect()
    }

    fn validate(&self, action: &str, inputs: &Inputs) -> Result<(), AdapterError> {
        match action {
            "azure_network.update_route" => {
                let w = RouteWant::from(inputs, action)?;
                if (w.hop_type == "VirtualAppliance") != w.hop_ip.is_some() {
                    return Err(AdapterError::permanent(
                        "`azure_network.update_route`: `next_hop_ip` is required with next_hop_type VirtualAppliance and allowed only with it",
                    ));
                }
                Ok(())
            }
            "azure_network.set_nsg_rule" => rule_props(inputs, action).map(|_| ()),
            _ => Ok(()),
        }
    }

    async fn preflight(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<(), AdapterError> {
        let a = self.arm(inputs, ctx)?;
        match action {
            "azure_network.update_route" => {
                route_table_exists(&a, require_str(inputs, "route_table", action)?).await
            }
            "azure_network.set_subnet_route_table" => {
                get_subnet(
                    &a,
                    require_str(inputs, "vnet", action)?,
                    require_str(inputs, "subnet", action)?,
                )
                .await?;
                route_table_exists(&a, require_str(inputs, "route_table", action)?).await
            }
            "azure_network.set_nsg_rule" | "azure_network.remove_nsg_rule" => {
                let nsg = require_str(inputs, "nsg", action)?;
                a.client
                    .network_security_groups_client()
                    .get(&a.resource_group, nsg, &a.subscription)
                    .await
                    .map(|_| ())
                    .map_err(|e| a.err("GET", &format!("network security group {nsg}"), &e))
            }
            "azure_network.associate_public_ip" => {
                get_pip(&a, require_str(inputs, "public_ip", action)?).await?;
                get_nic(&a, &target_slot(inputs)?.nic).await.map(|_| ())
            }
            _ => Ok(()),
        }
    }

    async fn execute(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Outputs, AdapterError> {
        let a = self.arm(inputs, ctx)?;
        drill_guard(&a, action, inputs).await?;
        match action {
            "azure_network.update_route" => update_route(&a, inputs).await,
            "azure_network.set_subnet_route_table" => {
                let vnet = require_str(inputs, "vnet", action)?;
                let subnet = require_str(inputs, "subnet", action)?;
                let table = a.id("routeTables", require_str(inputs, "route_table", action)?);
                let before = capture::first(ctx, async {
                    Ok(Before {
                        previous: route_table_of(&get_subnet(&a, vnet, subnet).await?)
                            .map(Value::String),
                    })
                })
                .await?;
                let moved = attach_table(&a, vnet, subnet, Some(&table)).await?;
                Ok(changed(moved, &before))
            }
            "azure_network.set_nsg_rule" => {
                let nsg = require_str(inputs, "nsg", action)?;
                let rule = require_str(inputs, "rule", action)?;
                let before = capture::first(ctx, async {
                    Ok(Before {
                        previous: get_rule(&a, nsg, rule).await?,
                    })
                })
                .await?;
                let current = get_rule(&a, nsg, rule).await?;
                let current_read = current.clone();
                // A new rule gets the defaults; an existing one only what the step sets.
                let want = if current.is_some() {
                    rule_update(inputs, action)?
                } else {
                    rule_props(inputs, action)?
                };
                if rule_matches(current.as_ref(), &want) {
                    return Ok(changed(false, &before));
                }
                // Read–modify–write: a PUT replaces the whole rule, so the rule as it is now
                // (its description and every field the step does not set) is sent back with only
                // the step's fields changed.
                let body = match current {
                    Some(mut now) => {
                        if let (Some(props), Some(w)) = (
                            now.get_mut("properties").and_then(Value::as_object_mut),
                            want.as_object(),
                        ) {
                            props.remove("provisioningState");
                            for (k, v) in w {
                                props.insert(k.clone(), v.clone());
                            }
                        }
                        json!({ "properties": now.get("properties").cloned().unwrap_or(want) })
                    }
                    None => json!({ "properties": want }),
                };
                a.expect_version(current_read.as_ref());
                let put = put_rule(&a, nsg, rule, body).await;
                a.expect_version(None);
                put?;
                Ok(changed(true, &before))
            }
            "azure_network.remove_nsg_rule" => {
                let nsg = require_str(inputs, "nsg", action)?;
                let rule = require_str(inputs, "rule", action)?;
                let before = capture::first(ctx, async {
                    Ok(Before {
                        previous: get_rule(&a, nsg, rule).await?,
                    })
                })
                .await?;
                let present = get_rule(&a, nsg, rule).await?.is_some();
                if present {
                    delete_rule(&a, nsg, rule).await?;
                }
                Ok(changed(present, &before))
            }
            "azure_network.associate_public_ip" => {
                let pip = require_str(inputs, "public_ip", action)?;
                let to = target_slot(inputs)?;
                let before = capture::first(ctx, async {
                    Ok(Before {
                        previous: pip_slot(&get_pip(&a, pip).await?).map(|s| json_of(&s)),
                    })
                })
                .await?;
                let moved = move_pip(&a, pip, Some(&to)).await?;
                Ok(changed(moved, &before))
            }
            _ => Err(AdapterError::permanent(format!(
                "the Azure network adapter has no action `{action}`"
            ))),
        }
    }

    async fn compensate(
        &self,
        action: &str,
        inputs: &Inputs,
        _outputs: &Outputs,
        ctx: &StepContext,
    ) -> Result<(), AdapterError> {
        // Without a capture the step never reached its first change: nothing to restore.
        let Some(before) = capture::load::<Before>(ctx)? else {
            return Ok(());
        };
        let a = self.arm(inputs, ctx)?;
        send_undo(&a, action, inputs, &before).await?;
        // Verified by reading the resource back: the undo is done when the world says so.
        let (back, what) = match action {
            "azure_network.update_route" => {
                let w = RouteWant::from(inputs, action)?;
                let now = get_route(&a, w.table, w.route).await?;
                let back = match &before.previous {
                    None => now.is_none(),
                    Some(prev) => same_props(now.as_ref(), prev),
                };
                (back, w.name())
            }
            "azure_network.set_subnet_route_table" => {
                let vnet = require_str(inputs, "vnet", action)?;
                let subnet = require_str(inputs, "subnet", action)?;
                let now = route_table_of(&get_subnet(&a, vnet, subnet).await?);
                let was = before.previous.as_ref().and_then(Value::as_str);
                (
                    now.as_deref().map(str::to_ascii_lowercase) == was.map(str::to_ascii_lowercase),
                    format!("subnet {subnet} of {vnet}"),
                )
            }
            "azure_network.set_nsg_rule" | "azure_network.remove_nsg_rule" => {
                let nsg = require_str(inputs, "nsg", action)?;
                let rule = require_str(inputs, "rule", action)?;
                let now = get_rule(&a, nsg, rule).await?;
                let back = match &before.previous {
                    None => now.is_none(),
                    Some(prev) => same_props(now.as_ref(), prev),
                };
                (back, format!("security rule {rule} of {nsg}"))
            }
            "azure_network.associate_public_ip" => {
                let pip = require_str(inputs, "public_ip", action)?;
                let now = pip_slot(&get_pip(&a, pip).await?).map(|s| json_of(&s));
                (now == before.previous, format!("public IP {pip}"))
            }
            _ => (true, String::new()),
        };
        if back {
            Ok(())
        } else {
            Err(still_changed(&ctx.step_id, &what).on_resource(what))
        }
    }

    async fn observe(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Observation, AdapterError> {
        let a = self.arm(inputs, ctx)?;
        let before = capture::load::<Before>(ctx)?.unwrap_or(Before { previous: None });
        // An accepted change whose operation is still running is not done yet: the resource is
        // read until its provisioning state is terminal (Succeeded; Failed or Canceled fail the
        // step), so a resume never sends the next change to a resource still "Updating".
        let mut polls = 0;
        let done = loop {
            let (resource, done) = probe(&a, action, inputs).await?;
            let state = resource
                .as_ref()
                .and_then(|r| prop(r, "provisioningState"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            match state.as_deref() {
                Some("Updating" | "Creating" | "Deleting" | "Provisioning") => {
                    polls += 1;
                    if polls > DELETE_POLLS {
                        return Err(AdapterError::transient(format!(
                            "step {}: the resource's last operation is still running ({}); reading it again later",
                            ctx.step_id,
                            state.unwrap_or_default()
                        )));
                    }
                    sleep(a.clock.as_ref(), DELETE_POLL).await;
                }
                Some(failed @ ("Failed" | "Canceled")) => {
                    return Err(AdapterError::permanent(format!(
                        "step {}: the resource's last operation ended {failed}: check it before running the step again",
                        ctx.step_id
                    ))
                    .with_code(failed));
                }
                _ => break done,
            }
        };
        Ok(if done {
            Observation::Done(changed(true, &before))
        } else {
            Observation::NotDone
        })
    }
}

/// Sends the undo of `action` from the state captured before the step's first change.
async fn send_undo(
    a: &Arm<'_>,
    action: &str,
    inputs: &Inputs,
    before: &Before,
) -> Result<(), AdapterError> {
    match action {
        "azure_network.update_route" => restore_route(a, inputs, before).await,
        "azure_network.set_subnet_route_table" => {
            let vnet = require_str(inputs, "vnet", action)?;
            let subnet = require_str(inputs, "subnet", action)?;
            let previous = before.previous.as_ref().and_then(Value::as_str);
            attach_table(a, vnet, subnet, previous).await.map(|_| ())
        }
        "azure_network.set_nsg_rule" | "azure_network.remove_nsg_rule" => {
            let nsg = require_str(inputs, "nsg", action)?;
            let rule = require_str(inputs, "rule", action)?;
            let current = get_rule(a, nsg, rule).await?;
            match &before.previous {
                None => delete_rule(a, nsg, rule).await,
                Some(prev) if same_props(current.as_ref(), prev) => Ok(()),
                Some(prev) => put_rule(a, nsg, rule, prev.clone()).await,
            }
        }
        "azure_network.associate_public_ip" => {
            let pip = require_str(inputs, "public_ip", action)?;
            let back: Option<Slot> = before
                .previous
                .clone()
                .map(|v| typed(v, "captured slot"))
                .transpose()?;
            move_pip(a, pip, back.as_ref()).await.map(|_| ())
        }
        _ => Err(AdapterError::permanent(format!(
            "the Azure network adapter has no action `{action}`"
        ))),
    }
}

/// What `observe` reads for `action`: the resource the change lands on (for its provisioning
/// state), and whether the step's change is in place.
async fn probe(
    a: &Arm<'_>,
    action: &str,
    inputs: &Inputs,
) -> Result<(Option<Value>, bool), AdapterError> {
    Ok(match action {
        "azure_network.update_route" => {
            let w = RouteWant::from(inputs, action)?;
            let r = get_route(a, w.table, w.route).await?;
            let done = w.satisfied_by(r.as_ref());
            (r, done)
        }
        "azure_network.set_subnet_route_table" => {
            let s = get_subnet(
                a,
                require_str(inputs, "vnet", action)?,
                require_str(inputs, "subnet", action)?,
            )
            .await?;
            let want = a.id("routeTables", require_str(inputs, "route_table", action)?);
            let done = route_table_of(&s).is_some_and(|t| t.eq_ignore_ascii_case(&want));
            (Some(s), done)
        }
        "azure_network.set_nsg_rule" => {
            let want = rule_update(inputs, action)?;
            let r = get_rule(
                a,
                require_str(inputs, "nsg", action)?,
                require_str(inputs, "rule", action)?,
            )
            .await?;
            let done = rule_matches(r.as_ref(), &want);
            (r, done)
        }
        "azure_network.remove_nsg_rule" => {
            let r = get_rule(
                a,
                require_str(inputs, "nsg", action)?,
                require_str(inputs, "rule", action)?,
            )
            .await?;
            let done = r.is_none();
            (r, done)
        }
        "azure_network.associate_public_ip" => {
            let target = target_slot(inputs)?;
            let pip = get_pip(a, require_str(inputs, "public_ip", action)?).await?;
            let done = pip_slot(&pip).as_ref() == Some(&target);
            // The move lands on the interface: its state says whether the PUT finished.
            (Some(get_nic(a, &target.nic).await?), done)
        }
        _ => (None, false),
    })
}
