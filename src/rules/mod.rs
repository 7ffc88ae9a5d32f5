//! Admin-written rules: `rules/*.toml` decide priority, category, replies, abuse cases...
//!
//! [`load`] reads and checks the files (every problem, with file:line:column);
//! [`RuleSet::evaluate`] is pure: a message's [`Facts`] in, an [`Evaluation`] out, with
//! the reason each rule matched, for the audit log and `maildesk rules test`.

mod eval;
mod load;
pub mod model;
mod shadow;

pub use eval::{Evaluation, Facts, Field, Matched, Reason, Rule, RuleSet};
pub use load::{CONFIRMATION_REQUEST, STAFF_NOTICE, load};
pub use model::{AbuseCaseDef, SenderKind, Severity};
