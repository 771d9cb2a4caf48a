//! Who is operating: the name a run or an approval is recorded under when the operator gives
//! none. Today this is the operating-system account; it is what the process runs as, never
//! something typed on the command line about someone else.

/// The OS user: `$USER`, `$LOGNAME`, or the name of this process's uid in /etc/passwd.
#[must_use]
pub fn os_user() -> String {
    if let Ok(u) = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        return u;
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|r| r.split_whitespace().next().map(str::to_owned))
        });
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    uid.and_then(|uid| {
        passwd
            .lines()
            .find(|l| l.split(':').nth(2) == Some(uid.as_str()))
            .and_then(|l| l.split(':').next().map(str::to_owned))
    })
    .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_os_user_is_a_name() {
        let u = super::os_user();
        assert!(!u.is_empty());
        assert!(!u.contains(':') && !u.contains('\n'), "{u}");
    }
}
