//! What a rule file may say, as serde reads it. Every key is known (`deny_unknown_fields`),
//! so a misspelt condition or action is an error with its line, not a rule that silently
//! matches everything. Spans are kept where a later check needs to point at a value.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, DeserializeOwned, IntoDeserializer};
use serde::{Deserialize, Deserializer, Serialize};
use toml::Spanned;

use crate::config::Role;
use crate::desk::Priority;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleDef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    pub name: Spanned<String>,
    /// For the people reading the file; maildesk does not use it.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub when: When,
    #[serde(default)]
    pub then: Then,
    /// No later rule is looked at once this one matched.
    #[serde(default)]
    pub stop: bool,
}

/// Conditions: all those given must hold. An empty `when` matches every message.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct When {
    pub mailbox: Option<OneOrMany<String>>,
    pub role: Option<OneOrMany<Role>>,
    pub sender: Option<OneOrMany<SenderKind>>,
    pub account_status: Option<OneOrMany<String>>,
    pub from: Option<Spanned<String>>,
    pub to: Option<Spanned<String>>,
    pub subject: Option<Spanned<String>>,
    pub body: Option<Spanned<String>>,
    /// Header name (any case) -> pattern; every occurrence of the header is tried.
    pub header: Option<BTreeMap<String, Spanned<String>>>,
    pub has_attachment: Option<bool>,
    pub language: Option<OneOrMany<String>>,
    pub category: Option<OneOrMany<String>>,
    pub business_hours: Option<bool>,
    pub new_ticket: Option<bool>,
}

/// Actions of a matching rule.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Then {
    pub priority: Option<Priority>,
    pub category: Option<String>,
    pub tags: Option<OneOrMany<String>>,
    pub queue: Option<String>,
    /// Template name; the mail goes to the template's audience.
    pub reply: Option<Spanned<String>>,
    /// Why staff are needed: flags the ticket and mails the `staff_notice` template.
    pub notify_staff: Option<String>,
    #[serde(default)]
    pub suppress_reply: bool,
    #[serde(default)]
    pub quarantine: bool,
    pub abuse_case: Option<AbuseCaseDef>,
    /// What the registered address is asked to confirm (mails `confirmation_request`).
    pub require_confirmation: Option<String>,
    pub link_incident: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AbuseCaseDef {
    pub category: String,
    #[serde(default = "normal")]
    pub severity: Severity,
}

fn normal() -> Severity {
    Severity::Normal
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Normal,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Normal => "normal",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Sender kinds as rules name them; see [`crate::desk::decide::facts`].
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SenderKind {
    Registered,
    Unregistered,
    Staff,
    Unverified,
}

impl SenderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SenderKind::Registered => "registered",
            SenderKind::Unregistered => "unregistered",
            SenderKind::Staff => "staff",
            SenderKind::Unverified => "unverified",
        }
    }
}

/// A value or a list of values: `role = "abuse"` or `language = ["it", "fr"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(PhantomData<T>);
        impl<'de, T: DeserializeOwned> de::Visitor<'de> for Visit<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let one: T = T::deserialize(v.to_string().into_deserializer())?;
                Ok(OneOrMany(vec![one]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut all = Vec::new();
                while let Some(item) = seq.next_element()? {
                    all.push(item);
                }
                if all.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list matches nothing; remove the condition instead",
                    ));
                }
                Ok(OneOrMany(all))
            }
        }
        deserializer.deserialize_any(Visit(PhantomData))
    }
}
