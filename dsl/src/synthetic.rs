//! A generator of large, realistic, valid runbooks for benchmarks and scale tests.

use std::fmt::Write as _;

/// A fixed pseudo-random sequence (xorshift64) from `seed`: the generators' output is deterministic.
/// Each call returns a number below `n` (0 when `n` is 0).
fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % (n as u64).max(1)).unwrap_or(0)
    }
}

/// A valid runbook with `steps` steps: layers of ten parallel steps, each waiting for one or two
/// steps of earlier layers (a fixed pseudo-random pattern, so the output is deterministic), mixing
/// verify → rehydrate pairs, shell steps with templates, health checks, and DNS cutovers behind an
/// approval gate, ending in an RTO milestone.
#[must_use]
pub fn synthetic_runbook(steps: usize) -> String {
    let mut s = String::with_capacity(steps * 160);
    s.push_str(
        "runbook \"synthetic\" {\n  rto   = 4h\n  rpo   = 15m\n  modes = [drill, failover]\n}\n\n\
         param region: string = \"us-west-2\"\nparam key: string = \"file:/keys/kek\"\n\n\
         step approve {\n  action = approval\n  with {\n    prompt = \"go?\"\n  }\n}\n",
    );
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let width = 10;
    for i in 1..steps {
        let layer = i / width;
        let dep = if layer == 0 {
            0
        } else {
            (layer - 1) * width + next(width)
        };
        let dep = if dep == 0 {
            "approve".to_owned()
        } else {
            format!("s{dep}")
        };
        let extra = if layer > 2 && next(3) == 0 {
            format!(", s{}", (layer - 2) * width + next(width))
        } else {
            String::new()
        };
        let kind = if i == 1 { 2 } else { i % 5 };
        let _ = match kind {
            0 => write!(
                s,
                "\nstep s{i} {{\n  action   = backup.verify\n  after    = [{dep}{extra}]\n  estimate = 1m..3m\n  with {{\n    source = \"/backups/{{{{ region }}}}/b{i}.dbk\"\n    key    = key\n  }}\n}}\n"
            ),
            1 => write!(
                s,
                "\nstep s{i} {{\n  action   = backup.rehydrate\n  after    = [{dep}{extra}]\n  estimate = {{ p50 = 2m, p95 = 6m }}\n  with {{\n    source        = \"/backups/{{{{ region }}}}/b{p}.dbk\"\n    key           = key\n    dest          = \"/restore/b{p}\"\n    expect_sha256 = steps.s{p}.sha256\n  }}\n}}\n",
                p = i - 1
            ),
            2 => write!(
                s,
                "\nstep s{i} {{\n  action   = shell\n  after    = [{dep}{extra}]\n  estimate = 30s\n  retry {{\n    attempts = 3\n    backoff  = 5s\n  }}\n  with {{\n    command = \"load --region {{{{ region }}}} --part {i}\"\n  }}\n}}\n"
            ),
            3 => write!(
                s,
                "\nstep s{i} {{\n  action   = http.check\n  after    = [{dep}{extra}]\n  timeout  = 5m\n  estimate = 5s..1m\n  with {{\n    url = \"https://svc{i}.{{{{ region }}}}.example.org/health\"\n  }}\n}}\n"
            ),
            _ => write!(
                s,
                "\nstep s{i} {{\n  action   = aws_route53.upsert_record\n  modes    = [failover]\n  after    = [{dep}{extra}]\n  estimate = 30s..2m\n  allow {{\n    unverified_cutover = \"synthetic\"\n  }}\n  with {{\n    zone_id = \"Z0DR\"\n    name    = \"svc{i}.example.org\"\n    type    = A\n    values  = [\"10.0.0.{}\"]\n  }}\n}}\n",
                i % 250
            ),
        };
    }
    let last = steps.saturating_sub(1).max(1);
    let _ = write!(
        s,
        "\nmilestone restored {{\n  after     = [s{last}]\n  stops_rto = true\n}}\n"
    );
    s
}

/// A valid runbook with `steps` steps of a second shape, the one that stresses the scheduler's
/// limits: layers of eight parallel steps under `max_parallel = 6` (the limit binds on every
/// layer), each step waiting for one to three steps of the layer before, the four estimate shapes
/// in turn (fixed, uniform range, triangular, log-normal from p50/p95), retries on shell steps, and
/// an approval gate every ten layers. Deterministic, like [`synthetic_runbook`].
#[must_use]
pub fn synthetic_wide_runbook(steps: usize) -> String {
    let mut s = String::with_capacity(steps * 170);
    s.push_str(
        "runbook \"synthetic-wide\" {\n  rto          = 8h\n  rpo          = 15m\n  modes        = [drill, failover]\n  max_parallel = 6\n}\n\n\
         param region: string = \"us-west-2\"\n",
    );
    let mut next = xorshift(0x2545_F491_4F6C_DD1D);
    const WIDTH: usize = 8;
    const ESTIMATES: [&str; 4] = [
        "30s",
        "1m..3m",
        "{ min = 1m, mode = 2m, max = 6m }",
        "{ p50 = 2m, p95 = 6m }",
    ];
    // Step ids of the layer before (empty for the first layer).
    let mut before: Vec<String> = Vec::new();
    let mut layer: Vec<String> = Vec::new();
    let mut n = 0usize;
    let mut layer_no = 0usize;
    while n < steps {
        if layer_no % 10 == 5 && n + 1 < steps {
            // An approval gate: the whole next layer waits for it.
            let id = format!("gate{layer_no}");
            let after = before.join(", ");
            let _ = write!(
                s,
                "\nstep {id} {{\n  action   = approval\n  after    = [{after}]\n  estimate = {{ p50 = 5m, p95 = 20m }}\n  with {{\n    prompt = \"continue past layer {layer_no}?\"\n  }}\n}}\n"
            );
            n += 1;
            before = vec![id];
        }
        layer.clear();
        for _ in 0..WIDTH.min(steps - n) {
            let id = format!("w{n}");
            let deps: Vec<&str> = if before.is_empty() {
                Vec::new()
            } else {
                let k = 1 + next(3).min(before.len() - 1);
                let mut d: Vec<&str> = (0..k)
                    .map(|_| before[next(before.len())].as_str())
                    .collect();
                d.sort_unstable();
                d.dedup();
                d
            };
            let after = if deps.is_empty() {
                String::new()
            } else {
                format!("  after    = [{}]\n", deps.join(", "))
            };
            let estimate = ESTIMATES[n % ESTIMATES.len()];
            let _ = if n.is_multiple_of(3) {
                write!(
                    s,
                    "\nstep {id} {{\n  action   = http.check\n{after}  estimate = {estimate}\n  timeout  = 1h\n  with {{\n    url = \"https://svc{n}.{{{{ region }}}}.example.org/health\"\n  }}\n}}\n"
                )
            } else {
                write!(
                    s,
                    "\nstep {id} {{\n  action   = shell\n{after}  estimate = {estimate}\n  timeout  = 1h\n  retry {{\n    attempts = 3\n    backoff  = 10s\n  }}\n  with {{\n    command = \"restore --region {{{{ region }}}} --part {n}\"\n  }}\n}}\n"
                )
            };
            layer.push(id);
            n += 1;
        }
        std::mem::swap(&mut before, &mut layer);
        layer_no += 1;
    }
    let _ = write!(
        s,
        "\nmilestone restored {{\n  after     = [{}]\n  stops_rto = true\n}}\n",
        before.join(", ")
    );
    s
}
