//! Owned resources (IP addresses, ranges, domains) say who is responsible for abuse, so
//! two accounts never hold overlapping ones: an abuse report about an address both cover
//! would name two customers.
//!
//! A range overlaps every address and range inside it. A domain overlaps its subdomains:
//! whoever holds `example.com` controls the DNS of every name under it, so a report about
//! `shop.example.com` concerns that account as much as the one listing the subdomain. The
//! provider's shared server names (host names under its own domains, held by many
//! accounts) are not owned resources and are not checked here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::store::accounts::Resource;

/// A resource and who holds it; `line` is set for a row of the file being imported.
#[derive(Debug, Clone, Copy)]
pub struct Holding<'a> {
    pub account: &'a str,
    pub line: Option<usize>,
    pub resource: &'a Resource,
}

/// How `inner` relates to `outer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Same,
    Inside,
}

/// Every overlap between holdings of different accounts with a row of the file among
/// them: `(line, problem)`, reported at the row of the file (the later one if both are).
pub fn conflicts(holdings: &[Holding<'_>]) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (inner, outer, relation) in net_overlaps(holdings)
        .into_iter()
        .chain(domain_overlaps(holdings))
    {
        let (a, b) = (&holdings[inner], &holdings[outer]);
        if a.account == b.account {
            continue;
        }
        // Reported at the file's row, the later one if both are in the file: the row
        // added last is most likely the mistake.
        let report = match (a.line, b.line) {
            (Some(la), Some(lb)) if lb > la => describe(b, a, relation, true),
            (Some(_), _) => describe(a, b, relation, false),
            (None, Some(_)) => describe(b, a, relation, true),
            (None, None) => None,
        };
        found.extend(report);
    }
    found.sort();
    found.dedup();
    found
}

/// The problem as seen from `row`: `reversed` when `row` is the outer one.
fn describe(
    row: &Holding<'_>,
    other: &Holding<'_>,
    relation: Relation,
    reversed: bool,
) -> Option<(usize, String)> {
    let verb = match (relation, reversed, row.resource.kind) {
        (Relation::Same, _, _) => "is the same as",
        (Relation::Inside, false, "domain") => "is under",
        (Relation::Inside, false, _) => "is inside",
        (Relation::Inside, true, _) => "contains",
    };
    let where_other = match other.line {
        Some(line) => format!(" on line {line}"),
        None => " (registered)".to_string(),
    };
    Some((
        row.line?,
        format!(
            "{} {} of account {} {verb} {} {} of account {}{where_other}",
            row.resource.kind,
            row.resource.value,
            row.account,
            other.resource.kind,
            other.resource.value,
            other.account
        ),
    ))
}

/// `(inner, outer, relation)` for addresses and ranges: sorted by network address and
/// then by size, a range comes right before what it contains, so one pass with a stack
/// of the ranges still open finds each holding's nearest container.
fn net_overlaps(holdings: &[Holding<'_>]) -> Vec<(usize, usize, Relation)> {
    let mut nets: Vec<(IpNet, usize)> = holdings
        .iter()
        .enumerate()
        .filter_map(|(i, h)| as_net(h.resource).map(|n| (n, i)))
        .collect();
    nets.sort();
    let mut open: Vec<(IpNet, usize)> = Vec::new();
    let mut found = Vec::new();
    for (net, i) in nets {
        while open.last().is_some_and(|(outer, _)| !outer.contains(&net)) {
            open.pop();
        }
        if let Some((outer, j)) = open.last() {
            let relation = if *outer == net {
                Relation::Same
            } else {
                Relation::Inside
            };
            found.push((i, *j, relation));
        }
        open.push((net, i));
    }
    found
}

fn as_net(resource: &Resource) -> Option<IpNet> {
    match resource.kind {
        "ip" => resource.value.parse::<IpAddr>().ok().map(IpNet::from),
        "cidr" => resource.value.parse::<IpNet>().ok(),
        _ => None,
    }
}

/// `(inner, outer, relation)` for domains: each domain looked up with every parent.
fn domain_overlaps(holdings: &[Holding<'_>]) -> Vec<(usize, usize, Relation)> {
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, h) in holdings.iter().enumerate() {
        if h.resource.kind == "domain" {
            by_name
                .entry(h.resource.value.as_str())
                .or_default()
                .push(i);
        }
    }
    let mut found = Vec::new();
    for (name, holders) in &by_name {
        for (n, &i) in holders.iter().enumerate() {
            // The same name held twice: each pair once.
            found.extend(holders[..n].iter().map(|&j| (i, j, Relation::Same)));
            let parents = name.match_indices('.').map(|(dot, _)| &name[dot + 1..]);
            for parent in parents {
                for &j in by_name.get(parent).into_iter().flatten() {
                    found.push((i, j, Relation::Inside));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(kind: &'static str, value: &str) -> Resource {
        Resource {
            kind,
            value: value.into(),
        }
    }

    fn check(rows: &[(&str, Option<usize>, &Resource)]) -> Vec<(usize, String)> {
        let holdings: Vec<Holding<'_>> = rows
            .iter()
            .map(|(account, line, resource)| Holding {
                account,
                line: *line,
                resource,
            })
            .collect();
        conflicts(&holdings)
    }

    #[test]
    fn a_range_overlaps_the_addresses_and_ranges_inside_it() {
        let range = resource("cidr", "198.51.100.0/24");
        let ip = resource("ip", "198.51.100.77");
        let small = resource("cidr", "198.51.100.0/28");
        let elsewhere = resource("ip", "203.0.113.5");
        let found = check(&[
            ("C1", None, &ip),
            ("C2", Some(3), &range),
            ("C3", Some(2), &small),
            ("C4", Some(4), &elsewhere),
        ]);
        assert_eq!(
            found,
            vec![
                (
                    3,
                    "cidr 198.51.100.0/24 of account C2 contains cidr 198.51.100.0/28 of account C3 on line 2".into()
                ),
                (
                    3,
                    "cidr 198.51.100.0/24 of account C2 contains ip 198.51.100.77 of account C1 (registered)".into()
                ),
            ]
        );
    }

    #[test]
    fn a_domain_overlaps_its_subdomains_but_not_lookalikes() {
        let parent = resource("domain", "example.com");
        let child = resource("domain", "shop.example.com");
        let lookalike = resource("domain", "myexample.com");
        let same = resource("domain", "example.com");
        let found = check(&[
            ("C1", None, &parent),
            ("C2", Some(2), &child),
            ("C3", Some(3), &lookalike),
            ("C4", Some(4), &same),
        ]);
        assert_eq!(
            found,
            vec![
                (
                    2,
                    "domain shop.example.com of account C2 is under domain example.com of account C1 (registered)".into()
                ),
                (
                    4,
                    "domain example.com of account C4 contains domain shop.example.com of account C2 on line 2".into()
                ),
                (
                    4,
                    "domain example.com of account C4 is the same as domain example.com of account C1 (registered)".into()
                ),
            ]
        );
    }

    #[test]
    fn one_account_may_hold_nested_resources() {
        let range = resource("cidr", "192.0.2.0/24");
        let ip = resource("ip", "192.0.2.1");
        assert!(check(&[("C1", Some(2), &range), ("C1", Some(2), &ip)]).is_empty());
    }
}
