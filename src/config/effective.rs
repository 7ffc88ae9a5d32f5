//! The configuration in force, as `maildesk config` prints it (like `doveconf -n`, but
//! with every default filled in): what the daemon will do, whatever the file left out.

use toml::{Table, Value};

use super::Config;

impl Config {
    /// The resolved configuration as TOML that loads into the same configuration: paths
    /// absolute, defaults written out, settings a mailbox's kind ignores left out. It
    /// holds no secret: the config only ever names where a password is (a file, a
    /// variable), and neither is read here.
    pub fn effective_toml(&self) -> Result<String, toml::ser::Error> {
        let mut table = Table::try_from(self)?;
        absolute_paths(
            &mut table,
            &["database", "rules_dir", "templates_dir", "accounts_file"],
        );
        if let Some(Value::Array(mailboxes)) = table.get_mut("mailbox") {
            for (value, mailbox) in mailboxes.iter_mut().zip(&self.mailboxes) {
                if let Value::Table(t) = value {
                    t.retain(|key, _| !mailbox.kind.ignored_keys().contains(&key));
                    absolute_paths(t, &["path", "password_file", "ca_file"]);
                }
            }
        }
        if let Some(Value::Table(t)) = table.get_mut("outgoing") {
            let ignored = self.outgoing.transport.ignored_keys();
            t.retain(|key, _| !ignored.contains(&key));
            absolute_paths(t, &["dir", "password_file"]);
        }
        toml::to_string(&table)
    }
}

/// Paths were resolved against the config file's directory, which may itself be relative
/// to where maildesk was started: written out absolute, they mean the same from anywhere.
fn absolute_paths(table: &mut Table, keys: &[&str]) {
    for key in keys {
        if let Some(Value::String(path)) = table.get_mut(*key)
            && let Ok(absolute) = std::path::absolute(&*path)
        {
            *path = absolute.display().to_string();
        }
    }
}
