//! The admin-edited policy: rules and templates, loaded and checked together (rules name
//! templates) and swapped as one value, so a message is always decided and written under
//! one consistent set. A broken edit never replaces a working set (invariant 6).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use crate::compose::Templates;
use crate::diag::Diagnostic;
use crate::rules::{self, RuleSet};

#[derive(Debug)]
pub struct Policy {
    pub rules: RuleSet,
    pub templates: Templates,
}

/// Where the policy is read from.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    pub rules_dir: PathBuf,
    pub templates_dir: PathBuf,
}

impl PolicyFiles {
    /// Reads and checks both directories: the policy if there is no error, and every
    /// problem found (warnings too) in any case.
    pub fn load(&self) -> (Option<Policy>, Vec<Diagnostic>) {
        let templates = match Templates::load(&self.templates_dir) {
            Ok(templates) => templates,
            Err(problems) => {
                // Rules are still read, to report their own problems in the same run;
                // their template references cannot be checked without templates.
                let (_, rule_problems) = rules::load(&self.rules_dir, None);
                return (None, [problems, rule_problems].concat());
            }
        };
        let (rules, problems) = rules::load(&self.rules_dir, Some(&templates));
        (rules.map(|rules| Policy { rules, templates }), problems)
    }

    /// Changes whenever a file in either directory is added, removed or modified.
    pub fn fingerprint(&self) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
        let mut seen = Vec::new();
        for dir in [&self.rules_dir, &self.templates_dir] {
            walk(dir, &mut seen);
        }
        seen.sort();
        seen
    }
}

fn walk(dir: &Path, seen: &mut Vec<(PathBuf, Option<SystemTime>, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(&path, seen);
        } else {
            seen.push((path, meta.modified().ok(), meta.len()));
        }
    }
}

/// The policy in force, shared by every mailbox task. Readers take a snapshot (an `Arc`)
/// per batch, so a reload never changes the rules in the middle of a decision.
#[derive(Debug, Clone)]
pub struct SharedPolicy(Arc<RwLock<Arc<Policy>>>);

impl SharedPolicy {
    pub fn new(policy: Policy) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(policy))))
    }

    pub fn current(&self) -> Arc<Policy> {
        match self.0.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn replace(&self, policy: Policy) {
        let policy = Arc::new(policy);
        match self.0.write() {
            Ok(mut guard) => *guard = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }
}
