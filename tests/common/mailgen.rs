//! Realistic generated support traffic: customers of registered accounts opening tickets
//! and replying to their own earlier mails, with 1–3 KB bodies and some small attachments.
//! Deterministic for a given seed.

/// A tiny deterministic PRNG (xorshift), so that runs can be reproduced from their seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub struct Generated {
    /// The account CSV for `accounts` customers.
    pub accounts_csv: String,
    pub messages: Vec<Vec<u8>>,
    /// How many of `messages` open a new ticket (the rest reply to an earlier one).
    pub new_tickets: usize,
}

const TOPICS: [&str; 8] = [
    "Website returns error 500",
    "Cannot receive mail on my domain",
    "SSL certificate renewal failed",
    "Database connection refused",
    "Please restore yesterday's backup",
    "DNS change not propagated",
    "FTP login fails since this morning",
    "Invoice question about my hosting plan",
];

/// The text of a generated support mail, repeated to the wanted length.
pub const LOREM: &str = "The site was working fine until this morning, then the control panel showed a warning about \
the disk quota and the shop stopped taking orders. We did not change anything in the configuration. \
Could you please check the server logs and tell us what happened? ";

pub fn customer(i: usize) -> String {
    format!("customer{i}@client{}.example", i % 17)
}

/// `count` messages from `accounts` customers; `reply_share` of them (0..=100 percent)
/// reply to an earlier message of the same customer.
pub fn traffic(seed: u64, accounts: usize, count: usize, reply_share: u64) -> Generated {
    let mut rng = Rng::new(seed);
    let mut csv = String::from("reference,email,name,language\n");
    for i in 0..accounts {
        let lang = ["en", "it", "fr"][i % 3];
        csv.push_str(&format!("C{i:05},{},Customer {i},{lang}\n", customer(i)));
    }
    // Message-IDs each customer has sent so far, for replies.
    let mut sent: Vec<Vec<(String, String)>> = vec![Vec::new(); accounts];
    let mut messages = Vec::with_capacity(count);
    let mut new_tickets = 0;
    for n in 0..count {
        let who = rng.below(accounts as u64) as usize;
        let id = format!("gen-{seed}-{n}@client{}.example", who % 17);
        let reply_to = if !sent[who].is_empty() && rng.below(100) < reply_share {
            let pick = rng.below(sent[who].len() as u64) as usize;
            Some(sent[who][pick].clone())
        } else {
            None
        };
        let (subject, threading) = match &reply_to {
            Some((parent, subject)) => (
                format!("Re: {subject}"),
                format!("In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n"),
            ),
            None => {
                new_tickets += 1;
                (
                    format!(
                        "{} (site {n})",
                        TOPICS[rng.below(TOPICS.len() as u64) as usize]
                    ),
                    String::new(),
                )
            }
        };
        let body_len = 1000 + rng.below(2000) as usize;
        let mut body = String::with_capacity(body_len + 100);
        while body.len() < body_len {
            body.push_str(LOREM);
        }
        let text = wrap(&body[..body_len]);
        let mime = if rng.below(10) == 0 {
            let attachment: String = (0..600)
                .map(|i| char::from(b'A' + ((i * 7 + n) % 26) as u8))
                .collect();
            format!(
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b{n}\"\r\n\r\n--b{n}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--b{n}\r\nContent-Type: text/plain; name=\"error.log\"\r\nContent-Disposition: attachment; filename=\"error.log\"\r\n\r\n{}\r\n--b{n}--\r\n",
                wrap(&attachment)
            )
        } else {
            format!(
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
            )
        };
        let raw = format!(
            "From: Customer {who} <{}>\r\nTo: support@example.test\r\nSubject: {subject}\r\nDate: Mon, 16 Nov 2026 10:{:02}:{:02} +0100\r\nMessage-ID: <{id}>\r\n{threading}{mime}",
            customer(who),
            (n / 60) % 60,
            n % 60,
        );
        if reply_to.is_none() {
            sent[who].push((id, subject));
        }
        messages.push(raw.into_bytes());
    }
    Generated {
        accounts_csv: csv,
        messages,
        new_tickets,
    }
}

fn wrap(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 60 * 2);
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push_str(if i % 12 == 0 { "\r\n" } else { " " });
        }
        out.push_str(word);
    }
    out
}
