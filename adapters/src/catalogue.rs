//! The built-in action catalogue: the schema of every action Drover ships.
//!
//! The compiler checks runbooks against these schemas; each provider module implements the actions
//! it declares here. Keep names in step with the provider modules: the prefix before the dot is the
//! module name, the cargo feature and the tracing target.

use drover_schema::{ActionSchema, Effect, Role, StaticCatalogue, ValueType};

fn list_of_strings() -> ValueType {
    ValueType::List(Box::new(ValueType::String))
}

fn enumeration(words: &[&str]) -> ValueType {
    ValueType::Enum(words.iter().map(|w| (*w).to_owned()).collect())
}

/// Every built-in action, sorted by name.
#[must_use]
pub fn builtin_catalogue() -> StaticCatalogue {
    let mut all = core_actions();
    all.extend(backup_actions());
    all.extend(aws_route53_actions());
    all.extend(aws_ec2_actions());
    all.extend(aws_s3_actions());
    all.extend(azure_network_actions());
    StaticCatalogue::new(all)
}

/// The default timeout of a `shell` step: one hour.
pub const SHELL_TIMEOUT_MS: u64 = 60 * 60 * 1000;
/// The default timeout of an `http.check` step: five minutes.
pub const HTTP_CHECK_TIMEOUT_MS: u64 = 5 * 60 * 1000;
/// The default timeout of a `notify` step: two minutes (a webhook that does not answer).
pub const NOTIFY_TIMEOUT_MS: u64 = 2 * 60 * 1000;
/// The default timeout of a `dns.wait_resolves` step: fifteen minutes (DNS propagation).
pub const DNS_WAIT_TIMEOUT_MS: u64 = 15 * 60 * 1000;

fn core_actions() -> Vec<ActionSchema> {
    vec![
        ActionSchema::new(
            "wait",
            "Waits for a fixed time",
            Effect::ReadOnly,
            Role::Plain,
        )
        .required("duration", ValueType::Duration, "how long to wait")
        .optional("reason", ValueType::String, "why, shown in the log"),
        ActionSchema::new(
            "shell",
            "Runs a command through /bin/sh with a timeout, capturing its output",
            Effect::Mutating,
            Role::Plain,
        )
        .with_default_timeout_ms(SHELL_TIMEOUT_MS)
        .required("command", ValueType::String, "the command line")
        .optional("cwd", ValueType::String, "working directory")
        .optional(
            "env",
            ValueType::Map(Box::new(ValueType::StringOrSecret)),
            "extra environment",
        )
        .optional(
            "expect_exit",
            ValueType::Int,
            "the exit code that counts as success (default 0)",
        )
        .optional(
            "background",
            ValueType::Bool,
            "start the command as a service in a process group of its own and do not wait for it; \
             it fails if the command exits during `startup_grace`, and the group is stopped when \
             the run ends (finished, rolled back or interrupted) unless `keep_running` is set",
        )
        .optional(
            "startup_grace",
            ValueType::Duration,
            "background: how long the command must stay up to count as started (default 1s)",
        )
        .optional(
            "keep_running",
            ValueType::Bool,
            "background: leave the service running after the run ends (default false)",
        )
        .output("exit_code", ValueType::Int, "the command's exit code")
        .output(
            "stdout",
            ValueType::String,
            "captured standard output (truncated)",
        )
        .output(
            "stderr",
            ValueType::String,
            "captured standard error (truncated)",
        )
        .output("pid", ValueType::Int, "process id (background commands)")
        .output(
            "pgid",
            ValueType::Int,
            "process group of a background command: stop it with `kill -TERM -PGID`",
        ),
        ActionSchema::new(
            "notify",
            "Sends a message to stdout or a webhook",
            Effect::ReadOnly,
            Role::Plain,
        )
        .with_default_timeout_ms(NOTIFY_TIMEOUT_MS)
        .required("message", ValueType::String, "the message")
        .optional(
            "channel",
            enumeration(&["stdout", "webhook"]),
            "where to send it (default stdout)",
        )
        .optional("url", ValueType::StringOrSecret, "webhook URL")
        .optional("token", ValueType::Secret, "bearer token for the webhook"),
        ActionSchema::new(
            "approval",
            "Pauses the run until enough distinct operators approve",
            Effect::ReadOnly,
            Role::Approval,
        )
        .required("prompt", ValueType::String, "what the approvers are asked")
        .optional(
            "approvers",
            ValueType::Int,
            "how many distinct approvers (default 1)",
        )
        .optional("roles", list_of_strings(), "roles allowed to approve")
        .optional(
            "initiator_may_approve",
            ValueType::Bool,
            "whether the operator who started the run may approve (default false)",
        )
        .optional(
            "denials",
            ValueType::Int,
            "how many distinct denials (`drover approve --deny`) fail the step (default 1)",
        )
        .optional(
            "mfa",
            ValueType::Bool,
            "whether each approval needs a current TOTP code in the signed statement (default: when the runbook has an operator roster, for approvals upstream of a destructive step in failover mode)",
        )
        .optional(
            "break_glass",
            ValueType::Bool,
            "whether an operator the roster marks `break_glass = true` may approve alone (`drover approve --break-glass --reason`): a distinct audit record, and the runbook's notify steps tagged `break_glass` fire (default false)",
        )
        .output(
            "approved_by",
            list_of_strings(),
            "the operators who approved",
        ),
        ActionSchema::new(
            "http.check",
            "Polls a URL until it answers as expected",
            Effect::ReadOnly,
            Role::Plain,
        )
        .with_default_timeout_ms(HTTP_CHECK_TIMEOUT_MS)
        .required("url", ValueType::String, "the URL to poll")
        .optional(
            "expect_status",
            ValueType::Int,
            "the status that counts as healthy (default 200)",
        )
        .optional("contains", ValueType::String, "text the body must contain")
        .optional(
            "expect_sha256",
            ValueType::String,
            "the SHA-256 (hex) the body must have: proves the answer is this run's data",
        )
        .optional(
            "interval",
            ValueType::Duration,
            "time between polls (default 2s)",
        )
        .output("status", ValueType::Int, "the last status seen")
        .output("latency_ms", ValueType::Int, "the last response time"),
        ActionSchema::new(
            "dns.wait_resolves",
            "Polls DNS (the system resolver) until a name resolves to the expected addresses",
            Effect::ReadOnly,
            Role::Plain,
        )
        .with_default_timeout_ms(DNS_WAIT_TIMEOUT_MS)
        .required("name", ValueType::String, "the name to resolve")
        .required(
            "expect",
            list_of_strings(),
            "IP addresses the answer must hold",
        )
        .optional(
            "interval",
            ValueType::Duration,
            "time between polls (default 5s)",
        )
        .output(
            "addresses",
            list_of_strings(),
            "the addresses last resolved",
        ),
    ]
}

fn backup_outputs(schema: ActionSchema) -> ActionSchema {
    schema
        .with_default_timeout_ms(BACKUP_TIMEOUT_MS)
        .output("dataset", ValueType::String, "the backup's data set name")
        .output(
            "recovery_point",
            ValueType::String,
            "the recovery point time (RFC 3339)",
        )
        .output(
            "sha256",
            ValueType::String,
            "SHA-256 of the plaintext, verified",
        )
        .output("bytes", ValueType::Int, "plaintext size in bytes")
        .output(
            "key_id",
            ValueType::String,
            "the key-encryption key that unwrapped the data key",
        )
        .output("backup_id", ValueType::String, "the backup's id")
}

fn backup_actions() -> Vec<ActionSchema> {
    vec![
        backup_outputs(
            ActionSchema::new(
                "backup.rehydrate",
                "Decrypts and restores a backup, verifying every chunk and the plaintext SHA-256",
                Effect::Mutating,
                Role::Rehydrate,
            )
            .required(
                "source",
                ValueType::String,
                "the backup (path, s3:// or azblob:// URL)",
            )
            .required(
                "key",
                ValueType::String,
                "key URI (file:PATH or aws-kms:KEY)",
            )
            .resource("dest", "where the plaintext is written")
            .optional(
                "expect_sha256",
                ValueType::String,
                "plaintext SHA-256 the restore must match",
            ),
        )
        .output("path", ValueType::String, "where the plaintext was written"),
        backup_outputs(
            ActionSchema::new(
                "backup.verify",
                "Fully decrypts a backup in memory and checks its hashes; writes no plaintext",
                Effect::ReadOnly,
                Role::Verify,
            )
            .required(
                "source",
                ValueType::String,
                "the backup (path, s3:// or azblob:// URL)",
            )
            .required(
                "key",
                ValueType::String,
                "key URI (file:PATH or aws-kms:KEY)",
            )
            .optional(
                "expect_sha256",
                ValueType::String,
                "plaintext SHA-256 the backup must hold",
            ),
        ),
        ActionSchema::new(
            "backup.copy",
            "Copies a backup to another location as it is (ciphertext, no key): checked against its manifest while it streams, written atomically, never over another backup, read back; a destination already holding it is done",
            Effect::Mutating,
            Role::Plain,
        )
        .with_default_timeout_ms(BACKUP_TIMEOUT_MS)
        .required(
            "source",
            ValueType::String,
            "the backup (path, s3:// or azblob:// URL)",
        )
        .resource("destination", "where the copy is written (path, s3:// or azblob:// URL)")
        .optional(
            "lock",
            ValueType::String,
            "compliance or governance: a write-once lock set on the copy as it is written (s3:// in a bucket with Object Lock), read back",
        )
        .optional(
            "retain",
            ValueType::String,
            "with lock: for how long, 90d or 6y (calendar years)",
        )
        .output("backup_id", ValueType::String, "the backup's id")
        .output("dataset", ValueType::String, "the backup's data set name")
        .output(
            "recovery_point",
            ValueType::String,
            "the recovery point time (RFC 3339)",
        )
        .output(
            "ciphertext_sha256",
            ValueType::String,
            "SHA-256 of the backup file, read back from the copy",
        )
        .output("bytes", ValueType::Int, "bytes copied (0 when it was there already)")
        .output("location", ValueType::String, "where the copy is"),
        ActionSchema::new(
            "backup.verify_sample",
            "Fully decrypts a random sample of the backups under a directory, S3 or Azure Blob prefix, checks the rest by structure and ciphertext hash, and fails on any error (the 0 of 3-2-1-1-0)",
            Effect::ReadOnly,
            Role::Verify,
        )
        .with_default_timeout_ms(BACKUP_TIMEOUT_MS)
        .required(
            "source",
            ValueType::String,
            "the directory, s3:// or azblob:// prefix holding the backups",
        )
        .required(
            "key",
            ValueType::String,
            "key URI (file:PATH or aws-kms:KEY)",
        )
        .optional(
            "sample",
            ValueType::Int,
            "how many backups to decrypt fully (default 3)",
        )
        .optional(
            "seed",
            ValueType::Int,
            "the seed that picks the sample (default: random; it is in the outputs, to check the same ones again)",
        )
        .output("backups", ValueType::Int, "how many backups were found")
        .output("sampled", ValueType::Int, "how many were fully decrypted")
        .output("errors", ValueType::Int, "unresolved verification errors (0 on success)")
        .output("seed", ValueType::Int, "the seed that picked the sample")
        .output(
            "source",
            ValueType::String,
            "the directory or prefix verified (backup posture counts it as that copy's verification)",
        ),
        ActionSchema::new(
            "posture.backups",
            "Checks every dataset of a backup inventory against 3-2-1-1-0 (3 copies of the newest recovery point, 2 platforms, 1 off site, 1 immutable, 0 verification errors), its RPO, retention and key rotation, read from the stores, the key service and the journal; fails naming each failed check",
            Effect::ReadOnly,
            Role::Verify,
        )
        .with_default_timeout_ms(BACKUP_TIMEOUT_MS)
        .required(
            "inventory",
            ValueType::String,
            "the inventory file (TOML: datasets with rpo, retention, key, copies)",
        )
        .output("passed", ValueType::Bool, "whether every check of every dataset holds")
        .output(
            "failed",
            ValueType::List(Box::new(ValueType::String)),
            "the failed checks as DATASET/CHECK (e.g. ehr/1-immutable)",
        )
        .output(
            "controls",
            ValueType::List(Box::new(ValueType::String)),
            "the controls the checks evidence (HIPAA, NIST SP 800-53, NIST CSF 2.0)",
        )
        .output("report", ValueType::Any, "the whole assessment, as `drover posture backups --format json` prints it"),
    ]
}

/// The default timeout of a cloud step that makes its change with a few calls: ten minutes.
pub const CLOUD_STEP_TIMEOUT_MS: u64 = 10 * 60 * 1000;
/// The default timeout of a cloud step that polls until the world catches up (instances
/// starting, a change propagating, a volume created): thirty minutes.
pub const CLOUD_POLL_TIMEOUT_MS: u64 = 30 * 60 * 1000;
/// The default timeout of a backup step (restoring or verifying terabytes takes hours): a day.
pub const BACKUP_TIMEOUT_MS: u64 = 24 * 60 * 60 * 1000;

/// Every cloud step has a default timeout: pollers (an `interval` input) the longer one.
fn cloud_timeout(schema: ActionSchema) -> ActionSchema {
    if schema.default_timeout_ms.is_some() {
        return schema;
    }
    let polls = schema.inputs.iter().any(|i| i.name == "interval");
    schema.with_default_timeout_ms(if polls {
        CLOUD_POLL_TIMEOUT_MS
    } else {
        CLOUD_STEP_TIMEOUT_MS
    })
}

fn aws_common(schema: ActionSchema) -> ActionSchema {
    cloud_timeout(schema)
        .optional(
            "region",
            ValueType::String,
            "AWS region (default the runbook's or the profile's)",
        )
        .optional("profile", ValueType::String, "AWS profile name")
        .optional(
            "endpoint_url",
            ValueType::String,
            "endpoint override (VPC endpoints, tests)",
        )
        .optional(
            "call_timeout",
            ValueType::Duration,
            "how long one AWS call may take, SDK retries included (default 1m; connecting: 5s)",
        )
}

fn aws_route53_actions() -> Vec<ActionSchema> {
    let record_type = || enumeration(&["A", "AAAA", "CNAME", "TXT"]);
    let previous = |s: ActionSchema| {
        s.output(
            "change_id",
            ValueType::String,
            "the Route 53 change id (empty when nothing had to change)",
        )
        .output(
            "previous",
            ValueType::Any,
            "the record sets before the change (restored by undo)",
        )
        .with_builtin_undo()
    };
    vec![
        previous(aws_common(
            ActionSchema::new(
                "aws_route53.upsert_record",
                "Creates or replaces a record set (values or alias), capturing the old one for undo",
                Effect::Destructive,
                Role::Cutover,
            )
            .resource("zone_id", "hosted zone id")
            .required_resource("name", ValueType::String, "record name")
            .required("type", record_type(), "record type")
            .optional("values", list_of_strings(), "record values")
            .optional("ttl", ValueType::Int, "TTL in seconds (default 300)")
            .optional("alias_target", ValueType::Map(Box::new(ValueType::String)), "alias target: hosted_zone_id, dns_name, evaluate_target_health")
            .optional("set_identifier", ValueType::String, "set identifier for routing policies"),
        )),
        previous(aws_common(
            ActionSchema::new(
                "aws_route53.set_failover",
                "Makes one record set of a failover pair PRIMARY (or sets weights), in one all-or-nothing batch",
                Effect::Destructive,
                Role::Cutover,
            )
            .resource("zone_id", "hosted zone id")
            .required_resource("name", ValueType::String, "record name")
            .required("type", record_type(), "record type")
            .optional("active", ValueType::String, "set identifier to make PRIMARY")
            .optional("weights", ValueType::Map(Box::new(ValueType::Int)), "set identifier → weight"),
        ))
        .output("active", ValueType::String, "the set identifier now PRIMARY"),
        aws_common(
            ActionSchema::new(
                "aws_route53.wait_insync",
                "Polls GetChange until a change is INSYNC",
                Effect::ReadOnly,
                Role::Plain,
            )
            .required("change_id", ValueType::String, "the change to wait for")
            .optional("interval", ValueType::Duration, "time between polls (default 5s)"),
        )
        .output("status", ValueType::String, "INSYNC"),
        aws_common(
            ActionSchema::new(
                "aws_route53.create_health_check",
                "Creates a Route 53 health check (idempotent on the caller reference)",
                Effect::Mutating,
                Role::Plain,
            )
            .required("fqdn", ValueType::String, "the endpoint's name")
            .optional("port", ValueType::Int, "port (default 443, 80 for HTTP)")
            .optional("path", ValueType::String, "resource path (default /)")
            .optional("protocol", enumeration(&["HTTP", "HTTPS", "TCP"]), "protocol (default HTTPS)"),
        )
        .output("health_check_id", ValueType::String, "the health check id")
        .with_builtin_undo(),
        aws_common(
            ActionSchema::new(
                "aws_route53.wait_healthy",
                "Polls a health check until most Route 53 checkers report it healthy",
                Effect::ReadOnly,
                Role::Plain,
            )
            .required("health_check_id", ValueType::String, "the health check")
            .optional("interval", ValueType::Duration, "time between polls (default 10s)"),
        )
        .output("healthy_checkers", ValueType::Int, "checkers reporting success")
        .output("checkers", ValueType::Int, "checkers reporting"),
    ]
}

fn aws_ec2_actions() -> Vec<ActionSchema> {
    let ingress = |name: &str, summary: &str, effect: Effect| {
        aws_common(
            ActionSchema::new(name, summary, effect, Role::Plain)
                .resource("group_id", "security group id")
                .required(
                    "protocol",
                    enumeration(&["tcp", "udp", "icmp", "-1"]),
                    "IP protocol",
                )
                .required("port", ValueType::Int, "port (from and to)")
                .required("cidr", ValueType::String, "source CIDR"),
        )
        .output("changed", ValueType::Bool, "whether the rule had to change")
        .with_builtin_undo()
    };
    let interval = |s: ActionSchema| {
        s.optional(
            "interval",
            ValueType::Duration,
            "time between state polls (default 5s)",
        )
    };
    let previous = "the state before the change (restored by undo)";
    vec![
        aws_common(
            ActionSchema::new(
                "aws_ec2.associate_address",
                "Moves an Elastic IP to an instance or network interface",
                Effect::Destructive,
                Role::Cutover,
            )
            .resource("allocation_id", "the Elastic IP's allocation id")
            .optional_resource("instance_id", "target instance")
            .optional_resource("network_interface_id", "target network interface")
            .optional(
                "allow_reassociation",
                ValueType::Bool,
                "move it even if associated (default true)",
            ),
        )
        .output(
            "association_id",
            ValueType::String,
            "the new association id",
        )
        .output("previous", ValueType::Any, previous)
        .with_builtin_undo(),
        aws_common(
            ActionSchema::new(
                "aws_ec2.replace_route",
                "Points an existing route in a route table at a new target",
                Effect::Destructive,
                Role::Cutover,
            )
            .resource("route_table_id", "route table id")
            .required(
                "destination_cidr",
                ValueType::String,
                "the route's destination",
            )
            .optional_resource("gateway_id", "internet or virtual private gateway")
            .optional_resource("nat_gateway_id", "NAT gateway")
            .optional_resource("instance_id", "instance")
            .optional_resource("network_interface_id", "network interface")
            .optional_resource("transit_gateway_id", "transit gateway")
            .optional_resource("vpc_peering_connection_id", "VPC peering connection"),
        )
        .output("previous", ValueType::Any, previous)
        .with_builtin_undo(),
        ingress(
            "aws_ec2.authorize_ingress",
            "Adds an ingress rule to a security group",
            Effect::Mutating,
        ),
        ingress(
            "aws_ec2.revoke_ingress",
            "Removes an ingress rule from a security group",
            Effect::Destructive,
        ),
        aws_common(interval(
            ActionSchema::new(
                "aws_ec2.start_instances",
                "Starts instances and waits until they run",
                Effect::Mutating,
                Role::Plain,
            )
            .resources("instance_ids", "instances to start"),
        ))
        .output("previous", ValueType::Any, previous)
        .with_builtin_undo(),
        aws_common(interval(
            ActionSchema::new(
                "aws_ec2.stop_instances",
                "Stops instances and waits until they stop",
                Effect::Destructive,
                Role::Plain,
            )
            .resources("instance_ids", "instances to stop"),
        ))
        .output("previous", ValueType::Any, previous)
        .with_builtin_undo(),
        aws_common(interval(
            ActionSchema::new(
                "aws_ec2.create_volume_from_snapshot",
                "Creates a volume from a snapshot and waits until it is available",
                Effect::Mutating,
                Role::Plain,
            )
            .required("snapshot_id", ValueType::String, "the snapshot")
            .required(
                "availability_zone",
                ValueType::String,
                "where to create the volume",
            )
            .optional(
                "volume_type",
                ValueType::String,
                "volume type (default gp3)",
            ),
        ))
        .output("volume_id", ValueType::String, "the new volume's id")
        .with_builtin_undo(),
        aws_common(
            ActionSchema::new(
                "aws_ec2.run_instances",
                "Launches instances from a launch template or AMI",
                Effect::Mutating,
                Role::Plain,
            )
            .optional(
                "launch_template",
                ValueType::String,
                "launch template name or id",
            )
            .optional("image_id", ValueType::String, "AMI id")
            .optional("instance_type", ValueType::String, "instance type")
            .optional_resource("subnet_id", "subnet the instances are launched into")
            .optional("count", ValueType::Int, "how many (default 1)")
            .optional(
                "tags",
                ValueType::Map(Box::new(ValueType::String)),
                "tags to apply",
            ),
        )
        .output("instance_ids", list_of_strings(), "the launched instances")
        .with_builtin_undo(),
    ]
}

fn aws_s3_actions() -> Vec<ActionSchema> {
    vec![
        aws_common(
            ActionSchema::new(
                "aws_s3.check_object_lock",
                "Checks that an object exists under S3 Object Lock, retained long enough",
                Effect::ReadOnly,
                Role::Plain,
            )
            .required("bucket", ValueType::String, "bucket")
            .required("key", ValueType::String, "object key")
            .optional(
                "mode",
                enumeration(&["COMPLIANCE", "GOVERNANCE"]),
                "required lock mode",
            )
            .optional(
                "min_retention",
                ValueType::Duration,
                "retention that must remain",
            ),
        )
        .output("mode", ValueType::String, "the object's lock mode")
        .output(
            "retain_until",
            ValueType::String,
            "retain-until date (RFC 3339)",
        ),
    ]
}

fn azure_common(schema: ActionSchema) -> ActionSchema {
    cloud_timeout(schema)
        .optional(
            "subscription",
            ValueType::String,
            "subscription id (default the runbook's)",
        )
        .required("resource_group", ValueType::String, "resource group")
        .optional(
            "endpoint",
            ValueType::String,
            "ARM endpoint override (sovereign clouds, tests)",
        )
        .optional(
            "call_timeout",
            ValueType::Duration,
            "how long one Resource Manager exchange may take (default 1m; connecting: 5s)",
        )
}

fn azure_network_actions() -> Vec<ActionSchema> {
    let undoable = |s: ActionSchema| {
        s.output("changed", ValueType::Bool, "whether anything had to change")
            .output(
                "previous",
                ValueType::Any,
                "the resource before the change (restored by undo)",
            )
            .with_builtin_undo()
    };
    vec![
        undoable(azure_common(
            ActionSchema::new(
                "azure_network.update_route",
                "Sets the next hop of a route in a route table",
                Effect::Destructive,
                Role::Cutover,
            )
            .resource("route_table", "route table name")
            .required("route", ValueType::String, "route name")
            .required(
                "next_hop_type",
                enumeration(&[
                    "VirtualNetworkGateway",
                    "VnetLocal",
                    "Internet",
                    "VirtualAppliance",
                    "None",
                ]),
                "next hop type",
            )
            .optional_resource("next_hop_ip", "next hop address (VirtualAppliance)")
            .optional("address_prefix", ValueType::String, "destination prefix"),
        )),
        undoable(azure_common(
            ActionSchema::new(
                "azure_network.set_subnet_route_table",
                "Attaches a route table to a subnet",
                Effect::Destructive,
                Role::Cutover,
            )
            .resource("vnet", "virtual network")
            .resource("subnet", "subnet name")
            .resource("route_table", "route table to attach"),
        )),
        undoable(azure_common(
            ActionSchema::new(
                "azure_network.set_nsg_rule",
                "Creates or updates a security rule in a network security group",
                Effect::Mutating,
                Role::Plain,
            )
            .resource("nsg", "network security group")
            .required("rule", ValueType::String, "rule name")
            .required("priority", ValueType::Int, "priority (100-4096)")
            .required(
                "direction",
                enumeration(&["Inbound", "Outbound"]),
                "direction",
            )
            .required("access", enumeration(&["Allow", "Deny"]), "access")
            .optional(
                "protocol",
                enumeration(&["Tcp", "Udp", "Icmp", "*"]),
                "protocol (default Tcp)",
            )
            .optional("source", ValueType::String, "source prefix (default *)")
            .optional(
                "destination_port",
                ValueType::String,
                "destination port or range",
            ),
        )),
        undoable(azure_common(
            ActionSchema::new(
                "azure_network.remove_nsg_rule",
                "Deletes a security rule from a network security group",
                Effect::Destructive,
                Role::Plain,
            )
            .resource("nsg", "network security group")
            .required("rule", ValueType::String, "rule name"),
        )),
        undoable(azure_common(
            ActionSchema::new(
                "azure_network.associate_public_ip",
                "Moves a public IP to a NIC's IP configuration",
                Effect::Destructive,
                Role::Cutover,
            )
            .resource("public_ip", "public IP address resource")
            .resource("nic", "network interface the address moves to")
            .optional(
                "ip_config",
                ValueType::String,
                "IP configuration name (default ipconfig1)",
            ),
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_schema::Catalogue;

    #[test]
    fn every_action_that_calls_out_has_a_default_timeout() {
        for a in builtin_catalogue().actions() {
            // A wait lasts its duration; an approval waits for people, by design.
            if matches!(a.name.as_str(), "wait" | "approval") {
                continue;
            }
            assert!(
                a.default_timeout_ms.is_some_and(|t| t > 0),
                "{} has no default timeout",
                a.name
            );
        }
    }

    #[test]
    fn every_action_the_language_issue_names_is_in_the_catalogue() {
        let cat = builtin_catalogue();
        for name in [
            "backup.rehydrate",
            "backup.verify",
            "backup.verify_sample",
            "aws_route53.upsert_record",
            "aws_ec2.associate_address",
            "azure_network.update_route",
            "dns.wait_resolves",
            "http.check",
            "approval",
            "wait",
            "notify",
            "shell",
        ] {
            assert!(cat.lookup(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn input_names_are_unique_within_each_action() {
        for a in builtin_catalogue().actions() {
            let mut names: Vec<_> = a.inputs.iter().map(|i| &i.name).collect();
            names.sort();
            let before = names.len();
            names.dedup();
            assert_eq!(before, names.len(), "{} repeats an input", a.name);
        }
    }

    #[test]
    fn every_cutover_is_destructive() {
        for a in builtin_catalogue().actions() {
            if a.role == Role::Cutover {
                assert_eq!(a.effect, Effect::Destructive, "{}", a.name);
            }
        }
    }
}
