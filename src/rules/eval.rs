//! Matching: a pure function of the message's facts and the compiled rules.
//!
//! Every pattern of one field (subject, body, a header...) is in one [`RegexSet`], run
//! at most once per message and only when a rule whose other conditions hold needs it,
//! so a thousand rules cost one pass over the body, not a thousand.

use std::cell::OnceCell;
use std::path::PathBuf;

use regex::{Regex, RegexSet};
use serde::Serialize;

use super::model::{AbuseCaseDef, SenderKind, Then};
use crate::config::Role;
use crate::desk::Priority;

/// What a pattern is matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// The From address, normalised.
    From,
    /// Each To and Cc address.
    To,
    Subject,
    /// The message's text (HTML converted when there is no text part).
    Body,
    /// Each value of the header with this lower-case name.
    Header(String),
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::From => f.write_str("from"),
            Field::To => f.write_str("to"),
            Field::Subject => f.write_str("subject"),
            Field::Body => f.write_str("body"),
            Field::Header(name) => write!(f, "header.{name}"),
        }
    }
}

/// All patterns on one field.
#[derive(Debug)]
pub(super) struct FieldSet {
    pub field: Field,
    pub set: RegexSet,
    /// The same patterns one by one, to show what matched.
    pub each: Vec<Regex>,
}

/// A pattern condition: pattern `index` of field set `set`.
#[derive(Debug, Clone, Copy)]
pub(super) struct PatternRef {
    pub set: usize,
    pub index: usize,
}

#[derive(Debug, Default)]
pub(super) struct Conditions {
    pub mailbox: Option<Vec<String>>,
    pub role: Option<Vec<Role>>,
    pub sender: Option<Vec<SenderKind>>,
    pub account_status: Option<Vec<String>>,
    pub patterns: Vec<PatternRef>,
    pub has_attachment: Option<bool>,
    pub language: Option<Vec<String>>,
    pub category: Option<Vec<String>>,
    pub business_hours: Option<bool>,
    pub new_ticket: Option<bool>,
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub(super) when: Conditions,
    pub then: Then,
    pub stop: bool,
}

/// A loaded, compiled set of rules, in evaluation order.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub(super) sets: Vec<FieldSet>,
    pub(super) uses_language: bool,
}

/// What is known about a message when rules look at it.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub mailbox: &'a str,
    pub role: Role,
    pub sender: SenderKind,
    pub account_status: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
    pub headers: &'a [(String, String)],
    pub has_attachment: bool,
    pub language: Option<&'a str>,
    /// The ticket's category before this message (rules may change it as they go).
    pub category: Option<&'a str>,
    pub business_hours: bool,
    pub new_ticket: bool,
}

/// One condition of a matched rule, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub condition: String,
    pub matched: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Matched {
    pub name: String,
    pub file: PathBuf,
    pub line: usize,
    pub reasons: Vec<Reason>,
    pub stop: bool,
}

impl Matched {
    /// `rules/10-support.toml:12 service-down-subject`, as the audit log names a rule.
    pub fn locator(&self) -> String {
        format!("{}:{} {}", self.file.display(), self.line, self.name)
    }
}

/// The rules that matched, in order, and their actions merged: later rules override
/// single values (priority, category, queue), lists accumulate (tags, replies, notices).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    pub matched: Vec<Matched>,
    pub priority: Option<Priority>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub queue: Option<String>,
    /// (template, rule name)
    pub replies: Vec<(String, String)>,
    /// (reason, rule name)
    pub notify_staff: Vec<(String, String)>,
    /// Rule names.
    pub suppress_reply: Option<String>,
    pub quarantine: Option<String>,
    pub abuse_case: Option<AbuseCaseDef>,
    /// (what to confirm, rule name)
    pub require_confirmation: Option<(String, String)>,
    pub link_incident: Option<String>,
}

impl RuleSet {
    /// Whether any rule has a `language` condition (detecting it is costly).
    pub fn uses_language(&self) -> bool {
        self.uses_language
    }

    pub fn evaluate(&self, facts: &Facts<'_>) -> Evaluation {
        let hits: Vec<OnceCell<Vec<bool>>> = self.sets.iter().map(|_| OnceCell::new()).collect();
        let hit = |p: PatternRef| {
            hits[p.set].get_or_init(|| self.run_set(&self.sets[p.set], facts))[p.index]
        };
        let mut out = Evaluation {
            category: facts.category.map(str::to_string),
            ..Evaluation::default()
        };
        for rule in &self.rules {
            let Some(reasons) = self.check(rule, facts, out.category.as_deref(), &hit) else {
                continue;
            };
            out.matched.push(Matched {
                name: rule.name.clone(),
                file: rule.file.clone(),
                line: rule.line,
                reasons,
                stop: rule.stop,
            });
            merge(&mut out, rule);
            if rule.stop {
                break;
            }
        }
        out
    }

    fn run_set(&self, set: &FieldSet, facts: &Facts<'_>) -> Vec<bool> {
        let mut found = vec![false; set.each.len()];
        for text in field_values(&set.field, facts) {
            for i in set.set.matches(text).iter() {
                found[i] = true;
            }
        }
        found
    }

    /// The reasons the rule matches, or `None` if one condition fails. Whether it
    /// matches is settled first, cheap conditions before patterns; the reasons are only
    /// written for a rule that matched.
    fn check(
        &self,
        rule: &Rule,
        facts: &Facts<'_>,
        category: Option<&str>,
        hit: &dyn Fn(PatternRef) -> bool,
    ) -> Option<Vec<Reason>> {
        let c = &rule.when;
        let allows = |allowed: &Option<Vec<String>>, value: Option<&str>| match allowed {
            None => true,
            Some(allowed) => value.is_some_and(|v| allowed.iter().any(|a| a == v)),
        };
        let flag = |wanted: Option<bool>, actual: bool| wanted.is_none_or(|w| w == actual);
        let holds = allows(&c.mailbox, Some(facts.mailbox))
            && c.role.as_ref().is_none_or(|r| r.contains(&facts.role))
            && c.sender.as_ref().is_none_or(|s| s.contains(&facts.sender))
            && allows(&c.account_status, facts.account_status)
            && allows(&c.language, facts.language)
            && allows(&c.category, category)
            && flag(c.has_attachment, facts.has_attachment)
            && flag(c.business_hours, facts.business_hours)
            && flag(c.new_ticket, facts.new_ticket)
            && c.patterns.iter().all(|&p| hit(p));
        holds.then(|| self.reasons(rule, facts, category))
    }
}

fn strings(v: &Option<Vec<String>>) -> Option<Vec<&str>> {
    v.as_ref().map(|v| v.iter().map(String::as_str).collect())
}

impl RuleSet {
    /// What each condition of a matching rule saw.
    fn reasons(&self, rule: &Rule, facts: &Facts<'_>, category: Option<&str>) -> Vec<Reason> {
        let c = &rule.when;
        let mut reasons = Vec::new();
        let mut list = |name: &str, allowed: Option<Vec<&str>>, value: Option<&str>| {
            if let Some(allowed) = allowed {
                reasons.push(Reason {
                    condition: match allowed.as_slice() {
                        [one] => format!("{name} = {one}"),
                        many => format!("{name} in [{}]", many.join(", ")),
                    },
                    matched: value.unwrap_or_default().to_string(),
                });
            }
        };

        list("mailbox", strings(&c.mailbox), Some(facts.mailbox));
        list(
            "role",
            c.role
                .as_ref()
                .map(|r| r.iter().map(|r| r.as_str()).collect()),
            Some(facts.role.as_str()),
        );
        list(
            "sender",
            c.sender
                .as_ref()
                .map(|s| s.iter().map(|s| s.as_str()).collect()),
            Some(facts.sender.as_str()),
        );
        list(
            "account_status",
            strings(&c.account_status),
            facts.account_status,
        );
        list("language", strings(&c.language), facts.language);
        list("category", strings(&c.category), category);
        let flags = [
            ("has_attachment", c.has_attachment, facts.has_attachment),
            ("business_hours", c.business_hours, facts.business_hours),
            ("new_ticket", c.new_ticket, facts.new_ticket),
        ];
        for (name, wanted, actual) in flags {
            if let Some(w) = wanted {
                reasons.push(Reason {
                    condition: format!("{name} = {w}"),
                    matched: actual.to_string(),
                });
            }
        }
        for &p in &c.patterns {
            let set = &self.sets[p.set];
            let regex = &set.each[p.index];
            let matched = field_values(&set.field, facts)
                .find_map(|text| regex.find(text).map(|m| m.as_str().to_string()))
                .unwrap_or_default();
            reasons.push(Reason {
                condition: format!("{} ~ /{}/", set.field, regex.as_str()),
                matched,
            });
        }
        reasons
    }
}

fn field_values<'a>(
    field: &'a Field,
    facts: &'a Facts<'a>,
) -> Box<dyn Iterator<Item = &'a str> + 'a> {
    match field {
        Field::From => Box::new(facts.from.into_iter()),
        Field::To => Box::new(facts.to.iter().map(String::as_str)),
        Field::Subject => Box::new(std::iter::once(facts.subject)),
        Field::Body => Box::new(std::iter::once(facts.body)),
        Field::Header(name) => Box::new(
            facts
                .headers
                .iter()
                .filter(move |(n, _)| n == name)
                .map(|(_, v)| v.as_str()),
        ),
    }
}

fn merge(out: &mut Evaluation, rule: &Rule) {
    let then = &rule.then;
    let by = || rule.name.clone();
    if then.priority.is_some() {
        out.priority = then.priority;
    }
    if let Some(category) = &then.category {
        out.category = Some(category.clone());
    }
    for tag in then.tags.iter().flat_map(|t| &t.0) {
        if !out.tags.contains(tag) {
            out.tags.push(tag.clone());
        }
    }
    if then.queue.is_some() {
        out.queue.clone_from(&then.queue);
    }
    if let Some(template) = &then.reply {
        out.replies.push((template.get_ref().clone(), by()));
    }
    if let Some(reason) = &then.notify_staff {
        out.notify_staff.push((reason.clone(), by()));
    }
    if then.suppress_reply {
        out.suppress_reply.get_or_insert_with(by);
    }
    if then.quarantine {
        out.quarantine.get_or_insert_with(by);
    }
    if then.abuse_case.is_some() {
        out.abuse_case.clone_from(&then.abuse_case);
    }
    if let Some(action) = &then.require_confirmation {
        out.require_confirmation = Some((action.clone(), by()));
    }
    if then.link_incident.is_some() {
        out.link_incident.clone_from(&then.link_incident);
    }
}
