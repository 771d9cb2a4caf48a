//! The `aws_ec2.*` actions on the official SDK: Elastic IP moves, route replacement, security
//! group rules, instance start/stop, volumes from snapshots and instance launches.
//!
//! Each action reads the state it is about to change and saves it before the first call
//! (`capture.rs`); `observe` reads the world back so that a resume after a crash never
//! repeats an effect; `compensate` restores the saved state. What an action creates carries the
//! step's idempotency key as a client token and as the `drover:idempotency-key` tag, so a repeated
//! call returns the same volume or instances instead of making new ones.

use crate::aws_common::{IDEMPOTENCY_TAG, client_token};
use crate::capture;
use crate::cloud_common::{
    input_list, input_str, interval, pause, refuse_production_tags, require_str, resource_values,
    still_changed,
};
use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    Filter, InstanceStateName, InstanceType, IpPermission, IpRange, LaunchTemplateSpecification,
    ResourceType, Tag, TagSpecification, VolumeState, VolumeType,
};
use drover_schema::{AdapterError, Inputs, Observation, Outputs, StepContext};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The `aws_ec2.*` actions.
#[derive(Debug, Default)]
pub struct AwsEc2Adapter;

type Call<'a> = crate::aws_common::Call<'a, Client>;

impl Call<'_> {
    /// In a drill, reads the tags of `ids` and refuses when one marks production.
    async fn drill_guard(&self, ids: &[String]) -> Result<(), AdapterError> {
        if self.ctx.mode != drover_schema::Mode::Drill
            || self.ctx.production_tags.is_empty()
            || ids.is_empty()
        {
            return Ok(());
        }
        let out = self
            .client
            .describe_tags()
            .filters(
                Filter::builder()
                    .name("resource-id")
                    .set_values(Some(ids.to_vec()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| self.err("DescribeTags", &ids.join(", "), &e))?;
        refuse_production_tags(
            self.ctx,
            out.tags().iter().map(|t| {
                (
                    t.resource_id().unwrap_or_default(),
                    t.key().unwrap_or_default(),
                    t.value().unwrap_or_default(),
                )
            }),
        )
    }
}

fn tag_spec(
    ctx: &StepContext,
    kind: ResourceType,
    extra: &serde_json::Map<String, serde_json::Value>,
) -> TagSpecification {
    let mut b = TagSpecification::builder()
        .resource_type(kind)
        .tags(
            Tag::builder()
                .key(IDEMPOTENCY_TAG)
                .value(&ctx.idempotency_key)
                .build(),
        )
        .tags(Tag::builder().key("drover:run").value(&ctx.run_id).build());
    for (k, v) in extra {
        if let Some(v) = v.as_str() {
            b = b.tags(Tag::builder().key(k).value(v).build());
        }
    }
    b.build()
}

fn by_idempotency_tag(ctx: &StepContext) -> Filter {
    Filter::builder()
        .name(format!("tag:{IDEMPOTENCY_TAG}"))
        .values(&ctx.idempotency_key)
        .build()
}

// ---------------------------------------------------------------------------------------------
// Elastic IPs

/// Where an Elastic IP pointed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Association {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network_interface_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    association_id: Option<String>,
}

impl Association {
    fn points_at(&self, inputs: &Inputs) -> bool {
        match (
            input_str(inputs, "instance_id"),
            input_str(inputs, "network_interface_id"),
        ) {
            (_, Some(eni)) => self.network_interface_id.as_deref() == Some(eni),
            (Some(i), None) => self.instance_id.as_deref() == Some(i),
            (None, None) => false,
        }
    }
}

async fn address(c: &Call<'_>, allocation: &str) -> Result<Association, AdapterError> {
    let out = c
        .client
        .describe_addresses()
        .allocation_ids(allocation)
        .send()
        .await
        .map_err(|e| c.err("DescribeAddresses", allocation, &e))?;
    let a = out.addresses().first().ok_or_else(|| {
        AdapterError::permanent(format!(
            "step {}: Elastic IP {allocation} not found in {}",
            c.ctx.step_id, c.region
        ))
    })?;
    Ok(Association {
        instance_id: a.instance_id().filter(|s| !s.is_empty()).map(str::to_owned),
        network_interface_id: a
            .network_interface_id()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        association_id: a
            .association_id()
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    })
}

async fn associate(
    c: &Call<'_>,
    allocation: &str,
    instance: Option<&str>,
    eni: Option<&str>,
    reassociate: bool,
) -> Result<String, AdapterError> {
    let target = eni.or(instance).unwrap_or_default();
    let out = c
        .client
        .associate_address()
        .allocation_id(allocation)
        .set_instance_id(if eni.is_some() {
            None
        } else {
            instance.map(str::to_owned)
        })
        .set_network_interface_id(eni.map(str::to_owned))
        .allow_reassociation(reassociate)
        .send()
        .await
        .map_err(|e| c.err("AssociateAddress", &format!("{allocation} → {target}"), &e))?;
    Ok(out.association_id().unwrap_or_default().to_owned())
}

fn association_outputs(association_id: &str, previous: &Association) -> Outputs {
    let mut o = Outputs::new();
    o.insert("association_id".into(), json!(association_id));
    o.insert("previous".into(), json!(previous));
    o
}

async fn associate_address(c: &Call<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
    let action = "aws_ec2.associate_address";
    let allocation = require_str(inputs, "allocation_id", action)?;
    let instance = input_str(inputs, "instance_id");
    let eni = input_str(inputs, "network_interface_id");
    let now = address(c, allocation).await?;
    let previous: Association = capture::first(c.ctx, async { Ok(now.clone()) }).await?;
    if now.points_at(inputs) {
        return Ok(association_outputs(
            now.association_id.as_deref().unwrap_or(""),
            &previous,
        ));
    }
    let reassociate = inputs
        .get("allow_reassociation")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(true);
    if now.association_id.is_some() && !reassociate {
        return Err(AdapterError::permanent(format!(
            "step {}: Elastic IP {allocation} is associated with {} and `allow_reassociation` is false",
            c.ctx.step_id,
            now.instance_id
                .or(now.network_interface_id)
                .unwrap_or_default()
        )));
    }
    let id = associate(c, allocation, instance, eni, reassociate).await?;
    Ok(association_outputs(&id, &previous))
}

async fn undo_associate_address(c: &Call<'_>, inputs: &Inputs) -> Result<(), AdapterError> {
    send_undo_associate_address(c, inputs).await?;
    // Verified by reading the address back: an undo is done only when the world says so.
    let allocation = require_str(inputs, "allocation_id", "aws_ec2.associate_address")?;
    if let Some(previous) = capture::load::<Association>(c.ctx)? {
        let now = address(c, allocation).await?;
        // The interface says where the address is; an instance only when no interface was known.
        let back = match (&previous.network_interface_id, &previous.instance_id) {
            (Some(eni), _) => now.network_interface_id.as_ref() == Some(eni),
            (None, Some(i)) => now.instance_id.as_ref() == Some(i),
            (None, None) => now.association_id.is_none(),
        };
        if !back {
            return Err(AdapterError::permanent(format!(
                "step {}: the undo was sent, but Elastic IP {allocation} reads as attached to {} instead of {}: still changed",
                c.ctx.step_id,
                now.network_interface_id.or(now.instance_id).unwrap_or_else(|| "nothing".into()),
                previous
                    .network_interface_id
                    .or(previous.instance_id)
                    .unwrap_or_else(|| "nothing".into()),
            ))
            .on_resource(allocation));
        }
    }
    Ok(())
}

async fn send_undo_associate_address(c: &Call<'_>, inputs: &Inputs) -> Result<(), AdapterError> {
    let allocation = require_str(inputs, "allocation_id", "aws_ec2.associate_address")?;
    let Some(previous) = capture::load::<Association>(c.ctx)? else {
        return Ok(());
    };
    let now = address(c, allocation).await?;
    if now.instance_id == previous.instance_id
        && now.network_interface_id == previous.network_interface_id
    {
        return Ok(());
    }
    if previous.instance_id.is_some() || previous.network_interface_id.is_some() {
        associate(
            c,
            allocation,
            previous.instance_id.as_deref(),
            previous.network_interface_id.as_deref(),
            true,
        )
        .await
        .map(|_| ())
    } else if let Some(assoc) = now.association_id {
        c.client
            .disassociate_address()
            .association_id(&assoc)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| c.err("DisassociateAddress", allocation, &e))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Routes

/// What a route points at (one of these is set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct RouteTarget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nat_gateway_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transit_gateway_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vpc_peering_connection_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network_interface_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
}

impl RouteTarget {
    fn from_inputs(inputs: &Inputs) -> Self {
        let s = |k: &str| input_str(inputs, k).map(str::to_owned);
        Self {
            gateway_id: s("gateway_id"),
            nat_gateway_id: s("nat_gateway_id"),
            transit_gateway_id: s("transit_gateway_id"),
            vpc_peering_connection_id: s("vpc_peering_connection_id"),
            network_interface_id: s("network_interface_id"),
            instance_id: s("instance_id"),
        }
    }

    /// The one target to pass to ReplaceRoute (an instance route also reports its interface:
    /// the interface is the precise one).
    fn single(&self) -> Self {
        let mut one = Self::default();
        if self.gateway_id.is_some() {
            one.gateway_id.clone_from(&self.gateway_id);
        } else if self.nat_gateway_id.is_some() {
            one.nat_gateway_id.clone_from(&self.nat_gateway_id);
        } else if self.transit_gateway_id.is_some() {
            one.transit_gateway_id.clone_from(&self.transit_gateway_id);
        } else if self.vpc_peering_connection_id.is_some() {
            one.vpc_peering_connection_id
                .clone_from(&self.vpc_peering_connection_id);
        } else if self.network_interface_id.is_some() {
            one.network_interface_id
                .clone_from(&self.network_interface_id);
        } else {
            one.instance_id.clone_from(&self.instance_id);
        }
        one
    }

    /// Whether `self` (the route now) already points where `want` (one target) says.
    fn satisfies(&self, want: &Self) -> bool {
        let eq = |a: &Option<String>, b: &Option<String>| b.is_none() || a == b;
        eq(&self.gateway_id, &want.gateway_id)
            && eq(&self.nat_gateway_id, &want.nat_gateway_id)
            && eq(&self.transit_gateway_id, &want.transit_gateway_id)
            && eq(
                &self.vpc_peering_connection_id,
                &want.vpc_peering_connection_id,
            )
            && eq(&self.network_interface_id, &want.network_interface_id)
            && eq(&self.instance_id, &want.instance_id)
    }

    fn describe(&self) -> String {
        let s = self.single();
        [
            s.gateway_id,
            s.nat_gateway_id,
            s.transit_gateway_id,
            s.vpc_peering_connection_id,
            s.network_interface_id,
            s.instance_id,
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or_else(|| "nothing".into())
    }
}

async fn route(c: &Call<'_>, table: &str, cidr: &str) -> Result<RouteTarget, AdapterError> {
    let out = c
        .client
        .describe_route_tables()
        .route_table_ids(table)
        .send()
        .await
        .map_err(|e| c.err("DescribeRouteTables", table, &e))?;
    let rt = out.route_tables().first().ok_or_else(|| {
        AdapterError::permanent(format!(
            "step {}: route table {table} not found in {}",
            c.ctx.step_id, c.region
        ))
    })?;
    let r = rt
        .routes()
        .iter()
        .find(|r| r.destination_cidr_block() == Some(cidr))
        .ok_or_else(|| {
            AdapterError::permanent(format!(
                "step {}: route table {table} has no route for {cidr} (replace_route changes an existing route)",
                c.ctx.step_id
            ))
        })?;
    let s = |v: Option<&str>| v.filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(RouteTarget {
        gateway_id: s(r.gateway_id()),
        nat_gateway_id: s(r.nat_gateway_id()),
        transit_gateway_id: s(r.transit_gateway_id()),
        vpc_peering_connection_id: s(r.vpc_peering_connection_id()),
        network_interface_id: s(r.network_interface_id()),
        instance_id: s(r.instance_id()),
    })
}

async fn replace(
    c: &Call<'_>,
    table: &str,
    cidr: &str,
    to: &RouteTarget,
) -> Result<(), AdapterError> {
    let to = to.single();
    c.client
        .replace_route()
        .route_table_id(table)
        .destination_cidr_block(cidr)
        .set_gateway_id(to.gateway_id.clone())
        .set_nat_gateway_id(to.nat_gateway_id.clone())
        .set_transit_gateway_id(to.transit_gateway_id.clone())
        .set_vpc_peering_connection_id(to.vpc_peering_connection_id.clone())
        .set_network_interface_id(to.network_interface_id.clone())
        .set_instance_id(to.instance_id.clone())
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            c.err(
                "ReplaceRoute",
                &format!("{table} {cidr} → {}", to.describe()),
                &e,
            )
        })
}

fn route_inputs(inputs: &Inputs) -> Result<(&str, &str, RouteTarget), AdapterError> {
    let action = "aws_ec2.replace_route";
    let table = require_str(inputs, "route_table_id", action)?;
    let cidr = require_str(inputs, "destination_cidr", action)?;
    let want = RouteTarget::from_inputs(inputs);
    if want == RouteTarget::default() {
        return Err(AdapterError::permanent(
            "`aws_ec2.replace_route` needs a target: gateway_id, nat_gateway_id, instance_id, network_interface_id or transit_gateway_id",
        ));
    }
    Ok((table, cidr, want))
}

async fn replace_route(c: &Call<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
    let (table, cidr, want) = route_inputs(inputs)?;
    let now = route(c, table, cidr).await?;
    let previous: RouteTarget = capture::first(c.ctx, async { Ok(now.clone()) }).await?;
    if !now.satisfies(&want.single()) {
        // ReplaceRoute has no condition: a retry that finds the route pointed elsewhere than
        // captured (someone else changed it meanwhile) stops rather than overwrite that change.
        if now != previous {
            return Err(AdapterError::permanent(format!(
                "step {}: the route {cidr} of {table} changed since the step first read it (then: {}; now: {}) — someone else changed it; Drover does not overwrite another change: check the table, then run the step again or roll back",
                c.ctx.step_id,
                json!(previous),
                json!(now)
            ))
            .on_resource(table)
            .with_code("Conflict"));
        }
        replace(c, table, cidr, &want).await?;
    }
    let mut o = Outputs::new();
    o.insert("previous".into(), json!(previous));
    Ok(o)
}

// ---------------------------------------------------------------------------------------------
// Security group rules

/// Whether the rule existed before the step.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RuleBefore {
    existed: bool,
}

struct Rule<'a> {
    group: &'a str,
    protocol: &'a str,
    port: i32,
    cidr: &'a str,
}

impl<'a> Rule<'a> {
    fn from_inputs(inputs: &'a Inputs, action: &str) -> Result<Self, AdapterError> {
        let port = inputs
            .get("port")
            .and_then(serde_json::Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| AdapterError::permanent(format!("`{action}` needs a `port`")))?;
        Ok(Self {
            group: require_str(inputs, "group_id", action)?,
            protocol: require_str(inputs, "protocol", action)?,
            port,
            cidr: require_str(inputs, "cidr", action)?,
        })
    }

    fn permission(&self) -> IpPermission {
        IpPermission::builder()
            .ip_protocol(self.protocol)
            .from_port(self.port)
            .to_port(self.port)
            .ip_ranges(IpRange::builder().cidr_ip(self.cidr).build())
            .build()
    }

    fn label(&self) -> String {
        format!(
            "{} {}/{} from {}",
            self.group, self.protocol, self.port, self.cidr
        )
    }

    async fn exists(&self, c: &Call<'_>) -> Result<bool, AdapterError> {
        let out = c
            .client
            .describe_security_groups()
            .group_ids(self.group)
            .send()
            .await
            .map_err(|e| c.err("DescribeSecurityGroups", self.group, &e))?;
        let g = out.security_groups().first().ok_or_else(|| {
            AdapterError::permanent(format!(
                "step {}: security group {} not found in {}",
                c.ctx.step_id, self.group, c.region
            ))
        })?;
        Ok(g.ip_permissions().iter().any(|p| {
            p.ip_protocol() == Some(self.protocol)
                && (self.protocol == "-1"
                    || (p.from_port() == Some(self.port) && p.to_port() == Some(self.port)))
                && p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(self.cidr))
        }))
    }

    async fn authorize(&self, c: &Call<'_>) -> Result<(), AdapterError> {
        match c
            .client
            .authorize_security_group_ingress()
            .group_id(self.group)
            .ip_permissions(self.permission())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
                    == Some("InvalidPermission.Duplicate") =>
            {
                Ok(())
            }
            Err(e) => Err(c.err("AuthorizeSecurityGroupIngress", &self.label(), &e)),
        }
    }

    async fn revoke(&self, c: &Call<'_>) -> Result<(), AdapterError> {
        match c
            .client
            .revoke_security_group_ingress()
            .group_id(self.group)
            .ip_permissions(self.permission())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
                    == Some("InvalidPermission.NotFound") =>
            {
                Ok(())
            }
            Err(e) => Err(c.err("RevokeSecurityGroupIngress", &self.label(), &e)),
        }
    }
}

async fn ingress(c: &Call<'_>, inputs: &Inputs, add: bool) -> Result<Outputs, AdapterError> {
    let rule = Rule::from_inputs(inputs, &c.ctx.action)?;
    let present = rule.exists(c).await?;
    let before: RuleBefore =
        capture::first(c.ctx, async { Ok(RuleBefore { existed: present }) }).await?;
    match (add, present) {
        (true, false) => rule.authorize(c).await?,
        (false, true) => rule.revoke(c).await?,
        _ => {}
    }
    let mut o = Outputs::new();
    o.insert("changed".into(), json!(before.existed != add));
    Ok(o)
}

async fn undo_ingress(c: &Call<'_>, inputs: &Inputs, added: bool) -> Result<(), AdapterError> {
    let rule = Rule::from_inputs(inputs, &c.ctx.action)?;
    let Some(before) = capture::load::<RuleBefore>(c.ctx)? else {
        return Ok(());
    };
    match (added, before.existed) {
        (true, false) => rule.revoke(c).await?,
        (false, true) => rule.authorize(c).await?,
        _ => return Ok(()),
    }
    // Verified by reading the group back: the undo is done when the rule is as captured.
    if rule.exists(c).await? == before.existed {
        Ok(())
    } else {
        Err(
            still_changed(&c.ctx.step_id, &format!("the rule {}", rule.label()))
                .on_resource(rule.group),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Instances

/// Whether the EC2 resource `id` exists, by its prefix (`i-`, `eni-`, `eipalloc-`, `rtb-`,
/// `sg-`, `subnet-`, `snap-`, `igw-`, `nat-`, `vgw-`); `None` for a kind this does not read.
async fn ec2_exists(c: &Call<'_>, id: &str) -> Result<Option<(&'static str, bool)>, AdapterError> {
    let kind = id.split_once('-').map_or("", |(k, _)| k);
    fn gone<E: aws_sdk_ec2::error::ProvideErrorMetadata, R>(
        e: &aws_sdk_ec2::error::SdkError<E, R>,
    ) -> bool {
        e.as_service_error()
            .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
            .is_some_and(|code| code.contains("NotFound") || code.contains("Malformed"))
    }
    macro_rules! probe {
        ($what:literal, $call:literal, $req:expr, $items:ident) => {
            match $req.send().await {
                Ok(out) => Some(($what, !out.$items().is_empty())),
                Err(e) if gone(&e) => Some(($what, false)),
                Err(e) => return Err(c.err($call, id, &e)),
            }
        };
    }
    let ec2 = &c.client;
    Ok(match kind {
        "i" => match ec2.describe_instances().instance_ids(id).send().await {
            Ok(out) => Some((
                "instance",
                out.reservations().iter().any(|r| !r.instances().is_empty()),
            )),
            Err(e) if gone(&e) => Some(("instance", false)),
            Err(e) => return Err(c.err("DescribeInstances", id, &e)),
        },
        "eni" => probe!(
            "network interface",
            "DescribeNetworkInterfaces",
            ec2.describe_network_interfaces().network_interface_ids(id),
            network_interfaces
        ),
        "eipalloc" => probe!(
            "Elastic IP",
            "DescribeAddresses",
            ec2.describe_addresses().allocation_ids(id),
            addresses
        ),
        "rtb" => probe!(
            "route table",
            "DescribeRouteTables",
            ec2.describe_route_tables().route_table_ids(id),
            route_tables
        ),
        "sg" => probe!(
            "security group",
            "DescribeSecurityGroups",
            ec2.describe_security_groups().group_ids(id),
            security_groups
        ),
        "subnet" => probe!(
            "subnet",
            "DescribeSubnets",
            ec2.describe_subnets().subnet_ids(id),
            subnets
        ),
        "snap" => probe!(
            "snapshot",
            "DescribeSnapshots",
            ec2.describe_snapshots().snapshot_ids(id),
            snapshots
        ),
        "igw" => probe!(
            "internet gateway",
            "DescribeInternetGateways",
            ec2.describe_internet_gateways().internet_gateway_ids(id),
            internet_gateways
        ),
        "nat" => probe!(
            "NAT gateway",
            "DescribeNatGateways",
            ec2.describe_nat_gateways().nat_gateway_ids(id),
            nat_gateways
        ),
        "vgw" => probe!(
            "virtual private gateway",
            "DescribeVpnGateways",
            ec2.describe_vpn_gateways().vpn_gateway_ids(id),
            vpn_gateways
        ),
        _ => None,
    })
}

/// Preflight: every EC2 resource a step names — what it changes, what it points at, what it
/// reads (a snapshot, a subnet) — exists; each missing one is named with its input.
async fn every_named_resource_exists(
    c: &Call<'_>,
    schemas: &[drover_schema::ActionSchema],
    action: &str,
    inputs: &Inputs,
) -> Result<(), AdapterError> {
    let Some(schema) = schemas.iter().find(|s| s.name == action) else {
        return Ok(());
    };
    let mut missing = Vec::new();
    for spec in &schema.inputs {
        if !(spec.resource || matches!(spec.name.as_str(), "snapshot_id" | "subnet_id")) {
            continue;
        }
        for id in input_list(inputs, &spec.name) {
            if let Some((what, false)) = ec2_exists(c, &id).await? {
                missing.push(format!("input `{}`: {what} {id}", spec.name));
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AdapterError::permanent(format!(
            "step {}: not found in {}: {}",
            c.ctx.step_id,
            c.region,
            missing.join("; ")
        ))
        .with_code("NotFound"))
    }
}

async fn instance_states(
    c: &Call<'_>,
    ids: &[String],
) -> Result<Vec<(String, InstanceStateName)>, AdapterError> {
    let out = c
        .client
        .describe_instances()
        .set_instance_ids(Some(ids.to_vec()))
        .send()
        .await
        .map_err(|e| c.err("DescribeInstances", &ids.join(", "), &e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_owned(),
                i.state()
                    .and_then(|s| s.name())
                    .cloned()
                    .unwrap_or(InstanceStateName::Pending),
            )
        })
        .collect())
}

/// Instances' states before a start or stop: id → running?
type PowerBefore = Vec<(String, bool)>;

async fn power(c: &Call<'_>, inputs: &Inputs, start: bool) -> Result<Outputs, AdapterError> {
    let ids = input_list(inputs, "instance_ids");
    if ids.is_empty() {
        return Err(AdapterError::permanent(format!(
            "`{}` needs `instance_ids`",
            c.ctx.action
        )));
    }
    let now = instance_states(c, &ids).await?;
    let before: PowerBefore = capture::first(c.ctx, async {
        Ok(now
            .iter()
            .map(|(id, s)| {
                (
                    id.clone(),
                    matches!(s, InstanceStateName::Running | InstanceStateName::Pending),
                )
            })
            .collect())
    })
    .await?;
    set_power(c, &ids, start, inputs).await?;
    let mut o = Outputs::new();
    o.insert("previous".into(), json!(before));
    Ok(o)
}

/// Starts or stops `ids` (those not already there) and waits until all are running or stopped.
async fn set_power(
    c: &Call<'_>,
    ids: &[String],
    start: bool,
    inputs: &Inputs,
) -> Result<(), AdapterError> {
    let target = if start {
        InstanceStateName::Running
    } else {
        InstanceStateName::Stopped
    };
    let every = interval(inputs, 5_000);
    let mut asked = false;
    loop {
        let now = instance_states(c, ids).await?;
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !now.iter().any(|(i, _)| i == *id))
            .collect();
        if !missing.is_empty() {
            return Err(AdapterError::permanent(format!(
                "step {}: instance(s) {} not found in {}",
                c.ctx.step_id,
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                c.region
            )));
        }
        if now.iter().all(|(_, s)| *s == target) {
            return Ok(());
        }
        if let Some((id, s)) = now.iter().find(|(_, s)| {
            matches!(
                s,
                InstanceStateName::Terminated | InstanceStateName::ShuttingDown
            )
        }) {
            return Err(AdapterError::permanent(format!(
                "step {}: instance {id} is {} and cannot be {}",
                c.ctx.step_id,
                s.as_str(),
                if start { "started" } else { "stopped" }
            )));
        }
        if !asked {
            let todo: Vec<String> = now
                .iter()
                .filter(|(_, s)| *s != target)
                .map(|(i, _)| i.clone())
                .collect();
            if start {
                c.client
                    .start_instances()
                    .set_instance_ids(Some(todo.clone()))
                    .send()
                    .await
                    .map_err(|e| c.err("StartInstances", &todo.join(", "), &e))?;
            } else {
                c.client
                    .stop_instances()
                    .set_instance_ids(Some(todo.clone()))
                    .send()
                    .await
                    .map_err(|e| c.err("StopInstances", &todo.join(", "), &e))?;
            }
            asked = true;
            continue;
        }
        pause(c.ctx, every).await;
    }
}

async fn undo_power(c: &Call<'_>, inputs: &Inputs, started: bool) -> Result<(), AdapterError> {
    let Some(before) = capture::load::<PowerBefore>(c.ctx)? else {
        return Ok(());
    };
    // Put back only what the step changed: stop what was stopped before a start, and so on.
    let back: Vec<String> = before
        .into_iter()
        .filter(|(_, was_running)| *was_running != started)
        .map(|(id, _)| id)
        .collect();
    if back.is_empty() {
        return Ok(());
    }
    set_power(c, &back, !started, inputs).await
}

// ---------------------------------------------------------------------------------------------
// Volumes and launches

async fn tagged_volume(
    c: &Call<'_>,
) -> Result<Option<(String, Option<VolumeState>)>, AdapterError> {
    let out = c
        .client
        .describe_volumes()
        .filters(by_idempotency_tag(c.ctx))
        .send()
        .await
        .map_err(|e| c.err("DescribeVolumes", "volumes tagged by this step", &e))?;
    Ok(out
        .volumes()
        .iter()
        .find(|v| {
            !matches!(
                v.state(),
                Some(VolumeState::Deleting | VolumeState::Deleted)
            )
        })
        .map(|v| {
            (
                v.volume_id().unwrap_or_default().to_owned(),
                v.state().cloned(),
            )
        }))
}

async fn create_volume(c: &Call<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
    let action = "aws_ec2.create_volume_from_snapshot";
    let snapshot = require_str(inputs, "snapshot_id", action)?;
    let az = require_str(inputs, "availability_zone", action)?;
    let id = if let Some((id, _)) = tagged_volume(c).await? {
        id
    } else {
        let out = c
            .client
            .create_volume()
            .snapshot_id(snapshot)
            .availability_zone(az)
            .volume_type(VolumeType::from(
                input_str(inputs, "volume_type").unwrap_or("gp3"),
            ))
            .client_token(client_token(c.ctx))
            .tag_specifications(tag_spec(
                c.ctx,
                ResourceType::Volume,
                &serde_json::Map::new(),
            ))
            .send()
            .await
            .map_err(|e| c.err("CreateVolume", &format!("from {snapshot} in {az}"), &e))?;
        out.volume_id().unwrap_or_default().to_owned()
    };
    let every = interval(inputs, 5_000);
    loop {
        let out = c
            .client
            .describe_volumes()
            .volume_ids(&id)
            .send()
            .await
            .map_err(|e| c.err("DescribeVolumes", &id, &e))?;
        match out.volumes().first().and_then(|v| v.state()) {
            Some(VolumeState::Available | VolumeState::InUse) => break,
            Some(VolumeState::Error) => {
                return Err(AdapterError::permanent(format!(
                    "step {}: volume {id} from {snapshot} failed to create (state error)",
                    c.ctx.step_id
                )));
            }
            _ => pause(c.ctx, every).await,
        }
    }
    let mut o = Outputs::new();
    o.insert("volume_id".into(), json!(id));
    Ok(o)
}

async fn tagged_instances(c: &Call<'_>) -> Result<Vec<String>, AdapterError> {
    let out = c
        .client
        .describe_instances()
        .filters(by_idempotency_tag(c.ctx))
        .send()
        .await
        .map_err(|e| c.err("DescribeInstances", "instances tagged by this step", &e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| {
            !matches!(
                i.state().and_then(|s| s.name()),
                Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
            )
        })
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect())
}

async fn run_instances(c: &Call<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
    let count = inputs
        .get("count")
        .and_then(serde_json::Value::as_i64)
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(1);
    let existing = tagged_instances(c).await?;
    let ids = if existing.is_empty() {
        let mut req = c
            .client
            .run_instances()
            .min_count(count)
            .max_count(count)
            .client_token(client_token(c.ctx))
            .set_image_id(input_str(inputs, "image_id").map(str::to_owned))
            .set_instance_type(input_str(inputs, "instance_type").map(InstanceType::from))
            .set_subnet_id(input_str(inputs, "subnet_id").map(str::to_owned));
        if let Some(t) = input_str(inputs, "launch_template") {
            let spec = if t.starts_with("lt-") {
                LaunchTemplateSpecification::builder().launch_template_id(t)
            } else {
                LaunchTemplateSpecification::builder().launch_template_name(t)
            };
            req = req.launch_template(spec.build());
        }
        let extra = match inputs.get("tags") {
            Some(serde_json::Value::Object(m)) => m.clone(),
            _ => serde_json::Map::new(),
        };
        let what = input_str(inputs, "launch_template")
            .or(input_str(inputs, "image_id"))
            .unwrap_or("(no image)")
            .to_owned();
        let out = req
            .tag_specifications(tag_spec(c.ctx, ResourceType::Instance, &extra))
            .send()
            .await
            .map_err(|e| c.err("RunInstances", &what, &e))?;
        out.instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect()
    } else {
        existing
    };
    let mut o = Outputs::new();
    o.insert("instance_ids".into(), json!(ids));
    Ok(o)
}

// ---------------------------------------------------------------------------------------------

impl AwsEc2Adapter {
    async fn call<'a>(inputs: &Inputs, ctx: &'a StepContext) -> Call<'a> {
        Call::new("EC2", inputs, ctx, Client::new).await
    }
}

#[async_trait::async_trait]
impl drover_schema::Adapter for AwsEc2Adapter {
    fn schemas(&self) -> Vec<drover_schema::ActionSchema> {
        crate::builtin_catalogue()
            .actions()
            .iter()
            .filter(|a| a.provider() == "aws_ec2")
            .cloned()
            .collect()
    }

    fn validate(&self, action: &str, inputs: &Inputs) -> Result<(), AdapterError> {
        match action {
            "aws_ec2.replace_route" => route_inputs(inputs).map(|_| ()),
            "aws_ec2.associate_address"
                if input_str(inputs, "instance_id").is_none()
                    && input_str(inputs, "network_interface_id").is_none() =>
            {
                Err(AdapterError::permanent(
                    "`aws_ec2.associate_address` needs `instance_id` or `network_interface_id`",
                ))
            }
            "aws_ec2.run_instances"
                if input_str(inputs, "image_id").is_none()
                    && input_str(inputs, "launch_template").is_none() =>
            {
                Err(AdapterError::permanent(
                    "`aws_ec2.run_instances` needs `image_id` or `launch_template`",
                ))
            }
            _ => Ok(()),
        }
    }

    async fn preflight(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<(), AdapterError> {
        let c = Self::call(inputs, ctx).await;
        every_named_resource_exists(&c, &self.schemas(), action, inputs).await?;
        match action {
            "aws_ec2.associate_address" => {
                address(&c, require_str(inputs, "allocation_id", action)?)
                    .await
                    .map(|_| ())
            }
            "aws_ec2.replace_route" => {
                let (table, cidr, _) = route_inputs(inputs)?;
                route(&c, table, cidr).await.map(|_| ())
            }
            "aws_ec2.authorize_ingress" | "aws_ec2.revoke_ingress" => {
                Rule::from_inputs(inputs, action)?
                    .exists(&c)
                    .await
                    .map(|_| ())
            }
            "aws_ec2.start_instances" | "aws_ec2.stop_instances" => {
                let ids = input_list(inputs, "instance_ids");
                let found = instance_states(&c, &ids).await?;
                if found.len() < ids.len() {
                    return Err(AdapterError::permanent(format!(
                        "step {}: not every instance of {} exists in {}",
                        ctx.step_id,
                        ids.join(", "),
                        c.region
                    )));
                }
                Ok(())
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
        let c = Self::call(inputs, ctx).await;
        // In a drill, every resource the step changes or points at — as the schema lists them —
        // is read for production tags before the first change.
        c.drill_guard(&resource_values(&self.schemas(), action, inputs))
            .await?;
        match action {
            "aws_ec2.associate_address" => associate_address(&c, inputs).await,
            "aws_ec2.replace_route" => replace_route(&c, inputs).await,
            "aws_ec2.authorize_ingress" => ingress(&c, inputs, true).await,
            "aws_ec2.revoke_ingress" => ingress(&c, inputs, false).await,
            "aws_ec2.start_instances" => power(&c, inputs, true).await,
            "aws_ec2.stop_instances" => power(&c, inputs, false).await,
            "aws_ec2.create_volume_from_snapshot" => create_volume(&c, inputs).await,
            "aws_ec2.run_instances" => run_instances(&c, inputs).await,
            _ => Err(AdapterError::permanent(format!(
                "the EC2 adapter has no action `{action}`"
            ))),
        }
    }

    async fn compensate(
        &self,
        action: &str,
        inputs: &Inputs,
        outputs: &Outputs,
        ctx: &StepContext,
    ) -> Result<(), AdapterError> {
        let c = Self::call(inputs, ctx).await;
        match action {
            "aws_ec2.associate_address" => undo_associate_address(&c, inputs).await,
            "aws_ec2.replace_route" => {
                let (table, cidr, _) = route_inputs(inputs)?;
                let Some(previous) = capture::load::<RouteTarget>(ctx)? else {
                    return Ok(());
                };
                if route(&c, table, cidr).await?.satisfies(&previous.single()) {
                    return Ok(());
                }
                replace(&c, table, cidr, &previous).await?;
                // Verified by reading the route back.
                if route(&c, table, cidr).await?.satisfies(&previous.single()) {
                    Ok(())
                } else {
                    Err(
                        still_changed(&ctx.step_id, &format!("the route {cidr} of {table}"))
                            .on_resource(table),
                    )
                }
            }
            "aws_ec2.authorize_ingress" => undo_ingress(&c, inputs, true).await,
            "aws_ec2.revoke_ingress" => undo_ingress(&c, inputs, false).await,
            "aws_ec2.start_instances" => undo_power(&c, inputs, true).await,
            "aws_ec2.stop_instances" => undo_power(&c, inputs, false).await,
            "aws_ec2.create_volume_from_snapshot" => {
                let Some(id) = outputs.get("volume_id").and_then(|v| v.as_str()) else {
                    return Ok(());
                };
                match c.client.delete_volume().volume_id(id).send().await {
                    Ok(_) => {}
                    Err(e)
                        if e.as_service_error()
                            .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
                            == Some("InvalidVolume.NotFound") =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(c.err("DeleteVolume", id, &e)),
                }
                // Verified by reading it back: deleting, deleted or gone.
                let going = match c.client.describe_volumes().volume_ids(id).send().await {
                    Ok(out) => out.volumes().iter().all(|v| {
                        matches!(
                            v.state(),
                            Some(VolumeState::Deleting | VolumeState::Deleted)
                        )
                    }),
                    Err(e)
                        if e.as_service_error()
                            .and_then(aws_sdk_ec2::error::ProvideErrorMetadata::code)
                            == Some("InvalidVolume.NotFound") =>
                    {
                        true
                    }
                    Err(e) => return Err(c.err("DescribeVolumes", id, &e)),
                };
                if going {
                    Ok(())
                } else {
                    Err(still_changed(&c.ctx.step_id, &format!("volume {id}")).on_resource(id))
                }
            }
            "aws_ec2.run_instances" => {
                let ids = input_list(outputs, "instance_ids");
                if ids.is_empty() {
                    return Ok(());
                }
                c.client
                    .terminate_instances()
                    .set_instance_ids(Some(ids.clone()))
                    .send()
                    .await
                    .map_err(|e| c.err("TerminateInstances", &ids.join(", "), &e))?;
                // Verified by reading them back: shutting down or terminated.
                let left: Vec<String> = instance_states(&c, &ids)
                    .await?
                    .into_iter()
                    .filter(|(_, s)| {
                        !matches!(
                            s,
                            InstanceStateName::ShuttingDown | InstanceStateName::Terminated
                        )
                    })
                    .map(|(id, _)| id)
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(
                        still_changed(&c.ctx.step_id, &format!("instance(s) {}", left.join(", ")))
                            .on_resource(left.join(", ")),
                    )
                }
            }
            _ => Err(AdapterError::permanent(format!(
                "`{action}` has no built-in undo"
            ))),
        }
    }

    async fn observe(
        &self,
        action: &str,
        inputs: &Inputs,
        ctx: &StepContext,
    ) -> Result<Observation, AdapterError> {
        let c = Self::call(inputs, ctx).await;
        let done = |o: Outputs| Ok(Observation::Done(o));
        match action {
            "aws_ec2.associate_address" => {
                let allocation = require_str(inputs, "allocation_id", action)?;
                let now = address(&c, allocation).await?;
                match capture::load::<Association>(ctx)? {
                    Some(previous) if now.points_at(inputs) => done(association_outputs(
                        now.association_id.as_deref().unwrap_or(""),
                        &previous,
                    )),
                    _ => Ok(Observation::NotDone),
                }
            }
            "aws_ec2.replace_route" => {
                let (table, cidr, want) = route_inputs(inputs)?;
                match capture::load::<RouteTarget>(ctx)? {
                    Some(previous) if route(&c, table, cidr).await?.satisfies(&want.single()) => {
                        let mut o = Outputs::new();
                        o.insert("previous".into(), json!(previous));
                        done(o)
                    }
                    _ => Ok(Observation::NotDone),
                }
            }
            "aws_ec2.create_volume_from_snapshot" => match tagged_volume(&c).await? {
                Some((id, Some(VolumeState::Available | VolumeState::InUse))) => {
                    let mut o = Outputs::new();
                    o.insert("volume_id".into(), json!(id));
                    done(o)
                }
                // Creating, or not there: execute finds a tagged volume and waits for it.
                _ => Ok(Observation::NotDone),
            },
            "aws_ec2.run_instances" => {
                let ids = tagged_instances(&c).await?;
                if ids.is_empty() {
                    Ok(Observation::NotDone)
                } else {
                    let mut o = Outputs::new();
                    o.insert("instance_ids".into(), json!(ids));
                    done(o)
                }
            }
            // Rules and power states: executing again reads the state first and changes only
            // what is not yet in place, keeping the first capture.
            _ => Ok(Observation::NotDone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_route_reported_with_its_interface_satisfies_an_interface_target() {
        let now = RouteTarget {
            instance_id: Some("i-1".into()),
            network_interface_id: Some("eni-1".into()),
            ..RouteTarget::default()
        };
        let want = RouteTarget {
            network_interface_id: Some("eni-1".into()),
            ..RouteTarget::default()
        };
        assert!(now.satisfies(&want.single()));
        assert_eq!(now.single(), want);
        let other = RouteTarget {
            gateway_id: Some("vgw-1".into()),
            ..RouteTarget::default()
        };
        assert!(!now.satisfies(&other.single()));
    }
}
