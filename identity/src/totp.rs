//! Step-up codes: TOTP (RFC 6238) — HMAC-SHA1, 30-second steps, 6 digits, one step either side.

use hmac::{Hmac, Mac};

/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;

/// Decodes a base32 secret (RFC 4648 alphabet, case and spaces ignored, padding optional), as
/// authenticator apps show it.
#[must_use]
pub fn decode_base32(secret: &str) -> Option<Vec<u8>> {
    let mut bits: u64 = 0;
    let mut n = 0u32;
    let mut out = Vec::new();
    for c in secret.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u64 - 'A' as u64,
            c @ '2'..='7' => c as u64 - '2' as u64 + 26,
            _ => return None,
        };
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            out.push(((bits >> n) & 0xff) as u8);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The 6-digit code of `key` for time step `counter` (RFC 4226 dynamic truncation).
#[must_use]
pub fn code_at(key: &[u8], counter: u64) -> String {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(&counter.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let off = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[off] & 0x7f) << 24)
        | (u32::from(h[off + 1]) << 16)
        | (u32::from(h[off + 2]) << 8)
        | u32::from(h[off + 3]);
    format!("{:06}", bin % 1_000_000)
}

/// The time step `code` is valid for at `unix_seconds` (the current step or one either side),
/// compared in constant time per step. The step lets a caller refuse a code used before.
#[must_use]
pub fn verify(key: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    let now = unix_seconds / STEP_SECONDS;
    [now, now.saturating_sub(1), now + 1]
        .into_iter()
        .find(|&c| {
            let want = code_at(key, c);
            want.len() == code.len()
                && want
                    .bytes()
                    .zip(code.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1, 8 digits truncated to the last 6.
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let key = b"12345678901234567890";
        for (t, eight) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(code_at(key, t / STEP_SECONDS), eight[2..], "t = {t}");
        }
    }

    #[test]
    fn a_code_is_valid_one_step_either_side_and_no_further() {
        let key = b"12345678901234567890";
        let code = code_at(key, 1000);
        assert_eq!(verify(key, &code, 1000 * 30 + 5), Some(1000));
        assert_eq!(verify(key, &code, 1001 * 30 + 5), Some(1000));
        assert_eq!(verify(key, &code, 999 * 30), Some(1000));
        assert_eq!(verify(key, &code, 1002 * 30), None, "expired");
        assert_eq!(verify(key, "000000x", 1000 * 30), None);
    }

    #[test]
    fn base32_secrets_decode_as_authenticator_apps_show_them() {
        assert_eq!(
            decode_base32("GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"),
            Some(b"12345678901234567890".to_vec())
        );
        assert_eq!(decode_base32("not base32!"), None);
    }
}
