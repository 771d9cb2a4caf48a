//! A generator of large, realistic, valid runbooks for benchmarks and scale tests.

use std::fmt::Write as _;

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
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % (n as u64).max(1)).unwrap_or(0)
    };
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
