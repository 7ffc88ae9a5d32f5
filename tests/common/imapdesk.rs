//! A demo desk reading a real Dovecot instead of its Maildir.

use super::Desk;
use super::dovecot::Dovecot;

pub const SUPPORT: &str = "support@example.test";
pub const ABUSE: &str = "abuse@example.test";

/// Points the demo's config at `dovecot`: a support mailbox (and an abuse one), with
/// `extra` lines added to the support mailbox.
pub fn use_imap(desk: &Desk, dovecot: &Dovecot, extra: &str) {
    let config = desk.config();
    let maildir_block = "[[mailbox]]\nname = \"support\"\nrole = \"support\"\nkind = \"maildir\"\npath = \"maildir\"\ninitial_sync = \"process\"\n";
    let imap = |name: &str, role: &str, user: &str, extra: &str| {
        format!(
            "[[mailbox]]\nname = \"{name}\"\nrole = \"{role}\"\nkind = \"imap\"\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nuser = \"{user}\"\npassword_file = \"{}\"\n{extra}\n",
            dovecot.imap_port,
            dovecot.password_file().display()
        )
    };
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(maildir_block));
    let blocks =
        imap("support", "support", SUPPORT, extra) + "\n" + &imap("abuse", "abuse", ABUSE, "");
    std::fs::write(&config, text.replace(maildir_block, &blocks)).unwrap();
}

/// A demo desk without mails, reading a fresh Dovecot; `extra` as in [`use_imap`].
/// Bind both (`let (desk, dovecot) = ...`): Dovecot then stops before its directory goes.
pub fn imap_desk(extra: &str) -> (Desk, Dovecot) {
    let desk = Desk::empty();
    let dovecot = Dovecot::start(desk.dir.path());
    use_imap(&desk, &dovecot, extra);
    (desk, dovecot)
}

pub fn count(desk: &Desk, sql: &str) -> i64 {
    desk.db().query_row(sql, [], |r| r.get(0)).unwrap()
}
