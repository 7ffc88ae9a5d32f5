//! Negative authentication results: a message whose own receiving server says it failed
//! DMARC (or SPF without a passing DKIM signature) does not prove it comes from the owner
//! of its From address, so it is not treated as that customer.
//!
//! Only failures are read. A forged `Authentication-Results` header can claim a pass, but
//! claiming a failure only harms the forger, so no trust in the header's origin is needed.

use std::collections::BTreeMap;

/// Why the sender is not verified (e.g. `"dmarc=fail"`), or `None`.
pub fn failure<'a>(results: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut outcome: BTreeMap<String, String> = BTreeMap::new();
    for header in results {
        // "authserv-id; method=result reason ...; method=result ..."
        for clause in header.split(';').skip(1) {
            let Some((method, result)) = clause.trim().split_once('=') else {
                continue;
            };
            let method = method.trim().to_ascii_lowercase();
            let result = result
                .split(|c: char| c.is_whitespace() || c == '(')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            // The first verdict per method wins: the nearest server wrote it on top.
            outcome.entry(method).or_insert(result);
        }
    }
    let is = |method: &str, result: &str| outcome.get(method).is_some_and(|r| r == result);
    if is("dmarc", "fail") {
        Some("dmarc=fail".into())
    } else if is("spf", "fail") && !is("dkim", "pass") {
        Some("spf=fail".into())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmarc_failure_is_reported() {
        assert_eq!(
            failure(["mx.desk.test; spf=pass smtp.mailfrom=x.test; dkim=none; dmarc=fail (p=none) header.from=example.com"]).as_deref(),
            Some("dmarc=fail")
        );
    }

    #[test]
    fn spf_failure_counts_only_without_a_good_signature() {
        assert_eq!(
            failure(["mx; spf=fail smtp.mailfrom=a.test"]).as_deref(),
            Some("spf=fail")
        );
        assert_eq!(failure(["mx; spf=fail; dkim=pass header.d=a.test"]), None);
    }

    #[test]
    fn passes_and_absent_results_are_not_failures() {
        assert_eq!(failure(["mx; spf=pass; dkim=pass; dmarc=pass"]), None);
        assert_eq!(failure([]), None);
        assert_eq!(failure(["garbage without clauses"]), None);
    }
}
