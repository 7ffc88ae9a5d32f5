//! Reading `rules/*.toml` into a [`RuleSet`]: every problem in every file is collected,
//! each with file, line and column, and the set is only built when there is no error.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use regex::{Regex, RegexSetBuilder};
use toml::Spanned;

use super::eval::{Conditions, Field, FieldSet, PatternRef, Rule, RuleSet};
use super::model::{RuleDef, RuleFile, When};
use super::shadow;
use crate::compose::Templates;
use crate::config::deserialize_all;
use crate::diag::{Diagnostic, line_column};

/// Lazy-DFA cache per field set.
const DFA_CACHE_BYTES: usize = 32 << 20;

/// Templates that actions send without naming them.
pub const STAFF_NOTICE: &str = "staff_notice";
pub const CONFIRMATION_REQUEST: &str = "confirmation_request";

/// Loads every `*.toml` in `dir`, in file-name order. Returns the set if no problem is an
/// error, and all problems (warnings included) in any case. Template names are checked
/// against `templates` when given.
pub fn load(dir: &Path, templates: Option<&Templates>) -> (Option<RuleSet>, Vec<Diagnostic>) {
    let files = match toml_files(dir) {
        Ok(files) => files,
        Err(e) => {
            return (
                None,
                vec![Diagnostic::error(
                    dir,
                    format!("cannot read the rules directory: {e}"),
                )],
            );
        }
    };
    let mut problems = Vec::new();
    let mut builder = Builder::default();
    let mut defs: Vec<(PathBuf, String, RuleDef)> = Vec::new();
    for file in files {
        let source = match std::fs::read_to_string(&file) {
            Ok(source) => source,
            Err(e) => {
                problems.push(Diagnostic::error(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        let (parsed, found) = deserialize_all::<RuleFile>(&file, &source);
        problems.extend(found.into_iter().map(name_actions));
        for def in parsed.map(|f| f.rules).unwrap_or_default() {
            defs.push((file.clone(), source.clone(), def));
        }
    }
    let mut names: BTreeMap<String, (PathBuf, usize)> = BTreeMap::new();
    for (file, source, def) in &defs {
        let at = |span: Range<usize>| line_column(source, span.start);
        let line = at(def.name.span()).0;
        if let Some((first_file, first_line)) =
            names.insert(def.name.get_ref().clone(), (file.clone(), line))
        {
            problems.push(
                Diagnostic::error(file, format!("a rule named `{}` already exists", def.name.get_ref()))
                    .at_span(source, Some(def.name.span()))
                    .with_hint(format!(
                        "rule names identify rules in logs and in the audit trail; the first is at {}:{first_line}",
                        first_file.display()
                    )),
            );
        }
        let when = builder.conditions(file, source, &def.when, &mut problems);
        if let Some(templates) = templates {
            check_templates(file, source, def, templates, &mut problems);
        }
        builder.rules.push(Rule {
            name: def.name.get_ref().clone(),
            file: file.clone(),
            line,
            when,
            then: def.then.clone(),
            stop: def.stop,
        });
    }
    problems.extend(shadow::warnings(&defs));
    let sets = match builder.compile(dir) {
        Ok(sets) => sets,
        Err(d) => {
            problems.push(d);
            return (None, problems);
        }
    };
    if problems.iter().any(Diagnostic::is_error) {
        return (None, problems);
    }
    (
        Some(RuleSet {
            uses_language: builder.rules.iter().any(|r| r.when.language.is_some()),
            rules: builder.rules,
            sets,
        }),
        problems,
    )
}

fn toml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .filter(|p| {
            p.as_ref()
                .map_or(true, |p| p.extension().is_some_and(|e| e == "toml"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    files.sort();
    Ok(files)
}

/// serde calls the keys of `then` fields; admins call them actions.
fn name_actions(mut d: Diagnostic) -> Diagnostic {
    if d.message.starts_with("unknown field") && d.message.contains("`require_confirmation`") {
        d.message = d.message.replacen("unknown field", "unknown action", 1);
    } else if d.message.starts_with("unknown field") && d.message.contains("`business_hours`") {
        d.message = d.message.replacen("unknown field", "unknown condition", 1);
    }
    d
}

fn check_templates(
    file: &Path,
    source: &str,
    def: &RuleDef,
    templates: &Templates,
    problems: &mut Vec<Diagnostic>,
) {
    if let Some(reply) = &def.then.reply
        && !templates.contains(reply.get_ref())
    {
        let hint = match templates.closest(reply.get_ref()) {
            Some(near) => format!("did you mean `{near}`?"),
            None => "a template is a file templates/en/<name>.txt".into(),
        };
        problems.push(
            Diagnostic::error(file, format!("unknown template `{}`", reply.get_ref()))
                .at_span(source, Some(reply.span()))
                .with_hint(hint),
        );
    }
    let implied = [
        (
            def.then.notify_staff.is_some(),
            "notify_staff",
            STAFF_NOTICE,
        ),
        (
            def.then.require_confirmation.is_some(),
            "require_confirmation",
            CONFIRMATION_REQUEST,
        ),
    ];
    for (used, action, template) in implied {
        if used && !templates.contains(template) {
            problems.push(
                Diagnostic::error(
                    file,
                    format!(
                        "action {action} sends the template `{template}`, which does not exist"
                    ),
                )
                .at_span(source, Some(def.name.span()))
                .with_hint(format!("add templates/en/{template}.txt")),
            );
        }
    }
}

/// Gathers the patterns of all rules by field, to compile one set per field.
#[derive(Default)]
struct Builder {
    rules: Vec<Rule>,
    fields: Vec<(Field, Vec<Regex>)>,
}

impl Builder {
    fn conditions(
        &mut self,
        file: &Path,
        source: &str,
        when: &When,
        problems: &mut Vec<Diagnostic>,
    ) -> Conditions {
        let mut patterns = Vec::new();
        let mut add = |field: Field, pattern: &Spanned<String>| match compile(file, source, pattern)
        {
            Ok(regex) => patterns.push(self.add(field, regex)),
            Err(d) => problems.push(d),
        };
        let singles = [
            (Field::From, &when.from),
            (Field::To, &when.to),
            (Field::Subject, &when.subject),
            (Field::Body, &when.body),
        ];
        for (field, pattern) in singles {
            if let Some(pattern) = pattern {
                add(field, pattern);
            }
        }
        for (name, pattern) in when.header.iter().flatten() {
            add(Field::Header(name.to_ascii_lowercase()), pattern);
        }
        let list = |v: &Option<super::model::OneOrMany<String>>| v.as_ref().map(|v| v.0.clone());
        Conditions {
            mailbox: list(&when.mailbox),
            role: when.role.as_ref().map(|r| r.0.clone()),
            sender: when.sender.as_ref().map(|s| s.0.clone()),
            account_status: list(&when.account_status),
            patterns,
            has_attachment: when.has_attachment,
            language: list(&when.language),
            category: list(&when.category),
            business_hours: when.business_hours,
            new_ticket: when.new_ticket,
        }
    }

    fn add(&mut self, field: Field, regex: Regex) -> PatternRef {
        let set = match self.fields.iter().position(|(f, _)| *f == field) {
            Some(i) => i,
            None => {
                self.fields.push((field, Vec::new()));
                self.fields.len() - 1
            }
        };
        let list = &mut self.fields[set].1;
        list.push(regex);
        PatternRef {
            set,
            index: list.len() - 1,
        }
    }

    fn compile(&self, dir: &Path) -> Result<Vec<FieldSet>, Diagnostic> {
        self.fields
            .iter()
            .map(|(field, each)| {
                // A larger lazy-DFA cache than the default: hundreds of case-insensitive
                // patterns over a long body otherwise keep refilling it (measured by
                // scripts/bench-rules).
                let set = RegexSetBuilder::new(each.iter().map(Regex::as_str))
                    .dfa_size_limit(DFA_CACHE_BYTES)
                    .build()
                    .map_err(|e| {
                        Diagnostic::error(
                            dir,
                            format!("the {field} patterns together are too large: {e}"),
                        )
                        .with_hint("simplify the patterns or use fewer of them on this field")
                    })?;
                Ok(FieldSet {
                    field: field.clone(),
                    set,
                    each: each.clone(),
                })
            })
            .collect()
    }
}

/// Compiles one pattern; a syntax error points at its position inside the pattern.
fn compile(file: &Path, source: &str, pattern: &Spanned<String>) -> Result<Regex, Diagnostic> {
    let text = pattern.get_ref();
    let error = match Regex::new(text) {
        Ok(regex) => return Ok(regex),
        Err(e) => e,
    };
    let value_at = pattern.span().start;
    let located = regex_syntax::ast::parse::Parser::new().parse(text).err();
    let Some(ast_error) = located else {
        return Err(Diagnostic::error(file, format!("invalid regex: {error}"))
            .at_offset(source, value_at)
            .with_hint("see https://docs.rs/regex/#syntax"));
    };
    let position = ast_error.span().start.offset;
    // The pattern's characters map one to one onto the file only when the TOML string
    // has no escapes: a literal string ('...'), or a basic one without backslashes.
    let raw = &source[pattern.span()];
    let quote = if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
        3
    } else {
        1
    };
    let verbatim = raw.get(quote..quote + text.len()) == Some(text.as_str());
    let offset = if verbatim {
        value_at + quote + position
    } else {
        value_at
    };
    let column_in_pattern = text[..position.min(text.len())].chars().count() + 1;
    Err(Diagnostic::error(
        file,
        format!(
            "invalid regex: {} (at character {column_in_pattern} of the pattern)",
            ast_error.kind()
        ),
    )
    .at_offset(source, offset)
    .with_hint(
        "in TOML, write patterns in single quotes ('...') so backslashes stay as written; syntax: https://docs.rs/regex/#syntax",
    ))
}
