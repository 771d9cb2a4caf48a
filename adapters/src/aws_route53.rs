//! The `aws_route53.*` actions on the official SDK: record upserts, failover and weight flips,
//! waiting for a change to be INSYNC, and health checks.
//!
//! Every change is one `ChangeResourceRecordSets` batch, so it applies whole or not at all. Before
//! the first change a step saves the record sets it is about to replace (`capture.rs`);
//! `compensate` puts them back, and a retry or a resume after a crash re-applies the change
//! (which changes nothing when it already took effect) without losing the original state.
//!
//! Route 53 has no `If-Match`: an UPSERT replaces whatever is there. So a change step that finds
//! the record sets neither as it captured them before its first call nor as it wants them
//! (someone else changed them while the run was paused, retrying or crashed) stops with a
//! conflict naming both, instead of overwriting the other change. (The atomic form, a DELETE of
//! exactly the values read plus a CREATE in one batch, is not used: the AWS emulator the tests
//! run against refuses to re-create a record set it has seen created before, which breaks every
//! failback.)

use crate::capture;
use crate::cloud_common::{
    input_list, input_str, interval, pause, refuse_production_tags, require_str, still_changed,
};
use aws_sdk_route53::Client;
use aws_sdk_route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, HealthCheckConfig,
    HealthCheckType, ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover, RrType,
    TagResourceType,
};
use drover_schema::{AdapterError, Inputs, Observation, Outputs, StepContext};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A record set as Drover saves it (the SDK's types are not serialisable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Fully qualified name, with the trailing dot.
    pub name: String,
    /// Record type (`A`, `CNAME`, ...).
    #[serde(rename = "type")]
    pub rtype: String,
    /// Set identifier of a routing policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_identifier: Option<String>,
    /// TTL in seconds (absent for aliases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<i64>,
    /// Values (absent for aliases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Alias target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<Alias>,
    /// `PRIMARY` or `SECONDARY` for failover routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<String>,
    /// Weight for weighted routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i64>,
    /// Health check the record is tied to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_id: Option<String>,
}

/// An alias target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The target's hosted zone.
    pub hosted_zone_id: String,
    /// The target's DNS name.
    pub dns_name: String,
    /// Whether Route 53 evaluates the target's health.
    #[serde(default)]
    pub evaluate_target_health: bool,
}

impl Record {
    fn from_sdk(r: &ResourceRecordSet) -> Self {
        Self {
            name: r.name().to_owned(),
            rtype: r.r#type().as_str().to_owned(),
            set_identifier: r.set_identifier().map(str::to_owned),
            ttl: r.ttl(),
            values: r
                .resource_records()
                .iter()
                .map(|v| v.value().to_owned())
                .collect(),
            alias: r.alias_target().map(|a| Alias {
                hosted_zone_id: a.hosted_zone_id().to_owned(),
                dns_name: a.dns_name().to_owned(),
                evaluate_target_health: a.evaluate_target_health(),
            }),
            failover: r.failover().map(|f| f.as_str().to_owned()),
            weight: r.weight(),
            health_check_id: r.health_check_id().map(str::to_owned),
        }
    }

    fn to_sdk(&self) -> Result<ResourceRecordSet, AdapterError> {
        let bad = |e: &dyn std::fmt::Display| {
            AdapterError::permanent(format!("record set {} is incomplete: {e}", self.name))
        };
        let mut b = ResourceRecordSet::builder()
            .name(&self.name)
            .r#type(RrType::from(self.rtype.as_str()))
            .set_set_identifier(self.set_identifier.clone())
            .set_weight(self.weight)
            .set_failover(
                self.failover
                    .as_deref()
                    .map(ResourceRecordSetFailover::from),
            )
            .set_health_check_id(self.health_check_id.clone());
        if let Some(a) = &self.alias {
            b = b.alias_target(
                AliasTarget::builder()
                    .hosted_zone_id(&a.hosted_zone_id)
                    .dns_name(&a.dns_name)
                    .evaluate_target_health(a.evaluate_target_health)
                    .build()
                    .map_err(|e| bad(&e))?,
            );
        } else {
            b = b.ttl(self.ttl.unwrap_or(300));
            for v in &self.values {
                b = b.resource_records(
                    ResourceRecord::builder()
                        .value(v)
                        .build()
                        .map_err(|e| bad(&e))?,
                );
            }
        }
        b.build().map_err(|e| bad(&e))
    }

    fn label(&self) -> String {
        match &self.set_identifier {
            Some(id) => format!("{} {} ({id})", self.name, self.rtype),
            None => format!("{} {}", self.name, self.rtype),
        }
    }
}

/// What a change step saves before its first call.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Capture {
    /// The record sets of the name and type before the change.
    previous: Vec<Record>,
    /// The change id, once the change was submitted.
    #[serde(default)]
    change_id: Option<String>,
}

/// The record sets of `now` that were not there before (by set identifier).
fn added(previous: &[Record], now: &[Record]) -> Vec<Record> {
    now.iter()
        .filter(|r| {
            !previous
                .iter()
                .any(|p| p.set_identifier == r.set_identifier)
        })
        .cloned()
        .collect()
}

/// Whether two lists hold the same record sets (in any order).
fn same_records(a: &[Record], b: &[Record]) -> bool {
    a.len() == b.len() && a.iter().all(|r| b.contains(r))
}

/// The record sets read are neither as the step captured them nor as it wants them: someone
/// else changed them since the step first read them.
fn conflict(step: &str, zone: &str, captured: &[Record], now: &[Record]) -> AdapterError {
    let show = |rs: &[Record]| {
        if rs.is_empty() {
            "none".to_owned()
        } else {
            rs.iter()
                .map(|r| {
                    let what = r
                        .alias
                        .as_ref()
                        .map_or_else(|| r.values.join(" "), |a| format!("alias {}", a.dns_name));
                    match &r.failover {
                        Some(f) => format!("{} = {what} ({f})", r.label()),
                        None => format!("{} = {what}", r.label()),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
    };
    AdapterError::permanent(format!(
        "step {step}: the record sets in zone {zone} changed since the step first read them (then: {}; now: {}) — someone else changed them; Drover does not overwrite another change: check the zone, then run the step again or roll back",
        show(captured),
        show(now)
    ))
    .with_code("Conflict")
}

fn fqdn(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.ends_with('.') { n } else { format!("{n}.") }
}

fn zone_id(raw: &str) -> &str {
    raw.trim_start_matches("/hostedzone/")
}

/// The `aws_route53.*` actions.
#[derive(Debug, Default)]
pub struct AwsRoute53Adapter;

type Call<'a> = crate::aws_common::Call<'a, Client>;

impl Call<'_> {
    /// Every record set named `name` of type `rtype` in the zone.
    async fn records(
        &self,
        zone: &str,
        name: &str,
        rtype: &str,
    ) -> Result<Vec<Record>, AdapterError> {
        let want = fqdn(name);
        let mut out = Vec::new();
        let mut next: Option<(String, RrType, Option<String>)> =
            Some((want.clone(), RrType::from(rtype), None));
        while let Some((n, t, id)) = next.take() {
            let page = self
                .client
                .list_resource_record_sets()
                .hosted_zone_id(zone)
                .start_record_name(n)
                .start_record_type(t)
                .set_start_record_identifier(id)
                .send()
                .await
                .map_err(|e| self.err("ListResourceRecordSets", &format!("zone {zone}"), &e))?;
            let mut past = false;
            for r in page.resource_record_sets() {
                if fqdn(r.name()) == want && r.r#type().as_str() == rtype {
                    out.push(Record::from_sdk(r));
                } else {
                    past = true;
                }
            }
            if let (true, false, Some(n), Some(t)) = (
                page.is_truncated(),
                past,
                page.next_record_name(),
                page.next_record_type(),
            ) {
                next = Some((
                    n.to_owned(),
                    t.clone(),
                    page.next_record_identifier().map(str::to_owned),
                ));
            }
        }
        Ok(out)
    }

    /// Submits one all-or-nothing batch of UPSERTs (and DELETEs), returning the change id.
    async fn submit(
        &self,
        zone: &str,
        upserts: &[Record],
        deletes: &[Record],
        comment: &str,
    ) -> Result<String, AdapterError> {
        let mut batch = ChangeBatch::builder().comment(comment);
        for (action, r) in deletes
            .iter()
            .map(|r| (ChangeAction::Delete, r))
            .chain(upserts.iter().map(|r| (ChangeAction::Upsert, r)))
        {
            batch = batch.changes(
                Change::builder()
                    .action(action)
                    .resource_record_set(r.to_sdk()?)
                    .build()
                    .map_err(|e| AdapterError::permanent(e.to_string()))?,
            );
        }
        let batch = batch
            .build()
            .map_err(|e| AdapterError::permanent(e.to_string()))?;
        let what: Vec<String> = upserts.iter().chain(deletes).map(Record::label).collect();
        let out = self
            .client
            .change_resource_record_sets()
            .hosted_zone_id(zone)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| {
                self.err(
                    "ChangeResourceRecordSets",
                    &format!("zone {zone} ({})", what.join(", ")),
                    &e,
                )
            })?;
        Ok(out
            .change_info()
            .map(|c| c.id().to_owned())
            .unwrap_or_default())
    }

    /// The health check created with this caller reference, if any.
    async fn health_check_by_reference(
        &self,
        reference: &str,
    ) -> Result<Option<String>, AdapterError> {
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .client
                .list_health_checks()
                .set_marker(marker.take())
                .send()
                .await
                .map_err(|e| self.err("ListHealthChecks", "health checks", &e))?;
            if let Some(h) = page
                .health_checks()
                .iter()
                .find(|h| h.caller_reference() == reference)
            {
                return Ok(Some(h.id().to_owned()));
            }
            match page.next_marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
                _ => return Ok(None),
            }
        }
    }

    async fn drill_guard(&self, zone: &str) -> Result<(), AdapterError> {
        if self.ctx.mode != drover_schema::Mode::Drill || self.ctx.production_tags.is_empty() {
            return Ok(());
        }
        let out = self
            .client
            .list_tags_for_resource()
            .resource_type(TagResourceType::Hostedzone)
            .resource_id(zone)
            .send()
            .await
            .map_err(|e| self.err("ListTagsForResource", &format!("zone {zone}"), &e))?;
        let tags: Vec<(String, String)> = out
            .resource_tag_set()
            .map(|s| {
                s.tags()
                    .iter()
                    .map(|t| {
                        (
                            t.key().unwrap_or_default().to_owned(),
                            t.value().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let resource = format!("hosted zone {zone}");
        refuse_production_tags(
            self.ctx,
            tags.iter()
                .map(|(k, v)| (resource.as_str(), k.as_str(), v.as_str())),
        )
    }
}

fn outputs(change_id: &str, previous: &[Record]) -> Outputs {
    let mut o = Outputs::new();
    o.insert("change_id".into(), json!(change_id));
    o.insert("previous".into(), json!(previous));
    o
}

/// The record set an `upsert_record` step wants, keeping the routing policy of the one it replaces.
fn wanted_record(inputs: &Inputs, existing: Option<&Record>) -> Result<Record, AdapterError> {
    let action = "aws_route53.upsert_record";
    let name = fqdn(require_str(inputs, "name", action)?);
    let rtype = require_str(inputs, "type", action)?.to_owned();
    let alias = match inputs.get("alias_target") {
        Some(serde_json::Value::Object(m)) => {
            let s = |k: &str| m.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let (Some(hosted_zone_id), Some(dns_name)) = (s("hosted_zone_id"), s("dns_name"))
            else {
                return Err(AdapterError::permanent(
                    "`alias_target` needs `hosted_zone_id` and `dns_name`",
                ));
            };
            Some(Alias {
                hosted_zone_id,
                dns_name,
                evaluate_target_health: s("evaluate_target_health").is_some_and(|v| v == "true"),
            })
        }
        _ => None,
    };
    let values = input_list(inputs, "values");
    if alias.is_none() && values.is_empty() {
        return Err(AdapterError::permanent(
            "`aws_route53.upsert_record` needs `values` or `alias_target`",
        ));
    }
    if alias.is_some() && !values.is_empty() {
        return Err(AdapterError::permanent(
            "give `values` or `alias_target`, not both",
        ));
    }
    Ok(Record {
        name,
        rtype,
        set_identifier: input_str(inputs, "set_identifier").map(str::to_owned),
        ttl: if alias.is_some() {
            None
        } else {
            Some(
                inputs
                    .get("ttl")
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(300),
            )
        },
        values,
        alias,
        failover: existing.and_then(|e| e.failover.clone()),
        weight: existing.and_then(|e| e.weight),
        health_check_id: existing.and_then(|e| e.health_check_id.clone()),
    })
}

/// The record sets a `set_failover` step wants, given the current ones.
fn wanted_failover(inputs: &Inputs, current: &[Record]) -> Result<Vec<Record>, AdapterError> {
    let label = || {
        format!(
            "{} {}",
            input_str(inputs, "name").unwrap_or(""),
            input_str(inputs, "type").unwrap_or("")
        )
    };
    if current.is_empty() {
        return Err(AdapterError::permanent(format!(
            "{} does not exist in the zone",
            label()
        )));
    }
    let ids: Vec<&str> = current
        .iter()
        .filter_map(|r| r.set_identifier.as_deref())
        .collect();
    let mut want = current.to_vec();
    if let Some(active) = input_str(inputs, "active") {
        if !current.iter().any(|r| r.failover.is_some()) {
            return Err(AdapterError::permanent(format!(
                "{} has no failover routing policy (set identifiers: {}); use `weights` or `aws_route53.upsert_record`",
                label(),
                ids.join(", ")
            )));
        }
        if !ids.contains(&active) {
            return Err(AdapterError::permanent(format!(
                "{} has no record with set identifier `{active}`; it has {}",
                label(),
                ids.join(", ")
            )));
        }
        for r in want.iter_mut().filter(|r| r.failover.is_some()) {
            r.failover = Some(
                if r.set_identifier.as_deref() == Some(active) {
                    "PRIMARY"
                } else {
                    "SECONDARY"
                }
                .into(),
            );
        }
    } else if let Some(serde_json::Value::Object(weights)) = inputs.get("weights") {
        for (id, w) in weights {
            let Some(r) = want
                .iter_mut()
                .find(|r| r.set_identifier.as_deref() == Some(id.as_str()) && r.weight.is_some())
            else {
                return Err(AdapterError::permanent(format!(
                    "{} has no weighted record with set identifier `{id}`; it has {}",
                    label(),
                    ids.join(", ")
                )));
            };
            r.weight = w.as_i64();
        }
    } else {
        return Err(AdapterError::permanent(
            "`aws_route53.set_failover` needs `active` or `weights`",
        ));
    }
    Ok(want)
}

fn changed(want: &[Record], current: &[Record]) -> Vec<Record> {
    want.iter()
        .filter(|w| !current.contains(w))
        .cloned()
        .collect()
}

impl AwsRoute53Adapter {
    async fn call<'a>(inputs: &Inputs, ctx: &'a StepContext) -> Call<'a> {
        Call::new("Route 53", inputs, ctx, Client::new).await
    }

    async fn upsert(&self, c: &Call<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
        let zone = zone_id(require_str(inputs, "zone_id", "aws_route53.upsert_record")?).to_owned();
        let name = require_str(inputs, "name", "aws_route53.upsert_record")?;
        let rtype = require_str(inputs, "type", "aws_route53.upsert_record")?;
        let set_id = input_str(inputs, "set_identifier");
        c.drill_guard(&zone).await?;
        let current: Vec<Record> = c
            .records(&zone, name, rtype)
            .await?
            .into_iter()
            .filter(|r| r.set_identifier.as_deref() == set_id)
            .collect();
        let mut cap: Capture = capture::first(c.ctx, async {
            Ok(Capture {
                previous: current.clone(),
                change_id: None,
            })
        })
        .await?;
        let want = wanted_record(inputs, current.first())?;
        let todo = changed(std::slice::from_ref(&want), &current);
        if !todo.is_empty() && !same_records(&cap.previous, &current) {
            return Err(conflict(&c.ctx.step_id, &zone, &cap.previous, &current));
        }
        if todo.is_empty() {
            return Ok(outputs(
                cap.change_id.as_deref().unwrap_or(""),
                &cap.previous,
            ));
        }
        let id = c
            .submit(
                &zone,
                &todo,
                &[],
                &format!("drover {}", c.ctx.idempotency_key),
            )
            .await?;
        cap.change_id = Some(id.clone());
        capture::save(c.ctx, &cap)?;
        Ok(outputs(&id, &cap.previous))
    }

    async fn set_failover(&self, c: &Call<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
        let action = "aws_route53.set_failover";
        let zone = zone_id(require_str(inputs, "zone_id", action)?).to_owned();
        let name = require_str(inputs, "name", action)?;
        let rtype = require_str(inputs, "type", action)?;
        c.drill_guard(&zone).await?;
        let current = c.records(&zone, name, rtype).await?;
        let mut cap: Capture = capture::first(c.ctx, async {
            Ok(Capture {
                previous: current.clone(),
                change_id: None,
            })
        })
        .await?;
        let want = wanted_failover(inputs, &current)?;
        let todo = changed(&want, &current);
        if !todo.is_empty() && !same_records(&cap.previous, &current) {
            return Err(conflict(&c.ctx.step_id, &zone, &cap.previous, &current));
        }
        let mut o = if todo.is_empty() {
            outputs(cap.change_id.as_deref().unwrap_or(""), &cap.previous)
        } else {
            let id = c
                .submit(
                    &zone,
                    &todo,
                    &[],
                    &format!("drover {}", c.ctx.idempotency_key),
                )
                .await?;
            cap.change_id = Some(id.clone());
            capture::save(c.ctx, &cap)?;
            outputs(&id, &cap.previous)
        };
        if let Some(a) = input_str(inputs, "active") {
            o.insert("active".into(), json!(a));
        }
        Ok(o)
    }

    /// Puts back the record sets a change step captured (one batch), deleting any it created.
    async fn restore(&self, c: &Call<'_>, inputs: &Inputs) -> Result<(), AdapterError> {
        let zone = zone_id(require_str(inputs, "zone_id", &c.ctx.action)?).to_owned();
        let name = require_str(inputs, "name", &c.ctx.action)?;
        let rtype = require_str(inputs, "type", &c.ctx.action)?;
        // No capture: the step never reached its first change (the capture is saved before
        // it), so there is nothing to restore.
        let Some(cap) = capture::load::<Capture>(c.ctx)? else {
            return Ok(());
        };
        let set_id = input_str(inputs, "set_identifier");
        // The record sets the step changed: all of the name's for a flip, one for an upsert.
        let mine = || async {
            Ok::<Vec<Record>, AdapterError>(
                c.records(&zone, name, rtype)
                    .await?
                    .into_iter()
                    .filter(|r| {
                        c.ctx.action != "aws_route53.upsert_record"
                            || r.set_identifier.as_deref() == set_id
                    })
                    .collect(),
            )
        };
        let current = mine().await?;
        let upserts = changed(&cap.previous, &current);
        let deletes = added(&cap.previous, &current);
        if upserts.is_empty() && deletes.is_empty() {
            return Ok(());
        }
        c.submit(
            &zone,
            &upserts,
            &deletes,
            &format!("drover undo {}", c.ctx.idempotency_key),
        )
        .await?;
        // Verified by reading the record sets back: the undo is done when they read as captured.
        let after = mine().await?;
        if changed(&cap.previous, &after).is_empty() && added(&cap.previous, &after).is_empty() {
            Ok(())
        } else {
            Err(
                still_changed(&c.ctx.step_id, &format!("{name} ({rtype}) in zone {zone}"))
                    .on_resource(name),
            )
        }
    }

    async fn wait_insync(&self, c: &Call<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
        let mut o = Outputs::new();
        let Some(id) = input_str(inputs, "change_id") else {
            // The change step found the records already in place: nothing was submitted.
            o.insert("status".into(), json!("INSYNC"));
            return Ok(o);
        };
        let every = interval(inputs, 5_000);
        loop {
            let out = c
                .client
                .get_change()
                .id(id)
                .send()
                .await
                .map_err(|e| c.err("GetChange", &format!("change {id}"), &e))?;
            let status = out.change_info().map(|i| i.status().clone());
            if status == Some(ChangeStatus::Insync) {
                o.insert("status".into(), json!("INSYNC"));
                return Ok(o);
            }
            pause(c.ctx, every).await;
        }
    }

    async fn create_health_check(
        &self,
        c: &Call<'_>,
        inputs: &Inputs,
    ) -> Result<Outputs, AdapterError> {
        let fqdn_in = require_str(inputs, "fqdn", "aws_route53.create_health_check")?;
        let protocol = input_str(inputs, "protocol").unwrap_or("HTTPS");
        let port = inputs
            .get("port")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(if protocol == "HTTP" { 80 } else { 443 });
        let mut cfg = HealthCheckConfig::builder()
            .r#type(HealthCheckType::from(protocol))
            .fully_qualified_domain_name(fqdn_in)
            .port(i32::try_from(port).unwrap_or(443));
        if protocol != "TCP" {
            cfg = cfg.resource_path(input_str(inputs, "path").unwrap_or("/"));
        }
        let cfg = cfg
            .build()
            .map_err(|e| AdapterError::permanent(e.to_string()))?;
        // The caller reference is the step's: a retry or a resume finds the health check the
        // first attempt made instead of making a second one.
        let reference = crate::aws_common::client_token(c.ctx);
        if let Some(id) = c.health_check_by_reference(&reference).await? {
            let mut o = Outputs::new();
            o.insert("health_check_id".into(), json!(id));
            return Ok(o);
        }
        let out = c
            .client
            .create_health_check()
            .caller_reference(&reference)
            .health_check_config(cfg)
            .send()
            .await
            .map_err(|e| {
                c.err(
                    "CreateHealthCheck",
                    &format!("health check for {fqdn_in}"),
                    &e,
                )
            })?;
        let id = out
            .health_check()
            .map(|h| h.id().to_owned())
            .unwrap_or_default();
        let mut o = Outputs::new();
        o.insert("health_check_id".into(), json!(id));
        Ok(o)
    }

    async fn wait_healthy(&self, c: &Call<'_>, inputs: &Inputs) -> Result<Outputs, AdapterError> {
        let id = require_str(inputs, "health_check_id", "aws_route53.wait_healthy")?;
        let every = interval(inputs, 10_000);
        loop {
            let out = c
                .client
                .get_health_check_status()
                .health_check_id(id)
                .send()
                .await
                .map_err(|e| c.err("GetHealthCheckStatus", &format!("health check {id}"), &e))?;
            let reports: Vec<&str> = out
                .health_check_observations()
                .iter()
                .filter_map(|o| o.status_report().and_then(|r| r.status()))
                .collect();
            let healthy = reports.iter().filter(|s| s.starts_with("Success")).count();
            // Route 53 calls an endpoint healthy when more than 18% of its checkers say so; wait
            // for a majority, which is what an operator means by "healthy again".
            if !reports.is_empty() && healthy * 2 > reports.len() {
                let mut o = Outputs::new();
                o.insert("healthy_checkers".into(), json!(healthy));
                o.insert("checkers".into(), json!(reports.len()));
                return Ok(o);
            }
            pause(c.ctx, every).await;
        }
    }

    async fn zone_exists(&self, c: &Call<'_>, zone: &str) -> Result<(), AdapterError> {
        c.client
            .get_hosted_zone()
            .id(zone)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| c.err("GetHostedZone", &format!("zone {zone}"), &e))
    }
}

#[async_trait::async_trait]
impl drover_schema::Adapter for AwsRoute53Adapter {
    fn schemas(&self) -> Vec<drover_schema::ActionSchema> {
        crate::builtin_catalogue()
            .actions()
            .iter()
            .filter(|a| a.provider() == "aws_route53")
            .cloned()
            .collect()
    }

    fn validate(&self, action: &str, inputs: &Inputs) -> Result<(), AdapterError> {
        match action {
            "aws_route53.upsert_record" => wanted_record(inputs, None).map(|_| ()),
            "aws_route53.set_failover"
                if input_str(inputs, "active").is_none() && !inputs.contains_key("weights") =>
            {
                Err(AdapterError::permanent(
                    "`aws_route53.set_failover` needs `active` or `weights`",
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
        match action {
            "aws_route53.upsert_record" | "aws_route53.set_failover" => {
                let zone = zone_id(require_str(inputs, "zone_id", action)?);
                self.zone_exists(&c, zone).await?;
                if action == "aws_route53.set_failover" {
                    let name = require_str(inputs, "name", action)?;
                    let rtype = require_str(inputs, "type", action)?;
                    let current = c.records(zone, name, rtype).await?;
                    wanted_failover(inputs, &current)?;
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
        match action {
            "aws_route53.upsert_record" => self.upsert(&c, inputs).await,
            "aws_route53.set_failover" => self.set_failover(&c, inputs).await,
            "aws_route53.wait_insync" => self.wait_insync(&c, inputs).await,
            "aws_route53.create_health_check" => self.create_health_check(&c, inputs).await,
            "aws_route53.wait_healthy" => self.wait_healthy(&c, inputs).await,
            _ => Err(AdapterError::permanent(format!(
                "the Route 53 adapter has no action `{action}`"
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
            "aws_route53.upsert_record" | "aws_route53.set_failover" => {
                self.restore(&c, inputs).await
            }
            "aws_route53.create_health_check" => {
                let Some(id) = outputs.get("health_check_id").and_then(|v| v.as_str()) else {
                    return Ok(());
                };
                match c.client.delete_health_check().health_check_id(id).send().await {
                    Ok(_) => Ok(()),
                    Err(e)
                        if e.as_service_error().is_some_and(
                            aws_sdk_route53::operation::delete_health_check::DeleteHealthCheckError::is_no_such_health_check,
                        ) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(c.err("DeleteHealthCheck", &format!("health check {id}"), &e)),
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
        // A change whose id was saved after submission and whose records are in place is done;
        // otherwise executing again is safe: the UPSERT is idempotent and the capture is kept.
        let ("aws_route53.upsert_record" | "aws_route53.set_failover") = action else {
            return Ok(Observation::NotDone);
        };
        let Some(cap) = capture::load::<Capture>(ctx)? else {
            return Ok(Observation::NotDone);
        };
        let Some(change_id) = cap.change_id.clone() else {
            return Ok(Observation::NotDone);
        };
        let c = Self::call(inputs, ctx).await;
        let zone = zone_id(require_str(inputs, "zone_id", action)?).to_owned();
        let name = require_str(inputs, "name", action)?;
        let rtype = require_str(inputs, "type", action)?;
        let current = c.records(&zone, name, rtype).await?;
        let want = if action == "aws_route53.set_failover" {
            wanted_failover(inputs, &current)?
        } else {
            let set_id = input_str(inputs, "set_identifier");
            let existing = current
                .iter()
                .find(|r| r.set_identifier.as_deref() == set_id);
            vec![wanted_record(inputs, existing)?]
        };
        if changed(&want, &current).is_empty() {
            let mut o = outputs(&change_id, &cap.previous);
            if let Some(a) = input_str(inputs, "active") {
                o.insert("active".into(), json!(a));
            }
            Ok(Observation::Done(o))
        } else {
            Ok(Observation::NotDone)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, failover: &str) -> Record {
        Record {
            name: "ehr.example.org.".into(),
            rtype: "A".into(),
            set_identifier: Some(id.into()),
            ttl: Some(60),
            values: vec!["192.0.2.1".into()],
            alias: None,
            failover: Some(failover.into()),
            weight: None,
            health_check_id: None,
        }
    }

    fn inputs(v: serde_json::Value) -> Inputs {
        serde_json::from_value(v).expect("inputs")
    }

    #[test]
    fn set_failover_flips_primary_and_secondary_and_only_those() {
        let current = vec![rec("east", "PRIMARY"), rec("west", "SECONDARY")];
        let want = wanted_failover(
            &inputs(json!({"name": "ehr.example.org", "type": "A", "active": "west"})),
            &current,
        )
        .expect("want");
        assert_eq!(want[0].failover.as_deref(), Some("SECONDARY"));
        assert_eq!(want[1].failover.as_deref(), Some("PRIMARY"));
        assert_eq!(changed(&want, &current).len(), 2);
        assert!(changed(&current, &current).is_empty());
    }

    #[test]
    fn set_failover_names_the_identifiers_it_found() {
        let current = vec![rec("east", "PRIMARY"), rec("west", "SECONDARY")];
        let e = wanted_failover(
            &inputs(json!({"name": "ehr.example.org", "type": "A", "active": "north"})),
            &current,
        )
        .expect_err("unknown id");
        assert!(e.to_string().contains("east, west"), "{e}");
    }

    #[test]
    fn a_change_found_neither_as_captured_nor_as_wanted_is_a_conflict() {
        let captured = vec![rec("east", "PRIMARY"), rec("west", "SECONDARY")];
        let mut now = captured.clone();
        now[0].values = vec!["203.0.113.9".into()];
        assert!(same_records(
            &captured,
            &[captured[1].clone(), captured[0].clone()]
        ));
        assert!(!same_records(&captured, &now));
        let e = conflict("dns", "Z1", &captured, &now);
        let m = e.to_string();
        assert!(m.contains("203.0.113.9") && m.contains("192.0.2.1"), "{m}");
        assert_eq!(e.context.code.as_deref(), Some("Conflict"));
        assert!(!e.is_transient());
    }

    #[test]
    fn an_upsert_keeps_the_routing_policy_of_the_record_it_replaces() {
        let existing = rec("west", "SECONDARY");
        let want = wanted_record(
            &inputs(json!({"name": "EHR.example.org", "type": "A", "values": ["198.51.100.7"], "set_identifier": "west"})),
            Some(&existing),
        )
        .expect("want");
        assert_eq!(want.name, "ehr.example.org.");
        assert_eq!(want.failover.as_deref(), Some("SECONDARY"));
        assert_eq!(want.ttl, Some(300));
    }
}
