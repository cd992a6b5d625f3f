//! `feed.atom` (RFC 4287): the current news items, for feed readers; `news.json`: every
//! published item, current and archived.

use crate::digest::Digest;
use atom_syndication::{Content, Entry, Feed, Link, Person, Text};
use chrono::FixedOffset;

/// The feed's and entries' ids: `tag:` URIs (RFC 4151) when the site has no public address,
/// so they stay the same wherever the site is served.
fn id(digest: &Digest, path: &str) -> String {
    match &digest.site.base_url {
        Some(base) if base.starts_with("http://") || base.starts_with("https://") => {
            format!("{}/{path}", base.trim_end_matches('/'))
        }
        _ => format!("tag:goalpost,2024:{path}"),
    }
}

use crate::text::printable as clean;

pub(crate) fn atom(digest: &Digest) -> String {
    let utc = FixedOffset::east_opt(0).expect("zero offset");
    let current: Vec<&crate::digest::NewsItem> =
        digest.news.iter().filter(|n| !n.archived).collect();
    let updated = current
        .iter()
        .map(|n| n.posted)
        .max()
        .unwrap_or(digest.generated_at);
    let author = Person {
        name: clean(
            digest
                .site
                .organization
                .as_deref()
                .unwrap_or(&digest.site.title),
        ),
        ..Default::default()
    };
    let entries: Vec<Entry> = current
        .iter()
        .map(|n| {
            let page = format!("news/{}.html", n.id);
            Entry {
                id: id(digest, &page),
                title: Text::plain(clean(&n.title)),
                updated: n.posted.with_timezone(&utc),
                published: Some(n.posted.with_timezone(&utc)),
                authors: vec![author.clone()],
                categories: vec![atom_syndication::Category {
                    term: clean(&n.category),
                    ..Default::default()
                }],
                links: vec![Link {
                    href: match &digest.site.base_url {
                        Some(_) => id(digest, &page),
                        None => page.clone(),
                    },
                    rel: "alternate".into(),
                    mime_type: Some("text/html".into()),
                    ..Default::default()
                }],
                summary: Some(Text::plain(clean(&n.body))),
                content: Some(Content {
                    value: Some(clean(&n.body)),
                    content_type: Some("text".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    let mut links = vec![Link {
        href: id(digest, "feed.atom"),
        rel: "self".into(),
        mime_type: Some("application/atom+xml".into()),
        ..Default::default()
    }];
    if digest.site.base_url.is_none() {
        links.clear();
    }
    let feed = Feed {
        id: id(digest, "feed.atom"),
        title: Text::plain(format!("{}: news", clean(&digest.site.title))),
        updated: updated.with_timezone(&utc),
        authors: vec![author],
        links,
        entries,
        ..Default::default()
    };
    feed.to_string()
}
