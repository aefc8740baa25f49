//! The mock's `answers: "brands"` mode (opt-in through the model's params): answers that read
//! like a model's recommendations, naming a few well-known brands of the prompt's topic in a
//! numbered list, in varying order, with a few links, so that trackers, reports and drift have
//! something to find. Deterministic in (prompt, model, run, batch): a retry repeats the same
//! answer, and two batches differ.

use std::fmt::Write;

/// Topics: words that pick them in a prompt (lower case), the brands, and a slug for links.
static TOPICS: [(&[&str], [&str; 5], &str); 8] = [
    (
        &["crm"],
        [
            "HubSpot",
            "Salesforce",
            "Pipedrive",
            "Zoho CRM",
            "Freshsales",
        ],
        "crm",
    ),
    (
        &["project management", "project"],
        ["Asana", "Trello", "Jira", "Notion", "monday.com"],
        "project-management",
    ),
    (
        &["password"],
        ["1Password", "Bitwarden", "Dashlane", "Keeper", "LastPass"],
        "password-managers",
    ),
    (
        &["slack", "chat", "remote teams"],
        [
            "Microsoft Teams",
            "Discord",
            "Mattermost",
            "Zulip",
            "Google Chat",
        ],
        "team-chat",
    ),
    (
        &["cloud", "hosting", "postgres"],
        ["AWS", "Google Cloud", "Azure", "DigitalOcean", "Hetzner"],
        "cloud-hosting",
    ),
    (
        &["shoe", "running"],
        ["Brooks", "ASICS", "Hoka", "Nike", "New Balance"],
        "running-shoes",
    ),
    (
        &["email marketing", "newsletter", "deliverability"],
        ["Mailchimp", "Brevo", "Kit", "Klaviyo", "MailerLite"],
        "email-marketing",
    ),
    (
        &["headphone", "earbud"],
        ["Sony", "Bose", "Apple", "Sennheiser", "Jabra"],
        "headphones",
    ),
];

/// Brands of a prompt no topic matches.
static OTHERS: [&str; 5] = ["Acme", "Globex", "Initech", "Umbrella", "Hooli"];

const SITES: [&str; 5] = [
    "https://www.g2.com/categories/",
    "https://www.capterra.com/",
    "https://www.reddit.com/r/",
    "https://www.techradar.com/best/",
    "https://www.wirecutter.com/reviews/",
];

const PRAISE: [&str; 6] = [
    "easy to start with and generous on its free plan",
    "the most complete option, if you can afford it",
    "well liked by small teams for its simple setup",
    "strong on integrations and reporting",
    "a solid choice with good support",
    "popular with reviewers this year",
];

/// The brands the `brands` answers draw from for `prompt`, and its links' slug.
pub fn topic(prompt: &str) -> (&'static [&'static str; 5], &'static str) {
    let lower = prompt.to_lowercase();
    TOPICS
        .iter()
        .find(|(words, _, _)| words.iter().any(|w| lower.contains(w)))
        .map_or((&OTHERS, "software"), |(_, brands, slug)| (brands, *slug))
}

/// The answer text; `next` gives the deterministic random numbers.
pub fn text(prompt: &str, mut next: impl FnMut() -> u64) -> String {
    let (brands, slug) = topic(prompt);
    // A shuffled pick of 2 to 4 brands (Fisher–Yates on the first places).
    let mut order: Vec<&str> = brands.to_vec();
    let picked = 2 + (next() % 3) as usize;
    for i in 0..picked {
        let j = i + (next() % (order.len() - i) as u64) as usize;
        order.swap(i, j);
    }
    let mut text = String::from("Here are the options people mention most:\n\n");
    for (i, brand) in order[..picked].iter().enumerate() {
        let praise = PRAISE[(next() % PRAISE.len() as u64) as usize];
        // Writing into a String cannot fail.
        let _ = writeln!(text, "{}. {brand}: {praise}.", i + 1);
    }
    let first = (next() % SITES.len() as u64) as usize;
    let second = (first + 1 + (next() % (SITES.len() as u64 - 1)) as usize) % SITES.len();
    let _ = write!(
        text,
        "\nIf in doubt, start with {}. Sources: [{}]({}{slug}) and {}{slug}.",
        order[0],
        SITES[first]
            .trim_start_matches("https://www.")
            .split('/')
            .next()
            .unwrap_or("source"),
        SITES[first],
        SITES[second],
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        }
    }

    #[test]
    fn answers_name_the_topics_brands_in_a_list_with_links() {
        let a = text("What is the best CRM for a small business?", counter(1));
        assert!(a.contains("\n1. ") && a.contains("\n2. "), "{a}");
        let named = [
            "HubSpot",
            "Salesforce",
            "Pipedrive",
            "Zoho CRM",
            "Freshsales",
        ]
        .iter()
        .filter(|b| a.contains(*b))
        .count();
        assert!((2..=4).contains(&named), "{a}");
        assert_eq!(a.matches("https://").count(), 2, "{a}");
        assert_eq!(topic("Which running shoe?").1, "running-shoes");
        assert_eq!(topic("Anything else").1, "software");
        // Other seeds, other orders.
        let texts: std::collections::HashSet<String> = (0..10)
            .map(|s| text("What is the best CRM?", counter(s)))
            .collect();
        assert!(texts.len() > 5);
    }
}
